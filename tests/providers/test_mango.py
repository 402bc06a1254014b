"""Mango Office VPBX: signed summary + record/added through the real webhook route."""
from __future__ import annotations

import hashlib
import json
import urllib.parse

import pytest
import responses
from werkzeug.datastructures import Headers

from support import make_config, webhook_url
from helpers_a import (api_get_call, build_app, counts, form_of, fuzz_bodies, get_record, get_row,
                       load_fixture, post_fixture)
from integrations.base import InvalidSignatureError, PayloadError, TransientError
from integrations.calltracking.base import WebhookRequest
from integrations.calltracking.mango import Mango

KEY, SALT = "test_vpbx_key_0001", "test_vpbx_salt_0001"
CONF = {"api_key": KEY, "api_salt": SALT}
ENTRY = "MTAwNTc1OTM6MTIzNDU2Nzg5"
REC_ID = "MToxMDA1NzU5MzoyMDI0MDYwMzoxMjM0NQ=="
API = "https://app.mango-office.ru/vpbx/queries/recording/post"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def signed(doc: dict, key: str = KEY, salt: str = SALT) -> str:
    js = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    return urllib.parse.urlencode({"vpbx_api_key": key, "sign": hashlib.sha256((key + js + salt).encode()).hexdigest(),
                                   "json": js})


def summary_doc(**over) -> dict:
    doc = json.loads(form_of(load_fixture("mango", "mango_events_summary")["body"])["json"])
    doc.update(over)
    return doc


@pytest.fixture
def app(app_factory, monkeypatch):
    return build_app(app_factory, monkeypatch, {"mango": CONF})


@pytest.fixture
def client(app):
    return app.test_client()


def post(client, body: str, secret=None):
    url = webhook_url("mango") if secret is None else webhook_url("mango", secret=secret)
    return client.post(url, data=body, headers=FORM)


SUMMARY = load_fixture("mango", "mango_events_summary")
RECORD = load_fixture("mango", "mango_events_record_added")


def test_fixture_signatures_are_what_we_compute():
    for fx in (SUMMARY, RECORD):
        form = form_of(fx["body"])
        assert hashlib.sha256((KEY + form["json"] + SALT).encode()).hexdigest() == form["sign"]


def test_summary_then_record_builds_the_canonical_record(app, client):
    r1 = post_fixture(client, "mango", SUMMARY)
    assert r1.status_code == 200 and r1.data == b""
    row = get_row(app, "mango", ENTRY)
    assert row["state"] == "queued"  # finished -> enqueued (nobody consumes the queue here)
    r2 = post_fixture(client, "mango", RECORD)
    assert r2.status_code == 200
    rec = get_record(app, "mango", ENTRY)
    assert rec["provider"] == "mango" and rec["tenant_id"] == "acme" and rec["provider_call_id"] == ENTRY
    assert rec["direction"] == "inbound"
    assert rec["client_phone"] == "+79990001122" and rec["client_phone_raw"] == "79990001122"
    assert rec["tracking_number"] == "+74950001234"
    assert rec["operator"] == {"extension": "101", "provider_id": "400123"}
    assert rec["started_at"] == "2024-06-03T09:00:00+00:00"
    assert rec["answered_at"] == "2024-06-03T09:00:11+00:00"
    assert rec["ended_at"] == "2024-06-03T09:03:08+00:00"
    assert rec["wait_seconds"] == 11 and rec["talk_seconds"] == 177 and rec["total_seconds"] == 188
    assert rec["status"] == "answered"
    assert rec["status_raw"] == "entry_result=1;disconnect_reason=1110"
    assert rec["provider_aux_ids"] == {"disconnect_reason": "1110", "product_id": "10057593"}
    assert rec["recordings"] == [{"provider_recording_id": REC_ID, "state": "available", "fetch": "api_call",
                                  "url": None, "format": "mp3", "channels": None}]
    assert rec["attribution"] == {} and rec["crm"] == {}
    assert rec["finished"] is True and rec["signature_verified"] is True
    assert counts(app) == (1, 2)
    # the read API shows the same record
    view = api_get_call(client, row["id"])
    assert view["client_phone"] == "+79990001122" and view["recordings"][0]["provider_recording_id"] == REC_ID


def test_reverse_order_gives_the_same_record(app, client):
    post_fixture(client, "mango", SUMMARY)
    post_fixture(client, "mango", RECORD)
    forward = get_record(app, "mango", ENTRY)
    # the same two events for another call, record/added first
    rec_doc = json.loads(form_of(RECORD["body"])["json"])
    assert post(client, signed({**rec_doc, "entry_id": "rev-1"})).status_code == 200
    early = get_record(app, "mango", "rev-1")
    assert early["finished"] is False and get_row(app, "mango", "rev-1")["state"] == "receiving"
    assert post(client, signed(summary_doc(entry_id="rev-1"))).status_code == 200
    assert {**get_record(app, "mango", "rev-1"), "provider_call_id": ENTRY} == forward
    assert get_row(app, "mango", "rev-1")["state"] == "queued"


def test_duplicate_delivery_is_acknowledged_once(app, client):
    assert post_fixture(client, "mango", SUMMARY).status_code == 200
    assert post_fixture(client, "mango", SUMMARY).status_code == 200
    assert counts(app) == (1, 1)


@pytest.mark.parametrize("mutate", [
    lambda f: {**f, "sign": "0" * 64},
    lambda f: {k: v for k, v in f.items() if k != "sign"},
    lambda f: {**f, "vpbx_api_key": "someone_else"},
    lambda f: {**f, "json": f["json"].replace("79990001122", "79990009999")},  # body tampered after signing
    lambda f: {**f, "sign": f["sign"].upper()[:-1]},
])
def test_bad_or_missing_signature_is_401_and_stores_nothing(app, client, mutate):
    form = mutate(form_of(SUMMARY["body"]))
    resp = post(client, urllib.parse.urlencode(form))
    assert resp.status_code == 401
    assert counts(app) == (0, 0)


def test_wrong_salt_is_401(app, client):
    resp = post(client, signed(summary_doc(), salt="not-the-salt"))
    assert resp.status_code == 401 and counts(app) == (0, 0)


def test_wrong_url_secret_is_401(app, client):
    resp = post_fixture(client, "mango", SUMMARY, secret="wrong-secret-0123456789abcdef")
    assert resp.status_code == 401 and counts(app) == (0, 0)


def test_check_connection_without_json_is_200_and_stores_nothing(app, client):
    assert client.post(webhook_url("mango"), data=b"", headers=FORM).status_code == 200
    assert client.post(webhook_url("mango"), data="vpbx_api_key=" + KEY, headers=FORM).status_code == 200
    assert counts(app) == (0, 0)


def test_signed_but_broken_json_is_400(app, client):
    body = urllib.parse.urlencode({"vpbx_api_key": KEY, "json": "{\"entry_id\":",
                                   "sign": hashlib.sha256((KEY + "{\"entry_id\":" + SALT).encode()).hexdigest()})
    assert post(client, body).status_code == 400
    assert counts(app) == (0, 0)


def test_signed_summary_without_entry_id_is_422(app, client):
    doc = summary_doc()
    del doc["entry_id"]
    assert post(client, signed(doc)).status_code == 422
    assert counts(app) == (0, 0)


def test_missed_inbound_call(app, client):
    doc = summary_doc(entry_id="missed-1", entry_result=0, talk_time=0, end_time=1717405230)
    assert post(client, signed(doc)).status_code == 200
    rec = get_record(app, "mango", "missed-1")
    assert rec["status"] == "missed" and rec["talk_seconds"] == 0
    assert rec["answered_at"] is None and rec["wait_seconds"] == 30 and rec["total_seconds"] == 30
    assert Mango(CONF).expects_recording(rec) is False


def test_outbound_call_maps_client_and_operator_from_the_other_side(app, client):
    doc = summary_doc(entry_id="out-1", call_direction=2, **{"from": {"extension": "205", "number": "sip:205@acme.mangosip.ru"},
                                                              "to": {"number": "8 (916) 123-45-67"}})
    assert post(client, signed(doc)).status_code == 200
    rec = get_record(app, "mango", "out-1")
    assert rec["direction"] == "outbound"
    assert rec["client_phone"] == "+79161234567" and rec["client_phone_raw"] == "8 (916) 123-45-67"
    assert rec["operator"] == {"extension": "205"}


def test_hidden_caller_and_internal_call(app, client):
    hidden = summary_doc(entry_id="hidden-1", **{"from": {"number": "anonymous"}})
    internal = summary_doc(entry_id="int-1", call_direction=0, **{"from": {"extension": "101", "number": "sip:101@x.ru"},
                                                                   "to": {"extension": "102"}})
    assert post(client, signed(hidden)).status_code == 200
    assert post(client, signed(internal)).status_code == 200
    assert get_record(app, "mango", "hidden-1")["client_phone"] is None
    rec = get_record(app, "mango", "int-1")
    assert rec["direction"] == "internal" and rec["client_phone"] is None and rec["operator"] == {"extension": "101"}


def test_progress_events_are_verified_but_not_stored(app, client):
    rec_state = {"recording_id": "r1", "recording_state": "Completed", "entry_id": ENTRY, "call_id": "c1"}
    call_ev = {"entry_id": ENTRY, "call_id": "c1", "call_state": "Appeared", "location": "ivr"}
    assert post(client, signed(rec_state)).status_code == 200
    assert post(client, signed(call_ev)).status_code == 200
    assert counts(app) == (0, 0)
    assert post(client, signed(call_ev, salt="bad")).status_code == 401


def test_event_suffix_in_the_url_selects_the_event():
    fx_form = form_of(SUMMARY["body"])

    def req(url):
        return WebhookRequest(method="POST", url=url, headers=Headers(FORM), query={}, form=fx_form,
                              body=SUMMARY["body"].encode())

    mango = Mango(CONF)
    assert mango.parse(req("https://h/webhooks/mango/acme/s/events/summary"))[0].finished is True
    assert mango.parse(req("https://h/webhooks/mango/acme/s/events/call")) == []
    with pytest.raises(InvalidSignatureError):
        Mango({"api_key": KEY, "api_salt": "other"}).verify(req("https://h/x"))
    bad = WebhookRequest(method="POST", url="https://h/x", headers=Headers(FORM), query={},
                         form={**fx_form, "json": "[1]"}, body=b"")
    with pytest.raises(PayloadError):
        mango.parse(bad)


def test_channels_are_configurable(app_factory, monkeypatch):
    app = build_app(app_factory, monkeypatch, {"mango": {**CONF, "channels": ["operator", "client"]}})
    post_fixture(app.test_client(), "mango", RECORD)
    assert get_record(app, "mango", ENTRY)["recordings"][0]["channels"] == ["operator", "client"]


def test_expects_recording_until_record_added():
    mango = Mango(CONF)
    assert mango.expects_recording({"status": "answered", "recordings": []}) is True
    assert mango.expects_recording({"status": "answered", "recordings": [{"state": "available"}]}) is False
    assert Mango({**CONF, "record_calls": False}).expects_recording({"status": "answered", "recordings": []}) is False


def test_resolve_recording_not_ready_twice_then_link(mocked_http):
    mango = Mango(CONF)
    mocked_http.add(responses.POST, API, status=404)
    mocked_http.add(responses.POST, API, status=200, json={"result": 3100})
    mocked_http.add(responses.POST, API, status=302, headers={"Location": "https://storage.mango-office.ru/tmp/abc.mp3?t=1"})
    rec = {"provider_recording_id": REC_ID, "state": "available", "fetch": "api_call"}
    with pytest.raises(TransientError):
        mango.resolve_recording({}, rec)
    with pytest.raises(TransientError):
        mango.resolve_recording({}, rec)
    url, kwargs = mango.resolve_recording({}, rec)
    assert url == "https://storage.mango-office.ru/tmp/abc.mp3?t=1" and kwargs == {}
    sent = form_of(mocked_http.calls[-1].request.body)
    assert json.loads(sent["json"]) == {"recording_id": REC_ID, "action": "download"}
    assert sent["vpbx_api_key"] == KEY
    assert sent["sign"] == hashlib.sha256((KEY + sent["json"] + SALT).encode()).hexdigest()


def test_resolve_recording_requests_a_fresh_link_every_time(mocked_http):
    """Links are one-time/temporary: a stale URL on the record is never reused."""
    mango = Mango(CONF)
    mocked_http.add(responses.POST, API, status=302, headers={"Location": "https://storage.mango-office.ru/tmp/1.mp3"})
    mocked_http.add(responses.POST, API, status=302, headers={"Location": "https://storage.mango-office.ru/tmp/2.mp3"})
    rec = {"provider_recording_id": REC_ID, "url": "https://storage.mango-office.ru/tmp/expired.mp3"}
    assert mango.resolve_recording({}, rec)[0].endswith("/1.mp3")
    assert mango.resolve_recording({}, rec)[0].endswith("/2.mp3")
    assert len(mocked_http.calls) == 2


def test_resolve_recording_errors_are_typed(mocked_http):
    from integrations.base import AuthError, PermanentError
    mango = Mango(CONF)
    mocked_http.add(responses.POST, API, status=401)
    mocked_http.add(responses.POST, API, status=503)
    with pytest.raises(AuthError):
        mango.resolve_recording({}, {"provider_recording_id": "x"})
    with pytest.raises(TransientError):
        mango.resolve_recording({}, {"provider_recording_id": "x"})
    with pytest.raises(PermanentError):
        mango.resolve_recording({}, {"provider_recording_id": None})


def test_fuzz_never_500(app, client):
    fixtures = [SUMMARY, RECORD]
    for body, headers in fuzz_bodies(4101, fixtures, 200):
        resp = client.post(webhook_url("mango"), data=body, headers=headers)
        assert resp.status_code < 500, (body, resp.status_code, resp.data)
        assert 200 <= resp.status_code < 500
    # signed documents with hostile values still never crash
    for weird in (None, 1e999, -1, "x", [], {}, True, "9" * 30):
        for key in ("entry_id", "create_time", "talk_time", "end_time", "from", "to", "call_direction",
                    "entry_result", "line_number"):
            resp = post(client, signed(summary_doc(**{key: weird})))
            assert 200 <= resp.status_code < 500, (key, weird, resp.data)
