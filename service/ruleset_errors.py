"""Rule-set problems: the Problem record, message catalogue (ru/en) and the report formatter."""
from __future__ import annotations

from dataclasses import dataclass, field

# code -> (Russian template, English template). Templates use str.format with the problem params.
MESSAGES: dict[str, tuple[str, str]] = {
    "R001": ("файл пуст или не является словарём YAML; ожидается ключ kind: tags | classification | lexicon | script | vars",
             "the file is empty or not a YAML mapping; expected a kind: tags | classification | lexicon | script | vars"),
    "R002": ("в папке нет файлов правил *.yaml", "no rule files *.yaml in the folder"),
    "R100": ("не удалось прочитать YAML: {detail}", "cannot parse YAML: {detail}"),
    "R101": ("kind должен быть одним из: tags, classification, lexicon, script, vars; найдено {got}",
             "kind must be one of: tags, classification, lexicon, script, vars; got {got}"),
    "R102": ("{where}не хватает обязательного ключа '{key}'", "{where}missing the required key '{key}'"),
    "R103": ("неизвестный ключ '{key}'{suggest}\n    допустимо здесь: {allowed}",
             "unknown key '{key}'{suggest}\n    allowed here: {allowed}"),
    "R104": ("{where}: ожидается {expected}; найдено {got}", "{where}: expected {expected}; got {got}"),
    "R105": ("{where}: {hint}; найдено {got}", "{where}: {hint}; got {got}"),
    "R106": ("у правила нет ни одного условия: добавьте any, all, none или call",
             "the rule has no conditions: add any, all, none or call"),
    "R107": ("условие должно содержать ровно один из ключей lemmas, phrases, tags, any, all, none; найдено: {found}",
             "a term needs exactly one of lemmas, phrases, tags, any, all, none; found: {found}"),
    "R108": ("{key} применим только к {only}; уберите его отсюда",
             "{key} only applies to {only}; remove it here"),
    "R109": ("{where}: значение '{got}' не поддерживается; допустимо: {allowed}",
             "{where}: value '{got}' is not supported; allowed: {allowed}"),
    "R110": ("{where} должно быть длительностью вида 20s, 2m или 1m30s; найдено '{got}'",
             "{where} must be a duration like 20s, 2m or 1m30s; got '{got}'"),
    "R111": ("окно within: {detail}", "within window: {detail}"),
    "R112": ("фраза «{phrase}» не содержит слов", "the phrase «{phrase}» has no words"),
    "R113": ("'{word}' содержит пробел: в lemmas пишут по одному слову, фразы — в phrases",
             "'{word}' contains a space: lemmas hold single words, put phrases in phrases"),
    "R201": ("id '{id}' уже определён в {other}; id должны быть уникальны во всём наборе",
             "id '{id}' is already defined in {other}; ids must be unique across the set"),
    "R202": ("неизвестный тег '{tag}'{suggest} (теги — это id правил из rules/**/*.yaml)",
             "unknown tag '{tag}'{suggest} (tags are rule ids defined in rules/**/*.yaml)"),
    "R203": ("циклическая зависимость через tags: {cycle}", "circular tags dependency: {cycle}"),
    "R204": ("группа '{group}' уже определена в {other} как {kind}; группа с одним значением должна быть в одном файле",
             "group '{group}' is already defined in {other} as {kind}; a single-value group must live in one file"),
    "R205": ("opposite '{id}' не найден среди полюсов этого файла{suggest}",
             "opposite '{id}' is not one of this file's poles{suggest}"),
    "R206": ("id группы '{group}' совпадает с id правила; переименуйте группу",
             "group id '{group}' equals a rule id; rename the group"),
    "R207": ("after: неизвестный пункт '{id}'{suggest} (after ссылается на id пункта этого же скрипта)",
             "after: unknown checkpoint '{id}'{suggest} (after refers to a checkpoint id of the same script)"),
    "R208": ("after: пункт не может идти после самого себя: {cycle}",
             "after: a checkpoint cannot come after itself: {cycle}"),
    "R209": ("неизвестная переменная '${name}'{suggest} (переменные задаются в файле kind: vars, обычно rules/vars.yaml)",
             "unknown variable '${name}'{suggest} (variables are defined in a kind: vars file, usually rules/vars.yaml)"),
    "R210": ("переменная '${name}' уже задана в {other}; у переменной одно определение во всём наборе",
             "variable '${name}' is already defined in {other}; a variable has one definition across the set"),
    "W201": ("'{word}' не словарная форма; сопоставляется как '{lemma}'",
             "'{word}' is not a dictionary form; matching as '{lemma}'"),
    "W202": ("правило ссылается на выключенное правило '{tag}', это условие никогда не сработает",
             "the rule refers to the disabled rule '{tag}'; this term never fires"),
    "W203": ("after ссылается на выключенный пункт '{id}': этот пункт никогда не будет выполнен",
             "after refers to the disabled checkpoint '{id}'; this checkpoint never passes"),
    "R301": ("пример match не сработал: \"{example}\"{why}", "match example did not match: \"{example}\"{why}"),
    "R302": ("пример no_match сработал: \"{example}\" ({why})", "no_match example matched: \"{example}\" ({why})"),
    "R303": ("пример не разобран: \"{example}\"; формат \"[0:05] client: текст\" (время и говорящий необязательны)",
             "cannot read the example \"{example}\"; the format is \"[0:05] client: text\" (time and speaker optional)"),
}

CONTEXT = {"rule": ("в правиле", "in rule"), "checkpoint": ("в пункте", "in checkpoint"),
           "pole": ("в полюсе", "in pole"), "script": ("в скрипте", "in script"), "group": ("в группе", "in group"),
           "vars": ("в переменной", "in variable")}
SEVERITY = {"error": ("ошибка", "error"), "warning": ("предупреждение", "warning")}


@dataclass(frozen=True)
class Problem:
    """One problem found in a rule set.

    :param file: the file path as shown to the user
    :param line: 1-based line (0 when unknown)
    :param col: 1-based column
    :param severity: "error" or "warning"
    :param code: stable code (R1xx schema, R2xx references, R3xx examples, W2xx morphology)
    :param rule_id: the rule, checkpoint or pole id, or "" for file-level problems
    :param params: values substituted into the message template
    """

    file: str
    line: int
    col: int
    severity: str
    code: str
    rule_id: str = ""
    context: str = "rule"
    params: dict = field(default_factory=dict, compare=False, hash=False)

    def message(self, lang: str = "ru") -> str:
        """The problem's message text (no location) in the given language."""
        idx = 1 if lang == "en" else 0
        params = {k: (v[idx] if isinstance(v, tuple) else v) for k, v in self.params.items()}
        return MESSAGES[self.code][idx].format(**params)

    def text(self, lang: str = "ru") -> str:
        """The full report line(s): file:line:col: severity CODE in rule 'id': message."""
        idx = 1 if lang == "en" else 0
        where = f"{self.file}:{self.line}:{self.col}" if self.line else self.file
        ctx = f" {CONTEXT[self.context][idx]} '{self.rule_id}'" if self.rule_id else ""
        return f"{where}: {SEVERITY[self.severity][idx]} {self.code}{ctx}: {self.message(lang)}"

    def __str__(self) -> str:
        return self.text("ru")


def _plural_ru(n: int, one: str, few: str, many: str) -> str:
    """Russian plural: 1 ошибка, 2 ошибки, 5 ошибок."""
    if n % 10 == 1 and n % 100 != 11:
        return f"{n} {one}"
    if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14:
        return f"{n} {few}"
    return f"{n} {many}"


def summary(problems, *, lang: str = "ru", running_version: str | None = None) -> str:
    """One closing line: counts of errors and warnings and whether the set was loaded."""
    errors = sum(p.severity == "error" for p in problems)
    warnings = len(problems) - errors
    files = len({p.file for p in problems})
    if lang == "en":
        text = (f"{errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)} "
                f"in {files} file{'s' * (files != 1)}.")
        if errors:
            text += " Rules NOT loaded."
            if running_version:
                text += f" Still running rules version {running_version}."
        return text
    text = (f"{_plural_ru(errors, 'ошибка', 'ошибки', 'ошибок')}, "
            f"{_plural_ru(warnings, 'предупреждение', 'предупреждения', 'предупреждений')} "
            f"в {_plural_ru(files, 'файле', 'файлах', 'файлах')}.")
    if errors:
        text += " Правила НЕ загружены."
        if running_version:
            text += f" Работает прежняя версия правил {running_version}."
    return text


def format_report(problems, *, lang: str = "ru", running_version: str | None = None) -> str:
    """Format all problems (sorted by file, line, column) plus a summary line."""
    ordered = sorted(problems, key=lambda p: (p.file, p.line, p.col, p.code))
    lines = [p.text(lang) for p in ordered]
    if ordered:
        lines.append(summary(ordered, lang=lang, running_version=running_version))
    return "\n".join(lines)


class RuleSetError(Exception):
    """Raised by load_ruleset when the rule set has errors; .problems lists every one."""

    def __init__(self, problems, *, lang: str = "ru"):
        self.problems = list(problems)
        self.lang = lang
        super().__init__(format_report(self.problems, lang=lang))

    def __str__(self) -> str:
        return format_report(self.problems, lang=self.lang)
