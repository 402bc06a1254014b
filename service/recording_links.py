"""Signed, unguessable links to a call's recording for CRM users (amoCRM plays them in the call note)."""
from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path

from flask import Blueprint, abort, current_app, send_file

from integrations.calltracking.base import secure_equals
from service import storage

bp = Blueprint("recordings", __name__)


def _key(settings: dict, config: dict) -> bytes | None:
    secret = settings.get("SECRET_KEY") or config.get("api_token")
    return secret.encode() if secret else None


def link_token(key: bytes, call_id: int, call_key: str) -> str:
    """The HMAC that makes a recording link valid for one call."""
    digest = hmac.new(key, f"recording:{call_id}:{call_key}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")[:32]


def recording_link(settings: dict, config: dict, tenant: dict, call: dict) -> str | None:
    """Absolute signed URL of the call's recording, or None (no public URL, no key or no recording)."""
    base = tenant.get("public_url") or settings.get("PUBLIC_URL")
    key = _key(settings, config)
    if not base or not key:
        return None
    return f"{base.rstrip('/')}/recordings/{call['id']}/{link_token(key, call['id'], call['call_key'])}"


@bp.get("/recordings/<int:call_id>/<token>")
def get_recording(call_id: int, token: str):
    """Serve the first recording of a call to whoever holds the signed link."""
    ext = current_app.extensions["calltag"]
    key = _key(ext["settings"], ext["config"])
    db = ext["runtime"].db()
    call = storage.get_call(db, call_id)
    if key is None or call is None or not secure_equals(token, link_token(key, call_id, call["call_key"])):
        abort(404)
    recs = storage.get_recordings(db, call_id)
    if not recs or not Path(recs[0]["path"]).is_file():
        abort(404)
    return send_file(recs[0]["path"], mimetype=recs[0]["mime"] or "application/octet-stream", conditional=True)
