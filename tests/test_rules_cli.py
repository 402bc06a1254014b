"""`rules check` and `rules test` command functions."""
import json
from pathlib import Path

from service.rules_cli import cmd_check, cmd_test

HERE = Path(__file__).parent
SAMPLE = HERE / "data" / "transcripts" / "a_01_furniture.json"


def test_check_default_rules_ok(capsys):
    assert cmd_check(["--strict"]) == 0
    assert capsys.readouterr().out.startswith("OK: правил ")


def test_check_bad_rules_exit_1_english(capsys):
    assert cmd_check([str(HERE / "rules_invalid" / "unknown_key.yaml"), "--lang", "en"]) == 1
    out = capsys.readouterr().out
    assert "error R103 in rule 'price_objection': unknown key 'lemma'; did you mean 'lemmas'?" in out
    assert out.rstrip().endswith("Rules NOT loaded.")


def test_check_warnings_only_exit_0_unless_strict(capsys):
    path = str(HERE / "rules_invalid" / "not_a_lemma.yaml")
    assert cmd_check([path]) == 0
    assert cmd_check([path, "--strict"]) == 1


def test_test_prints_analysis_and_evidence(capsys):
    assert cmd_test([str(SAMPLE), "--explain"]) == 0
    out = capsys.readouterr().out
    assert "purpose: purpose_order" in out and "скрипт sales_call: 100 %" in out
    assert "asked_source" in out and "«как вы узнали»" in out.lower()


def test_test_json_output_is_the_analysis(capsys):
    assert cmd_test([str(SAMPLE), "--json", "--asr"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["groups"]["result"] == "result_success"
    assert set(res) == {"rules_version", "groups", "checkpoints", "script_id", "script_score", "tags", "hits"}


def test_test_recording_points_to_process(tmp_path, capsys):
    rec = tmp_path / "call.mp3"
    rec.write_bytes(b"ID3")
    assert cmd_test([str(rec)]) == 2
    assert "python -m service process" in capsys.readouterr().out


def test_test_with_broken_rules_exit_1(capsys):
    assert cmd_test([str(SAMPLE), "--rules", str(HERE / "rules_invalid" / "cycle.yaml")]) == 1
    assert "R203" in capsys.readouterr().out
