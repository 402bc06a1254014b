"""Binotel adapter: nested form "apiCallCompleted" webhooks through the real webhook route."""
from __future__ import annotations

import json
import urllib.parse

import pytest
import responses

from support import make_config, webhook_url
from helpers_b import assert_never_500, build_app, comparable, counts, fuzz_bodies, load_fixture, stored
from integrations.base import AuthError, PayloadError, PermanentError, TransientError
from integrations.calltracking.binotel import Binotel, decode_nested

CALL = "4683310999"
PATH = webhook_url("binotel")
BODY = load_fixture("binotel", "binotel_api_call_completed")["body"]
PROVIDER = {"key": "binotel-key-0001", "secret": "binotel-secret-0001"}
API = "https://api.binotel.com/api/4.0/stats/call-record.json"
FORM = "application/x-www-form-urlencoded"


def variant(**changes: str | None) -> bytes:
    """The fixture with callDetails[...] fields changed (None removes a field)."""
    pairs = urllib.parse.parse_qsl(BODY, keep_blank_values=True)
    out, seen = [], set()
    for k, v in pairs:
        short = k[len("callDetails["):-1] if k.startswith("callDetails[") and k.count("[") == 1 else k
        if short in changes:
            seen.add(short)
            if changes[short] is None:
                continue
            v = changes[short]
        out.append((k, v))
    for short, v in changes.items():
        if short not in seen and v is not None:
            out.append((short if short in ("requestType", "attemptsCounter") else f"callDetails[{short}]", v))
    return urllib.parse.urlencode(out).encode()


@pytest.fixture
def app(app_factory, data_dir):
    config = make_config(providers={"binotel": dict(PROVIDER)}, phone_region="UA", timezone="Europe/Kyiv")
    return build_app(app_factory, config, data_dir)


@pytest.fixture
def client(app):
    return app.test_client()


def post(client, body: bytes | str, path: str = PATH, ctype: str = FORM, **kw):
    return client.post(path, data=body, content_type=ctype, **kw)


def test_decode_nested():
    data = decode_nested(BODY.encode())
    assert data["requestType"] == "apiCallCompleted"
    d = data["callDetails"]
    assert d["employeeData"] == {"name": "Оксана", "email": "oksana@example.com"}
    assert d["historyData"]["0"]["billsec"] == "177"
    assert decode_nested(b"a[]=1&a[]=2") == {"a": {"0": "1", "1": "2"}}
    with pytest.raises(PayloadError):
        decode_nested(b"a=1&a[b]=2")
    with pytest.raises(PayloadError):
        decode_nested(b"a[b]=1&a=2")


def test_call_completed_is_stored_field_by_field(app, client):
    resp = post(client, BODY)
    assert resp.status_code == 200 and resp.get_json() == {"status": "success"}
    row = stored(app, "binotel", CALL)
    rec = row["record"]
    assert row["state"] == "queued"
    assert rec["provider"] == "binotel" and rec["provider_call_id"] == CALL
    assert rec["direction"] == "inbound"
    assert rec["client_phone"] == "+380990001122" and rec["client_phone_raw"] == "0990001122"
    assert rec["tracking_number"] == "+380440001234"
    assert rec["operator"] == {"extension": "901", "name": "Оксана", "email": "oksana@example.com"}
    assert rec["started_at"] == "2024-06-03T09:00:00+00:00"
    assert rec["answered_at"] == "2024-06-03T09:00:11+00:00"
    assert rec["ended_at"] == "2024-06-03T09:03:08+00:00"
    assert (rec["wait_seconds"], rec["talk_seconds"], rec["total_seconds"]) == (11, 177, 188)
    assert rec["status"] == "answered" and rec["status_raw"] == "ANSWER"
    assert rec["finished"] is True and rec["signature_verified"] is None
    assert rec["provider_aux_ids"] == {"call_id": CALL, "company_id": "62770"}
    assert rec["attribution"] == {"source": "google", "medium": "cpc", "campaign": "summer",
                                  "ga_client_id": "123456789.1717000000",
                                  "landing_page": "https://example.com.ua/?utm_source=google&utm_medium=cpc",
                                  "extra": {"calltracking_id": "77001"}}
    assert rec["crm"] == {}
    assert rec["recordings"] == [{"provider_recording_id": CALL, "fetch": "api_call", "url": None, "format": "mp3",
                                  "channels": None, "duration_seconds": None, "state": "available"}]
    # the cabinet link (needs a my.binotel login) is never used as the audio URL
    assert "my.binotel" not in json.dumps(rec)


def test_retries_are_one_event(app, client):
    assert post(client, BODY).status_code == 200
    resp = post(client, variant(attemptsCounter="2"))
    assert resp.status_code == 200 and resp.get_json() == {"status": "success"}
    assert counts(app) == (1, 1)


def test_same_record_whatever_the_delivery_order(app_factory, tmp_path):
    """Binotel sends one event per call; a retry with other counters arriving first changes nothing."""
    records = []
    for i, order in enumerate(([BODY.encode(), variant(attemptsCounter="3")], [variant(attemptsCounter="3"), BODY.encode()])):
        app = build_app(app_factory, make_config(providers={"binotel": dict(PROVIDER)}, phone_region="UA"),
                        tmp_path / f"d{i}")
        client = app.test_client()
        for body in order:
            assert post(client, body).status_code == 200
        records.append(comparable(stored(app, "binotel", CALL)["record"]))
    assert records[0] == records[1]


def test_missed_call_has_absent_recording(app, client):
    body = variant(disposition="NO ANSWER", billsec="0", waitsec="25", recordingStatus="", internalNumber="")
    assert post(client, body).status_code == 200
    rec = stored(app, "binotel", CALL)["record"]
    assert rec["status"] == "missed" and rec["talk_seconds"] == 0 and rec["wait_seconds"] == 25
    assert rec["answered_at"] is None
    assert rec["recordings"][0]["state"] == "absent"
    assert rec["operator"] == {"extension": "901", "name": "Оксана", "email": "oksana@example.com"}  # from history
    adapter = Binotel(PROVIDER, tenant={})
    assert adapter.expects_recording(rec) is False
    with pytest.raises(PermanentError):
        adapter.resolve_recording(rec, rec["recordings"][0])


@pytest.mark.parametrize("disp,status,state", [("VM-SUCCESS", "voicemail", "available"), ("BUSY", "busy", "absent"),
                                               ("CANCEL", "missed", "absent"), ("VM", "missed", "absent"),
                                               ("SUCCESS", "answered", "available"), ("ODD", "unknown", "absent")])
def test_dispositions(app, client, disp, status, state):
    assert post(client, variant(disposition=disp)).status_code == 200
    rec = stored(app, "binotel", CALL)["record"]
    assert rec["status"] == status and rec["recordings"][0]["state"] == state


def test_outbound_call_and_recording_not_uploaded_yet(app, client):
    assert post(client, variant(callType="1", recordingStatus="")).status_code == 200
    rec = stored(app, "binotel", CALL)["record"]
    assert rec["direction"] == "outbound"
    assert rec["recordings"][0]["state"] == "pending"


def test_crm_link(app, client):
    body = variant(**{"customerDataFromOutside][id": "555", "customerDataFromOutside][linkToCrmUrl": "https://crm.example/c/555"})
    assert post(client, body).status_code == 200
    assert stored(app, "binotel", CALL)["record"]["crm"] == {"crm_link": "https://crm.example/c/555",
                                                             "crm_customer_id": "555"}


def test_other_request_types_are_acknowledged_not_stored(app, client):
    resp = post(client, "requestType=apiCallSettings&callDetails[generalCallID]=1")
    assert resp.status_code == 200 and resp.get_json() == {"status": "success"}
    assert counts(app) == (0, 0)


def test_wrong_url_secret_is_401(app, client):
    assert post(client, BODY, path=webhook_url("binotel", secret="wrong-secret-0123456789abcdef")).status_code == 401
    assert counts(app) == (0, 0)


def test_ip_allow_list(app_factory, data_dir):
    config = make_config(providers={"binotel": dict(PROVIDER, allowed_ips=["194.88.218.0/24", "45.91.130.36"])},
                         phone_region="UA")
    app = build_app(app_factory, config, data_dir)
    client = app.test_client()
    assert post(client, BODY, environ_base={"REMOTE_ADDR": "203.0.113.9"}).status_code == 401
    assert counts(app) == (0, 0)
    assert post(client, BODY, environ_base={"REMOTE_ADDR": "194.88.218.17"}).status_code == 200
    assert counts(app) == (1, 1)


@pytest.mark.parametrize("body,status", [
    (b"requestType=apiCallCompleted", 422), (b"callDetails[generalCallID]=1", 422), (b"\xff\xfe=1", 400),
    (variant(generalCallID=None), 422), (variant(startTime="yesterday"), 422), (variant(billsec="-1"), 422),
    (variant(**{"generalCallID][x": "1"}), 422), (BODY[:40].encode(), 422), (variant(waitsec="1" + "0" * 30), 422),
])
def test_malformed_bodies_are_4xx(app, client, body, status):
    assert post(client, body).status_code == status
    assert counts(app) == (0, 0)


def test_resolve_recording_not_ready_twice_then_ready(mocked_http):
    adapter = Binotel(PROVIDER, tenant={})
    mocked_http.add(responses.POST, API, json={"status": "error", "code": 120, "message": "Record not found"})
    mocked_http.add(responses.POST, API, status=503)
    mocked_http.add(responses.POST, API, json={"status": "success", "url": "https://rec.binotel.example/a.mp3?t=1"})
    rec = {"provider_recording_id": CALL, "state": "pending", "url": None}
    for _ in range(2):
        with pytest.raises(TransientError):
            adapter.resolve_recording({"provider_call_id": CALL}, rec)
    assert adapter.resolve_recording({"provider_call_id": CALL}, rec) == ("https://rec.binotel.example/a.mp3?t=1", {})
    sent = json.loads(mocked_http.calls[0].request.body)
    assert sent == {"key": "binotel-key-0001", "secret": "binotel-secret-0001", "generalCallID": CALL}


def test_expired_link_is_never_reused(mocked_http):
    """Each resolve asks the API again: an expired URL (stored or from the last try) is not used."""
    adapter = Binotel(PROVIDER, tenant={})
    mocked_http.add(responses.POST, API, json={"status": "success", "url": "https://rec.binotel.example/a.mp3?t=1"})
    mocked_http.add(responses.POST, API, json={"status": "success", "url": "https://rec.binotel.example/a.mp3?t=2"})
    mocked_http.add(responses.GET, "https://rec.binotel.example/a.mp3?t=1", status=403)
    rec = {"provider_recording_id": CALL, "state": "available", "url": "https://stale.example/expired.mp3"}
    first, _ = adapter.resolve_recording({}, rec)
    assert first.endswith("t=1")
    assert adapter.http.get(first).status_code == 403  # the download finds the link expired
    second, _ = adapter.resolve_recording({}, rec)
    assert second.endswith("t=2")
    assert [c.request.method for c in mocked_http.calls] == ["POST", "GET", "POST"]


def test_resolve_recording_bad_credentials(mocked_http):
    adapter = Binotel(PROVIDER, tenant={})
    mocked_http.add(responses.POST, API, json={"status": "error", "message": "Wrong key or secret"})
    with pytest.raises(AuthError):
        adapter.resolve_recording({}, {"provider_recording_id": CALL, "state": "available"})
    mocked_http.replace(responses.POST, API, status=403)
    with pytest.raises(AuthError):
        adapter.resolve_recording({}, {"provider_recording_id": CALL, "state": "available"})


def test_fuzz_never_500(app, client):
    names = [k for k, _ in urllib.parse.parse_qsl(BODY)]
    cases = fuzz_bodies(62770, [BODY.encode(), variant(disposition="BUSY")], 200, field_names=names)
    assert_never_500(lambda body, ctype: post(client, body, ctype=ctype), cases)
