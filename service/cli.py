"""`python -m service ...`: process | rules check|test|backtest | db migrate | calls replay | crm."""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Sequence

USAGE = """usage: python -m service COMMAND ...

commands:
  process PATH_OR_URL [--json] [--channels operator,client]   run the whole pipeline on one recording
  rules check [--strict] [--lang en] [DIR]                    validate rule files
  rules test FILE [--json] [--explain]                        tag a transcript JSON (or a recording)
  rules backtest [--since 30d] [--apply]                      re-run current rules on stored calls
  db migrate                                                  apply database migrations
  calls replay CALL_ID                                        run a stored call through the pipeline again
  crm ...                                                     CRM authorisation and status
"""


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if args else 2
    cmd, rest = args[0], args[1:]
    if cmd == "process":
        return cmd_process(rest)
    if cmd == "rules" and rest:
        sub, more = rest[0], rest[1:]
        if sub == "backtest":
            from service.backtest import cmd_backtest
            return cmd_backtest(more)
        if sub == "test" and more and _is_audio(more[0]):
            return cmd_process([more[0], *(["--json"] if "--json" in more else [])])
        from service import rules_cli
        if sub == "check":
            return rules_cli.cmd_check(more)
        if sub == "test":
            return rules_cli.cmd_test(more)
    if cmd == "db" and rest[:1] == ["migrate"]:
        from service import create_app
        create_app()
        print("database is up to date")
        return 0
    if cmd == "calls" and rest[:1] == ["replay"] and len(rest) == 2:
        return cmd_replay(rest[1])
    if cmd == "crm":
        from service import crm_cli
        return crm_cli.cmd_crm(rest)
    print(USAGE, file=sys.stderr)
    return 2


def _is_audio(path: str) -> bool:
    return Path(path).suffix.lower() in (".mp3", ".wav", ".ogg", ".opus", ".flac", ".m4a", ".aac", ".webm")


def cmd_process(argv: Sequence[str]) -> int:
    """Run download/transcribe/analyse on one file or URL in-process and print the call."""
    parser = argparse.ArgumentParser(prog="python -m service process")
    parser.add_argument("source", help="a local audio file or an http(s) URL")
    parser.add_argument("--json", action="store_true", help="print the read API's JSON object")
    parser.add_argument("--channels", default=None, help="stereo layout, e.g. operator,client (left,right)")
    opts = parser.parse_args(argv)
    channels = opts.channels.split(",") if opts.channels else None
    if channels and not all(c in ("operator", "client", "unknown") for c in channels):
        print("--channels: use operator, client or unknown, e.g. operator,client", file=sys.stderr)
        return 2
    from service import create_app, pipeline, storage
    from service.api import call_view
    from service.record import new_record
    app = create_app({"QUEUE_IMMEDIATE": True})
    rt = app.extensions["calltag"]["runtime"]
    db = rt.db()
    is_url = opts.source.startswith(("http://", "https://"))
    if not is_url and not Path(opts.source).is_file():
        print(f"no such file: {opts.source}", file=sys.stderr)
        return 2
    source = opts.source if is_url else str(Path(opts.source).resolve())
    call_id_text = hashlib.sha256(f"{source}:{time.time()}".encode()).hexdigest()[:16]
    record = new_record("cli", "cli", call_id_text)
    record.update({"direction": "unknown", "status": "answered", "finished": True,
                   "started_at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
                   "recordings": [{"provider_recording_id": "source", "state": "available",
                                   "fetch": "direct_url" if is_url else "local", "url": source, "channels": channels}]})
    key = storage.call_key("cli", "cli", call_id_text)
    call_id = storage.upsert_call(db, key, record, state="processing")
    try:
        pipeline.run(rt, db, call_id)
    except pipeline.RetryLater as err:
        print(f"recording not available: {err.reason}", file=sys.stderr)
        storage.set_call_state(db, call_id, "failed", err.reason)
        return 1
    except Exception as err:  # noqa: BLE001 - a CLI prints the reason instead of a traceback
        print(f"failed: {err}", file=sys.stderr)
        storage.set_call_state(db, call_id, "failed", str(err))
        return 1
    storage.set_call_state(db, call_id, "done")
    view = call_view(db, storage.get_call(db, call_id))
    if opts.json:
        print(json.dumps(view, ensure_ascii=False, indent=2))
    else:
        print(format_call(view))
    return 0


def format_call(view: dict) -> str:
    """A human-readable transcript with tags and metrics."""
    from service.transcript_text import render
    return render(view)


def cmd_replay(call_id: str) -> int:
    """Queue a stored call again (stages that are done are not redone)."""
    from service import create_app, storage
    app = create_app()
    rt = app.extensions["calltag"]["runtime"]
    db = rt.db()
    if not call_id.isdigit() or storage.get_call(db, int(call_id)) is None:
        print(f"no call with id {call_id}", file=sys.stderr)
        return 1
    storage.set_call_state(db, int(call_id), "queued", enqueued_at=time.time())
    rt.queue.enqueue_call(int(call_id))
    print(f"call {call_id} queued")
    return 0
