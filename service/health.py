"""GET /healthz (no auth): database, queue, speech model and rules status."""
from __future__ import annotations

import time

from flask import Blueprint, current_app, jsonify

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """200 when the DB and queue answer and the model is present; 503 otherwise."""
    runtime = current_app.extensions["calltag"]["runtime"]
    checks: dict = {}
    ok = True
    try:
        db = runtime.db()
        db.execute("SELECT 1").fetchone()
        oldest = db.execute("SELECT min(enqueued_at) FROM calls WHERE state = 'queued'").fetchone()[0]
        checks["db"] = {"ok": True, "oldest_queued_s": round(time.time() - oldest, 1) if oldest else None}
    except Exception as err:  # noqa: BLE001 - any DB failure is a failed check
        ok = False
        checks["db"] = {"ok": False, "error": type(err).__name__}
    queue_ok = runtime.queue.reachable()
    checks["queue"] = {"ok": queue_ok}
    ok = ok and queue_ok
    from service.speech import model_status
    checks["model"] = model_status(runtime.settings)
    ok = ok and checks["model"]["ok"]
    rules = runtime.rules
    version = rules.current().version
    checks["rules"] = {"ok": rules.error is None, "version": version, "error": rules.error}
    checks["crm"] = _crm_status(runtime)
    return jsonify(status="ok" if ok else "fail", checks=checks), 200 if ok else 503


def _crm_status(runtime) -> dict:
    from service.crm_store import CrmStore
    try:
        pending = CrmStore(runtime.db(), runtime.settings.get("SECRET_KEY") or "").accounts_needing_reauth()
    except Exception as err:  # noqa: BLE001 - health must answer
        return {"ok": False, "error": type(err).__name__}
    return {"ok": not pending, "reauth_needed": pending}
