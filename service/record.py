"""The canonical call record (providers.md §2.1): creation and merging of partial updates."""
from __future__ import annotations

import hashlib
from typing import Any

from integrations.calltracking.base import CallUpdate

FINAL_STATUSES = ("answered", "missed", "busy", "failed", "voicemail")


def new_record(provider: str, tenant: str, provider_call_id: str) -> dict[str, Any]:
    """An empty record for a call we have just heard of."""
    return {
        "provider": provider, "tenant_id": tenant, "provider_call_id": provider_call_id,
        "provider_aux_ids": {}, "direction": "unknown", "client_phone": None, "client_phone_raw": None,
        "tracking_number": None, "operator": None, "started_at": None, "answered_at": None, "ended_at": None,
        "wait_seconds": None, "talk_seconds": 0, "total_seconds": None, "status": "unknown", "status_raw": None,
        "recordings": [], "attribution": {}, "crm": {}, "finished": False, "signature_verified": None,
    }


def recording_key(rec: dict[str, Any]) -> str:
    """Dedupe key of a recording: its provider id, else a hash of its URL."""
    if rec.get("provider_recording_id"):
        return str(rec["provider_recording_id"])
    return "url:" + hashlib.sha256(str(rec.get("url") or "").encode()).hexdigest()[:16]


def _merge_dict(old: dict | None, new: dict | None) -> dict:
    out = dict(old or {})
    for k, v in (new or {}).items():
        if isinstance(v, dict):
            out[k] = _merge_dict(out.get(k), v)
        elif v not in (None, "", [], {}):
            out[k] = v
    return out


def _merge_recordings(old: list[dict], new: list[dict]) -> list[dict]:
    by_key = {recording_key(r): dict(r) for r in old}
    order = [recording_key(r) for r in old]
    for rec in new:
        key = recording_key(rec)
        if key in by_key:
            merged = by_key[key]
            for k, v in rec.items():
                if k == "state" and v == "pending" and merged.get("state") in ("available", "absent"):
                    continue  # a late "pending" never undoes a known outcome
                if v not in (None, "", [], {}):
                    merged[k] = v
        else:
            by_key[key] = dict(rec)
            order.append(key)
    return [by_key[k] for k in order]


def apply_update(record: dict[str, Any], update: CallUpdate, *, signature_verified: bool | None) -> dict[str, Any]:
    """Merge one event into the record: non-empty wins, a final status beats 'unknown'."""
    out = dict(record)
    for key, value in update.fields.items():
        if key in ("attribution", "crm", "provider_aux_ids", "operator"):
            out[key] = _merge_dict(out.get(key), value) or (out.get(key) if key != "operator" else None)
        elif key == "status":
            if value in FINAL_STATUSES or out.get("status") in (None, "unknown"):
                out["status"] = value
        elif key == "talk_seconds":
            if value is not None and (value > 0 or not out.get("talk_seconds")):
                out[key] = value
        elif value not in (None, "", [], {}):
            out[key] = value
    out["recordings"] = _merge_recordings(out.get("recordings") or [], update.recordings)
    out["finished"] = bool(out.get("finished") or update.finished)
    if signature_verified is not None:
        out["signature_verified"] = bool(signature_verified and out.get("signature_verified") is not False)
    return out


def is_ready(record: dict[str, Any]) -> bool:
    """The call is over, so processing may start (recordings may still be fetched later)."""
    return bool(record.get("finished"))
