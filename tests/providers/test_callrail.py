"""CallRail adapter: signed post-call / call-modified JSON webhooks through the real webhook route."""
from __future__ import annotations

import hashlib
import hmac
import json

import pytest
import responses

from support import make_config, webhook_url
from helpers_b import (assert_never_500, build_app, callrail_signature, comparable, counts, fuzz_bodies, load_fixture,
                       stored)
from integrations.base import AuthError, NotConfiguredError, PermanentError, TransientError
from integrations.calltracking.base import WebhookRequest
from integrations.calltracking.callrail import CallRail

KEY = "callrail_test_signing_key_0001"
OLD_KEY = "callrail_old_signing_key_0000"
API_KEY = "callrail-api-key-0001"
CALL = "CAL0123456789abcdef0123456789abcdef"
PATH = webhook_url("callrail")
FIXTURE = load_fixture("callrail", "callrail_post_call")
POST_CALL = FIXTURE["body"].encode()
REC_API = f"https://api.callrail.com/v3/a/000000000/calls/{CALL}/recording.json"
PROVIDER = {"signing_key": KEY, "previous_signing_key": OLD_KEY, "api_key": API_KEY, "account_id": "000000000"}


def variant(**changes) -> bytes:
    data = json.loads(POST_CALL)
    for k, v in changes.items():
        if v is ...:
            data.pop(k, None)
        else:
            data[k] = v
    return json.dumps(data, separators=(",", ":")).encode()


@pytest.fixture
def app(app_factory, data_dir):
    config = make_config(providers={"callrail": dict(PROVIDER)}, phone_region="US", timezone="America/Chicago")
    return build_app(app_factory, config, data_dir)


@pytest.fixture
def client(app):
    return app.test_client()


def post(client, body: bytes, *, key: str = KEY, signature: str | None = None, path: str = PATH,
         header: str = "Signature", ctype: str = "application/json"):
    sig = callrail_signature(key, body) if signature is None else signature
    headers = {header: sig} if sig else {}
    return client.post(path, data=body, content_type=ctype, headers=headers)


def test_fixture_signature_is_the_shared_one():
    assert callrail_signature(KEY, POST_CALL) == FIXTURE["headers"]["Signature"]


def test_post_call_is_stored_field_by_field(app, client):
    resp = post(client, POST_CALL)
    assert resp.status_code == 200 and resp.get_json() == {"status": "ok"}
    row = stored(app, "callrail", CALL)
    rec = row["record"]
    assert row["state"] == "queued"
    assert rec["provider"] == "callrail" and rec["provider_call_id"] == CALL
    assert rec["direction"] == "inbound"
    assert rec["client_phone"] == "+15005550006" and rec["client_phone_raw"] == "+15005550006"
    assert rec["tracking_number"] == "+15005550001"
    assert rec["operator"] == {"email": "agent@example.com"}
    assert rec["started_at"] == "2024-06-03T09:00:00+00:00"
    assert rec["ended_at"] == "2024-06-03T09:02:57+00:00"
    assert rec["talk_seconds"] == 177 and rec["total_seconds"] == 177
    assert rec["status"] == "answered" and rec["status_raw"] == "answered"
    assert rec["finished"] is True and rec["signature_verified"] is True
    assert rec["provider_aux_ids"] == {"company_resource_id": "COM0123456789abcdef0123456789abcdef",
                                       "tracker_resource_id": "TRK0123456789abcdef0123456789abcdef",
                                       "person_resource_id": "PER0123456789abcdef0123456789abcdef",
                                       "business_phone_number": "+15005550002"}
    assert rec["attribution"] == {
        "source": "google", "medium": "cpc", "campaign": "spring-sale", "content": "ad-1", "term": "roof repair",
        "keyword": "roof repair", "landing_page": "https://www.example.com/roofing?utm_source=google&utm_medium=cpc",
        "gclid": "EAIaIQobChMI_fake_gclid", "visitor_id": "PER0123456789abcdef0123456789abcdef",
        "referrer": "https://www.google.com/",
        "extra": {"callrail_source": "Google Ads", "customer_city": "Austin", "customer_state": "TX",
                  "customer_country": "US", "first_call": "true", "call_type": "answered"},
    }
    assert rec["recordings"] == [{"provider_recording_id": CALL, "fetch": "api_call", "format": "mp3",
                                  "channels": None, "duration_seconds": 170, "state": "available", "url": REC_API}]
    assert rec["crm"] == {}


def test_late_recording_via_call_modified_in_any_order(app_factory, tmp_path):
    no_rec = variant(recording=None, recording_duration=None)
    modified = variant(note="called back")
    records = []
    for i, order in enumerate(([no_rec, modified], [modified, no_rec])):
        app = build_app(app_factory, make_config(providers={"callrail": dict(PROVIDER)}, phone_region="US"),
                        tmp_path / f"d{i}")
        client = app.test_client()
        for body in order:
            assert post(client, body).status_code == 200
        assert counts(app) == (1, 2)
        records.append(comparable(stored(app, "callrail", CALL)["record"]))
    assert records[0] == records[1]
    assert records[0]["recordings"][0]["state"] == "available"


def test_post_call_without_recording_expects_one(app, client):
    assert post(client, variant(recording=None, recording_duration=None)).status_code == 200
    rec = stored(app, "callrail", CALL)["record"]
    assert rec["recordings"] == []
    assert CallRail(PROVIDER, tenant={}).expects_recording(rec) is True
    assert CallRail(dict(PROVIDER, record_calls=False), tenant={}).expects_recording(rec) is False


def test_missed_and_voicemail(app, client):
    assert post(client, variant(answered=False, recording=None, duration=12, call_type="missed")).status_code == 200
    rec = stored(app, "callrail", CALL)["record"]
    assert rec["status"] == "missed" and rec["talk_seconds"] == 0
    assert rec["recordings"][0]["state"] == "absent"
    assert CallRail(PROVIDER, tenant={}).expects_recording(rec) is False
    other = "CAL00000000000000000000000000000002"
    assert post(client, variant(resource_id=other, answered=False, voicemail=True, call_type="voicemail")).status_code == 200
    assert stored(app, "callrail", other)["record"]["status"] == "voicemail"


def test_pre_call_is_not_finished(app, client):
    assert post(client, variant(duration=..., recording=..., recording_duration=...)).status_code == 200
    row = stored(app, "callrail", CALL)
    assert row["state"] == "receiving" and row["record"]["finished"] is False


@pytest.mark.parametrize("case", ["bad", "missing", "other_key", "tampered", "wrong_header"])
def test_bad_signature_is_401_and_stores_nothing(app, client, case):
    body, kwargs = POST_CALL, {}
    if case == "bad":
        kwargs = {"signature": "AAAAAAAAAAAAAAAAAAAAAAAAAAA="}
    elif case == "missing":
        kwargs = {"signature": ""}
    elif case == "other_key":
        kwargs = {"key": "not-the-key"}
    elif case == "tampered":
        kwargs, body = {"signature": callrail_signature(KEY, POST_CALL)}, variant(duration=1)
    elif case == "wrong_header":
        kwargs = {"header": "X-Signature"}
    resp = post(client, body, **kwargs)
    assert resp.status_code == 401
    assert counts(app) == (0, 0)


def test_reserialised_body_fails(app, client):
    """The signature is over the raw bytes: the same JSON with other spacing is refused."""
    pretty = json.dumps(json.loads(POST_CALL), indent=1).encode()
    assert post(client, pretty, signature=callrail_signature(KEY, POST_CALL)).status_code == 401


def test_rotation_and_hex_encoding(app, client):
    assert post(client, POST_CALL, key=OLD_KEY).status_code == 200
    hexsig = hmac.new(KEY.encode(), POST_CALL, hashlib.sha1).hexdigest()
    assert post(client, POST_CALL, signature=hexsig).status_code == 200
    assert counts(app) == (1, 1)  # the second delivery is a duplicate


def test_sha256_configurable():
    body = POST_CALL
    import base64
    sig = base64.b64encode(hmac.new(KEY.encode(), body, hashlib.sha256).digest()).decode()
    adapter = CallRail(dict(PROVIDER, signature_hash="sha256", signature_header="X-CallRail-Signature"), tenant={})
    adapter.verify(WebhookRequest("POST", "https://h/x", {"X-CallRail-Signature": sig}, {}, {}, body))
    with pytest.raises(NotConfiguredError):
        CallRail(dict(PROVIDER, signature_hash="md5"), tenant={})


def test_wrong_url_secret_is_401(app, client):
    assert post(client, POST_CALL, path=webhook_url("callrail", secret="wrong-secret-0123456789abcdef")).status_code == 401
    assert counts(app) == (0, 0)


def test_duplicate_is_acknowledged_once(app, client):
    assert post(client, POST_CALL).status_code == 200
    assert post(client, POST_CALL).status_code == 200
    assert counts(app) == (1, 1)


@pytest.mark.parametrize("body,status", [
    (b"{", 400), (POST_CALL[:100], 400), (b"[]", 422), (variant(resource_id=...), 422), (variant(resource_id=5), 422),
    (variant(duration="x"), 422), (variant(answered="yes"), 422), (variant(start_time="yesterday"), 422),
    (variant(recording="http://evil.example/x.mp3"), 422), (variant(customer_phone_number=["1"]), 422),
    (variant(duration=10 ** 30), 422), (variant(start_time="0001-01-01T00:00:00+05:00"), 422),
])
def test_malformed_signed_bodies_are_4xx(app, client, body, status):
    assert post(client, body).status_code == status
    assert counts(app) == (0, 0)


def test_resolve_recording_not_ready_twice_then_ready(mocked_http):
    adapter = CallRail(PROVIDER, tenant={})
    mp3 = "https://recordings.callrail.example/CAL0123.mp3?X-Amz-Signature=abc"
    mocked_http.add(responses.GET, REC_API, status=404)
    mocked_http.add(responses.GET, REC_API, json={"url": None})
    mocked_http.add(responses.GET, REC_API, json={"url": mp3})
    rec = {"provider_recording_id": CALL, "state": "available", "url": REC_API}
    for _ in range(2):
        with pytest.raises(TransientError):
            adapter.resolve_recording({"provider_call_id": CALL}, rec)
    assert adapter.resolve_recording({"provider_call_id": CALL}, rec) == (mp3, {})
    assert mocked_http.calls[0].request.headers["Authorization"] == f'Token token="{API_KEY}"'


def test_resolve_recording_redirect_audio_and_errors(mocked_http):
    adapter = CallRail(PROVIDER, tenant={})
    rec = {"state": "available", "url": REC_API}
    mocked_http.add(responses.GET, REC_API, status=302, headers={"Location": "https://cdn.example/a.mp3"})
    assert adapter.resolve_recording({}, rec) == ("https://cdn.example/a.mp3", {})
    mocked_http.add(responses.GET, REC_API, body=b"ID3", content_type="audio/mpeg")
    # the API answering with the audio itself: download that URL with the key
    assert adapter.resolve_recording({}, rec) == (REC_API, {"headers": {"Authorization": f'Token token="{API_KEY}"'}})
    with pytest.raises(PermanentError):
        adapter.resolve_recording({}, {"state": "available", "url": "https://evil.example/recording.json"})
    with pytest.raises(AuthError):
        CallRail({"signing_key": KEY}, tenant={}).resolve_recording({}, rec)
    with pytest.raises(PermanentError):
        adapter.resolve_recording({}, {"state": "absent"})
    built = CallRail(PROVIDER, tenant={})
    mocked_http.replace(responses.GET, REC_API, status=401)
    with pytest.raises(AuthError):
        built.resolve_recording({"provider_call_id": CALL}, {"state": "available", "url": None})


def test_fuzz_never_500(app, client):
    cases = fuzz_bodies(9157, [POST_CALL], 200, field_names=list(json.loads(POST_CALL)))
    # half signed correctly, so that parse() sees the junk too
    assert_never_500(lambda body, ctype: post(client, body, ctype=ctype,
                                              signature=None if len(body) % 2 else "bad"), cases)
