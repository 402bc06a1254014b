"""Read API (bearer api_token): GET /calls and GET /calls/<id> as JSON."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify, request

from integrations.calltracking.base import secure_equals
from service import storage

bp = Blueprint("api", __name__)


@bp.before_request
def require_token():
    """Transcripts are personal data: every read needs the configured bearer token."""
    token = current_app.extensions["calltag"]["config"].get("api_token")
    header = request.headers.get("Authorization", "")
    given = header[7:] if header.startswith("Bearer ") else ""
    if not token:
        return jsonify(error="read API disabled: set api_token in the config"), 403
    if not given or not secure_equals(given, token):
        return jsonify(error="unauthorized"), 401, {"WWW-Authenticate": "Bearer"}
    return None


def call_view(db, call: dict[str, Any]) -> dict[str, Any]:
    """The public JSON of one call: record, stage statuses, transcript, analysis."""
    transcript = storage.get_transcript(db, call["id"])
    analysis = storage.get_analysis(db, call["id"])
    record = dict(call["record"])
    # API-fetched links are short-lived and signed: never show them.
    record["recordings"] = [{k: v for k, v in rec.items() if not (k == "url" and rec.get("fetch") == "api_call")}
                            for rec in record.get("recordings") or []]
    return {
        "call": {"id": call["id"], "call_key": call["call_key"], "state": call["state"], "error": call["error"],
                 "created_at": call["created_at"], "updated_at": call["updated_at"], **record,
                 "stages": storage.get_stages(db, call["id"])},
        "transcript": transcript["utterances"] if transcript else [],
        "analysis": analysis,
    }


@bp.get("/calls/<int:call_id>")
def get_call(call_id: int):
    runtime = current_app.extensions["calltag"]["runtime"]
    db = runtime.db()
    call = storage.get_call(db, call_id)
    if call is None:
        return jsonify(error="not found"), 404
    return jsonify(call_view(db, call))


@bp.get("/calls")
def list_calls():
    runtime = current_app.extensions["calltag"]["runtime"]
    try:
        limit = min(max(int(request.args.get("limit", 50)), 1), 500)
        offset = max(int(request.args.get("offset", 0)), 0)
    except ValueError:
        return jsonify(error="limit and offset must be integers"), 400
    db = runtime.db()
    items = [call_view(db, c) for c in storage.list_calls(db, limit, offset, request.args.get("tenant"))]
    return jsonify(items=items, limit=limit, offset=offset, total=storage.count_calls(db))
