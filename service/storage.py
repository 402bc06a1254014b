"""All SQL: calls, raw events, stage status, recordings, transcripts, analyses (sqlite-utils)."""
from __future__ import annotations

import json
import sqlite3
import time
from datetime import datetime, timedelta, timezone
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

from sqlite_utils import Database

from service import migrations

STAGES = ("recording", "transcript", "analysis", "crm")


def utcnow() -> str:
    """Now as ISO 8601 UTC text."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def open_db(path: Path | str) -> Database:
    """Open (and migrate) the app database with WAL and a busy timeout."""
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=30, check_same_thread=False, isolation_level=None)
    db = Database(conn)
    if str(path) != ":memory:":
        db.enable_wal()
    conn.execute("PRAGMA busy_timeout = 30000")
    conn.execute("PRAGMA foreign_keys = ON")
    migrations.apply(db)
    return db


def call_key(provider: str, tenant: str, provider_call_id: str) -> str:
    """Unique key of a call: provider, tenant and the provider's call id."""
    return f"{provider}:{tenant}:{provider_call_id}"


@contextmanager
def transaction(db: Database) -> Iterator[Database]:
    """BEGIN IMMEDIATE ... COMMIT (rollback on error) on an autocommit connection."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


# -- events and calls ----------------------------------------------------------------------------

def record_event(db: Database, *, tenant: str, provider: str, event_key: str, kind: str,
                 headers: dict, body: bytes) -> int | None:
    """Store a raw webhook; return its id, or None when this exact event was seen before."""
    cur = db.execute(
        "INSERT OR IGNORE INTO events (tenant, provider, event_key, kind, received_at, headers, body)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        [tenant, provider, event_key, kind, utcnow(), json.dumps(headers), body])
    return cur.lastrowid if cur.rowcount else None


def get_call(db: Database, call_id: int) -> dict | None:
    """One call row with its record decoded, or None."""
    rows = list(db.query("SELECT * FROM calls WHERE id = ?", [call_id]))
    return _decode_call(rows[0]) if rows else None


def get_call_by_key(db: Database, key: str) -> dict | None:
    rows = list(db.query("SELECT * FROM calls WHERE call_key = ?", [key]))
    return _decode_call(rows[0]) if rows else None


def _decode_call(row: dict) -> dict:
    row = dict(row)
    row["record"] = json.loads(row["record"])
    return row


def upsert_call(db: Database, key: str, record: dict, *, state: str | None = None) -> int:
    """Insert or update a call's canonical record; return the call id."""
    now = utcnow()
    existing = db.execute("SELECT id FROM calls WHERE call_key = ?", [key]).fetchone()
    values = {"record": json.dumps(record, ensure_ascii=False), "client_phone": record.get("client_phone"),
              "started_at": record.get("started_at"), "updated_at": now}
    if existing:
        if state:
            values["state"] = state
        db["calls"].update(existing[0], values)
        return existing[0]
    values.update({"call_key": key, "tenant": record["tenant_id"], "provider": record["provider"],
                   "provider_call_id": record["provider_call_id"], "created_at": now,
                   "state": state or "receiving", "attempts": 0})
    return db["calls"].insert(values).last_pk


def link_event(db: Database, event_id: int, call_id: int) -> None:
    db.execute("UPDATE events SET call_id = ? WHERE id = ?", [call_id, event_id])


def set_call_state(db: Database, call_id: int, state: str, error: str | None = None, **extra: Any) -> None:
    db["calls"].update(call_id, {"state": state, "error": error, "updated_at": utcnow(), **extra})


def list_calls(db: Database, limit: int, offset: int, tenant: str | None = None) -> list[dict]:
    where, params = ("WHERE tenant = ?", [tenant]) if tenant else ("", [])
    rows = db.query(f"SELECT * FROM calls {where} ORDER BY id DESC LIMIT ? OFFSET ?", params + [limit, offset])
    return [_decode_call(r) for r in rows]


def count_calls(db: Database) -> int:
    return db.execute("SELECT count(*) FROM calls").fetchone()[0]


def count_earlier_calls(db: Database, phone: str, before_iso: str, days: float, exclude_call_id: int) -> int:
    """Calls from the same phone in the `days` before `before_iso` (repeat-call flag)."""
    start = (datetime.fromisoformat(before_iso) - timedelta(days=days)).isoformat()
    return db.execute(
        "SELECT count(*) FROM calls WHERE client_phone = ? AND started_at >= ? AND started_at < ? AND id != ?",
        [phone, start, before_iso, exclude_call_id]).fetchone()[0]


# -- leases: one worker owns a call at a time ----------------------------------------------------

def claim_call(db: Database, call_id: int, owner: str, lease_s: float) -> bool:
    """Atomically take the call if nobody holds a live lease on it and it is not finished."""
    now = time.time()
    cur = db.execute(
        "UPDATE calls SET lease_owner = ?, lease_until = ?, state = 'processing', updated_at = ?"
        " WHERE id = ? AND state NOT IN ('done', 'failed', 'receiving')"
        " AND (lease_until IS NULL OR lease_until < ? OR lease_owner = ?)",
        [owner, now + lease_s, utcnow(), call_id, now, owner])
    return cur.rowcount == 1


def release_call(db: Database, call_id: int, owner: str, state: str, error: str | None = None,
                 next_try_at: float | None = None) -> None:
    db.execute("UPDATE calls SET lease_owner = NULL, lease_until = NULL, state = ?, error = ?,"
               " next_try_at = ?, updated_at = ? WHERE id = ? AND lease_owner = ?",
               [state, error, next_try_at, utcnow(), call_id, owner])


def stalled_calls(db: Database, now: float, grace_s: float = 120.0, receiving_s: float = 3 * 3600) -> list[int]:
    """Calls that should be in the queue: worker died, job lost, or the final event never came."""
    oldest_receiving = datetime.fromtimestamp(now - receiving_s, timezone.utc).isoformat(timespec="seconds")
    rows = db.execute(
        "SELECT id FROM calls WHERE (state = 'processing' AND lease_until < ?)"
        " OR (state = 'queued' AND coalesce(enqueued_at, 0) < ?)"
        " OR (state = 'waiting' AND next_try_at IS NOT NULL AND next_try_at < ?)"
        " OR (state = 'receiving' AND updated_at < ?)",
        [now, now - grace_s, now - grace_s, oldest_receiving]).fetchall()
    return [r[0] for r in rows]


# -- stages --------------------------------------------------------------------------------------

def save_stage(db: Database, call_id: int, stage: str, status: str, error: str | None = None,
               detail: dict | None = None, bump: bool = False) -> None:
    """Record a stage's status (pending, running, done, retrying, failed, skipped)."""
    row = db.execute("SELECT attempts FROM stages WHERE call_id = ? AND stage = ?", [call_id, stage]).fetchone()
    attempts = (row[0] if row else 0) + (1 if bump else 0)
    db["stages"].upsert({"call_id": call_id, "stage": stage, "status": status, "error": error,
                         "attempts": attempts, "updated_at": utcnow(),
                         "detail": json.dumps(detail, ensure_ascii=False) if detail else None},
                        pk=("call_id", "stage"))


def get_stages(db: Database, call_id: int) -> dict[str, dict]:
    out = {}
    for row in db.query("SELECT * FROM stages WHERE call_id = ?", [call_id]):
        out[row["stage"]] = {"status": row["status"], "error": row["error"], "attempts": row["attempts"],
                             "updated_at": row["updated_at"],
                             "detail": json.loads(row["detail"]) if row["detail"] else None}
    return out


# -- recordings, transcripts, analyses -----------------------------------------------------------

def get_recordings(db: Database, call_id: int) -> list[dict]:
    return list(db.query("SELECT * FROM recordings WHERE call_id = ? ORDER BY id", [call_id]))


def save_recording(db: Database, call_id: int, key: str, **values: Any) -> None:
    db["recordings"].insert({"call_id": call_id, "recording_key": key, "created_at": utcnow(), **values},
                            replace=True)


def get_transcript(db: Database, call_id: int) -> dict | None:
    rows = list(db.query("SELECT * FROM transcripts WHERE call_id = ? ORDER BY id DESC LIMIT 1", [call_id]))
    if not rows:
        return None
    row = dict(rows[0])
    row["utterances"] = json.loads(row["utterances"])
    return row


def save_transcript(db: Database, call_id: int, engine: str, model: str, language: str,
                    utterances: Iterable[dict], audio_s: float, cpu_s: float) -> None:
    db["transcripts"].insert({"call_id": call_id, "engine": engine, "model": model, "language": language,
                              "utterances": json.dumps(list(utterances), ensure_ascii=False),
                              "audio_s": audio_s, "cpu_s": cpu_s, "created_at": utcnow()}, replace=True)


def get_analysis(db: Database, call_id: int, rules_version: str | None = None) -> dict | None:
    """The analysis for a rules version, or the call's current one."""
    if rules_version:
        rows = list(db.query("SELECT * FROM analyses WHERE call_id = ? AND rules_version = ?", [call_id, rules_version]))
    else:
        rows = list(db.query("SELECT a.* FROM analyses a JOIN calls c ON c.current_analysis_id = a.id"
                             " WHERE c.id = ?", [call_id]))
    return json.loads(rows[0]["analysis"]) if rows else None


def save_analysis(db: Database, call_id: int, rules_version: str, analysis: dict) -> int:
    """Store an analysis (one per rules version) and make it the call's current one."""
    with transaction(db):
        db.execute("INSERT OR REPLACE INTO analyses (call_id, rules_version, analysis, created_at) VALUES (?,?,?,?)",
                   [call_id, rules_version, json.dumps(analysis, ensure_ascii=False), utcnow()])
        aid = db.execute("SELECT id FROM analyses WHERE call_id = ? AND rules_version = ?",
                         [call_id, rules_version]).fetchone()[0]
        db.execute("UPDATE calls SET current_analysis_id = ? WHERE id = ?", [aid, call_id])
    return aid
