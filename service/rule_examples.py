"""Parse and run the `examples: {match, no_match}` of every rule (used by check and the tests)."""
from __future__ import annotations

import re

from service.matcher import eval_checkpoints, eval_lexicon, eval_rule, evaluate
from service.models import Utterance
from service.ruleset_errors import Problem

_LINE_RE = re.compile(r"^\s*(?:\[(?:(\d+):)?(\d+(?:\.\d+)?)\]\s*)?"
                      r"(?:(operator|client|unknown|оператор|клиент)\s*:\s*)?(\S.*)$", re.IGNORECASE)
_SPEAKERS = {"оператор": "operator", "клиент": "client"}
_VAR_RE = re.compile(r"\$([a-z][a-z0-9_]*)")


def fill_vars(line: str, variables) -> str:
    """`$name` in an example line -> the variable's first value, or nothing when it is empty (unknown names stay)."""
    def one(m):
        values = variables.get(m.group(1))
        return m.group(0) if values is None else (values[0] if values else "")
    return _VAR_RE.sub(one, line) if "$" in line else line


def parse_lines(lines, default_speaker: str = "client") -> list[Utterance] | None:
    """Example lines "[m:ss] speaker: text" -> utterances (3 s apart when no time is given); None if malformed."""
    out, t = [], 0.0
    for line in lines:
        m = _LINE_RE.match(str(line))
        if not m:
            return None
        mins, secs, speaker, text = m.groups()
        if secs is not None:
            t = float(mins or 0) * 60 + float(secs)
        speaker = _SPEAKERS.get((speaker or "").lower(), (speaker or default_speaker).lower())
        out.append(Utterance(speaker, t, t + 3.0, text.strip()))
        t += 3.5
    return out


def normalise(example) -> tuple[list[str], dict | None]:
    """An example item (string, list of strings or {lines, call}) -> (lines, call or None)."""
    if isinstance(example, str):
        return [example], None
    if isinstance(example, list):
        return [str(x) for x in example], None
    return list(example.get("lines") or []), example.get("call")


def run_example(ruleset, rule, example) -> tuple[bool | None, list]:
    """Does `rule` fire on the example? Returns (fired or None when malformed, matched words)."""
    lines, call = normalise(example)
    lines = [fill_vars(line, getattr(ruleset, "variables", {})) for line in lines]
    default_speaker = "operator" if rule.kind == "checkpoint" else "client"
    utts = parse_lines(lines, default_speaker)
    if utts is None:
        return None, []
    ev, ctx = evaluate(ruleset, utts, call or {}, ignore_call=call is None, full=True)
    if rule.kind == "pole":
        group = next(g for g in ruleset.groups if g.id == rule.group)
        chosen, hits, _ = eval_lexicon(group, ctx)
        ok = chosen.id == rule.id
    elif rule.kind == "checkpoint" and rule.after is not None:
        script = next(s for s in ruleset.scripts if any(c is rule for c in s.checkpoints))
        ok, hits = eval_checkpoints(script, ctx)[rule.id]
    else:
        ok, hits = eval_rule(rule, ctx)
    words = []
    for ui, t0, t1 in hits:
        u = ctx.utts[ui]
        words.append(u.text[u.tokens[t0].start:u.tokens[t1 - 1].end])
    return ok, words


def _show(example) -> str:
    lines, call = normalise(example)
    text = " / ".join(lines)
    return text + (f" (call: {call})" if call else "")


def check_examples(ruleset, builder) -> list[Problem]:
    """R301/R302/R303 problems for every failing example in the rule set."""
    problems = []
    for rule in ruleset.rules.values():
        if not rule.examples or not rule.enabled:
            continue
        for key in ("match", "no_match"):
            for i, example in enumerate(rule.examples.get(key) or []):
                ok, words = run_example(ruleset, rule, example)
                path = rule.example_path + (key, i)
                if ok is None:
                    problems.append(_problem(builder, rule, path, "R303", {"example": _show(example)}))
                elif key == "match" and not ok:
                    why = ("", "")
                    if words:
                        why = (f" (найдено только: «{'», «'.join(words[:3])}»)", f" (found only: «{'», «'.join(words[:3])}»)")
                    problems.append(_problem(builder, rule, path, "R301", {"example": _show(example), "why": why}))
                elif key == "no_match" and ok:
                    why = (f"совпало: «{'», «'.join(words[:3])}»", f"matched: «{'», «'.join(words[:3])}»") if words \
                        else ("правило сработало без совпадения слов", "the rule fired without matching words")
                    problems.append(_problem(builder, rule, path, "R302", {"example": _show(example), "why": why}))
    return problems


def _problem(builder, rule, path, code, params) -> Problem:
    marks = builder.marks.get(rule.file)
    line, col = marks.value(path) if marks else (rule.line, 1)
    ctx = {"checkpoint": "checkpoint", "pole": "pole"}.get(rule.kind, "rule")
    return Problem(rule.file, line, col, "error", code, rule.id, ctx, params)
