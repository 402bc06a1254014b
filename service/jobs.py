"""Job entry points: claim a call, run the pipeline, apply the retry policy, recover lost jobs."""
from __future__ import annotations

import logging
import os
import socket
import threading
import time

from integrations.base import PermanentError, TransientError
from service import pipeline, storage
from service.crm_stage import Parked
from service.retry import next_delay

log = logging.getLogger("calltag.jobs")
MAX_TRANSIENT_ATTEMPTS = 8


def worker_id() -> str:
    """host:pid:thread, stored as the lease owner."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


def run_call_job(rt, call_id: int) -> str:
    """Process one call if no live worker owns it; returns the final state (or 'skipped')."""
    db = rt.db()
    owner = worker_id()
    if not storage.claim_call(db, call_id, owner, rt.settings["JOB_LEASE_S"]):
        return "skipped"
    call_key = storage.get_call(db, call_id)["call_key"]
    try:
        pipeline.run(rt, db, call_id)
    except pipeline.RetryLater as err:
        _retry(rt, db, call_id, owner, err.reason, err.delay_s)
        return "waiting"
    except Parked as err:
        storage.release_call(db, call_id, owner, "parked", str(err))
        log.warning("call %s parked: CRM needs re-authorisation", call_key)
        return "parked"
    except TransientError as err:
        attempts = _bump_attempts(db, call_id)
        if attempts >= MAX_TRANSIENT_ATTEMPTS:
            storage.release_call(db, call_id, owner, "failed", f"gave up after {attempts} attempts: {err}")
            return "failed"
        _retry(rt, db, call_id, owner, str(err), next_delay(attempts, err.retry_after_s))
        return "waiting"
    except PermanentError as err:
        storage.release_call(db, call_id, owner, "failed", str(err))
        log.warning("call %s failed: %s", call_key, err)
        return "failed"
    except Exception as err:  # noqa: BLE001 - a bug must not leave the call leased forever
        log.exception("call %s: internal error", call_key)
        storage.release_call(db, call_id, owner, "failed", f"internal error: {type(err).__name__}")
        return "failed"
    storage.release_call(db, call_id, owner, "done")
    log.info("call %s done", call_key)
    return "done"


def _bump_attempts(db, call_id: int) -> int:
    db.execute("UPDATE calls SET attempts = coalesce(attempts, 0) + 1 WHERE id = ?", [call_id])
    return db.execute("SELECT attempts FROM calls WHERE id = ?", [call_id]).fetchone()[0]


def _retry(rt, db, call_id: int, owner: str, reason: str, delay_s: float) -> None:
    storage.release_call(db, call_id, owner, "waiting", reason, next_try_at=time.time() + delay_s)
    rt.queue.enqueue_call(call_id, delay_s)
    log.info("call %s: retry in %.0fs (%s)", call_id, delay_s, reason)


def _owner_dead(owner: str | None) -> bool:
    """True when the lease owner was a process on this host that no longer exists."""
    if not owner:
        return True
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def recover_stalled(rt) -> list[int]:
    """Re-enqueue calls whose worker died or whose queued job was lost; returns their ids."""
    db = rt.db()
    now = time.time()
    ids = set(storage.stalled_calls(db, now, receiving_s=rt.settings["RECEIVING_TIMEOUT_H"] * 3600))
    for row in db.query("SELECT id, lease_owner FROM calls WHERE state = 'processing'"):
        if _owner_dead(row["lease_owner"]):
            ids.add(row["id"])
    recovered = []
    for call_id in sorted(ids):
        cur = db.execute("UPDATE calls SET state = 'queued', lease_owner = NULL, lease_until = NULL,"
                         " enqueued_at = ? WHERE id = ? AND state IN ('processing', 'queued', 'waiting', 'receiving')",
                         [now, call_id])
        if cur.rowcount:
            rt.queue.enqueue_call(call_id)
            recovered.append(call_id)
    if recovered:
        log.info("recovered %d stalled call(s)", len(recovered))
    return recovered


def resume_parked(db, tenant: str) -> int:
    """Make a tenant's parked calls (CRM re-authorisation) due again; the recovery task enqueues them."""
    cur = db.execute("UPDATE calls SET state = 'queued', enqueued_at = 0 WHERE tenant = ? AND state = 'parked'",
                     [tenant])
    return cur.rowcount
