"""Sipuni adapter: URL-encoded PBX events (GET or POST) through the real webhook route."""
from __future__ import annotations

import json
import urllib.parse

import pytest
import responses

from support import make_config, webhook_url
from helpers_b import assert_never_500, build_app, comparable, counts, form_body, fuzz_bodies, load_fixture, stored
from integrations.base import AuthError, PermanentError, TransientError
from integrations.calltracking.sipuni import Sipuni

CALL = "1717405200.123456"
PATH = webhook_url("sipuni")
LINK = "https://sipuni.com/api/crm/record?id=1717405200.123456&hash=0f1e2d3c4b5a69788796a5b4c3d2e1f0"


def fixture_params() -> dict[str, str]:
    fx = load_fixture("sipuni", "sipuni_event2_hangup")
    return dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(fx["url"]).query, keep_blank_values=True))


EVENT2 = fixture_params()
EVENT1 = {k: EVENT2[k] for k in ("call_id", "src_type", "src_num", "short_src_num", "dst_type", "dst_num",
                                 "short_dst_num", "pbxdstnum", "call_start_timestamp", "treeName", "treeNumber",
                                 "channel", "user_id")}
EVENT1.update(event="1", timestamp="1717405200")
EVENT3 = dict(EVENT1, event="3", timestamp="1717405211", short_dst_num="201")


@pytest.fixture
def app(app_factory, data_dir):
    return build_app(app_factory, make_config(providers={"sipuni": {}}), data_dir)


@pytest.fixture
def client(app):
    return app.test_client()


def get(client, params: dict[str, str], path: str = PATH):
    return client.get(f"{path}?{urllib.parse.urlencode(params)}")


def post(client, params: dict[str, str], path: str = PATH):
    return client.post(path, data=form_body(params), content_type="application/x-www-form-urlencoded")


def test_event2_by_get_is_stored_and_answered_success(app, client):
    resp = get(client, EVENT2)
    assert resp.status_code == 200
    assert resp.get_json() == {"success": True}
    row = stored(app, "sipuni", CALL)
    rec = row["record"]
    assert row["state"] == "queued"
    assert rec["provider"] == "sipuni" and rec["provider_call_id"] == CALL
    assert rec["direction"] == "inbound"
    assert rec["client_phone"] == "+79990001122"
    assert rec["client_phone_raw"] == "79990001122"
    assert rec["tracking_number"] == "+74950001234"
    assert rec["operator"] == {"extension": "201"}
    assert rec["started_at"] == "2024-06-03T09:00:00+00:00"
    assert rec["answered_at"] == "2024-06-03T09:00:11+00:00"
    assert rec["ended_at"] == "2024-06-03T09:03:08+00:00"
    assert (rec["wait_seconds"], rec["talk_seconds"], rec["total_seconds"]) == (11, 177, 188)
    assert rec["status"] == "answered" and rec["status_raw"] == "ANSWER"
    assert rec["finished"] is True
    assert rec["signature_verified"] is None  # Sipuni has no signature scheme
    assert rec["provider_aux_ids"] == {"tree_name": "Входящая", "tree_number": "000-123456", "user_id": "012345"}
    assert rec["recordings"] == [{"provider_recording_id": CALL, "fetch": "direct_url", "format": "mp3",
                                  "channels": None, "duration_seconds": None, "state": "available", "url": LINK}]
    assert rec["attribution"] == {} and rec["crm"] == {}


def test_post_form_gives_the_same_record(app, client):
    assert post(client, EVENT2).get_json() == {"success": True}
    assert stored(app, "sipuni", CALL)["record"]["talk_seconds"] == 177


def test_events_in_any_order_and_duplicates(app_factory, tmp_path):
    records = []
    for i, order in enumerate(([EVENT1, EVENT1, EVENT3, EVENT2, EVENT2], [EVENT2, EVENT3, EVENT1, EVENT1])):
        app = build_app(app_factory, make_config(providers={"sipuni": {}}), tmp_path / f"d{i}")
        client = app.test_client()
        for params in order:
            resp = get(client, params)
            assert resp.status_code == 200 and resp.get_json() == {"success": True}
        assert counts(app) == (1, 3)  # event 1 twice and event 2 twice are stored once
        records.append(comparable(stored(app, "sipuni", CALL)["record"]))
    assert records[0] == records[1]
    assert records[0]["status"] == "answered"
    assert records[0]["answered_at"] == "2024-06-03T09:00:11+00:00"


def test_event1_resent_a_second_later_is_one_event(app, client):
    assert get(client, EVENT1).status_code == 200
    assert get(client, dict(EVENT1, timestamp="1717405201")).get_json() == {"success": True}
    assert counts(app) == (1, 1)
    row = stored(app, "sipuni", CALL)
    assert row["state"] == "receiving" and row["record"]["finished"] is False


def test_bogus_answer_timestamp_falls_back_to_event3(app, client):
    assert get(client, dict(EVENT2, call_answer_timestamp="1717405199")).status_code == 200
    assert get(client, EVENT3).status_code == 200
    rec = stored(app, "sipuni", CALL)["record"]
    assert rec["answered_at"] == "2024-06-03T09:00:11+00:00"
    assert rec["status"] == "answered"


def test_missed_call_without_recording(app, client):
    params = dict(EVENT2, status="NOANSWER", call_answer_timestamp="0", call_record_link="", timestamp="1717405230")
    assert get(client, params).status_code == 200
    rec = stored(app, "sipuni", CALL)["record"]
    assert rec["status"] == "missed" and rec["talk_seconds"] == 0
    assert rec["wait_seconds"] == 30 and rec["answered_at"] is None
    assert rec["recordings"][0]["state"] == "absent"
    assert Sipuni({}, tenant={}).expects_recording(rec) is False


@pytest.mark.parametrize("raw,status", [("BUSY", "busy"), ("CANCEL", "missed"), ("CONGESTION", "failed"),
                                        ("CHANUNAVAIL", "failed"), ("WHATEVER", "unknown")])
def test_status_mapping(app, client, raw, status):
    assert get(client, dict(EVENT2, status=raw)).status_code == 200
    assert stored(app, "sipuni", CALL)["record"]["status"] == status


def test_outbound_call_strips_id_suffix(app, client):
    params = dict(EVENT2, src_type="2", src_num="070196201", short_src_num="201", dst_type="1",
                  dst_num="89990001122_id265648", short_dst_num="89990001122_id265648")
    assert get(client, params).status_code == 200
    rec = stored(app, "sipuni", CALL)["record"]
    assert rec["direction"] == "outbound"
    assert rec["client_phone"] == "+79990001122"
    assert rec["client_phone_raw"] == "89990001122"
    assert rec["operator"] == {"extension": "201"}
    assert rec["tracking_number"] is None


def test_internal_call_has_no_client(app, client):
    params = dict(EVENT2, src_type="2", src_num="201", short_src_num="201", dst_type="2", dst_num="202")
    assert get(client, params).status_code == 200
    rec = stored(app, "sipuni", CALL)["record"]
    assert rec["direction"] == "internal" and rec["client_phone"] is None


def test_hidden_caller_is_none(app, client):
    assert get(client, dict(EVENT2, src_num="anonymous")).status_code == 200
    rec = stored(app, "sipuni", CALL)["record"]
    assert rec["client_phone"] is None and rec["client_phone_raw"] == "anonymous"


def test_uzbek_local_number_with_tenant_region(app_factory, data_dir):
    app = build_app(app_factory, make_config(providers={"sipuni": {}}, phone_region="UZ",
                                             timezone="Asia/Tashkent"), data_dir)
    assert get(app.test_client(), dict(EVENT2, src_num="951218115")).status_code == 200
    assert stored(app, "sipuni", CALL)["record"]["client_phone"] == "+998951218115"


def test_channels_override(app_factory, data_dir):
    app = build_app(app_factory, make_config(providers={"sipuni": {"channels": ["client", "operator"]}}), data_dir)
    assert get(app.test_client(), EVENT2).status_code == 200
    assert stored(app, "sipuni", CALL)["record"]["recordings"][0]["channels"] == ["client", "operator"]


def test_secondary_leg_and_ping_are_acknowledged_and_not_stored(app, client):
    assert get(client, dict(EVENT2, event="4")).get_json() == {"success": True}
    resp = client.get(PATH)
    assert resp.status_code == 200 and resp.get_json() == {"success": True}
    assert counts(app) == (0, 0)


def test_wrong_url_secret_is_401(app, client):
    resp = get(client, EVENT2, path=webhook_url("sipuni", secret="wrong-secret-0123456789abcdef"))
    assert resp.status_code == 401
    assert counts(app) == (0, 0)


@pytest.mark.parametrize("params", [{"event": "2"}, {"call_id": CALL}, {"foo": "bar"}])
def test_malformed_event_is_422(app, client, params):
    resp = get(client, params)
    assert resp.status_code == 422
    assert json.loads(resp.get_data())["problems"]
    assert counts(app) == (0, 0)


def test_resolve_recording_not_ready_twice_then_ready(mocked_http):
    adapter = Sipuni({}, tenant={})
    mocked_http.add(responses.GET, LINK, status=404)
    mocked_http.add(responses.GET, LINK, json={"error": "file not found"})
    mocked_http.add(responses.GET, LINK, body=b"ID3", content_type="audio/mpeg", status=206)
    rec = {"provider_recording_id": CALL, "state": "available", "url": LINK}
    for _ in range(2):
        with pytest.raises(TransientError):
            adapter.resolve_recording({}, rec)
    assert adapter.resolve_recording({}, rec) == (LINK, {})
    assert mocked_http.calls[0].request.headers["Range"] == "bytes=0-1"


def test_resolve_recording_errors(mocked_http):
    adapter = Sipuni({}, tenant={})
    mocked_http.add(responses.GET, LINK, status=403)
    with pytest.raises(AuthError):
        adapter.resolve_recording({}, {"state": "available", "url": LINK})
    with pytest.raises(PermanentError):
        adapter.resolve_recording({}, {"state": "absent", "url": None})
    with pytest.raises(TransientError):
        adapter.resolve_recording({}, {"state": "available", "url": None})
    assert Sipuni({"probe_recording": False}, tenant={}).resolve_recording({}, {"url": LINK}) == (LINK, {})


def test_fuzz_never_500(app, client):
    samples = [form_body(EVENT2).encode(), form_body(EVENT1).encode(), form_body(EVENT3).encode()]
    cases = fuzz_bodies(5150, samples, 200, field_names=list(EVENT2))

    def send(body: bytes, ctype: str):
        if len(body) % 3 == 0:
            return client.get(PATH + "?" + body.decode("latin-1"))
        return client.post(PATH, data=body, content_type=ctype)

    assert_never_500(send, cases)
