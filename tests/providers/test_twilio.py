"""Twilio adapter: signed status + recording callbacks through the real webhook route."""
from __future__ import annotations

import urllib.parse

import pytest
import responses

from support import TEST_SECRET, make_config, webhook_url
from helpers_b import (assert_never_500, build_app, comparable, counts, form_body, fuzz_bodies, load_fixture,
                       stored, twilio_signature)
from integrations.base import InvalidSignatureError, PermanentError, TransientError
from integrations.calltracking.base import WebhookRequest
from integrations.calltracking.twilio import EMPTY_TWIML, Twilio

TOKEN = "twilio_test_auth_token_0001"
OLD_TOKEN = "twilio_old_auth_token_0000"
ACCOUNT = "AC00000000000000000000000000000001"
CALL = "CA00000000000000000000000000000042"
REC = "RE00000000000000000000000000000077"
PUBLIC = "https://hooks.example.com"
PATH = webhook_url("twilio")
URL = PUBLIC + PATH
PROVIDER = {"account_sid": ACCOUNT, "auth_token": TOKEN, "previous_auth_token": OLD_TOKEN}


def fixture_form(name: str) -> dict[str, str]:
    return dict(urllib.parse.parse_qsl(load_fixture("twilio", name)["body"], keep_blank_values=True))


STATUS = fixture_form("twilio_status_completed")
RECORDING = fixture_form("twilio_recording_completed")


@pytest.fixture
def app(app_factory, data_dir):
    config = make_config(providers={"twilio": dict(PROVIDER)}, public_url=PUBLIC, phone_region="US",
                         timezone="America/New_York")
    return build_app(app_factory, config, data_dir)


@pytest.fixture
def client(app):
    return app.test_client()


def post(client, params: dict[str, str], *, token: str = TOKEN, sign_url: str = URL, path: str = PATH,
         signature: str | None = None, query: str = ""):
    if query:
        path, sign_url = f"{path}?{query}", f"{sign_url}?{query}"
    sig = signature if signature is not None else twilio_signature(token, sign_url, params)
    headers = {"X-Twilio-Signature": sig} if sig else {}
    return client.post(path, data=form_body(params), headers=headers,
                       content_type="application/x-www-form-urlencoded")


def test_shared_fixture_signature_matches_adapter():
    """The adapter's algorithm agrees with the signature stored in the shared fixture."""
    fx = load_fixture("twilio", "twilio_status_completed")
    req = WebhookRequest("POST", fx["url"], fx["headers"], {}, {}, fx["body"].encode())
    Twilio(PROVIDER, tenant={}).verify(req)


def test_status_completed_is_stored_and_answered_with_empty_twiml(app, client):
    resp = post(client, STATUS)
    assert resp.status_code == 200
    assert resp.get_data(as_text=True) == EMPTY_TWIML
    assert resp.mimetype == "text/xml"
    row = stored(app, "twilio", CALL)
    rec = row["record"]
    assert row["state"] == "queued"
    assert rec["provider"] == "twilio" and rec["tenant_id"] == "acme" and rec["provider_call_id"] == CALL
    assert rec["direction"] == "inbound"
    assert rec["client_phone"] == "+15005550006"
    assert rec["client_phone_raw"] == "+15005550006"
    assert rec["tracking_number"] == "+15005550001"
    assert rec["ended_at"] == "2024-06-03T09:02:57+00:00"
    assert rec["started_at"] == "2024-06-03T09:00:00+00:00"
    assert rec["total_seconds"] == 177
    assert rec["talk_seconds"] == 177
    assert rec["status"] == "unknown"  # completed alone does not prove an answer (providers.md §4.9)
    assert rec["status_raw"] == "completed"
    assert rec["finished"] is True
    assert rec["signature_verified"] is True
    assert rec["recordings"] == []


def test_recording_callback_adds_dual_channel_recording(app, client):
    assert post(client, RECORDING).status_code == 200
    rec = stored(app, "twilio", CALL)["record"]
    assert rec["recordings"] == [{
        "provider_recording_id": REC, "state": "available", "fetch": "api_call",
        "url": f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT}/Recordings/{REC}",
        "format": "mp3", "channels": ["client", "operator"], "duration_seconds": 170,
    }]
    assert rec["provider_aux_ids"] == {"recording_started_at": "2024-06-03T09:00:07+00:00"}
    assert rec["finished"] is True


def test_answered_event_upgrades_status_in_any_order(app_factory, data_dir, tmp_path):
    answered = dict(STATUS, CallStatus="in-progress", SequenceNumber="1",
                    Timestamp="Mon, 03 Jun 2024 09:00:05 +0000")
    answered.pop("CallDuration")
    records = []
    for i, order in enumerate(([answered, STATUS, RECORDING], [RECORDING, STATUS, answered])):
        config = make_config(providers={"twilio": dict(PROVIDER)}, public_url=PUBLIC, phone_region="US")
        app = build_app(app_factory, config, tmp_path / f"d{i}")
        client = app.test_client()
        for params in order:
            assert post(client, params).status_code == 200
        records.append(comparable(stored(app, "twilio", CALL)["record"]))
        assert counts(app) == (1, 3)
    assert records[0] == records[1]
    assert records[0]["status"] == "answered"
    assert records[0]["answered_at"] == "2024-06-03T09:00:05+00:00"
    assert records[0]["ended_at"] == "2024-06-03T09:02:57+00:00"
    assert records[0]["recordings"][0]["state"] == "available"


def test_child_leg_marks_parent_answered_with_operator(app, client):
    assert post(client, STATUS).status_code == 200
    child = {"AccountSid": ACCOUNT, "CallSid": "CA00000000000000000000000000000099", "ParentCallSid": CALL,
             "CallStatus": "completed", "Direction": "outbound-dial", "From": "+15005550001",
             "To": "+15005550009", "CallDuration": "150", "Timestamp": "Mon, 03 Jun 2024 09:02:56 +0000"}
    assert post(client, child).status_code == 200
    rec = stored(app, "twilio", CALL)["record"]
    assert rec["status"] == "answered"
    assert rec["operator"] == {"phone": "+15005550009"}
    assert rec["direction"] == "inbound"  # the child's outbound-dial does not overwrite it
    assert stored(app, "twilio", child["CallSid"]) is None
    # a child leg nobody answered says nothing about the call as a whole
    missed_leg = dict(child, CallSid="CA00000000000000000000000000000098", CallStatus="no-answer")
    resp = post(client, missed_leg)
    assert resp.status_code == 200
    assert counts(app) == (1, 2)


def test_missed_call_without_recording(app, client):
    params = dict(STATUS, CallStatus="no-answer", CallDuration="0")
    assert post(client, params).status_code == 200
    rec = stored(app, "twilio", CALL)["record"]
    assert rec["status"] == "missed" and rec["talk_seconds"] == 0 and rec["finished"] is True
    adapter = Twilio(PROVIDER, tenant={})
    assert adapter.expects_recording(rec) is False


def test_absent_recording_is_stored_as_absent(app, client):
    params = dict(RECORDING, RecordingStatus="absent", RecordingDuration="0", ErrorCode="16102")
    params.pop("RecordingUrl")
    assert post(client, params).status_code == 200
    rec = stored(app, "twilio", CALL)["record"]
    assert rec["recordings"][0]["state"] == "absent"
    assert rec["recordings"][0]["error_code"] == "16102"
    adapter = Twilio(PROVIDER, tenant={})
    assert adapter.expects_recording(rec) is False
    with pytest.raises(PermanentError):
        adapter.resolve_recording(rec, rec["recordings"][0])


def test_expects_recording_for_finished_call_without_one():
    adapter = Twilio(PROVIDER, tenant={})
    assert adapter.expects_recording({"status": "unknown", "recordings": []}) is True
    assert Twilio(dict(PROVIDER, record_calls=False), tenant={}).expects_recording({"status": "answered"}) is False


@pytest.mark.parametrize("case", ["bad", "missing", "other_token", "other_url", "tampered"])
def test_bad_signature_is_401_and_stores_nothing(app, client, case):
    kwargs = {"bad": {"signature": "AAAAAAAAAAAAAAAAAAAAAAAAAAA="}, "missing": {"signature": ""},
              "other_token": {"token": "not-the-token"},
              "other_url": {"sign_url": "http://localhost" + PATH}}.get(case, {})
    params = STATUS
    if case == "tampered":
        sig = twilio_signature(TOKEN, URL, STATUS)
        params, kwargs = dict(STATUS, CallDuration="1"), {"signature": sig}
    resp = post(client, params, **kwargs)
    assert resp.status_code == 401
    assert counts(app) == (0, 0)


def test_wrong_url_secret_is_401(app, client):
    path = webhook_url("twilio", secret="wrong-secret-0123456789abcdef")
    resp = post(client, STATUS, path=path, sign_url=PUBLIC + path)
    assert resp.status_code == 401
    assert counts(app) == (0, 0)


def test_other_account_is_refused(app, client):
    resp = post(client, dict(STATUS, AccountSid="AC99999999999999999999999999999999"))
    assert resp.status_code == 401
    assert counts(app) == (0, 0)


def test_previous_token_accepted_during_rotation(app, client):
    assert post(client, STATUS, token=OLD_TOKEN).status_code == 200
    assert counts(app) == (1, 1)


def test_query_string_is_part_of_the_signed_url(app, client):
    assert post(client, STATUS, query="leg=parent").status_code == 200
    assert counts(app) == (1, 1)


def test_duplicate_delivery_is_acknowledged_once(app, client):
    assert post(client, STATUS).status_code == 200
    resp = post(client, STATUS)
    assert resp.status_code == 200
    assert resp.get_data(as_text=True) == EMPTY_TWIML
    assert counts(app) == (1, 1)


def test_unsigned_garbage_and_missing_fields(app, client):
    resp = post(client, {"AccountSid": ACCOUNT, "CallStatus": "completed"})
    assert resp.status_code == 422
    assert post(client, dict(STATUS, CallDuration="1" + "0" * 30)).status_code == 422
    assert counts(app) == (0, 0)


def test_resolve_recording_direct_with_basic_auth(mocked_http):
    adapter = Twilio(PROVIDER, tenant={})
    media = f"https://api.twilio.com/x/Recordings/{REC}"
    rec = {"provider_recording_id": REC, "state": "available", "url": media, "format": "mp3"}
    mocked_http.add(responses.GET, media + ".mp3", body=b"ID3", content_type="audio/mpeg")
    assert adapter.resolve_recording({}, rec) == (media + ".mp3", {"auth": (ACCOUNT, TOKEN)})
    # a redirect to a signed media URL is handed over without our credentials
    mocked_http.replace(responses.GET, media + ".mp3", status=302,
                        headers={"Location": "https://media.example.com/RE77.mp3?Signature=abc"})
    assert adapter.resolve_recording({}, rec) == ("https://media.example.com/RE77.mp3?Signature=abc", {})
    mocked_http.replace(responses.GET, media + ".mp3", status=404)
    with pytest.raises(TransientError):
        adapter.resolve_recording({}, rec)
    url, kwargs = Twilio(dict(PROVIDER, recording_format="wav", media_basic_auth=False),
                         tenant={}).resolve_recording({}, dict(rec, format=None))
    assert url == media + ".wav" and kwargs == {}


def test_resolve_recording_not_ready_twice_then_ready(mocked_http):
    adapter = Twilio(PROVIDER, tenant={})
    api = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT}/Recordings/{REC}"
    mocked_http.add(responses.GET, api + ".json", json={"sid": REC, "status": "processing"})
    mocked_http.add(responses.GET, api + ".json", json={"sid": REC, "status": "processing"})
    mocked_http.add(responses.GET, api + ".json", json={"sid": REC, "status": "completed"})
    mocked_http.add(responses.GET, api + ".mp3", body=b"ID3", content_type="audio/mpeg")
    rec = {"provider_recording_id": REC, "state": "pending", "url": None, "format": "mp3"}
    for _ in range(2):
        with pytest.raises(TransientError):
            adapter.resolve_recording({}, rec)
    url, kwargs = adapter.resolve_recording({}, rec)
    assert url == api + ".mp3"
    assert kwargs["auth"] == (ACCOUNT, TOKEN)
    assert mocked_http.calls[0].request.headers["Authorization"].startswith("Basic ")


def test_resolve_recording_deleted_is_permanent(mocked_http):
    adapter = Twilio(PROVIDER, tenant={})
    api = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT}/Recordings/{REC}"
    mocked_http.add(responses.GET, api + ".json", json={"status": "deleted"})
    with pytest.raises(PermanentError):
        adapter.resolve_recording({}, {"provider_recording_id": REC, "state": "pending"})
    with pytest.raises(TransientError):
        adapter.resolve_recording({}, {"provider_recording_id": None, "state": "pending"})


def test_json_body_signature_uses_body_sha256():
    import hashlib
    body = b'{"CallSid": "CA1"}'
    url = f"{URL}?bodySHA256={hashlib.sha256(body).hexdigest()}"
    sig = twilio_signature(TOKEN, url)
    adapter = Twilio(PROVIDER, tenant={})
    adapter.verify(WebhookRequest("POST", url, {"X-Twilio-Signature": sig, "Content-Type": "application/json"},
                                  {}, {}, body))
    with pytest.raises(InvalidSignatureError):
        adapter.verify(WebhookRequest("POST", url, {"X-Twilio-Signature": sig,
                                                    "Content-Type": "application/json"}, {}, {}, body + b" "))


def test_fuzz_never_500(app, client):
    samples = [form_body(STATUS).encode(), form_body(RECORDING).encode()]
    cases = fuzz_bodies(1808, samples, 200, field_names=list(STATUS) + list(RECORDING))

    def send(body: bytes, ctype: str):
        try:
            params = dict(urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError:
            params = {}
        # half the cases are validly signed so that parse() sees them too
        sig = twilio_signature(TOKEN, URL, params) if len(body) % 2 else "x"
        return client.post(PATH, data=body, content_type=ctype, headers={"X-Twilio-Signature": sig})

    assert_never_500(send, cases)
