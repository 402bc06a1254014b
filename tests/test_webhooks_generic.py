"""The generic JSON webhook: stored before the answer, every bad input rejected clearly."""
from __future__ import annotations

import json

import pytest

from support import TEST_SECRET, make_config, webhook_url


def event(**overrides):
    body = {
        "provider_call_id": "c-1001", "direction": "inbound", "client_phone": "8 (916) 123-45-67",
        "operator": {"name": "Анна", "extension": "101"}, "started_at": "2026-11-28T10:00:00",
        "wait_seconds": 7, "talk_seconds": 95, "status": "answered",
        "recordings": [{"url": "https://rec.example.com/r/c-1001.mp3", "channels": ["operator", "client"]}],
        "attribution": {"utm_source": "yandex", "utm_medium": "cpc", "utm_campaign": "sofas"},
        "crm": {"deal_id": "4242"},
    }
    body.update(overrides)
    return body


@pytest.fixture
def queued_app(app_factory):
    """An app with a real SQLite queue that nobody consumes: jobs stay pending."""
    return app_factory(QUEUE_IMMEDIATE=False)


def test_generic_valid_event_is_stored_and_queued(queued_app):
    client = queued_app.test_client()
    rt = queued_app.extensions["calltag"]["runtime"]
    resp = client.post(webhook_url("generic"), json=event())
    assert resp.status_code == 202
    call_id = resp.get_json()["call_id"]
    db = rt.db()
    call = db["calls"].get(call_id)
    assert call["state"] == "queued"
    record = json.loads(call["record"])
    assert record["client_phone"] == "+79161234567"
    assert record["client_phone_raw"] == "8 (916) 123-45-67"
    assert record["started_at"] == "2026-11-28T07:00:00+00:00"  # naive time read in the tenant's zone
    assert record["wait_seconds"] == 7 and record["talk_seconds"] == 95
    assert record["direction"] == "inbound" and record["status"] == "answered"
    assert record["operator"] == {"name": "Анна", "extension": "101"}
    assert record["attribution"] == {"source": "yandex", "medium": "cpc", "campaign": "sofas"}
    assert record["crm"] == {"deal_id": "4242"}
    assert record["recordings"][0]["channels"] == ["operator", "client"]
    assert db["events"].count == 1
    assert rt.queue.pending_count() == 1


def test_generic_duplicate_is_acknowledged_without_second_job(queued_app):
    client = queued_app.test_client()
    rt = queued_app.extensions["calltag"]["runtime"]
    assert client.post(webhook_url("generic"), json=event()).status_code == 202
    resp = client.post(webhook_url("generic"), json=event())
    assert resp.status_code == 200
    assert resp.get_json() == {"status": "duplicate"}
    assert rt.db()["calls"].count == 1
    assert rt.queue.pending_count() == 1


@pytest.mark.parametrize("url", [
    webhook_url("generic", secret="wrong-secret-0000000000000"),
    webhook_url("generic", tenant="nobody"),
])
def test_generic_wrong_secret_or_tenant_is_401_and_nothing_stored(queued_app, url):
    client = queued_app.test_client()
    resp = client.post(url, json=event())
    assert resp.status_code == 401
    db = queued_app.extensions["calltag"]["runtime"].db()
    assert db["events"].count == 0 and db["calls"].count == 0


def test_generic_malformed_json_is_400(client, db):
    resp = client.post(webhook_url("generic"), data=b'{"provider_call_id": "x",', content_type="application/json")
    assert resp.status_code == 400
    assert db["events"].count == 0


def test_generic_missing_and_wrong_fields_are_listed_422(client, db):
    bad = event(direction="sideways", talk_seconds=-3, started_at="yesterday", status=None,
                recordings=[{"url": "ftp://x/y.mp3"}, {"url": "https://x/y.mp3", "channels": ["boss"]}])
    del bad["provider_call_id"]
    resp = client.post(webhook_url("generic"), json=bad)
    assert resp.status_code == 422
    problems = resp.get_json()["problems"]
    fields = [p.split(":")[0] for p in problems]
    assert fields == ["provider_call_id", "direction", "status", "started_at", "talk_seconds",
                      "recordings[0].url", "recordings[1].channels"]
    assert db["events"].count == 0


def test_generic_body_over_limit_is_413(client, db):
    big = event(attribution={"utm_content": "x" * (1024 * 1024)})
    resp = client.post(webhook_url("generic"), json=big)
    assert resp.status_code == 413
    assert db["events"].count == 0


def test_generic_unknown_provider_is_404(client):
    assert client.post(f"/webhooks/nonesuch/acme/{TEST_SECRET}", json=event()).status_code == 404


def test_generic_second_secret_works_during_rotation(app_factory):
    config = make_config(webhook_secrets=[TEST_SECRET, "new-secret-abcdefghijklmnop"])
    app = app_factory(config=config, QUEUE_IMMEDIATE=False)
    resp = app.test_client().post(webhook_url("generic", secret="new-secret-abcdefghijklmnop"), json=event())
    assert resp.status_code == 202


def test_generic_missed_call_without_recording_is_analysed_from_metadata(client, db):
    resp = client.post(webhook_url("generic"), json=event(provider_call_id="m-1", status="missed", talk_seconds=0,
                                                         wait_seconds=31, recordings=[]))
    assert resp.status_code == 202
    call = db["calls"].get(resp.get_json()["call_id"])
    assert call["state"] == "done"
    analysis = json.loads(db["analyses"].get(call["current_analysis_id"])["analysis"])
    assert "missed" in analysis["groups"]["flag"]
    assert "long_wait" in analysis["groups"]["flag"]


def test_no_phone_number_or_secret_reaches_the_logs(client, caplog):
    import logging
    caplog.set_level(logging.DEBUG)
    client.post(webhook_url("generic"), json=event(provider_call_id="log-1", status="missed", talk_seconds=0,
                                                   recordings=[]))
    client.post(webhook_url("generic", secret="wrong-secret-0000000000000"), json=event())
    client.post(webhook_url("generic"), json=event(direction="sideways"))
    assert caplog.records  # something was logged
    assert "9161234567" not in caplog.text and TEST_SECRET not in caplog.text
