"""Zadarma / Novofon 1.0: zd_echo, signed NOTIFY_* events, pbx/record/request links."""
from __future__ import annotations

import base64
import hashlib
import hmac
import urllib.parse

import pytest
import responses

from support import webhook_url
from helpers_a import (api_get_call, build_app, counts, form_of, fuzz_bodies, get_record, get_row,
                       load_fixture, post_fixture)
from integrations.base import AuthError, PermanentError, TransientError
from integrations.calltracking.zadarma import Novofon, Zadarma

SECRET = "zd_test_secret_0001"
CONF = {"api_key": "zd_test_key_0001", "api_secret": SECRET}
CALL = "in_5d0e6a2f0c8f4a7b9e1d2c3b4a5f6e7d8c9b0a11"
OUT_CALL = "out_1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d"
REC = "1717405200.123456"
END = load_fixture("zadarma", "zadarma_notify_end")
RECORD = load_fixture("zadarma", "zadarma_notify_record")
OUT_END = load_fixture("zadarma", "zadarma_notify_out_end_missed")
API = "https://api.zadarma.com/v1/pbx/record/request/"


def sig(text: str, secret: str = SECRET) -> str:
    return base64.b64encode(hmac.new(secret.encode(), text.encode(), hashlib.sha1).hexdigest().encode()).decode()


def signed_end(**over) -> tuple[str, dict]:
    """A NOTIFY_END body with overrides, re-signed the way Zadarma signs it."""
    form = {**form_of(END["body"]), **over}
    sign = sig(form["caller_id"] + form["called_did"] + form["call_start"])
    return urllib.parse.urlencode(form), {"Content-Type": "application/x-www-form-urlencoded", "Signature": sign}


@pytest.fixture
def app(app_factory, monkeypatch):
    return build_app(app_factory, monkeypatch, {"zadarma": CONF, "novofon": CONF})


@pytest.fixture
def client(app):
    return app.test_client()


def test_zd_echo_is_answered_with_exactly_the_value(app, client):
    resp = client.get(webhook_url("zadarma") + "?zd_echo=abc")
    assert resp.status_code == 200 and resp.data == b"abc"
    assert resp.mimetype == "text/plain"
    resp = client.get(webhook_url("zadarma") + "?zd_echo=" + urllib.parse.quote("x y/Ж"))
    assert resp.data.decode() == "x y/Ж"
    assert counts(app) == (0, 0)
    assert client.get(webhook_url("zadarma", secret="wrong-secret-0123456789") + "?zd_echo=abc").status_code == 401


def test_end_then_record_builds_the_canonical_record(app, client):
    r = post_fixture(client, "zadarma", END)
    assert r.status_code == 200 and r.data == b""
    row = get_row(app, "zadarma", CALL)
    assert row["state"] == "queued"
    assert post_fixture(client, "zadarma", RECORD).status_code == 200
    rec = get_record(app, "zadarma", CALL)
    assert rec["direction"] == "inbound"
    assert rec["client_phone"] == "+79990001122" and rec["client_phone_raw"] == "79990001122"
    assert rec["tracking_number"] == "+74950001234"
    assert rec["operator"] == {"extension": "101"}
    assert rec["started_at"] == "2024-06-03T09:00:00+00:00"  # Moscow local -> UTC
    assert rec["talk_seconds"] == 177 and rec["status"] == "answered"
    assert rec["status_raw"] == "answered;status_code=16"
    assert rec["provider_aux_ids"] == {"call_id_with_rec": REC, "is_recorded": "1"}
    assert rec["recordings"] == [{"provider_recording_id": REC, "state": "available", "fetch": "api_call",
                                  "url": None, "format": "mp3", "channels": None}]
    assert rec["finished"] is True and rec["signature_verified"] is True
    assert counts(app) == (1, 2)
    assert api_get_call(client, row["id"])["tracking_number"] == "+74950001234"


def test_reverse_order_gives_the_same_record(app_factory, monkeypatch):
    a = build_app(app_factory, monkeypatch, {"zadarma": CONF})
    post_fixture(a.test_client(), "zadarma", END)
    post_fixture(a.test_client(), "zadarma", RECORD)
    forward = get_record(a, "zadarma", CALL)
    # one data dir per test: replay the same two events, reversed, on a fresh call id
    client = a.test_client()
    rec_form = {**form_of(RECORD["body"]), "pbx_call_id": "in_reverse"}
    hdr = {"Content-Type": "application/x-www-form-urlencoded",
           "Signature": sig(rec_form["pbx_call_id"] + rec_form["call_id_with_rec"])}
    assert client.post(webhook_url("zadarma"), data=urllib.parse.urlencode(rec_form), headers=hdr).status_code == 200
    assert get_row(a, "zadarma", "in_reverse")["state"] == "receiving"
    body, hdr = signed_end(pbx_call_id="in_reverse")
    assert client.post(webhook_url("zadarma"), data=body, headers=hdr).status_code == 200
    assert {**get_record(a, "zadarma", "in_reverse"), "provider_call_id": CALL} == forward


def test_outbound_missed_call_without_recording(app, client):
    assert post_fixture(client, "zadarma", OUT_END).status_code == 200
    rec = get_record(app, "zadarma", OUT_CALL)
    assert rec["direction"] == "outbound"
    assert rec["client_phone"] == "+79990003344" and rec["tracking_number"] == "+74950001234"
    assert rec["operator"] == {"extension": "101"}
    assert rec["status"] == "missed" and rec["status_raw"] == "no answer;status_code=19" and rec["talk_seconds"] == 0
    assert rec["started_at"] == "2024-06-03T12:10:00+00:00"
    assert rec["recordings"] == [{"provider_recording_id": f"{OUT_CALL}:not-recorded", "state": "absent",
                                  "fetch": None, "url": None, "channels": None}]
    assert get_row(app, "zadarma", OUT_CALL)["state"] == "queued"
    assert Zadarma(CONF).expects_recording(rec) is False


@pytest.mark.parametrize("disposition,status", [("busy", "busy"), ("cancel", "missed"), ("no money", "failed"),
                                                 ("line limit", "failed"), ("", "unknown")])
def test_disposition_mapping(app, client, disposition, status):
    body, hdr = signed_end(disposition=disposition, pbx_call_id="in_" + str(abs(hash(disposition))))
    assert client.post(webhook_url("zadarma"), data=body, headers=hdr).status_code == 200
    rec = get_record(app, "zadarma", "in_" + str(abs(hash(disposition))))
    assert rec["status"] == status and rec["talk_seconds"] == 0


def test_hidden_and_foreign_callers(app, client):
    for call_id, caller, expected in (("in_h", "0", None), ("in_ua", "380441234567", "+380441234567"),
                                      ("in_sip", "sip:79161234567@pbx.zadarma.com", "+79161234567"),
                                      ("in_8", "89161234567", "+79161234567")):
        body, hdr = signed_end(pbx_call_id=call_id, caller_id=caller)
        assert client.post(webhook_url("zadarma"), data=body, headers=hdr).status_code == 200
        assert get_record(app, "zadarma", call_id)["client_phone"] == expected, caller


def test_provider_timezone_override(app_factory, monkeypatch):
    app = build_app(app_factory, monkeypatch, {"zadarma": {**CONF, "timezone": "UTC"}}, timezone="Asia/Yekaterinburg")
    post_fixture(app.test_client(), "zadarma", END)
    assert get_record(app, "zadarma", CALL)["started_at"] == "2024-06-03T12:00:00+00:00"
    app2_rec = Zadarma(CONF, tenant={"timezone": "Asia/Yekaterinburg"})
    assert app2_rec.call_timezone == "Asia/Yekaterinburg"


@pytest.mark.parametrize("headers", [
    {"Content-Type": "application/x-www-form-urlencoded"},
    {"Content-Type": "application/x-www-form-urlencoded", "Signature": ""},
    {"Content-Type": "application/x-www-form-urlencoded", "Signature": sig("x")},
    {"Content-Type": "application/x-www-form-urlencoded", "Signature": sig("79990001122" + "74950001234" + "2024-06-03 12:00:00", "other")},
])
def test_bad_or_missing_signature_is_401_and_stores_nothing(app, client, headers):
    assert post_fixture(client, "zadarma", END, headers=headers).status_code == 401
    assert post_fixture(client, "zadarma", RECORD, headers=headers).status_code == 401
    assert counts(app) == (0, 0)


def test_tampered_signed_field_is_401(app, client):
    body = END["body"].replace("caller_id=79990001122", "caller_id=79990009999")
    assert post_fixture(client, "zadarma", END, body=body).status_code == 401
    body = RECORD["body"].replace("call_id_with_rec=1717405200.123456", "call_id_with_rec=1717405200.999")
    assert post_fixture(client, "zadarma", RECORD, body=body).status_code == 401
    assert counts(app) == (0, 0)


def test_wrong_url_secret_is_401(app, client):
    assert post_fixture(client, "zadarma", END, secret="wrong-secret-0123456789").status_code == 401
    assert counts(app) == (0, 0)


def test_duplicate_delivery_is_acknowledged_once(app, client):
    assert post_fixture(client, "zadarma", END).status_code == 200
    assert post_fixture(client, "zadarma", END).status_code == 200
    assert counts(app) == (1, 1)


def test_progress_and_unknown_events_store_nothing(app, client):
    start = {"event": "NOTIFY_START", "call_start": "2024-06-03 12:00:00", "pbx_call_id": CALL,
             "caller_id": "79990001122", "called_did": "74950001234"}
    hdr = {"Content-Type": "application/x-www-form-urlencoded",
           "Signature": sig(start["caller_id"] + start["called_did"] + start["call_start"])}
    resp = client.post(webhook_url("zadarma"), data=urllib.parse.urlencode(start), headers=hdr)
    assert resp.status_code == 200 and resp.data == b""  # empty: a body would steer the call
    resp = client.post(webhook_url("zadarma"), data="event=SMS&caller_id=1&text=hi",
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status_code == 200
    assert client.post(webhook_url("zadarma"), data="x=1", headers={"Content-Type": "application/x-www-form-urlencoded"}).status_code == 400
    assert counts(app) == (0, 0)


def test_novofon_uses_the_same_protocol(app, client):
    assert client.get(webhook_url("novofon") + "?zd_echo=42").data == b"42"
    assert post_fixture(client, "novofon", END).status_code == 200
    rec = get_record(app, "novofon", CALL)
    assert rec["provider"] == "novofon" and rec["client_phone"] == "+79990001122"
    assert Novofon(CONF).config["base_url"] == "https://api.novofon.com"
    assert Zadarma(CONF).config["base_url"] == "https://api.zadarma.com"


def test_expects_recording_and_enrich_when_notify_record_is_lost():
    zd = Zadarma(CONF)
    rec = {"provider_call_id": CALL, "status": "answered", "recordings": [],
           "provider_aux_ids": {"is_recorded": "1", "call_id_with_rec": REC}}
    assert zd.expects_recording(rec) is True
    upd = zd.enrich(rec)
    assert upd.recordings == [{"provider_recording_id": REC, "state": "pending", "fetch": "api_call", "url": None,
                               "format": "mp3", "channels": None}]
    rec["recordings"] = [{"provider_recording_id": REC, "state": "available"}]
    assert zd.expects_recording(rec) is False and zd.enrich(rec) is None


def _check_auth(call, key="zd_test_key_0001", secret=SECRET):
    parts = urllib.parse.urlsplit(call.request.url)
    query = parts.query
    params = dict(urllib.parse.parse_qsl(query))
    assert params["call_id"] == REC and params["format"] == "json" and params["lifetime"] == "1800"
    assert query == urllib.parse.urlencode(sorted(params.items()))
    data = parts.path + query + hashlib.md5(query.encode()).hexdigest()
    assert call.request.headers["Authorization"] == f"{key}:{sig(data, secret)}"


def test_resolve_recording_not_ready_twice_then_link(mocked_http):
    zd = Zadarma(CONF)
    mocked_http.add(responses.GET, API, status=404, json={"status": "error", "message": "record not found"})
    mocked_http.add(responses.GET, API, status=200, json={"status": "error", "message": "file is processing"})
    mocked_http.add(responses.GET, API, status=200,
                    json={"status": "success", "link": "https://api.zadarma.com/v1/pbx/record/download/abc/1.mp3",
                          "lifetime_till": "2024-06-03 12:33:00"})
    rec = {"provider_recording_id": REC, "state": "available", "fetch": "api_call"}
    with pytest.raises(TransientError):
        zd.resolve_recording({}, rec)
    with pytest.raises(TransientError):
        zd.resolve_recording({}, rec)
    assert zd.resolve_recording({}, rec) == ("https://api.zadarma.com/v1/pbx/record/download/abc/1.mp3", {})
    for call in mocked_http.calls:
        _check_auth(call)


def test_expired_link_is_never_reused(mocked_http):
    zd = Zadarma(CONF)
    mocked_http.add(responses.GET, API, json={"status": "success", "link": "https://x.zadarma.com/1.mp3"})
    mocked_http.add(responses.GET, API, json={"status": "success", "links": ["https://x.zadarma.com/2.mp3"]})
    rec = {"provider_recording_id": REC, "url": "https://x.zadarma.com/expired.mp3"}
    assert zd.resolve_recording({}, rec)[0] == "https://x.zadarma.com/1.mp3"
    assert zd.resolve_recording({}, rec)[0] == "https://x.zadarma.com/2.mp3"
    assert len(mocked_http.calls) == 2


def test_resolve_recording_errors_are_typed(mocked_http):
    zd = Novofon(CONF)
    url = "https://api.novofon.com/v1/pbx/record/request/"
    mocked_http.add(responses.GET, url, status=401)
    mocked_http.add(responses.GET, url, status=502)
    with pytest.raises(AuthError):
        zd.resolve_recording({}, {"provider_recording_id": REC})
    with pytest.raises(TransientError):
        zd.resolve_recording({}, {"provider_recording_id": REC})
    with pytest.raises(PermanentError):
        zd.resolve_recording({}, {"provider_recording_id": f"{CALL}:not-recorded"})


def test_fuzz_never_500(app, client):
    for body, headers in fuzz_bodies(2601, [END, RECORD, OUT_END], 200):
        resp = client.post(webhook_url("zadarma"), data=body, headers=headers)
        assert 200 <= resp.status_code < 500, (body, headers, resp.status_code, resp.data)
    for key in ("call_start", "duration", "pbx_call_id", "disposition", "is_recorded", "caller_id", "internal"):
        for weird in ("", "😀", "9" * 400, "2024-99-99 25:61:61", "-5", "1e999", "\x00"):
            body, hdr = signed_end(**{key: weird})
            resp = client.post(webhook_url("zadarma"), data=body, headers=hdr)
            assert 200 <= resp.status_code < 500, (key, weird, resp.data)
