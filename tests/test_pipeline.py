"""Pipeline and job policy with the real queue in immediate mode, real DB, real Whisper on short audio."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from support import API_TOKEN, make_config, webhook_url
from http_server import RecordingServer
from service import jobs, storage

DATA = Path(__file__).parent / "data"


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    shutil.copy(DATA / "real/t-one/audio_short.flac", root / "short.flac")
    (root / "broken.mp3").write_bytes(b"ID3\x04\x00" + b"\x00garbage" * 500)
    with RecordingServer(root) as srv:
        yield srv


def post(client, server, name, call_id="p-1", **extra):
    body = {"provider_call_id": call_id, "direction": "inbound", "client_phone": "+79161234567",
            "started_at": "2026-11-28T10:00:00+03:00", "talk_seconds": 6, "status": "answered",
            "recordings": [{"url": f"{server.base_url}/{name}", "channels": "mono"}], **extra}
    resp = client.post(webhook_url("generic"), json=body)
    assert resp.status_code == 202, resp.get_data(as_text=True)
    return resp.get_json()["call_id"]


def test_recording_that_appears_on_third_try_is_processed(app, client, runtime, db, server):
    server.fail_first["short.flac"] = 2
    call_id = post(client, server, "short.flac")
    call = db["calls"].get(call_id)
    assert call["state"] == "waiting" and "HTTP 404" in call["error"]
    stage = storage.get_stages(db, call_id)["recording"]
    assert stage["status"] == "retrying" and stage["attempts"] == 1
    assert call["next_try_at"] is not None
    assert runtime.queue.huey.scheduled_count() == 1   # the retry sits in the queue's schedule
    assert jobs.run_call_job(runtime, call_id) == "waiting"
    assert jobs.run_call_job(runtime, call_id) == "done"
    assert server.hits["short.flac"] == 3
    view = client.get(f"/calls/{call_id}", headers={"Authorization": f"Bearer {API_TOKEN}"}).get_json()
    assert view["call"]["stages"]["recording"]["attempts"] == 2
    assert view["transcript"] and all(u["speaker"] == "unknown" for u in view["transcript"])
    assert view["analysis"]["rules_version"]


def test_recording_never_available_fails_clearly_after_the_window(app_factory, server):
    app = app_factory(RECORDING_RETRY_H=0)
    rt = app.extensions["calltag"]["runtime"]
    call_id = post(app.test_client(), server, "missing.mp3")
    call = rt.db()["calls"].get(call_id)
    assert call["state"] == "failed"
    assert call["error"].startswith("recording not available after 0 h: recording not available yet: HTTP 404")
    assert storage.get_stages(rt.db(), call_id)["recording"]["status"] == "failed"


def test_broken_recording_fails_without_retry(client, db, server):
    call_id = post(client, server, "broken.mp3")
    call = db["calls"].get(call_id)
    assert call["state"] == "failed"
    assert "not decodable audio" in call["error"]


def test_private_host_is_refused_unless_allowed(app_factory, server):
    app = app_factory(config=make_config(allow_hosts=[]))
    rt = app.extensions["calltag"]["runtime"]
    call_id = post(app.test_client(), server, "short.flac")
    call = rt.db()["calls"].get(call_id)
    assert call["state"] == "failed" and "private or local address" in call["error"]
    assert server.hits == {}


def test_rerun_of_a_done_call_repeats_nothing(client, runtime, db, server):
    call_id = post(client, server, "short.flac")
    assert db["calls"].get(call_id)["state"] == "done"
    storage.set_call_state(db, call_id, "queued")
    assert jobs.run_call_job(runtime, call_id) == "done"
    assert db["transcripts"].count == 1 and db["analyses"].count == 1 and db["recordings"].count == 1
    assert server.hits["short.flac"] == 1


def test_a_call_leased_by_a_live_worker_is_not_taken(client, runtime, db, server):
    call_id = post(client, server, "missing.mp3")
    assert storage.claim_call(db, call_id, "otherhost:1:1", 600)
    assert jobs.run_call_job(runtime, call_id) == "skipped"


def test_recovery_requeues_a_call_whose_worker_died(client, runtime, db, server):
    server.fail_first["short.flac"] = 1
    call_id = post(client, server, "short.flac")
    import socket
    db.execute("UPDATE calls SET state = 'processing', lease_owner = ?, lease_until = 9e12 WHERE id = ?",
               [f"{socket.gethostname()}:999999:1", call_id])
    assert jobs.recover_stalled(runtime) == [call_id]
    assert db["calls"].get(call_id)["state"] == "done"


def test_a_call_whose_final_event_never_came_is_processed_after_the_timeout(app_factory):
    from integrations.calltracking.base import CallUpdate
    from service.record import apply_update, new_record
    app = app_factory(RECEIVING_TIMEOUT_H=0)
    rt = app.extensions["calltag"]["runtime"]
    db = rt.db()
    record = apply_update(new_record("generic", "acme", "lost-1"),
                          CallUpdate("lost-1", "call_started", {"client_phone": "+79161234567"}),
                          signature_verified=None)
    call_id = storage.upsert_call(db, storage.call_key("generic", "acme", "lost-1"), record)
    assert db["calls"].get(call_id)["state"] == "receiving"
    db.execute("UPDATE calls SET updated_at = '2000-01-01T00:00:00+00:00' WHERE id = ?", [call_id])
    assert jobs.recover_stalled(rt) == [call_id]
    assert db["calls"].get(call_id)["state"] == "done"
    assert storage.get_stages(db, call_id)["recording"]["status"] == "skipped"
