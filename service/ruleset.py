"""Load and check a rule folder: schema, compilation, references, evaluation plan, examples, version."""
from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

from service.rule_model import Group, Rule, Script, compile_call, compile_rule
from service.ruleset_errors import Problem, RuleSetError, format_report, summary
from service.ruleset_schema import context_of, read_yaml, validate

__all__ = ["RuleSet", "RuleSetError", "Problem", "load_ruleset", "check", "format_report", "summary"]


@dataclass(frozen=True)
class RuleSet:
    """A fully validated, compiled rule set.

    :param version: short sha256 of the rule files (paths and contents)
    :param groups: result groups in display order
    :param scripts: scripts in file order (the first that applies is used)
    :param plan: evaluation order: ("group", Group) | ("rule", Rule) | ("script", Script)
    :param rules: every id (rules, defaults, poles, checkpoints) -> Rule
    :param variables: `$name` variables from kind: vars files (name -> words or phrases; may be empty)
    """

    version: str
    groups: tuple
    scripts: tuple
    plan: tuple
    rules: Mapping[str, Rule] = field(default_factory=dict)
    files: tuple = ()
    vocabulary: frozenset | None = None
    prefixes: tuple = ()
    word_cache: dict = field(default_factory=dict, compare=False, repr=False)
    variables: Mapping[str, tuple] = field(default_factory=dict)


def _terms(rule: Rule):
    stack = list(rule.any + rule.all + rule.none)
    while stack:
        term = stack.pop()
        yield term
        stack.extend(term.children)


def vocabulary_of(rules) -> tuple[frozenset, tuple]:
    """Every normal form / exact word and every `word*` prefix the rules look up (the matcher indexes only these)."""
    vocab, prefixes = set(), set()
    for rule in rules:
        for term in _terms(rule):
            vocab.update(term.lemmas)
            prefixes.update(term.prefixes)
            for _text, words, _order in term.phrases:
                for forms, prefix in words:
                    vocab.update(forms or ())
                    if prefix is not None:
                        prefixes.add(prefix)
    return frozenset(vocab), tuple(sorted(prefixes))


def rule_files(path: Path) -> tuple[list[Path], Path]:
    """The rule files under `path` (or `path` itself) and the base folder for display names."""
    path = Path(path)
    if path.is_file():
        return [path], path.parent.parent
    files = sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(path).parts))
    return files, path.parent


def version_of(files: list[Path], base: Path) -> str:
    """Short sha256 over the files' relative paths and bytes."""
    h = hashlib.sha256()
    for f in files:
        h.update(f.relative_to(base).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()[:12]


class _Builder:
    """Collects problems while compiling every file of a rule folder."""

    def __init__(self):
        self.problems: list[Problem] = []
        self.ids: dict[str, tuple[str, int]] = {}
        self.loose_ids: set[str] = set()
        self.rules: dict[str, Rule] = {}
        self.groups: dict[str, dict] = {}
        self.scripts: list[Script] = []
        self.nodes: list[tuple] = []
        self.refs: list[tuple] = []     # (rule, tag, report, path)
        self.marks: dict = {}
        self.variables: dict[str, tuple] = {}
        self.var_defs: dict[str, str] = {}

    def read_file(self, path: Path, display: str):
        """Read and schema-check one file; returns a callable that compiles it, or None when it has errors."""
        data, marks, problems = read_yaml(path, display)
        self.marks[display] = marks
        if data is not None and not problems:
            problems = validate(data, marks, display)
        self.problems.extend(problems)
        if data is None or any(p.severity == "error" for p in problems):
            self._remember_ids(data)
            return None

        def report(p, code, params, severity="error"):
            ctx, rid, _rel = context_of(data, p)
            line, col = marks.key(p) if code == "R103" else marks.value(p)
            self.problems.append(Problem(display, line, col, severity, code, rid, ctx, params))

        kind = data["kind"]
        return kind, lambda: getattr(self, f"_add_{kind}")(data, marks, display, report)

    def add_files(self, files: list[Path], base: Path) -> None:
        """Compile every file: variables (kind: vars) first, since rules in any file may use them."""
        pending = [self.read_file(f, f.relative_to(base).as_posix()) for f in files]
        for first in (True, False):
            for item in pending:
                if item is not None and (item[0] == "vars") == first:
                    item[1]()

    def _add_vars(self, data, marks, display, report) -> None:
        for name, values in data["vars"].items():
            if name in self.var_defs:
                report(("vars", name), "R210", {"name": name, "other": self.var_defs[name]})
                continue
            self.var_defs[name] = f"{display}:{marks.key(('vars', name))[0]}"
            self.variables[name] = tuple(values)

    def _remember_ids(self, data) -> None:
        if not isinstance(data, dict):
            return
        if data.get("kind") == "vars" and isinstance(data.get("vars"), dict):
            for name in data["vars"]:       # a broken vars file: do not report every use of its names again
                self.variables.setdefault(str(name), ())
        for key in ("rules", "checkpoints", "poles"):
            for item in data.get(key) or []:
                if isinstance(item, dict) and isinstance(item.get("id"), str):
                    self.loose_ids.add(item["id"])
        for key in ("default",):
            if isinstance(data.get(key), dict) and isinstance(data[key].get("id"), str):
                self.loose_ids.add(data[key]["id"])

    def _define(self, rule: Rule, path, marks, display, report) -> None:
        if rule.id in self.ids:
            other = self.ids[rule.id]
            report(path + ("id",), "R201", {"id": rule.id, "other": f"{other[0]}:{other[1]}"})
            return
        self.ids[rule.id] = (display, marks.value(path + ("id",))[0])
        self.rules[rule.id] = rule

    def _rules(self, data, key, kind, group, marks, display, report, defaults=None) -> list[Rule]:
        out = []
        for i, raw in enumerate(data.get(key) or []):
            path = (key, i)
            rule, deps = compile_rule(raw, path, group=group, kind=kind, file=display,
                                      line=marks.value(path)[0], report=report, defaults=defaults,
                                      variables=self.variables)
            self._define(rule, path, marks, display, report)
            self.refs.extend((rule, tag, report, p) for tag, p in deps)
            out.append(rule)
        return out

    def _group(self, data, kind, marks, display, report) -> dict | None:
        gid = data["group"]
        g = self.groups.get(gid)
        if g is not None and (g["kind"] != kind or kind != "tags"):
            report(("group",), "R204", {"group": gid, "other": g["file"], "kind": g["kind"]})
            return None
        if g is None:
            g = self.groups[gid] = {"kind": kind, "file": display, "rules": [], "extra": {}}
        return g

    def _add_tags(self, data, marks, display, report) -> None:
        g = self._group(data, "tags", marks, display, report)
        rules = self._rules(data, "rules", "tags", data["group"], marks, display, report)
        if g is not None:
            g["rules"].extend(rules)
            self.nodes.extend(("rule", r) for r in rules)

    def _add_default(self, data, kind, marks, display, report) -> Rule:
        d = data["default"]
        rule = Rule(id=d["id"], label=d["label"], group=data["group"], kind="default", file=display,
                    line=marks.value(("default",))[0])
        self._define(rule, ("default",), marks, display, report)
        return rule

    def _add_classification(self, data, marks, display, report) -> None:
        g = self._group(data, "classification", marks, display, report)
        rules = self._rules(data, "rules", "classification", data["group"], marks, display, report)
        default = self._add_default(data, "classification", marks, display, report)
        if g is not None:
            g["rules"], g["extra"] = rules, {"default": default}
            self.nodes.append(("group", data["group"]))

    def _add_lexicon(self, data, marks, display, report) -> None:
        from service import morph

        g = self._group(data, "lexicon", marks, display, report)
        speaker = data.get("speaker", "client")
        poles = self._rules(data, "poles", "pole", data["group"], marks, display, report, defaults={"speaker": speaker})
        names = [p.id for p in poles]
        for i, pole in enumerate(poles):
            if pole.opposite and pole.opposite not in names:
                close = difflib.get_close_matches(pole.opposite, names, n=1)
                sug = (f"; возможно, '{close[0]}'?", f"; did you mean '{close[0]}'?") if close else ""
                report(("poles", i, "opposite"), "R205", {"id": pole.opposite, "suggest": sug})
        default = self._add_default(data, "lexicon", marks, display, report)
        intens = frozenset(f for w in data.get("intensifiers") or [] for f in morph.normal_forms(w))
        if g is not None:
            g["rules"] = poles
            g["extra"] = {"default": default, "speaker": speaker, "intensifiers": intens,
                          "intensity": float(data.get("intensity", 1.5))}
            self.nodes.append(("group", data["group"]))

    def _add_script(self, data, marks, display, report) -> None:
        cps = self._rules(data, "checkpoints", "checkpoint", data["id"], marks, display, report,
                          defaults={"speaker": "operator"})
        self._check_after(cps, report)
        call = compile_call((data.get("applies_to") or {}).get("call"), ("applies_to", "call"), report)
        script = Script(id=data["id"], label=data["label"], file=display, call=call,
                        pass_score=float(data.get("pass_score", 0.0)), checkpoints=tuple(cps),
                        enabled=bool(data.get("enabled", True)))
        self.scripts.append(script)
        self.nodes.append(("script", script))

    @staticmethod
    def _check_after(cps: list[Rule], report) -> None:
        """`after:` must name another checkpoint of the same script, without cycles (R207, R208, W203)."""
        by_id = {cp.id: cp for cp in cps}
        for i, cp in enumerate(cps):
            if cp.after is None:
                continue
            path = ("checkpoints", i, "after")
            if cp.after not in by_id:
                others = [c.id for c in cps if c.id != cp.id]
                close = difflib.get_close_matches(cp.after, others, n=1, cutoff=0.6)
                sug = (f"; возможно, имелось в виду '{close[0]}'?", f"; did you mean '{close[0]}'?") if close else ""
                report(path, "R207", {"id": cp.after, "suggest": sug})
                continue
            chain, cur = [cp.id], by_id[cp.after]
            while cur is not None and cur.id not in chain:
                chain.append(cur.id)
                cur = by_id.get(cur.after) if cur.after else None
            if cur is not None and cur.id == cp.id:
                report(path, "R208", {"cycle": " -> ".join(chain + [cp.id])})
            elif not by_id[cp.after].enabled and cp.enabled:
                report(path, "W203", {"id": cp.after}, severity="warning")

    def check_refs(self) -> None:
        known = set(self.ids) | self.loose_ids
        for rule, tag, report, path in self.refs:
            if tag not in known:
                close = difflib.get_close_matches(tag, sorted(known), n=1, cutoff=0.6)
                sug = (f"; возможно, имелось в виду '{close[0]}'?", f"; did you mean '{close[0]}'?") if close else ""
                report(path, "R202", {"tag": tag, "suggest": sug})
            elif tag in self.rules and not self.rules[tag].enabled:
                report(path, "W202", {"tag": tag}, severity="warning")
        for gid in self.groups:
            if gid in self.ids:
                f, line = self.ids[gid]
                self.problems.append(Problem(f, line, 1, "error", "R206", gid, "group", {"group": gid}))

    def build_groups(self) -> list[Group]:
        out = []
        for gid, g in self.groups.items():
            extra = g["extra"]
            out.append(Group(id=gid, kind=g["kind"], rules=tuple(g["rules"]), default=extra.get("default"),
                             speaker=extra.get("speaker", "any"), intensifiers=extra.get("intensifiers", frozenset()),
                             intensity=extra.get("intensity", 1.5), file=g["file"]))
        return out

    def plan(self, groups: dict[str, Group]) -> tuple:
        """Order nodes so every `tags:` reference is evaluated before its user (stable otherwise)."""
        nodes = [("group", groups[n[1]]) if n[0] == "group" else n for n in self.nodes if n[0] != "group" or n[1] in groups]
        producer, needs = {}, []
        for i, (kind, node) in enumerate(nodes):
            if kind == "group":
                members = node.rules + ((node.default,) if node.default else ())
            else:
                members = node.checkpoints if kind == "script" else (node,)
            for r in members:
                producer[r.id] = i
            needs.append({d for r in members for d in r.deps})
        deps = [{producer[d] for d in need if d in producer} - {i} for i, need in enumerate(needs)]
        placed, order = set(), []
        while len(order) < len(nodes):
            ready = next((i for i in range(len(nodes)) if i not in placed and deps[i] <= placed), None)
            if ready is None:
                left = [i for i in range(len(nodes)) if i not in placed]
                first = nodes[left[0]][1]
                names = " -> ".join(getattr(nodes[i][1], "id", "?") for i in left[:6])
                f, line = getattr(first, "file", ""), getattr(first, "line", 0)
                self.problems.append(Problem(f, line, 1, "error", "R203", first.id, "rule", {"cycle": names}))
                return tuple(nodes[i] for i in order)
            placed.add(ready)
            order.append(ready)
        return tuple(nodes[i] for i in order)


def _build(rules_dir: Path, *, strict: bool = False, run_examples: bool = True):
    """Compile a folder; returns (problems, RuleSet or None). Never raises for bad rules."""
    files, base = rule_files(Path(rules_dir))
    b = _Builder()
    if not files:
        return [Problem(str(rules_dir), 0, 0, "error", "R002")], None
    b.add_files(files, base)
    b.check_refs()
    groups = b.build_groups()
    plan = b.plan({g.id: g for g in groups})
    vocab, prefixes = vocabulary_of(b.rules.values())
    ruleset = RuleSet(version=version_of(files, base), groups=tuple(groups), scripts=tuple(b.scripts), plan=plan,
                      rules=MappingProxyType(dict(b.rules)), files=tuple(f.relative_to(base).as_posix() for f in files),
                      vocabulary=vocab, prefixes=prefixes, variables=MappingProxyType(dict(b.variables)))
    problems = b.problems
    if run_examples and not any(p.severity == "error" for p in problems):
        from service.rule_examples import check_examples

        problems.extend(check_examples(ruleset, b))
    if strict:
        problems = [Problem(p.file, p.line, p.col, "error", p.code, p.rule_id, p.context, p.params)
                    if p.severity == "warning" else p for p in problems]
    return problems, ruleset


def check(rules_dir: Path, *, lang: str = "ru", strict: bool = False) -> list[Problem]:
    """Every problem of a rule folder (schema, references, morphology, examples). Never raises for bad rules.

    :param rules_dir: the rules folder (or one rule file)
    :param lang: "ru" or "en" (used by Problem.text / format_report; codes are the same)
    :param strict: report warnings as errors
    """
    problems, _ = _build(Path(rules_dir), strict=strict)
    return sorted(problems, key=lambda p: (p.file, p.line, p.col, p.code))


def load_ruleset(rules_dir: Path) -> RuleSet:
    """Validate and compile a rule folder; raises RuleSetError listing every error. Never partial."""
    problems, ruleset = _build(Path(rules_dir))
    errors = [p for p in problems if p.severity == "error"]
    if errors or ruleset is None:
        raise RuleSetError(sorted(errors, key=lambda p: (p.file, p.line, p.col, p.code)))
    return ruleset
