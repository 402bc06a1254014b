"""`make demo`: start web + worker, post a generic webhook for a bundled recording, print the result."""
from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
SAMPLE = "a_01_furniture.mp3"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def main() -> int:
    data_dir = REPO / "data" / "demo"
    data_dir.mkdir(parents=True, exist_ok=True)
    secret, token = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    config = {"api_token": token, "tenants": {"demo": {"webhook_secret": secret, "timezone": "Europe/Moscow",
                                                       "phone_region": "RU", "allow_hosts": ["127.0.0.1"]}}}
    config_path = data_dir / "calltag.yaml"
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    env = {**os.environ, "CALLTAG_CONFIG": str(config_path), "CALLTAG_DATA_DIR": str(data_dir),
           "PYTHONPATH": str(REPO)}
    from service.speech import ensure_bundled_model
    shared = ensure_bundled_model(REPO / "data")
    (data_dir / "models").mkdir(exist_ok=True)
    link = data_dir / "models" / shared.name
    if not link.exists():
        link.symlink_to(shared)

    files = ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(REPO / "tests/data/calls")))
    threading.Thread(target=files.serve_forever, daemon=True).start()
    port = free_port()
    bin_dir = Path(sys.executable).parent
    procs = [
        subprocess.Popen([str(bin_dir / "gunicorn"), "--bind", f"127.0.0.1:{port}", "--workers", "2",
                          "--log-level", "warning", "service:create_app()"], env=env, cwd=REPO),
        subprocess.Popen([sys.executable, "-m", "service.worker"], env=env, cwd=REPO,
                         stderr=open(data_dir / "worker.log", "ab")),
    ]
    base = f"http://127.0.0.1:{port}"
    try:
        wait(lambda: requests.get(f"{base}/healthz", timeout=2).ok, 60, "the web process")
        print(f"web: {base}   worker: running   recording served from http://127.0.0.1:{files.server_address[1]}/")
        event = {"provider_call_id": f"demo-{int(time.time())}", "direction": "inbound",
                 "client_phone": "+7 968 739-72-95", "started_at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
                 "wait_seconds": 6, "talk_seconds": 127, "status": "answered",
                 "recordings": [{"url": f"http://127.0.0.1:{files.server_address[1]}/{SAMPLE}",
                                 "channels": ["operator", "client"]}],
                 "attribution": {"utm_source": "yandex", "utm_medium": "organic"}}
        resp = requests.post(f"{base}/webhooks/generic/demo/{secret}", json=event, timeout=10)
        print(f"POST /webhooks/generic/demo/<secret> -> {resp.status_code} {resp.text}")
        call_id = resp.json()["call_id"]
        headers = {"Authorization": f"Bearer {token}"}
        started = time.monotonic()

        def finished():
            view = requests.get(f"{base}/calls/{call_id}", headers=headers, timeout=5).json()
            return view if view["call"]["state"] in ("done", "failed") else None

        view = wait(finished, 600, "the call to be processed")
        print(f"processed in {time.monotonic() - started:.1f}s\n")
        from service.transcript_text import render
        print(render(view))
        print(f"\nRead API: curl -H 'Authorization: Bearer {token}' {base}/calls/{call_id}")
        if sys.stdin.isatty():
            print("web and worker keep running; press Ctrl-C to stop")
            signal.pause()
        return 0 if view["call"]["state"] == "done" else 1
    except KeyboardInterrupt:
        return 0
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGINT)
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        files.shutdown()


def wait(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except (requests.RequestException, json.JSONDecodeError, KeyError):
            pass
        time.sleep(0.5)
    raise SystemExit(f"timed out waiting for {what}")


if __name__ == "__main__":
    sys.exit(main())
