"""Compiled rule objects (frozen) and compilation from schema-valid YAML data."""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import Callable, Mapping

from service import morph

VAR_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_DUR_RE = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?$")
TERM_OPS = ("lemmas", "phrases", "tags", "any", "all", "none")
DIRECTIONS = {"in": "inbound", "inbound": "inbound", "out": "outbound", "outbound": "outbound",
              "internal": "internal", "unknown": "unknown"}
LIST_CONDS = ("status", "provider", "source", "utm_source", "utm_medium", "utm_campaign", "utm_content",
              "utm_term", "operator")
RANGE_CONDS = {"talk": "talk", "wait": "wait", "duration": "duration", "operator_share": "operator_share"}


def parse_duration(value) -> float | None:
    """Seconds from `20s`, `2m`, `1m30s`, `7d`, `1h` or a number; None when malformed."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    m = _DUR_RE.match(str(value).strip())
    if not m or not any(m.groups()):
        return None
    d, h, mi, s = (float(g) if g else 0.0 for g in m.groups())
    return d * 86400 + h * 3600 + mi * 60 + s


@dataclass(frozen=True, slots=True)
class Window:
    """A time window: first N s, last N s, or [start, end) seconds from the call start."""

    first: float | None = None
    last: float | None = None
    start: float | None = None
    end: float | None = None


@dataclass(frozen=True)
class Term:
    """One condition: lemmas, phrases, tags, or a nested any/all/none of terms."""

    op: str
    lemmas: frozenset = frozenset()
    prefixes: tuple = ()
    phrases: tuple = ()          # ((text, ((forms|None, prefix|None), ...), check order), ...)
    tags: tuple = ()
    children: tuple = ()
    speaker: str = "any"
    negated: str = "skip"
    within: Window | None = None
    min_count: int = 1
    max_gap: int = 0
    weight: float = 1.0
    gate: tuple = field(default=(frozenset(), {}, ()), compare=False, hash=False)
    """phrases only: (forms that can start a phrase check, form -> phrase indices, phrases that are always checked);
    the matcher looks at a phrase only when a word of its most specific word is in the call."""


def phrase_gate(compiled) -> tuple:
    """Index compiled phrases by the normal forms of the word they are checked by first (see Term.gate)."""
    by_form: dict[str, list[int]] = {}
    always = []
    for pi, (_text, words, order) in enumerate(compiled):
        forms, prefix = words[order[0]]
        if prefix is not None:
            always.append(pi)
            continue
        for f in forms:
            by_form.setdefault(f, []).append(pi)
    return frozenset(by_form), {f: tuple(v) for f, v in by_form.items()}, tuple(always)


@dataclass(frozen=True)
class CallCond:
    """Conditions on call data; every present condition must hold (unknown values never match)."""

    answered: bool | None = None
    direction: frozenset | None = None
    lists: tuple = ()            # ((key, frozenset of folded values), ...)
    ranges: tuple = ()           # ((name, min or None, max or None), ...)
    history_s: float | None = None
    history_min: int = 1


@dataclass(frozen=True)
class Rule:
    """A tag, classification rule, checkpoint or lexicon pole."""

    id: str
    label: str
    group: str
    kind: str                    # tags | classification | default | checkpoint | pole
    file: str
    line: int
    call: CallCond | None = None
    any: tuple = ()
    all: tuple = ()
    none: tuple = ()
    min_count: int = 1
    enabled: bool = True
    weight: float = 1.0
    min_score: float = 1.0
    opposite: str | None = None
    examples: dict = field(default_factory=dict, compare=False, hash=False)
    example_path: tuple = ()
    deps: frozenset = frozenset()
    after: str | None = None     # checkpoints: the id of the checkpoint whose first hit must come earlier


@dataclass(frozen=True)
class Group:
    """A result group: multi (tags) or exclusive (classification, lexicon)."""

    id: str
    kind: str                    # tags | classification | lexicon
    rules: tuple
    default: Rule | None = None
    speaker: str = "any"
    intensifiers: frozenset = frozenset()
    intensity: float = 1.5
    file: str = ""

    @property
    def exclusive(self) -> bool:
        return self.kind != "tags"


@dataclass(frozen=True)
class Script:
    """A scored checklist of checkpoints applied to calls that match `call`."""

    id: str
    label: str
    file: str
    call: CallCond | None
    pass_score: float
    checkpoints: tuple
    enabled: bool = True


Report = Callable[..., None]


def compile_window(raw, path, report: Report) -> Window | None:
    """Compile a `within` mapping; reports R111 for contradictory keys."""
    if not raw:
        return None
    vals = {k: parse_duration(v) for k, v in raw.items()}
    if len(set(raw) & {"first", "last"}) == 2 or (set(raw) & {"first", "last"} and set(raw) & {"from", "to"}):
        report(path, "R111", {"detail": ("используйте либо first, либо last, либо from/to",
                                         "use either first, or last, or from/to")})
    if vals.get("from") is not None and vals.get("to") is not None and vals["from"] >= vals["to"]:
        report(path, "R111", {"detail": ("from должно быть меньше to", "from must be less than to")})
    return Window(vals.get("first"), vals.get("last"), vals.get("from"), vals.get("to"))


def compile_call(raw, path, report: Report) -> CallCond | None:
    """Compile a `call` mapping of call-data conditions."""
    if not raw:
        return None
    as_set = lambda v: frozenset(str(x).strip().lower() for x in (v if isinstance(v, list) else [v]))
    direction = None
    if "direction" in raw:
        vals = as_set(raw["direction"])
        for bad in sorted(vals - set(DIRECTIONS)):
            report(path + ("direction",), "R109", {"where": "call.direction", "got": bad,
                                                   "allowed": "in, out, internal, unknown"})
        direction = frozenset(DIRECTIONS[v] for v in vals if v in DIRECTIONS)
    lists = tuple((k, as_set(raw[k])) for k in LIST_CONDS if k in raw)
    ranges = []
    for name in RANGE_CONDS:
        lo, hi = raw.get(f"min_{name}"), raw.get(f"max_{name}")
        if lo is None and hi is None:
            continue
        conv = (lambda v: float(v)) if name == "operator_share" else parse_duration
        ranges.append((name, None if lo is None else conv(lo), None if hi is None else conv(hi)))
    hist = raw.get("history") or {}
    return CallCond(raw.get("answered"), direction, lists, tuple(ranges),
                    parse_duration(hist["within"]) if hist else None, int(hist.get("min_calls", 1)) if hist else 1)


def expand_vars(items: list, path, variables: Mapping, report: Report) -> tuple[list, bool]:
    """Replace `$name` items of a lemmas/phrases list by the variable's values.

    Returns ([(position in the YAML list, word or phrase), ...], whether any item was a variable).
    An unknown variable is reported (R209) and contributes nothing.
    """
    out, used = [], False
    for i, item in enumerate(items):
        text = item.strip()
        if not (text.startswith("$") and VAR_RE.match(text[1:])):
            out.append((i, item))
            continue
        used = True
        name = text[1:]
        if name not in variables:
            close = difflib.get_close_matches(name, sorted(variables), n=1, cutoff=0.6)
            sug = (f"; возможно, имелось в виду '${close[0]}'?", f"; did you mean '${close[0]}'?") if close else ""
            report(path + (i,), "R209", {"name": name, "suggest": sug})
            continue
        out.extend((i, value) for value in variables[name])
    return out, used


def compile_term(raw: dict, path, inherit: dict, report: Report, deps: set) -> Term | None:
    """Compile one term; `inherit` carries the speaker/negated/within defaults and the variables of the rule.

    Returns None when the term only names empty variables (`lemmas: [$company]` with `company: []`): such a term is
    left out, as if it were not written; so is an any/all/none whose terms are all left out.
    """
    ops = [op for op in TERM_OPS if op in raw]
    if len(ops) != 1:
        report(path, "R107", {"found": ", ".join(ops) or "—"})
    op = ops[0] if ops else "any"
    speaker = raw.get("speaker", inherit["speaker"])
    negated = raw.get("negated", inherit["negated"])
    within = compile_window(raw["within"], path + ("within",), report) if "within" in raw else inherit["within"]
    if "max_gap" in raw and op != "phrases":
        report(path + ("max_gap",), "R108", {"key": "max_gap", "only": ("phrases", "phrases")})
    kw: dict = dict(op=op, speaker=speaker, negated=negated, within=within, min_count=int(raw.get("min_count", 1)),
                    max_gap=int(raw.get("max_gap", 0)), weight=float(raw.get("weight", 1.0)))
    variables = inherit.get("vars") or {}
    if op == "lemmas":
        lemmas, prefixes = set(), []
        items, used = expand_vars(raw["lemmas"], path + ("lemmas",), variables, report)
        if used and not items:
            return None
        for i, word in items:
            w = morph.fold(word.strip())
            if " " in w:
                report(path + ("lemmas", i), "R113", {"word": word})
            if w.endswith("*"):
                prefixes.append(w[:-1])
                continue
            lemmas.add(w)
            ok, lemma = morph.dictionary_forms(w) if w not in (morph.NUM, morph.AMOUNT) and not w.startswith("=") else (True, None)
            if not ok:
                report(path + ("lemmas", i), "W201", {"word": word, "lemma": lemma}, severity="warning")
        kw.update(lemmas=frozenset(lemmas), prefixes=tuple(prefixes))
    elif op == "phrases":
        compiled = []
        items, used = expand_vars(raw["phrases"], path + ("phrases",), variables, report)
        if used and not items:
            return None
        for i, text in items:
            # `=word` (exact form) is redundant next to `word`: a token with form `=word` also has `word`.
            wl = [(forms - {"=" + f for f in forms} if forms is not None else None, prefix)
                  for forms, prefix in morph.phrase_words(text)]
            if not wl:
                report(path + ("phrases", i), "R112", {"phrase": text})
                continue
            # check the most specific (longest) word first: a missing rare word rejects the phrase fast
            order = tuple(sorted(range(len(wl)), key=lambda i: -max(map(len, wl[i][0])) if wl[i][0] else -len(wl[i][1])))
            compiled.append((text, tuple(wl), order))
        kw["phrases"] = tuple(compiled)
        kw["gate"] = phrase_gate(compiled)
    elif op == "tags":
        kw["tags"] = tuple(raw["tags"])
        deps.update((t, path + ("tags", i)) for i, t in enumerate(raw["tags"]))
    else:
        sub = dict(speaker=speaker, negated=negated, within=within, vars=variables)
        children = [compile_term(t, path + (op, i), sub, report, deps) for i, t in enumerate(raw.get(op) or [])]
        kw["children"] = tuple(t for t in children if t is not None)
        if children and not kw["children"]:
            return None
    return Term(**kw)


def compile_rule(raw: dict, path, *, group: str, kind: str, file: str, line: int, report: Report,
                 defaults: dict | None = None, variables: Mapping | None = None) -> tuple[Rule, list]:
    """Compile a rule/checkpoint/pole; returns the rule and its (tag, path) references.

    :param variables: the rule set's `$name` variables (name -> list of words or phrases)
    """
    defaults = defaults or {}
    inherit = dict(speaker=raw.get("speaker", defaults.get("speaker", "any")),
                   negated=raw.get("negated", "skip"),
                   within=compile_window(raw.get("within"), path + ("within",), report), vars=variables or {})
    deps: set = set()
    parts, written = {}, False
    for op in ("any", "all", "none"):
        key = "terms" if kind == "pole" and op == "any" else op      # a lexicon pole lists its terms under `terms`
        terms = [compile_term(t, path + (key, i), inherit, report, deps) for i, t in enumerate(raw.get(key) or [])]
        written = written or bool(terms)
        parts[op] = tuple(t for t in terms if t is not None)
    call = compile_call(raw.get("call"), path + ("call",), report)
    enabled = bool(raw.get("enabled", True))
    if kind in ("tags", "classification", "checkpoint") and not (any(parts.values()) or call):
        if written:     # every condition names an empty variable: the rule is off until the variable is filled
            enabled = False
        else:
            report(path, "R106", {})
    rule = Rule(id=raw["id"], label=raw["label"], group=group, kind=kind, file=file, line=line, call=call,
                any=parts["any"], all=parts["all"], none=parts["none"], min_count=int(raw.get("min_count", 1)),
                enabled=enabled, weight=float(raw.get("weight", 1.0)),
                min_score=float(raw.get("min_score", 1.0)), opposite=raw.get("opposite"),
                examples=raw.get("examples") or {}, example_path=path + ("examples",),
                deps=frozenset(t for t, _ in deps), after=raw.get("after"))
    return rule, sorted(deps, key=lambda d: (d[0], tuple(map(str, d[1]))))
