"""Database schema, as ordered sqlite-utils migrations (safe to apply repeatedly)."""
from __future__ import annotations

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

migrations = Migrations("calltag")


@migrations()
def m001_core(db: Database) -> None:
    """Calls, raw events, stages, recordings, transcripts and analyses."""
    db["calls"].create({
        "id": int, "call_key": str, "tenant": str, "provider": str, "provider_call_id": str,
        "record": str, "state": str, "client_phone": str, "started_at": str,
        "created_at": str, "updated_at": str, "lease_owner": str, "lease_until": float,
        "enqueued_at": float, "next_try_at": float, "attempts": int, "error": str,
        "current_analysis_id": int,
    }, pk="id", not_null={"call_key", "tenant", "provider", "provider_call_id", "record", "state"},
        defaults={"attempts": 0})
    db["calls"].create_index(["call_key"], unique=True)
    db["calls"].create_index(["client_phone", "started_at"])
    db["calls"].create_index(["state", "lease_until"])
    db["events"].create({
        "id": int, "call_id": int, "tenant": str, "provider": str, "event_key": str, "kind": str,
        "received_at": str, "headers": str, "body": bytes,
    }, pk="id", foreign_keys=[("call_id", "calls", "id")])
    db["events"].create_index(["tenant", "provider", "event_key"], unique=True)
    db["stages"].create({
        "call_id": int, "stage": str, "status": str, "error": str, "attempts": int,
        "updated_at": str, "detail": str,
    }, pk=("call_id", "stage"), defaults={"attempts": 0})
    db["recordings"].create({
        "id": int, "call_id": int, "recording_key": str, "path": str, "sha256": str, "mime": str,
        "size_bytes": int, "duration_s": float, "channels": int, "sample_rate": int, "created_at": str,
    }, pk="id", foreign_keys=[("call_id", "calls", "id")])
    db["recordings"].create_index(["call_id", "recording_key"], unique=True)
    db["transcripts"].create({
        "id": int, "call_id": int, "engine": str, "model": str, "language": str, "utterances": str,
        "audio_s": float, "cpu_s": float, "created_at": str,
    }, pk="id", foreign_keys=[("call_id", "calls", "id")])
    db["transcripts"].create_index(["call_id", "engine"], unique=True)
    db["analyses"].create({
        "id": int, "call_id": int, "rules_version": str, "analysis": str, "created_at": str,
    }, pk="id", foreign_keys=[("call_id", "calls", "id")])
    db["analyses"].create_index(["call_id", "rules_version"], unique=True)


def apply(db: Database) -> None:
    """Apply every pending migration."""
    migrations.apply(db)
