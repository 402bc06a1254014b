"""Roistat adapter: "at call" and "after call" JSON webhooks through the real webhook route."""
from __future__ import annotations

import json

import pytest
import responses

from support import make_config, webhook_url
from helpers_b import assert_never_500, build_app, comparable, counts, fuzz_bodies, load_fixture, stored
from integrations.base import PermanentError, TransientError
from integrations.calltracking.roistat import Roistat

CALL = "4321"
PATH = webhook_url("roistat")
LINK = "https://cloud.roistat.com/projects/100500/calltracking/call/4321/file/0123456789abcdef0123456789abcdef"
AFTER = load_fixture("roistat", "roistat_after_call")["body"].encode()
AT = load_fixture("roistat", "roistat_at_call")["body"].encode()


def variant(**changes) -> bytes:
    data = json.loads(AFTER)
    for k, v in changes.items():
        if v is ...:
            data.pop(k, None)
        else:
            data[k] = v
    return json.dumps(data, ensure_ascii=False).encode()


@pytest.fixture
def app(app_factory, data_dir):
    return build_app(app_factory, make_config(providers={"roistat": {"project": "100500"}},
                                              crm={"kind": "amocrm"}), data_dir)


@pytest.fixture
def client(app):
    return app.test_client()


def post(client, body: bytes, path: str = PATH, ctype: str = "application/json"):
    return client.post(path, data=body, content_type=ctype)


def test_after_call_is_stored_field_by_field(app, client):
    resp = post(client, AFTER)
    assert resp.status_code == 200 and resp.get_json() == {"status": "ok"}
    row = stored(app, "roistat", CALL)
    rec = row["record"]
    assert row["state"] == "queued"
    assert rec["provider"] == "roistat" and rec["provider_call_id"] == CALL
    assert rec["direction"] == "inbound"
    assert rec["client_phone"] == "+79990001122" and rec["client_phone_raw"] == "79990001122"
    assert rec["tracking_number"] == "+74950001234"
    assert rec["started_at"] == "2024-06-03T09:00:00+00:00"  # 12:00 Moscow
    assert rec["status"] == "answered" and rec["status_raw"] == "ANSWER"
    assert rec["talk_seconds"] == 177
    assert rec["finished"] is True and rec["signature_verified"] is None
    assert rec["attribution"] == {
        "source": "yandex", "medium": "cpc", "campaign": "sofa_msk", "content": "ad_42", "term": "диван",
        "marker": "yandex_direct_sofa", "referrer": "https://yandex.ru/", "landing_page": "https://example.ru/catalog/sofa",
        "site": "example.ru", "ga_client_id": "123456789.1717000000", "ym_client_id": "1717000000123456789",
        "session_id": "210987",
        "extra": {"first_visit": "200001", "source_level_1": "yandex_direct", "source_level_2": "sofa",
                  "city": "Москва", "country": "Россия"},
    }
    assert rec["crm"] == {"provider_deal_ref": "31337", "amocrm_lead_id": "31337"}
    assert rec["recordings"] == [{"provider_recording_id": CALL, "fetch": "direct_url", "format": "mp3",
                                  "channels": None, "duration_seconds": None, "state": "available", "url": LINK}]


def test_at_call_alone_is_not_finished(app, client):
    assert post(client, AT).status_code == 200
    row = stored(app, "roistat", CALL)
    assert row["state"] == "receiving"
    assert row["record"]["finished"] is False and row["record"]["status"] == "unknown"
    assert row["record"]["attribution"]["marker"] == "yandex_direct_sofa"


def test_both_hooks_in_any_order_and_redelivery(app_factory, tmp_path):
    records = []
    for i, order in enumerate(([AT, AFTER, AFTER, AT], [AFTER, AT])):
        app = build_app(app_factory, make_config(providers={"roistat": {}}, crm={"kind": "amocrm"}), tmp_path / f"d{i}")
        client = app.test_client()
        for body in order:
            assert post(client, body).status_code == 200
        assert counts(app) == (1, 2)
        records.append(comparable(stored(app, "roistat", CALL)["record"]))
    assert records[0] == records[1]
    assert records[0]["finished"] is True and records[0]["talk_seconds"] == 177


def test_missed_call_without_link(app, client):
    assert post(client, variant(status="NOANSWER", duration=0, link=None)).status_code == 200
    rec = stored(app, "roistat", CALL)["record"]
    assert rec["status"] == "missed" and rec["talk_seconds"] == 0
    assert rec["recordings"][0]["state"] == "absent"
    assert Roistat({}, tenant={}).expects_recording(rec) is False


def test_bitrix24_tenant_and_numeric_id(app_factory, data_dir):
    app = build_app(app_factory, make_config(providers={"roistat": {}}, crm={"kind": "bitrix24"}), data_dir)
    assert post(app.test_client(), variant(id=4321, caller="+7 (999) 000-11-22")).status_code == 200
    rec = stored(app, "roistat", CALL)["record"]
    assert rec["crm"] == {"provider_deal_ref": "31337", "bitrix24_deal_id": "31337"}
    assert rec["client_phone"] == "+79990001122"


def test_timezone_of_the_tenant_is_used(app_factory, data_dir):
    app = build_app(app_factory, make_config(providers={"roistat": {}}, timezone="Asia/Yekaterinburg"), data_dir)
    assert post(app.test_client(), AFTER).status_code == 200
    assert stored(app, "roistat", CALL)["record"]["started_at"] == "2024-06-03T07:00:00+00:00"


def test_wrong_url_secret_is_401(app, client):
    resp = post(client, AFTER, path=webhook_url("roistat", secret="wrong-secret-0123456789abcdef"))
    assert resp.status_code == 401
    assert counts(app) == (0, 0)


@pytest.mark.parametrize("body,status", [
    (b"{not json", 400), (AFTER[:57], 400), (b"\xff\xfe", 400), (b"[1, 2]", 422), (b"null", 422),
    (variant(id=...), 422), (variant(id=""), 422), (variant(id={"a": 1}), 422), (variant(duration="long"), 422),
    (variant(caller=["1"]), 422), (variant(duration=-3), 422), (variant(duration=10 ** 30), 422),
])
def test_malformed_bodies_are_4xx_and_store_nothing(app, client, body, status):
    resp = post(client, body)
    assert resp.status_code == status
    assert counts(app) == (0, 0)


def test_resolve_recording_not_ready_twice_then_ready(mocked_http):
    adapter = Roistat({"api_key": "roistat-key-000", "project": "100500"}, tenant={})
    mocked_http.add(responses.GET, LINK, status=404)
    mocked_http.add(responses.GET, LINK, body="<html>processing</html>", content_type="text/html")
    mocked_http.add(responses.GET, LINK, body=b"ID3", content_type="audio/mpeg")
    rec = {"provider_recording_id": CALL, "state": "available", "url": LINK}
    for _ in range(2):
        with pytest.raises(TransientError):
            adapter.resolve_recording({}, rec)
    url, kwargs = adapter.resolve_recording({}, rec)
    assert url == LINK and kwargs == {"headers": {"Api-key": "roistat-key-000"}}
    assert mocked_http.calls[2].request.headers["Api-key"] == "roistat-key-000"


def test_resolve_recording_refusals():
    adapter = Roistat({"project": "7", "probe_recording": False}, tenant={})
    with pytest.raises(PermanentError):
        adapter.resolve_recording({}, {"state": "available", "url": LINK})
    with pytest.raises(PermanentError):
        adapter.resolve_recording({}, {"state": "absent"})
    with pytest.raises(TransientError):
        adapter.resolve_recording({}, {"state": "available"})
    assert Roistat({"probe_recording": False}, tenant={}).resolve_recording({}, {"url": LINK}) == (LINK, {})


def test_fuzz_never_500(app, client):
    cases = fuzz_bodies(4321, [AFTER, AT], 200, field_names=list(json.loads(AFTER)))
    assert_never_500(lambda body, ctype: post(client, body, ctype=ctype), cases)
