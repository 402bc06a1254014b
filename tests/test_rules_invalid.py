"""Golden tests: each tests/rules_invalid/NAME.yaml gives exactly NAME.expected (and NAME.en.expected in English)."""
from pathlib import Path

import pytest

from service.ruleset import RuleSetError, check, format_report, load_ruleset

HERE = Path(__file__).parent / "rules_invalid"
CASES = sorted(p.stem for p in HERE.glob("*.yaml"))


def test_every_case_has_a_golden_file():
    assert CASES and all((HERE / f"{c}.expected").exists() for c in CASES)


@pytest.mark.parametrize("name", CASES)
def test_rules_invalid_report_ru(name):
    expected = (HERE / f"{name}.expected").read_text(encoding="utf-8").rstrip("\n")
    assert format_report(check(HERE / f"{name}.yaml")) == expected


@pytest.mark.parametrize("name", sorted(p.name.split(".")[0] for p in HERE.glob("*.en.expected")))
def test_rules_invalid_report_en(name):
    expected = (HERE / f"{name}.en.expected").read_text(encoding="utf-8").rstrip("\n")
    assert format_report(check(HERE / f"{name}.yaml"), lang="en") == expected


@pytest.mark.parametrize("name", CASES)
def test_rules_invalid_never_partly_loaded(name, tmp_path):
    problems = check(HERE / f"{name}.yaml")
    errors = [p for p in problems if p.severity == "error"]
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / f"{name}.yaml").write_bytes((HERE / f"{name}.yaml").read_bytes())
    if errors:
        with pytest.raises(RuleSetError) as info:
            load_ruleset(folder)
        assert {p.code for p in info.value.problems} == {p.code for p in errors}
    else:
        assert load_ruleset(folder).rules


def test_every_problem_line_starts_with_location_and_code():
    for name in CASES:
        for p in check(HERE / f"{name}.yaml"):
            line = p.text()
            assert line.startswith(f"rules_invalid/{name}.yaml:{p.line}:{p.col}: ")
            assert p.code in line and "Traceback" not in line
