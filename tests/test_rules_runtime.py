"""Rule hot reload (last good set kept on a bad edit), start-up refusal and backtest."""
from __future__ import annotations

import json
import shutil
import time

import pytest

from support import RULES_DIR, webhook_url
from service.backtest import backtest, format_report, parse_since
from service.ruleset import RuleSetError



@pytest.fixture
def rules_copy(tmp_path):
    dest = tmp_path / "rules"
    shutil.copytree(RULES_DIR, dest)
    return dest


def missed(call_id):
    return {"provider_call_id": call_id, "direction": "inbound", "client_phone": "+79161234567",
            "started_at": "2026-11-28T10:00:00+03:00", "talk_seconds": 0, "wait_seconds": 40, "status": "missed"}


def test_invalid_rules_stop_start_up(app_factory, rules_copy):
    (rules_copy / "tags" / "broken.yaml").write_text("kind: tags\nversion: 1\nrules: [{id: x, lemma: [a]}]\n")
    with pytest.raises(RuleSetError):
        app_factory(RULES_DIR=rules_copy)


def test_bad_edit_keeps_last_good_rules_and_shows_in_healthz(app_factory, rules_copy):
    app = app_factory(RULES_DIR=rules_copy, RULES_RELOAD_S=0)
    rt = app.extensions["calltag"]["runtime"]
    good = rt.rules.current().version
    (rules_copy / "tags" / "broken.yaml").write_text("kind: tags\nversion: 1\nrules: [{id: x, lemma: [a]}]\n")
    assert rt.rules.current().version == good
    health = app.test_client().get("/healthz").get_json()
    assert health["checks"]["rules"]["ok"] is False
    assert "broken.yaml" in health["checks"]["rules"]["error"]
    (rules_copy / "tags" / "broken.yaml").unlink()
    rt.rules.current()
    assert rt.rules.error is None


def test_backtest_reports_and_applies_new_tags(app_factory, rules_copy):
    app = app_factory(RULES_DIR=rules_copy, RULES_RELOAD_S=0)
    rt = app.extensions["calltag"]["runtime"]
    client = app.test_client()
    call_id = client.post(webhook_url("generic"), json=missed("b-1")).get_json()["call_id"]
    old_version = rt.rules.current().version
    flag_file = next(p for p in rules_copy.rglob("*.yaml") if "long_wait" in p.read_text(encoding="utf-8"))
    text = flag_file.read_text(encoding="utf-8")
    flag_file.write_text(text.replace("long_wait", "long_wait_v2"), encoding="utf-8")
    time.sleep(0.01)
    new_version = rt.rules.current().version
    assert new_version != old_version
    result = backtest(rt, parse_since("30d"), apply=False)
    assert result["calls"] == 1 and result["lost"] == {"long_wait": [call_id]}
    assert result["gained"] == {"long_wait_v2": [call_id]}
    assert any(line.startswith("long_wait_v2") for line in format_report(result))
    db = rt.db()
    assert json.loads(db["analyses"].get(db["calls"].get(call_id)["current_analysis_id"])["analysis"])[
        "rules_version"] == old_version
    backtest(rt, parse_since("30d"), apply=True)
    current = json.loads(db["analyses"].get(db["calls"].get(call_id)["current_analysis_id"])["analysis"])
    assert current["rules_version"] == new_version and "long_wait_v2" in current["groups"]["flag"]
