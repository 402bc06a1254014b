"""Loading and checking rule folders: versions, all-or-nothing loading, reference and morphology checks."""
import textwrap

import pytest

from service.ruleset import RuleSetError, check, format_report, load_ruleset

GOOD = """
kind: tags
version: 1
group: topic
rules:
  - id: topic_price
    label: "Тема: цена"
    any: [{lemmas: [цена]}]
"""


def write(folder, name, text):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(textwrap.dedent(text), encoding="utf-8")
    return folder


def test_version_is_short_hash_and_changes_with_content(tmp_path):
    d = write(tmp_path / "rules", "a.yaml", GOOD)
    v1 = load_ruleset(d).version
    assert len(v1) == 12 and int(v1, 16) >= 0
    assert load_ruleset(d).version == v1
    write(d, "a.yaml", GOOD.replace("цена]", "цена, прайс]"))
    assert load_ruleset(d).version != v1


def test_load_is_all_or_nothing(tmp_path):
    d = write(tmp_path / "rules", "a.yaml", GOOD)
    write(d, "b.yaml", "kind: tags\nversion: 1\ngroup: x\nrules:\n  - {id: bad, label: B, any: [{lemma: [x]}]}\n")
    with pytest.raises(RuleSetError) as info:
        load_ruleset(d)
    assert [p.code for p in info.value.problems] == ["R103"]
    assert "b.yaml:5:" in str(info.value) and "Правила НЕ загружены" in str(info.value)


def test_check_finds_every_problem_across_files(tmp_path):
    d = write(tmp_path / "rules", "a.yaml", GOOD.replace("any: [{lemmas: [цена]}]", "any: [{tags: [topik_discount]}]"))
    write(d, "b.yaml", GOOD)
    write(d, "c.yaml", "kind: tags\nversion: 2\ngroup: y\nrules: []\n")
    codes = sorted(p.code for p in check(d))
    assert codes == ["R105", "R201", "R202"]


def test_unknown_tag_did_you_mean(tmp_path):
    d = write(tmp_path / "rules", "a.yaml", GOOD + """
  - id: topic_discount
    label: "Тема: скидка"
    any: [{tags: [topic_prise]}]
""")
    (p,) = check(d)
    assert p.code == "R202" and "did you mean 'topic_price'" in p.text("en")
    assert "возможно, имелось в виду 'topic_price'" in p.text("ru")


def test_reference_to_file_with_errors_is_not_reported_twice(tmp_path):
    d = write(tmp_path / "rules", "a.yaml", GOOD.replace("[{lemmas: [цена]}]", "[{lemmas: цена}]"))
    write(d, "b.yaml", "kind: tags\nversion: 1\ngroup: f\nrules:\n  - {id: f1, label: F, any: [{tags: [topic_price]}]}\n")
    assert [p.code for p in check(d)] == ["R105"]


def test_non_dictionary_lemma_is_a_warning_and_strict_makes_it_an_error(tmp_path):
    d = write(tmp_path / "rules", "a.yaml", GOOD.replace("[цена]", "[цены]"))
    (w,) = check(d)
    assert (w.code, w.severity) == ("W201", "warning") and "'цена'" in w.text()
    assert load_ruleset(d).rules  # warnings alone do not block loading
    assert [p.severity for p in check(d, strict=True)] == ["error"]


def test_exclusive_group_in_two_files_is_rejected(tmp_path):
    cls = "kind: classification\nversion: 1\ngroup: purpose\ndefault: {id: %s, label: D}\nrules: []\n"
    d = write(tmp_path / "rules", "a.yaml", cls % "other_a")
    write(d, "b.yaml", cls % "other_b")
    assert [p.code for p in check(d)] == ["R204"]


def test_lexicon_opposite_must_be_a_pole(tmp_path):
    d = write(tmp_path / "rules", "tone.yaml", """
        kind: lexicon
        version: 1
        group: tone
        default: {id: neutral, label: N}
        poles:
          - {id: negative, label: Neg, opposite: positiv, terms: [{lemmas: [плохой]}]}
          - {id: positive, label: Pos, terms: [{lemmas: [хороший]}]}
        """)
    (p,) = check(d)
    assert p.code == "R205" and "'positive'" in p.text()


def test_empty_folder_is_an_error(tmp_path):
    (tmp_path / "rules").mkdir()
    assert [p.code for p in check(tmp_path / "rules")] == ["R002"]
    with pytest.raises(RuleSetError):
        load_ruleset(tmp_path / "rules")


def test_format_report_summary_plurals():
    from service.ruleset_errors import Problem

    probs = [Problem("a.yaml", 1, 1, "error", "R106", "x")] * 2 + [Problem("b.yaml", 2, 1, "warning", "W201", "y",
                                                                          params={"word": "w", "lemma": "l"})]
    text = format_report(probs)
    assert text.endswith("2 ошибки, 1 предупреждение в 2 файлах. Правила НЕ загружены.")
    assert format_report(probs, lang="en", running_version="abc").endswith(
        "2 errors, 1 warning in 2 files. Rules NOT loaded. Still running rules version abc.")


def _schema_keys():
    from service.ruleset_schema import schema

    keys = set()
    for d in schema()["$defs"].values():
        keys.update(d.get("properties", {}))
    return keys


def test_every_schema_key_is_documented_in_rules_readme():
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "rules" / "README.md").read_text(encoding="utf-8")
    missing = [k for k in sorted(_schema_keys()) if f"`{k}`" not in readme]
    assert missing == []


SCRIPT_AFTER = """
kind: script
version: 1
id: sales
label: Скрипт
checkpoints:
  - {id: greeting, label: Привет, any: [{lemmas: [здравствовать]}]}
  - {id: asked_name, label: Имя, after: %s, any: [{phrases: ["как вас зовут"]}]}
  - {id: closing, label: Пока, after: %s, enabled: %s, any: [{phrases: ["до свидания"]}]}
"""


def test_after_unknown_checkpoint_did_you_mean(tmp_path):
    d = write(tmp_path / "rules", "s.yaml", SCRIPT_AFTER % ("greting", "greeting", "true"))
    (p,) = check(d)
    assert p.code == "R207" and (p.line, p.col) == (8, 41)
    assert "did you mean 'greeting'" in p.text("en") and "возможно, имелось в виду 'greeting'" in p.text("ru")
    with pytest.raises(RuleSetError):
        load_ruleset(d)


def test_after_cycle_and_self_reference_are_errors(tmp_path):
    d = write(tmp_path / "rules", "s.yaml", SCRIPT_AFTER % ("closing", "asked_name", "true"))
    assert [(p.code, p.rule_id) for p in check(d)] == [("R208", "asked_name"), ("R208", "closing")]
    assert "asked_name -> closing -> asked_name" in check(d)[0].text()
    d = write(tmp_path / "rules2", "s.yaml", SCRIPT_AFTER % ("asked_name", "greeting", "true"))
    assert [p.code for p in check(d)] == ["R208"]


def test_after_disabled_checkpoint_is_a_warning(tmp_path):
    d = write(tmp_path / "rules", "s.yaml", SCRIPT_AFTER % ("closing", "greeting", "false"))
    (w,) = check(d)
    assert (w.code, w.severity, w.rule_id) == ("W203", "warning", "asked_name")


VARS = """
kind: vars
version: 1
vars:
  company: %s
  brands: [Икеа]
"""
USES_VARS = """
kind: tags
version: 1
group: topic
rules:
  - id: named
    label: Назвал
    all: [{lemmas: [здравствовать]}, {phrases: ["$company"]}]
  - id: only_company
    label: Только компания
    any: [{phrases: ["$company"]}, {lemmas: ["$company"], speaker: client}]
  - id: brand
    label: Бренд
    any: [{lemmas: [мебель, "$brands"]}]
"""


def test_vars_expand_in_lemmas_and_phrases(tmp_path):
    from service.matcher import analyse
    from service.models import Utterance as U

    d = write(tmp_path / "rules", "vars.yaml", VARS % '["Уютный дом"]')
    write(d, "a.yaml", USES_VARS.replace('{lemmas: ["$company"], speaker: client}', '{phrases: [мебель]}'))
    rs = load_ruleset(d)
    assert rs.variables == {"company": ("Уютный дом",), "brands": ("Икеа",)}
    got = analyse(rs, [U("operator", 0, 3, "Здравствуйте, Уютный дом")], {})["groups"]["topic"]
    assert got == ["named", "only_company"]
    assert analyse(rs, [U("client", 0, 3, "а в Икеа дешевле")], {})["groups"]["topic"] == ["brand"]


def test_empty_var_leaves_the_term_out_and_a_rule_with_nothing_left_is_off(tmp_path):
    from service.matcher import analyse
    from service.models import Utterance as U

    d = write(tmp_path / "rules", "vars.yaml", VARS % "[]")
    write(d, "a.yaml", USES_VARS)
    assert check(d, strict=True) == []
    rs = load_ruleset(d)
    assert rs.rules["only_company"].enabled is False and rs.rules["named"].enabled is True
    assert analyse(rs, [U("operator", 0, 3, "Здравствуйте")], {})["groups"]["topic"] == ["named"]


def test_unknown_and_duplicate_vars_are_reference_errors(tmp_path):
    d = write(tmp_path / "rules", "vars.yaml", VARS % "[]")
    write(d, "vars2.yaml", "kind: vars\nversion: 1\nvars:\n  brands: []\n")
    write(d, "a.yaml", USES_VARS.replace('"$company"]}]\n  - id: only', '"$compani"]}]\n  - id: only'))
    problems = check(d)
    assert [(p.code, p.file, p.line) for p in problems] == [("R209", "rules/a.yaml", 8), ("R210", "rules/vars2.yaml", 4)]
    assert "did you mean '$company'" in problems[0].text("en")
    assert "возможно, имелось в виду '$company'" in problems[0].text("ru")
    assert "rules/vars.yaml:6" in problems[1].text()
