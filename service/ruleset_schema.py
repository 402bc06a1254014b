"""Read one rule file with line/column marks and validate it against service/rule_schema.yaml."""
from __future__ import annotations

import difflib
from functools import lru_cache
from pathlib import Path

import yaml
from jsonschema import Draft202012Validator

from service.ruleset_errors import Problem

KINDS = ("tags", "classification", "lexicon", "script", "vars")
_TYPE_WORDS = {
    "string": ("строка", "a string"), "array": ("список", "a list"), "object": ("словарь (ключ: значение)", "a mapping"),
    "number": ("число", "a number"), "integer": ("целое число", "an integer"), "boolean": ("true или false", "true or false"),
    "null": ("пустое значение", "an empty value"),
}
_CONTAINERS = {"rules": "rule", "checkpoints": "checkpoint", "poles": "pole"}


@lru_cache(maxsize=1)
def schema() -> dict:
    """The rule-file JSON Schema (parsed once)."""
    return yaml.safe_load((Path(__file__).with_name("rule_schema.yaml")).read_text(encoding="utf-8"))


@lru_cache(maxsize=8)
def _validator(kind: str) -> Draft202012Validator:
    root = dict(schema())
    root["$ref"] = f"#/$defs/{kind}_file"
    return Draft202012Validator(root)


class Marks:
    """Line/column (1-based) of every key and value in a YAML document, by path tuple."""

    def __init__(self):
        self.values: dict[tuple, tuple[int, int]] = {}
        self.keys: dict[tuple, tuple[int, int]] = {}

    def add(self, node, path=()):
        """Record the marks of `node` and its children."""
        self.values[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode):
                    self.keys[path + (k.value,)] = (k.start_mark.line + 1, k.start_mark.column + 1)
                    self.add(v, path + (k.value,))
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                self.add(v, path + (i,))

    def value(self, path) -> tuple[int, int]:
        """Where the value at `path` starts (the nearest known parent if absent)."""
        path = tuple(path)
        while path and path not in self.values:
            path = path[:-1]
        return self.values.get(path, (1, 1))

    def key(self, path) -> tuple[int, int]:
        """Where the key of `path` starts (falls back to the value)."""
        return self.keys.get(tuple(path)) or self.value(path)


def read_yaml(path: Path, display: str):
    """Parse one file: (data or None, Marks, problems). Never raises for bad YAML."""
    marks = Marks()
    try:
        text = path.read_text(encoding="utf-8")
        loader = yaml.SafeLoader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as err:
        return None, marks, [yaml_problem(err, display)]
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        return None, marks, [Problem(display, 1, 1, "error", "R100", params={"detail": str(err).splitlines()[0]})]
    if node is not None:
        marks.add(node)
    if not isinstance(data, dict):
        return None, marks, [Problem(display, 1, 1, "error", "R001")]
    return data, marks, []


def context_of(data: dict, path) -> tuple[str, str, tuple]:
    """(context kind, rule id, path inside that rule) for a path in a rule file."""
    path = tuple(path)
    for i, part in enumerate(path[:-1]):
        if part in _CONTAINERS and isinstance(path[i + 1], int):
            items = data.get(part) if i == 0 else None
            item = items[path[i + 1]] if isinstance(items, list) and path[i + 1] < len(items) else None
            rid = item.get("id") if isinstance(item, dict) else None
            if isinstance(rid, str):
                return _CONTAINERS[part], rid, path[i + 2:]
            return _CONTAINERS[part], f"#{path[i + 1] + 1}", path[i + 2:]
    if data.get("kind") == "script" and isinstance(data.get("id"), str):
        return "script", data["id"], path
    if data.get("kind") == "vars" and len(path) >= 2 and path[0] == "vars":
        return "vars", f"${path[1]}", path[2:]
    return "rule", "", path


def words(rel: tuple, default=("правило", "the rule")):
    """A YAML path in words: keys joined with dots, list positions left out."""
    keys = [str(p) for p in rel if not isinstance(p, int)]
    return ".".join(keys) if keys else default


_YAML_HINTS = [
    ("quoted scalar", "не закрыта кавычка: проверьте, что у каждой открывающей \" есть закрывающая",
     "an unclosed quote: every opening \" needs a closing one"),
    ("mapping values are not allowed", "лишнее двоеточие: текст с «:» возьмите в кавычки",
     "an unexpected colon: put text containing ':' in quotes"),
    ("could not find expected ':'", "пропущено двоеточие после ключа", "a key is missing its colon"),
    ("found character '\\t'", "табуляция: делайте отступы пробелами", "a tab: indent with spaces"),
    ("expected <block end>", "неверный отступ: элементы одного уровня должны начинаться в одном столбце",
     "bad indentation: items of one level must start in the same column"),
    ("flow sequence", "не закрыта квадратная скобка [ ]", "an unclosed bracket [ ]"),
    ("flow mapping", "не закрыта фигурная скобка { }", "an unclosed brace { }"),
]


def yaml_problem(err, display: str) -> Problem:
    """R100 for a PyYAML error, pointing at where the broken construct starts, with a plain-words hint."""
    raw = " ".join(x for x in (err.context, err.problem) if x).strip()
    mark = err.context_mark if err.context_mark is not None else err.problem_mark
    line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
    for needle, ru, en in _YAML_HINTS:
        if needle in raw:
            return Problem(display, line, col, "error", "R100", params={"detail": (f"{ru} ({raw})", f"{en} ({raw})")})
    return Problem(display, line, col, "error", "R100", params={"detail": raw})


def _got(value) -> str:
    if isinstance(value, bool):
        return (f"{str(value).lower()} (yes/no/on/off без кавычек YAML читает как true/false — возьмите в кавычки)",
                f"{str(value).lower()} (unquoted yes/no/on/off are read as true/false by YAML — quote them)")
    if isinstance(value, str):
        return f"'{value}'"
    if value is None:
        return "null"
    return yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=10_000).strip().removesuffix("...").strip()


def _hint(err) -> tuple[str, str] | None:
    sch = err.schema if isinstance(err.schema, dict) else {}
    if "x-hint" in sch:
        return sch["x-hint"], sch.get("x-hint-en", sch["x-hint"])
    return None


def _problem_for(err, data, marks, display) -> list[Problem]:
    path = tuple(err.absolute_path)
    ctx, rid, rel = context_of(data, path)
    base = dict(file=display, severity="error", rule_id=rid, context=ctx)
    inst = err.instance
    if err.validator == "additionalProperties" and isinstance(inst, dict):
        allowed = list(err.schema.get("properties", {}))
        out = []
        for key in inst:
            if key in allowed:
                continue
            close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
            suggest = (f"; возможно, имелось в виду '{close[0]}'?", f"; did you mean '{close[0]}'?") if close else ""
            line, col = marks.key(path + (key,))
            out.append(Problem(line=line, col=col, code="R103",
                               params={"key": key, "suggest": suggest, "allowed": ", ".join(allowed)}, **base))
        return out
    if err.validator == "required" and isinstance(inst, dict):
        line, col = marks.value(path)
        where = words(rel, default="")
        where = (f"{where}: ", f"{where}: ") if where else ""
        return [Problem(line=line, col=col, code="R102", params={"key": k, "where": where}, **base)
                for k in err.validator_value if k not in inst]
    line, col = marks.value(path)
    where = words(rel, default=(words(path, "файл"), words(path, "file")))
    if isinstance(err.schema, dict) and err.schema.get("x-code") == "R110":
        return [Problem(line=line, col=col, code="R110", params={"where": where, "got": inst}, **base)]
    if err.validator == "type":
        expected = err.validator_value if isinstance(err.validator_value, list) else [err.validator_value]
        exp = (" или ".join(_TYPE_WORDS[t][0] for t in expected), " or ".join(_TYPE_WORDS[t][1] for t in expected))
        hint = _hint(err)
        if hint:
            return [Problem(line=line, col=col, code="R105", params={"where": where, "hint": hint, "got": _got(inst)},
                            **base)]
        return [Problem(line=line, col=col, code="R104", params={"where": where, "expected": exp, "got": _got(inst)},
                        **base)]
    if err.validator == "const" and path == ("kind",):
        return [Problem(line=line, col=col, code="R101", params={"got": _got(inst)}, **base)]
    hint = _hint(err) or (err.message, err.message)
    if err.validator in ("minItems", "minProperties") and not _hint(err):
        hint = ("список не должен быть пустым", "must not be empty")
    return [Problem(line=line, col=col, code="R105", params={"where": where, "hint": hint, "got": _got(inst)}, **base)]


def validate(data: dict, marks: Marks, display: str) -> list[Problem]:
    """Schema problems of one parsed file (kind discriminator first, then that kind's schema only)."""
    kind = data.get("kind")
    if kind not in KINDS:
        line, col = marks.value(("kind",)) if "kind" in data else (1, 1)
        return [Problem(display, line, col, "error", "R101", params={"got": _got(kind) if kind else "—"})]
    seen: set[tuple] = set()
    problems: list[Problem] = []
    errors = sorted(_validator(kind).iter_errors(data), key=lambda e: (len(e.absolute_path), list(map(str, e.absolute_path))))
    for err in errors:
        key = tuple(err.absolute_path)
        if err.validator != "additionalProperties" and err.validator != "required":
            if key in seen:
                continue
            seen.add(key)
        problems.extend(_problem_for(err, data, marks, display))
    return problems
