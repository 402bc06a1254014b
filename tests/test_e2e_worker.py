"""End to end: real Flask app, SQLite, a huey consumer process and Whisper on a stereo 8 kHz MP3."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from support import API_TOKEN, REPO, RULES_DIR, TEST_SECRET, webhook_url
from http_server import RecordingServer
from service.morph import normal_forms

DATA = Path(__file__).parent / "data" / "calls"


@pytest.fixture
def stack(tmp_path, data_dir):
    """Config file, env for a worker process, an in-process web app, a local recording server."""
    config = {"api_token": API_TOKEN, "tenants": {"acme": {
        "webhook_secret": TEST_SECRET, "timezone": "Europe/Moscow", "allow_hosts": ["127.0.0.1"]}}}
    config_path = tmp_path / "calltag.yaml"
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    env = {**os.environ, "CALLTAG_CONFIG": str(config_path), "CALLTAG_DATA_DIR": str(data_dir),
           "CALLTAG_RULES_DIR": str(RULES_DIR), "PYTHONPATH": str(REPO)}
    from service import create_app
    app = create_app({"DATA_DIR": data_dir, "CONFIG": config_path, "RULES_DIR": RULES_DIR})
    workers: list[subprocess.Popen] = []

    def start_worker() -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-m", "service.worker"], env=env, cwd=str(REPO),
                                stdout=subprocess.DEVNULL, stderr=open(tmp_path / "worker.log", "ab"))
        workers.append(proc)
        return proc

    with RecordingServer(DATA) as server:
        yield app, server, start_worker
    for proc in workers:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def post_call(app, server, name: str, call_id: str) -> int:
    body = {"provider_call_id": call_id, "direction": "inbound", "client_phone": "+79921602226",
            "started_at": "2026-11-28T10:00:00+03:00", "wait_seconds": 3, "talk_seconds": 30,
            "status": "answered", "recordings": [{"url": f"{server.base_url}/{name}"}]}
    resp = app.test_client().post(webhook_url("generic"), json=body)
    assert resp.status_code == 202, resp.get_data(as_text=True)
    return resp.get_json()["call_id"]


def wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def lemmas(text: str) -> set[str]:
    out: set[str] = set()
    for word in text.lower().replace("ё", "е").split():
        word = word.strip(".,!?«»—:;\"'()")
        if word:
            out |= set(normal_forms(word))
    return out


def test_e2e_webhook_to_tagged_transcript_with_real_worker(stack):
    app, server, start_worker = stack
    start_worker()
    call_id = post_call(app, server, "a_07_carservice.mp3", "e2e-1")
    client = app.test_client()
    auth = {"Authorization": f"Bearer {API_TOKEN}"}

    def done():
        view = client.get(f"/calls/{call_id}", headers=auth).get_json()
        return view if view["call"]["state"] in ("done", "failed") else None

    view = wait_for(done, 240, "the call to be processed")
    assert view["call"]["state"] == "done", view["call"]
    transcript = view["transcript"]
    timing = json.loads((DATA / "a_07_carservice.timing.json").read_text())
    assert [u["speaker"] for u in transcript] == [u["speaker"] for u in timing["utterances"]]
    heard = set().union(*(lemmas(u["text"]) for u in transcript))
    expected = set().union(*(lemmas(u["text"]) for u in timing["utterances"]))
    content = {w for w in expected if len(w) > 3}
    assert len(heard & content) / len(content) > 0.5
    for word in ("стоить", "запчасть", "деньги", "грабеж", "серьезный"):
        assert word in heard, word
    assert "topic_price" in view["analysis"]["groups"]["topic"]
    assert view["analysis"]["metrics"]["utterances_operator"] == 3
    assert view["call"]["stages"]["transcript"]["status"] == "done"


def test_e2e_worker_killed_mid_job_processes_call_once_after_restart(stack):
    app, server, start_worker = stack
    rt = app.extensions["calltag"]["runtime"]
    db = rt.db()
    worker = start_worker()
    call_id = post_call(app, server, "a_07_carservice.mp3", "e2e-kill")

    def transcribing():
        row = db.execute("SELECT status FROM stages WHERE call_id = ? AND stage = 'transcript'", [call_id]).fetchone()
        return row and row[0] == "running"

    wait_for(transcribing, 120, "transcription to start")
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=10)
    assert db["calls"].get(call_id)["state"] == "processing"
    assert db["transcripts"].count == 0
    start_worker()
    wait_for(lambda: db["calls"].get(call_id)["state"] == "done", 240, "the call to be recovered")
    assert db.execute("SELECT count(*) FROM transcripts WHERE call_id = ?", [call_id]).fetchone()[0] == 1
    assert db.execute("SELECT count(*) FROM analyses WHERE call_id = ?", [call_id]).fetchone()[0] == 1
    assert db.execute("SELECT count(*) FROM recordings WHERE call_id = ?", [call_id]).fetchone()[0] == 1
    assert db["calls"].count == 1
    assert server.hits["a_07_carservice.mp3"] == 1  # the downloaded file was reused, not fetched twice
