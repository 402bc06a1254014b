"""End to end: a Roistat webhook fixture -> recording -> Whisper -> rules -> the exact amoCRM requests."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import responses
from responses import matchers

from support import API_TOKEN, REPO, make_config, webhook_url

FIX = REPO / "tests" / "fixtures"
AMO = "https://acme.amocrm.ru"
AMO_API = f"{AMO}/api/v4"
SECRET_KEY = "q0sNn3jz8wq4mZ1n9J7pGv1m0Z2lR6Q3kD0vXc1sE5U="
LEAD_ID = 18500301


def crm_fixture(name: str):
    return json.loads((FIX / "crm" / name).read_text(encoding="utf-8"))


@pytest.fixture
def roistat_body() -> bytes:
    """The shared Roistat after-call fixture, pointing at a deal and a stereo recording."""
    data = json.loads(json.loads((FIX / "providers/roistat/roistat_after_call.json").read_text())["body"])
    data["order_id"] = LEAD_ID
    data["duration"] = 30
    return json.dumps(data, ensure_ascii=False).encode()


@pytest.fixture
def rules_copy(tmp_path):
    import shutil
    from support import RULES_DIR
    return Path(shutil.copytree(RULES_DIR, tmp_path / "rules"))


@pytest.fixture
def crm_app(app_factory, rules_copy):
    config = make_config(
        allow_hosts=["cloud.roistat.com"], public_url="https://calltag.example.com", providers={"roistat": {}},
        crm={"kind": "amocrm", "base_url": AMO, "auth": "long_lived", "token": "long-lived-token-abcdef",
             "pipeline_id": 7123456, "responsible_user_id": 7012345, "create_deal": "complex", "rate_per_s": 0})
    return app_factory(config=config, SECRET_KEY=SECRET_KEY, RULES_DIR=rules_copy, RULES_RELOAD_S=0)


AUDIO = (REPO / "tests/data/calls/a_07_carservice.mp3").read_bytes()


def process_first_time(client, roistat_body) -> list:
    """Post the webhook with the recording and amoCRM served by `responses`; return the requests sent."""
    audio, link = AUDIO, json.loads(roistat_body)["link"]
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        rsps.get(link, body=audio, content_type="audio/mpeg")  # the probe
        rsps.get(link, body=audio, content_type="audio/mpeg")  # the download
        rsps.get(f"{AMO_API}/leads/{LEAD_ID}", json=crm_fixture("amo_lead.json"),
                 match=[matchers.query_param_matcher({"with": "contacts"})])
        rsps.get(f"{AMO_API}/leads/custom_fields", json=crm_fixture("amo_custom_fields.json"))
        rsps.patch(f"{AMO_API}/leads/{LEAD_ID}", json=crm_fixture("amo_lead_patch.json"))
        rsps.post(f"{AMO_API}/leads/notes", json=crm_fixture("amo_notes_add.json"))
        rsps.post(f"{AMO_API}/tasks", json=crm_fixture("amo_task_add.json"))
        resp = client.post(webhook_url("roistat"), data=roistat_body, content_type="application/json")
        assert resp.status_code == 200, resp.get_data(as_text=True)
        return list(rsps.calls)


def test_roistat_webhook_ends_as_exact_amocrm_writes_once(crm_app, roistat_body):
    client = crm_app.test_client()
    audio = AUDIO
    calls = process_first_time(client, roistat_body)

    view = client.get("/calls/1", headers={"Authorization": f"Bearer {API_TOKEN}"}).get_json()
    assert view["call"]["state"] == "done", view["call"]
    crm_stage = view["call"]["stages"]["crm"]
    assert crm_stage["status"] == "done" and crm_stage["detail"]["deal_id"] == str(LEAD_ID)
    analysis = view["analysis"]
    assert "topic_price" in analysis["groups"]["topic"] and "alert_conflict" in analysis["groups"]["flag"]

    by = {(c.request.method, c.request.url.split("?")[0]): c.request for c in calls}
    patch = json.loads(by[("PATCH", f"{AMO_API}/leads/{LEAD_ID}")].body)
    assert [t["name"] for t in patch["tags_to_add"]] == analysis["tags"]
    utm = {f["field_id"]: f["values"][0]["value"] for f in patch["custom_fields_values"]}
    assert "cpc" in utm.values() and "sofa_msk" in utm.values()
    notes = json.loads(by[("POST", f"{AMO_API}/leads/notes")].body)
    call_note, text_note = notes[0], notes[1]
    assert call_note["note_type"] == "call_in" and call_note["entity_id"] == LEAD_ID
    assert call_note["params"]["uniq"] == "roistat:acme:4321"
    assert call_note["params"]["phone"] == "+79990001122" and call_note["params"]["duration"] == 30
    assert call_note["params"]["link"].startswith("https://calltag.example.com/recordings/1/")
    body = text_note["params"]["text"]
    first = view["transcript"][0]
    assert f"Менеджер: {first['text']}" in body and "Клиент:" in body
    assert "[calltag:call=roistat:acme:4321]" in body
    task = json.loads(by[("POST", f"{AMO_API}/tasks")].body)[0]
    assert task["entity_id"] == LEAD_ID and "Внимание: конфликт" in task["text"]

    # the link in the note plays the recording, and only with its signature
    path = call_note["params"]["link"].replace("https://calltag.example.com", "")
    got = client.get(path)
    assert got.status_code == 200 and got.data == audio
    assert client.get(path[:-4] + "AAAA").status_code == 404

    # the same webhook again: acknowledged, nothing sent to the CRM
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        again = client.post(webhook_url("roistat"), data=roistat_body, content_type="application/json")
        assert again.status_code == 200 and len(rsps.calls) == 0


def test_backtest_apply_retags_the_deal_with_a_short_note_only(crm_app, roistat_body, rules_copy):
    from service.backtest import backtest, parse_since
    client = crm_app.test_client()
    process_first_time(client, roistat_body)
    rt = crm_app.extensions["calltag"]["runtime"]
    topic = rules_copy / "tags" / "topic.yaml"
    topic.write_text(topic.read_text(encoding="utf-8").replace("Тема: цена", "Тема: стоимость"), encoding="utf-8")
    old_tags = client.get("/calls/1", headers={"Authorization": f"Bearer {API_TOKEN}"}).get_json()["analysis"]["tags"]
    lead = crm_fixture("amo_lead.json")
    lead["_embedded"]["tags"] += [{"name": t} for t in old_tags]  # what the first write left on the deal
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        rsps.get(f"{AMO_API}/leads/{LEAD_ID}", json=lead, match=[matchers.query_param_matcher({"with": "contacts"})])
        rsps.patch(f"{AMO_API}/leads/{LEAD_ID}", json=crm_fixture("amo_lead_patch.json"))
        rsps.post(f"{AMO_API}/leads/notes", json={"_embedded": {"notes": [{"id": 96002000, "request_id": "0"}]}})
        result = backtest(rt, parse_since("1d"), apply=True)
        calls = list(rsps.calls)
    assert result["changed"] == 1
    assert [c.request.method for c in calls] == ["GET", "PATCH", "POST"]
    patch = json.loads(calls[1].request.body)
    assert patch["tags_to_add"] == [{"name": "Тема: стоимость"}]
    assert patch["tags_to_delete"] == [{"name": "Тема: цена"}]
    note = json.loads(calls[2].request.body)
    assert len(note) == 1 and note[0]["params"]["text"].startswith("Звонок перетегирован")
    stage = rt.db()["stages"].get((1, "crm"))
    assert json.loads(stage["detail"])["mode"] == "retag"


def test_revoked_token_parks_the_call_until_reauthorised_then_it_is_written(crm_app, roistat_body):
    from service import jobs
    from service.crm_cli import cmd_crm
    client = crm_app.test_client()
    rt = crm_app.extensions["calltag"]["runtime"]
    db = rt.db()
    link = json.loads(roistat_body)["link"]
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        rsps.get(link, body=AUDIO, content_type="audio/mpeg")
        rsps.get(link, body=AUDIO, content_type="audio/mpeg")
        rsps.get(f"{AMO_API}/leads/{LEAD_ID}", status=401, json={"title": "Unauthorized", "status": 401})
        client.post(webhook_url("roistat"), data=roistat_body, content_type="application/json")
    call = db["calls"].get(1)
    assert call["state"] == "parked"
    health = client.get("/healthz").get_json()
    assert health["checks"]["crm"]["reauth_needed"][0]["tenant"] == "acme"
    assert "long-lived-token" not in json.dumps(health)

    ext = crm_app.extensions["calltag"]
    out = __import__("io").StringIO()
    assert cmd_crm(["auth", "acme", "--token", "new-long-lived-token-123456"], settings=ext["settings"],
                   config=ext["config"], db=db, out=out) == 0
    assert db["calls"].get(1)["state"] == "queued"
    with responses.RequestsMock(assert_all_requests_are_fired=True) as rsps:
        rsps.get(f"{AMO_API}/leads/{LEAD_ID}", json=crm_fixture("amo_lead.json"))
        rsps.get(f"{AMO_API}/leads/custom_fields", json=crm_fixture("amo_custom_fields.json"))
        rsps.patch(f"{AMO_API}/leads/{LEAD_ID}", json=crm_fixture("amo_lead_patch.json"))
        rsps.post(f"{AMO_API}/leads/notes", json=crm_fixture("amo_notes_add.json"))
        rsps.post(f"{AMO_API}/tasks", json=crm_fixture("amo_task_add.json"))
        assert jobs.recover_stalled(rt) == [1]
        assert rsps.calls[0].request.headers["Authorization"] == "Bearer new-long-lived-token-123456"
    assert db["calls"].get(1)["state"] == "done"
    assert db["transcripts"].count == 1  # nothing before the CRM stage was redone
    assert client.get("/healthz").get_json()["checks"]["crm"]["reauth_needed"] == []
