"""Read API and health check."""
from __future__ import annotations

from support import API_TOKEN, make_config, webhook_url

AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


def missed(call_id="a-1"):
    return {"provider_call_id": call_id, "direction": "inbound", "client_phone": "+79161234567",
            "started_at": "2026-11-28T10:00:00+03:00", "talk_seconds": 0, "wait_seconds": 12, "status": "missed"}


def test_api_requires_the_bearer_token(client):
    assert client.get("/calls").status_code == 401
    assert client.get("/calls", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/calls/1", headers={"Authorization": "Basic x"}).status_code == 401


def test_api_disabled_without_token(app_factory):
    config = make_config()
    config["api_token"] = None
    app = app_factory(config=config)
    assert app.test_client().get("/calls", headers=AUTH).status_code == 403


def test_api_get_and_list_calls(client):
    ids = [client.post(webhook_url("generic"), json=missed(f"a-{i}")).get_json()["call_id"] for i in range(3)]
    view = client.get(f"/calls/{ids[0]}", headers=AUTH).get_json()
    assert set(view) == {"call", "transcript", "analysis"}
    assert view["call"]["provider_call_id"] == "a-0" and view["call"]["state"] == "done"
    assert view["call"]["stages"]["recording"]["status"] == "skipped"
    assert view["transcript"] == []
    assert set(view["analysis"]["groups"]) == {"purpose", "result", "reason", "topic", "source", "tone", "flag"}
    page = client.get("/calls?limit=2&offset=0", headers=AUTH).get_json()
    assert page["total"] == 3 and [i["call"]["id"] for i in page["items"]] == [ids[2], ids[1]]
    assert client.get("/calls/999", headers=AUTH).status_code == 404
    assert client.get("/calls?limit=x", headers=AUTH).status_code == 400


def test_healthz_reports_db_queue_model_rules(client):
    resp = client.get("/healthz")
    body = resp.get_json()
    assert set(body["checks"]) >= {"db", "queue", "model", "rules"}
    assert body["checks"]["db"]["ok"] and body["checks"]["queue"]["ok"]
    assert body["checks"]["rules"]["version"]
    assert resp.status_code == (200 if body["checks"]["model"]["ok"] else 503)


def test_healthz_fails_when_the_model_is_missing(app_factory, tmp_path):
    app = app_factory(WHISPER_MODEL=str(tmp_path / "nowhere"))
    resp = app.test_client().get("/healthz")
    assert resp.status_code == 503 and resp.get_json()["checks"]["model"]["ok"] is False
