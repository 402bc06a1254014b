"""Calltouch: configurable webhooks (GET/POST form) + calls-diary enrichment and recording download."""
from __future__ import annotations

import json
import urllib.parse

import pytest
import responses
from responses import matchers

from support import webhook_url
from helpers_a import (api_get_call, build_app, counts, form_of, fuzz_bodies, get_row, load_fixture,
                       post_fixture)
from integrations.base import InvalidSignatureError, PermanentError, TransientError
from integrations.calltracking.base import WebhookRequest
from integrations.calltracking.calltouch import Calltouch, parse_time

WEBHOOK = load_fixture("calltouch", "calltouch_webhook_call")
DIARY = json.loads(load_fixture("calltouch", "calltouch_api_calls_diary_record")["body"])
CONF = {"site_id": "12345", "api_token": "ct-api-token-0001"}
DIARY_URL = "https://api.calltouch.ru/calls-service/RestAPI/12345/calls-diary/calls"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def app(app_factory, monkeypatch):
    return build_app(app_factory, monkeypatch, {"calltouch": CONF})


@pytest.fixture
def client(app):
    return app.test_client()


def only_call(app) -> dict:
    db = app.extensions["calltag"]["runtime"].db()
    rows = list(db.query("SELECT * FROM calls"))
    assert len(rows) == 1
    row = dict(rows[0])
    row["record"] = json.loads(row["record"])
    return row


def test_fixture_webhook_is_stored_and_queued(app, client):
    resp = post_fixture(client, "calltouch", WEBHOOK)
    assert resp.status_code == 200 and resp.get_json() == {"ok": True}
    row = only_call(app)
    rec = row["record"]
    assert row["state"] == "queued" and row["provider_call_id"].startswith("t-")
    assert rec["direction"] == "inbound"
    assert rec["client_phone"] == "+79990001122" and rec["client_phone_raw"] == "79990001122"
    assert rec["tracking_number"] == "+74950001234"
    assert rec["started_at"] == "2024-06-03T09:00:00+00:00"
    assert rec["status"] == "answered" and rec["status_raw"] == "successful"
    assert rec["attribution"] == {"source": "yandex", "medium": "cpc", "extra": {"unique": "true"}}
    assert rec["recordings"] == []  # no callId in this webhook: enrich() finds it
    assert rec["signature_verified"] is None and rec["finished"] is True
    assert api_get_call(client, row["id"])["client_phone"] == "+79990001122"
    assert Calltouch(CONF).expects_recording(rec) is True


def test_get_webhook_with_call_id_and_more_fields(app, client):
    q = {"callId": "512345678", "callerphone": "8 (999) 000-11-22", "phonenumber": "74950001234",
         "calltime": "1717405200", "status": "successful", "duration": "177", "waitingConnect": "11",
         "utm_source": "yandex", "utm_campaign": "sofa_msk", "source": "yandex", "callUrl": "https://example.ru/a",
         "yaClientId": "1717", "sessionId": "987654321", "manager": "Иванова Анна", "redirectNumber": "74950009999",
         "orderNumber": "31337"}
    resp = client.get(webhook_url("calltouch") + "?" + urllib.parse.urlencode(q))
    assert resp.status_code == 200
    rec = get_row(app, "calltouch", "512345678")["record"]
    assert rec["client_phone"] == "+79990001122" and rec["started_at"] == "2024-06-03T09:00:00+00:00"
    assert rec["talk_seconds"] == 177 and rec["wait_seconds"] == 11
    assert rec["operator"] == {"name": "Иванова Анна", "phone": "+74950009999"}
    assert rec["provider_aux_ids"] == {"callId": "512345678", "sessionId": "987654321"}
    assert rec["attribution"] == {"source": "yandex", "campaign": "sofa_msk", "call_page": "https://example.ru/a",
                                  "ym_client_id": "1717", "session_id": "987654321"}
    assert rec["crm"] == {"provider_deal_ref": "31337"}
    assert rec["recordings"] == [{"provider_recording_id": "512345678", "state": "available", "fetch": "api_call",
                                  "url": None, "format": "mp3", "channels": None}]


def test_custom_field_names(app_factory, monkeypatch):
    app = build_app(app_factory, monkeypatch, {"calltouch": {**CONF, "fields": {"call_id": "ct_id", "client": "tel"}}})
    body = "ct_id=42&tel=%2B79990001122&calltime=2024-06-03+12%3A00%3A00&status=unsuccessful"
    assert app.test_client().post(webhook_url("calltouch"), data=body, headers=FORM).status_code == 200
    rec = get_row(app, "calltouch", "42")["record"]
    assert rec["client_phone"] == "+79990001122" and rec["status"] == "missed" and rec["recordings"] == []
    assert Calltouch(CONF).expects_recording(rec) is False


def test_replay_and_repeated_triggers(app, client):
    assert post_fixture(client, "calltouch", WEBHOOK).status_code == 200
    assert post_fixture(client, "calltouch", WEBHOOK).status_code == 200
    assert counts(app) == (1, 1)
    # the same call announced again with more fields (another trigger) merges into the same record
    more = WEBHOOK["body"] + "&duration=177"
    assert client.post(webhook_url("calltouch"), data=more, headers=FORM).status_code == 200
    assert counts(app) == (1, 2)
    assert only_call(app)["record"]["talk_seconds"] == 177


def test_order_of_partial_webhooks_does_not_matter(app, client):
    a = WEBHOOK["body"] + "&duration=177"
    b = WEBHOOK["body"].replace("status=successful", "status=") + "&utm_campaign=sofa"
    client.post(webhook_url("calltouch"), data=a, headers=FORM)
    client.post(webhook_url("calltouch"), data=b, headers=FORM)
    forward = only_call(app)["record"]
    db = app.extensions["calltag"]["runtime"].db()
    other = {k: v.replace("79990001122", "79990003344") for k, v in {"a": a, "b": b}.items()}
    client.post(webhook_url("calltouch"), data=other["b"], headers=FORM)
    client.post(webhook_url("calltouch"), data=other["a"], headers=FORM)
    rows = [json.loads(r["record"]) for r in db.query("SELECT record FROM calls ORDER BY id")]
    back = rows[1]
    for key in ("status", "talk_seconds", "attribution", "started_at", "tracking_number", "finished"):
        assert back[key] == forward[key], key


def test_missing_identity_is_422(app, client):
    assert client.post(webhook_url("calltouch"), data="status=successful", headers=FORM).status_code == 422
    assert client.post(webhook_url("calltouch"), data="callerphone=7999&calltime=garbage", headers=FORM).status_code == 422
    assert client.post(webhook_url("calltouch"), data=b"[1]", headers={"Content-Type": "application/json"}).status_code == 422
    assert client.post(webhook_url("calltouch"), data=b"{", headers={"Content-Type": "application/json"}).status_code == 400
    assert counts(app) == (0, 0)


def test_wrong_url_secret_is_401(app, client):
    assert post_fixture(client, "calltouch", WEBHOOK, secret="wrong-secret-0123456789").status_code == 401
    assert counts(app) == (0, 0)


def test_sender_network_allow_list(app_factory, monkeypatch):
    app = build_app(app_factory, monkeypatch, {"calltouch": {**CONF, "allowed_networks": ["92.118.66.0/23"]}})
    client = app.test_client()
    assert post_fixture(client, "calltouch", WEBHOOK).status_code == 401  # test client is 127.0.0.1
    assert counts(app) == (0, 0)
    ok = client.post(webhook_url("calltouch"), data=WEBHOOK["body"], headers=FORM,
                     environ_base={"REMOTE_ADDR": "92.118.67.10"})
    assert ok.status_code == 200 and counts(app) == (1, 1)
    req = WebhookRequest("POST", "u", {}, {}, {}, b"", remote_addr=None)
    with pytest.raises(InvalidSignatureError):
        Calltouch({"allowed_networks": ["92.118.66.0/23"]}).verify(req)


def test_parse_time_formats():
    assert parse_time("1717405200", "Europe/Moscow").isoformat() == "2024-06-03T09:00:00+00:00"
    assert parse_time("03/06/2024 12:00:00", "Europe/Moscow").isoformat() == "2024-06-03T09:00:00+00:00"
    assert parse_time("2024-06-03 12:00:00", "Asia/Novosibirsk").isoformat() == "2024-06-03T05:00:00+00:00"
    assert parse_time("99999999999999999999", "UTC") is None and parse_time("", "UTC") is None


def test_enrich_finds_the_call_by_caller_and_time(mocked_http):
    ct = Calltouch(CONF)
    other = {**DIARY, "callId": 1, "callerNumber": "79990009999"}
    mocked_http.add(responses.GET, DIARY_URL, json={"page": 1, "pageTotal": 2, "records": [other]},
                    match=[matchers.query_param_matcher({"clientApiId": "ct-api-token-0001", "dateFrom": "03/06/2024",
                                                         "dateTo": "03/06/2024", "page": "1", "limit": "500",
                                                         "withOrders": "true", "withMapVisits": "false",
                                                         "withCallTags": "false"})])
    mocked_http.add(responses.GET, DIARY_URL, json={"page": 2, "pageTotal": 2, "records": [DIARY]})
    record = {"provider_call_id": "t-abc", "started_at": "2024-06-03T09:00:05+00:00", "client_phone_raw": "79990001122",
              "provider_aux_ids": {}}
    upd = ct.enrich(record)
    assert upd.provider_call_id == "t-abc"
    f = upd.fields
    assert f["provider_aux_ids"] == {"callId": "512345678", "sessionId": "987654321"}
    assert f["status"] == "answered" and f["talk_seconds"] == 177 and f["wait_seconds"] == 11
    assert f["answered_at"] == "2024-06-03T09:00:11+00:00"
    assert f["operator"] == {"name": "Иванова Анна", "phone": "+74950009999"}
    assert f["crm"] == {"provider_deal_ref": "31337"}
    assert f["attribution"]["campaign"] == "sofa_msk" and f["attribution"]["landing_page"].startswith("https://example.ru/")
    assert f["attribution"]["call_page"] == "https://example.ru/catalog/sofa"
    assert f["attribution"]["referrer"] == "https://yandex.ru/" and f["attribution"]["site"] == "example.ru"
    assert f["attribution"]["ga_client_id"] == "123456789.1717000000" and f["attribution"]["visitor_id"] == "1122334455"
    assert f["attribution"]["keyword"] == "купить диван" and f["attribution"]["term"] == "диван"
    assert upd.recordings[0]["provider_recording_id"] == "512345678"


def test_enrich_by_known_call_id_and_without_credentials(mocked_http):
    mocked_http.add(responses.GET, DIARY_URL, json={"page": 1, "pageTotal": 1, "records": [DIARY]})
    rec = {"provider_call_id": "512345678", "started_at": "2024-06-03T09:00:00+00:00",
           "provider_aux_ids": {"callId": "512345678"}}
    assert Calltouch(CONF).enrich(rec).fields["talk_seconds"] == 177
    assert Calltouch({}).enrich(rec) is None


def test_enrich_errors_are_typed(mocked_http):
    from integrations.base import AuthError
    mocked_http.add(responses.GET, DIARY_URL, status=401)
    mocked_http.add(responses.GET, DIARY_URL, status=500)
    rec = {"provider_call_id": "1", "started_at": "2024-06-03T09:00:00+00:00", "provider_aux_ids": {"callId": "1"}}
    with pytest.raises(AuthError):
        Calltouch(CONF).enrich(rec)
    with pytest.raises(TransientError):
        Calltouch(CONF).enrich(rec)


def test_resolve_recording_url_and_token_in_kwargs():
    url, kwargs = Calltouch(CONF).resolve_recording({}, {"provider_recording_id": "512345678"})
    assert url == DIARY_URL + "/512345678/download"
    assert kwargs == {"params": {"clientApiId": "ct-api-token-0001"}}
    with pytest.raises(TransientError):
        Calltouch(CONF).resolve_recording({"provider_aux_ids": {}}, {"provider_recording_id": None})
    with pytest.raises(PermanentError):
        Calltouch({}).resolve_recording({}, {"provider_recording_id": "1"})


def test_recording_not_ready_twice_then_downloaded(mocked_http, tmp_path):
    """The download answers 404 until Calltouch has the file; the token goes as a query parameter."""
    from service import fetch
    ct = Calltouch(CONF)
    url, kwargs = ct.resolve_recording({}, {"provider_recording_id": "512345678"})
    match = [matchers.query_param_matcher({"clientApiId": "ct-api-token-0001"})]
    mocked_http.add(responses.GET, url, status=404, match=match)
    mocked_http.add(responses.GET, url, status=404, match=match)
    mocked_http.add(responses.GET, url, body=b"ID3\x03\x00\x00\x00\x00\x00\x00" + b"\x00" * 100,
                    headers={"Content-Type": "audio/mpeg"}, match=match)
    for _ in range(2):
        with pytest.raises(TransientError):
            fetch.download(ct.http, url, tmp_path, allow_hosts=["api.calltouch.ru"], request_kwargs=kwargs)
    assert fetch.download(ct.http, url, tmp_path, allow_hosts=["api.calltouch.ru"], request_kwargs=kwargs).size_bytes > 0


def test_fuzz_never_500(app, client):
    for body, headers in fuzz_bodies(1101, [WEBHOOK], 200):
        resp = client.post(webhook_url("calltouch"), data=body, headers=headers)
        assert 200 <= resp.status_code < 500, (body, headers, resp.status_code, resp.data)
    base = form_of(WEBHOOK["body"])
    for key in ("callerphone", "calltime", "status", "duration", "callId", "waitingConnect"):
        for weird in ("", "1e999", "9" * 400, "😀", "-1", "03/99/2024 25:00:00", "\x00"):
            body = urllib.parse.urlencode({**base, key: weird})
            resp = client.post(webhook_url("calltouch"), data=body, headers=FORM)
            assert 200 <= resp.status_code < 500, (key, weird, resp.data)
            resp = client.get(webhook_url("calltouch") + "?" + body)
            assert 200 <= resp.status_code < 500, (key, weird, resp.data)
