"""UIS / CoMagic / CallGear: template notifications through the real route, Data API enrichment."""
from __future__ import annotations

import json
import urllib.parse

import pytest
import responses

from support import webhook_url
from helpers_a import (api_get_call, build_app, counts, fuzz_bodies, get_record, get_row, load_fixture,
                       post_fixture)
from integrations.base import PermanentError, TransientError
from integrations.calltracking.uis import Callgear, Comagic, Uis

FINISHED = load_fixture("uis", "uis_call_finished")
RECORD = load_fixture("uis", "uis_record_ready")
SESSION = "3456789012"
HASH = "0123456789abcdef0123456789abcdef"
LINK = f"https://app.uiscom.ru/system/media/talk/{SESSION}/{HASH}/"
JSON_HDR = {"Content-Type": "application/json"}
DATA_API = "https://dataapi.uiscom.ru/v2.0"


def doc(fx, **over) -> dict:
    d = json.loads(fx["body"])
    d.update(over)
    return d


@pytest.fixture
def app(app_factory, monkeypatch):
    return build_app(app_factory, monkeypatch, {"uis": {}, "comagic": {}, "callgear": {}})


@pytest.fixture
def client(app):
    return app.test_client()


def post_json(client, body, provider="uis", query=""):
    url = webhook_url(provider) + (("?" + query) if query else "")
    return client.post(url, data=json.dumps(body, ensure_ascii=False).encode(), headers=JSON_HDR)


def test_finished_then_record_builds_the_canonical_record(app, client):
    r = post_fixture(client, "uis", FINISHED)
    assert r.status_code == 200 and r.get_json() == {"status": "accepted"}
    row = get_row(app, "uis", SESSION)
    assert row["state"] == "queued"
    assert post_fixture(client, "uis", RECORD).status_code == 200
    rec = get_record(app, "uis", SESSION)
    assert rec["direction"] == "inbound"
    assert rec["client_phone"] == "+79990001122" and rec["client_phone_raw"] == "79990001122"
    assert rec["tracking_number"] == "+74950001234"
    assert rec["operator"] == {"provider_id": "101234", "name": "Анна Иванова"}
    assert rec["started_at"] == "2024-06-03T09:00:00+00:00"
    assert rec["answered_at"] == "2024-06-03T09:00:11+00:00"
    assert rec["ended_at"] == "2024-06-03T09:02:57.123000+00:00"
    assert (rec["wait_seconds"], rec["talk_seconds"], rec["total_seconds"]) == (11, 177, 188)
    assert rec["status"] == "answered" and rec["status_raw"] is None
    assert rec["provider_aux_ids"] == {"scenario_name": "Основной"}
    assert rec["recordings"] == [{"provider_recording_id": HASH, "state": "available", "fetch": "direct_url",
                                  "url": LINK, "format": None, "channels": None, "duration_seconds": 177}]
    assert rec["finished"] is True and rec["signature_verified"] is None
    assert counts(app) == (1, 2)
    view = api_get_call(client, row["id"])
    assert view["recordings"][0]["url"] == LINK  # direct links stay visible (fetch=direct_url)


def test_reverse_order_gives_the_same_record(app, client):
    post_fixture(client, "uis", FINISHED)
    post_fixture(client, "uis", RECORD)
    forward = get_record(app, "uis", SESSION)
    link = LINK.replace(SESSION, "777")
    assert post_json(client, doc(RECORD, call_session_id=777, file_link=link)).status_code == 200
    assert get_row(app, "uis", "777")["state"] == "receiving"
    assert post_json(client, doc(FINISHED, call_session_id=777)).status_code == 200
    back = get_record(app, "uis", "777")
    assert back["recordings"][0]["url"] == link
    back["recordings"][0]["url"] = LINK
    assert {**back, "provider_call_id": SESSION} == forward


def test_lost_call_is_missed_and_does_not_wait_for_audio(app, client):
    body = doc(FINISHED, call_session_id=555, notification_name="Потерянный звонок", talk_time_duration=0,
               wait_time_duration=25, total_time_duration=25, is_lost="true")
    assert post_json(client, body).status_code == 200
    rec = get_record(app, "uis", "555")
    assert rec["status"] == "missed" and rec["talk_seconds"] == 0 and rec["answered_at"] is None
    assert rec["status_raw"] == "lost"
    assert Uis({}).expects_recording(rec) is False
    assert get_row(app, "uis", "555")["state"] == "queued"


def test_grouped_template_with_string_values_and_outbound(app, client):
    body = {"notification_name": "Call ended", "call_session_id": "901", "direction": "out",
            "start_time": "2024-06-03 15:00:00", "talk_time_duration": "60", "wait_time_duration": "5",
            "total_time_duration": "65", "virtual_phone_number": "+7 (495) 000-12-34",
            "contact_info": {"contact_phone_number": "8 916 123 45 67", "contact_full_name": "Пётр"},
            "employee_info": {"employee_id": "7", "employee_full_name": "Олег", "employee_email": "oleg@example.ru",
                              "employee_phone_number": "79160000001"},
            "utm_source": "google", "utm_medium": "cpc", "ua_client_id": "111.222", "visitor_country": "Россия",
            "external_id": "{{external_id}}"}
    assert post_json(client, body).status_code == 200
    rec = get_record(app, "uis", "901")
    assert rec["direction"] == "outbound" and rec["status"] == "answered"
    assert rec["client_phone"] == "+79161234567" and rec["tracking_number"] == "+74950001234"
    assert rec["operator"] == {"provider_id": "7", "name": "Олег", "email": "oleg@example.ru", "phone": "+79160000001"}
    assert rec["started_at"] == "2024-06-03T12:00:00+00:00"
    assert rec["attribution"] == {"source": "google", "medium": "cpc", "ga_client_id": "111.222",
                                  "extra": {"visitor_country": "Россия"}}
    assert "external_id" not in rec["provider_aux_ids"]  # an unrendered placeholder is not a value


def test_grouped_record_notification_and_event_query_override(app, client):
    body = {"call_session_id": 902, "call_record_file_info": {"file_link": LINK.replace(SESSION, "902"),
                                                              "call_record_duration": 42}}
    assert post_json(client, body, query="event=record").status_code == 200
    rec = get_record(app, "uis", "902")
    assert rec["recordings"][0]["duration_seconds"] == 42 and rec["finished"] is False


def test_form_encoded_template(app, client):
    form = {"call_session_id": "903", "direction": "in", "contact_phone_number": "79990001122",
            "start_time": "2024-06-03 12:00:00", "talk_time_duration": "10"}
    resp = client.post(webhook_url("uis"), data=urllib.parse.urlencode(form),
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert resp.status_code == 200
    assert get_record(app, "uis", "903")["talk_seconds"] == 10


def test_start_notifications_are_ignored(app, client):
    body = {"notification_name": "Входящий звонок", "call_session_id": 1, "contact_phone_number": "79990001122"}
    assert post_json(client, body).status_code == 200
    assert counts(app) == (0, 0)


@pytest.mark.parametrize("body,status", [
    (b"{\"call_session_id\": 1, ", 400),
    (b"[1, 2]", 422),
    (b"", 400),
    (json.dumps({"talk_time_duration": 5}).encode(), 422),                      # no call id
    (json.dumps({"call_session_id": 1, "file_link": "javascript:x"}).encode(), 422),
])
def test_malformed_bodies_are_4xx_and_store_nothing(app, client, body, status):
    assert client.post(webhook_url("uis"), data=body, headers=JSON_HDR).status_code == status
    assert counts(app) == (0, 0)


def test_wrong_url_secret_is_401(app, client):
    assert post_fixture(client, "uis", FINISHED, secret="wrong-secret-0123456789").status_code == 401
    assert counts(app) == (0, 0)


def test_optional_body_secret(app_factory, monkeypatch):
    app = build_app(app_factory, monkeypatch, {"uis": {"body_secret": "tmpl-secret-42"}})
    client = app.test_client()
    assert post_fixture(client, "uis", FINISHED).status_code == 401
    assert post_json(client, doc(FINISHED, secret="nope")).status_code == 401
    assert counts(app) == (0, 0)
    assert post_json(client, doc(FINISHED, secret="tmpl-secret-42")).status_code == 200
    assert counts(app) == (1, 1)


def test_duplicate_delivery_is_acknowledged_once(app, client):
    assert post_fixture(client, "uis", FINISHED).status_code == 200
    resp = post_fixture(client, "uis", FINISHED)
    assert resp.status_code == 200 and resp.get_json() == {"status": "duplicate"}
    assert counts(app) == (1, 1)


def test_comagic_and_callgear_share_the_format(app, client):
    assert post_fixture(client, "comagic", FINISHED).status_code == 200
    assert post_fixture(client, "callgear", FINISHED).status_code == 200
    assert get_record(app, "comagic", SESSION)["provider"] == "comagic"
    assert get_record(app, "callgear", SESSION)["talk_seconds"] == 177
    assert Comagic({}).media_link("1", "h") == "https://app.comagic.ru/system/media/talk/1/h/"
    assert Callgear({}).config["base_url"] == "https://dataapi.callgear.com/v2.0"
    assert Uis({"media_url": "https://app.novofon.ru"}).media_link("1", "h").startswith("https://app.novofon.ru/")


def test_resolve_recording_direct_hash_and_unknown():
    uis = Uis({})
    assert uis.resolve_recording({"provider_call_id": SESSION}, {"url": LINK}) == (LINK, {})
    assert uis.resolve_recording({"provider_call_id": SESSION}, {"provider_recording_id": HASH}) == (LINK, {})
    with pytest.raises(TransientError):
        uis.resolve_recording({"provider_call_id": SESSION}, {})


def test_recording_not_ready_twice_then_downloaded(mocked_http, tmp_path):
    """The direct link answers 404 while the file is being prepared; the downloader retries."""
    from service import fetch
    uis = Uis({})
    url, kwargs = uis.resolve_recording({"provider_call_id": SESSION}, {"url": LINK})
    mocked_http.add(responses.GET, LINK, status=404)
    mocked_http.add(responses.GET, LINK, status=404)
    mocked_http.add(responses.GET, LINK, body=b"ID3\x03\x00\x00\x00\x00\x00\x00" + b"\x00" * 200,
                    headers={"Content-Type": "audio/mpeg"})
    for _ in range(2):
        with pytest.raises(TransientError):
            fetch.download(uis.http, url, tmp_path, allow_hosts=["app.uiscom.ru"], request_kwargs=kwargs)
    got = fetch.download(uis.http, url, tmp_path, allow_hosts=["app.uiscom.ru"], request_kwargs=kwargs)
    assert got.size_bytes > 0


def test_expects_recording():
    uis = Uis({})
    assert uis.expects_recording({"status": "answered", "recordings": []}) is True
    assert uis.expects_recording({"status": "answered", "recordings": [{"state": "available"}]}) is False
    assert uis.expects_recording({"status": "missed", "recordings": []}) is False
    assert Uis({"record_calls": False}).expects_recording({"status": "answered", "recordings": []}) is False


def test_enrich_from_data_api(mocked_http):
    uis = Uis({"access_token": "tok"})
    row = {"id": 3456789012, "utm_source": "yandex", "utm_campaign": "sofa", "referrer": "https://ya.ru/",
           "entrance_page": "https://example.ru/", "ym_client_id": "171", "visitor_session_id": 55,
           "campaign_name": "Директ", "talk_duration": 177, "wait_duration": 11, "call_records": [HASH],
           "last_answered_employee_id": 101234}
    mocked_http.add(responses.POST, DATA_API, json={"jsonrpc": "2.0", "id": "x", "result": {"data": [row]}})
    upd = uis.enrich({"provider_call_id": SESSION, "started_at": "2024-06-03T09:00:00+00:00"})
    assert upd.fields["attribution"] == {"source": "yandex", "campaign": "sofa", "referrer": "https://ya.ru/",
                                         "landing_page": "https://example.ru/", "ym_client_id": "171",
                                         "session_id": "55", "extra": {"campaign_name": "Директ"}}
    assert upd.fields["talk_seconds"] == 177 and upd.fields["operator"] == {"provider_id": "101234"}
    assert upd.recordings[0]["provider_recording_id"] == HASH and upd.recordings[0]["url"] == LINK
    sent = json.loads(mocked_http.calls[0].request.body)
    assert sent["method"] == "get.calls_report" and sent["params"]["access_token"] == "tok"
    assert sent["params"]["date_from"] == "2024-06-03 11:00:00"  # account (Moscow) local time
    assert sent["params"]["filter"] == {"field": "id", "operator": "=", "value": 3456789012}
    assert Uis({}).enrich({"provider_call_id": SESSION, "started_at": "2024-06-03T09:00:00+00:00"}) is None


def test_enrich_errors_are_typed(mocked_http):
    uis = Uis({"access_token": "tok"})
    mocked_http.add(responses.POST, DATA_API, json={"jsonrpc": "2.0", "error": {"code": -32001, "message": "x"}})
    mocked_http.add(responses.POST, DATA_API, status=503)
    rec = {"provider_call_id": SESSION, "started_at": "2024-06-03T09:00:00+00:00"}
    with pytest.raises(PermanentError):
        uis.enrich(rec)
    with pytest.raises(TransientError):
        uis.enrich(rec)


def test_fuzz_never_500(app, client):
    for body, headers in fuzz_bodies(7301, [FINISHED, RECORD], 200):
        resp = client.post(webhook_url("uis"), data=body, headers=headers)
        assert 200 <= resp.status_code < 500, (body, headers, resp.status_code, resp.data)
    for key in ("call_session_id", "start_time", "notification_time", "talk_time_duration", "direction",
                "contact_phone_number", "file_link", "contact_info", "is_lost"):
        for weird in (None, 1e308, -1, "", "x", [], {"a": {}}, True, "9" * 400, "2024-99-99"):
            resp = post_json(client, doc(FINISHED, **{key: weird}))
            assert 200 <= resp.status_code < 500, (key, weird, resp.data)
    resp = client.get(webhook_url("uis") + "?call_session_id=1&talk_time_duration=5")
    assert 200 <= resp.status_code < 500
