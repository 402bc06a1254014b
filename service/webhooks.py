"""POST|GET /webhooks/<provider>/<tenant>/<secret>: verify, parse, store, enqueue, answer at once."""
from __future__ import annotations

import json
import logging
import time
from typing import Any

from flask import Blueprint, Response, current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from integrations import REGISTRY, adapter_class
from integrations.base import InvalidSignatureError, NotConfiguredError, PayloadError
from integrations.calltracking.base import (CallTracking, CallUpdate, WebhookReply, WebhookRequest,
                                            body_sha256, secure_equals)
from service import storage
from service.record import apply_update, is_ready, new_record

log = logging.getLogger("calltag.webhooks")
bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")
_KEPT_HEADERS = ("content-type", "user-agent", "x-twilio-signature", "signature", "x-callrail-signature",
                 "signature-timestamp", "x-forwarded-for")


def _json(status: int, payload: dict[str, Any]) -> Response:
    return Response(json.dumps(payload, ensure_ascii=False), status=status, mimetype="application/json")


def _reply(r: WebhookReply) -> Response:
    return Response(r.body, status=r.status, content_type=r.content_type)


@bp.route("/<provider>/<tenant>/<secret>", methods=["GET", "POST"])
@bp.route("/<provider>/<tenant>/<secret>/<path:subpath>", methods=["GET", "POST"])
def receive(provider: str, tenant: str, secret: str, subpath: str = "") -> Response:
    """Take one provider webhook; nothing slow happens here (Mango appends /events/<kind>)."""
    runtime = current_app.extensions["calltag"]["runtime"]
    if provider not in REGISTRY["calltracking"]:
        return _json(404, {"error": "unknown provider"})
    conf = runtime.tenant(tenant)
    secret_ok = any(secure_equals(secret, s) for s in (conf or {}).get("webhook_secrets", ["-" * 16]))
    if conf is None or not secret_ok:
        log.warning("webhook rejected: unknown tenant or wrong URL secret", extra={"provider": provider})
        return _json(401, {"error": "unauthorized"})
    try:
        body = request.get_data(cache=True)
    except RequestEntityTooLarge:
        return _json(413, {"error": "body too large"})
    if len(body) > runtime.settings["MAX_BODY_BYTES"]:
        return _json(413, {"error": "body too large"})
    try:
        adapter = _adapter(provider, conf)
    except NotConfiguredError as err:
        log.error("webhook for %s/%s: adapter not configured: %s", provider, tenant, err)
        return _json(503, {"error": "provider not configured"})
    req = _build_request(conf.get("public_url") or runtime.settings.get("PUBLIC_URL"), body)
    handshake = adapter.handshake(req)
    if handshake is not None:
        return _reply(handshake)
    try:
        adapter.verify(req)
        updates = adapter.parse(req)
    except InvalidSignatureError as err:
        log.warning("webhook %s/%s rejected: %s", provider, tenant, err)
        return _json(401, {"error": "unauthorized"})
    except PayloadError as err:
        log.info("webhook %s/%s rejected (%s): %s", provider, tenant, err.status, "; ".join(err.problems))
        return _json(err.status, {"error": str(err), "problems": err.problems})
    outcome = _store(runtime, provider, tenant, adapter, req, updates)
    return _reply(adapter.reply(req, outcome))


def _adapter(provider: str, conf: dict[str, Any]) -> CallTracking:
    cls = adapter_class("calltracking", provider)
    return cls(conf["providers"].get(provider, {}), tenant=conf)


def _build_request(public_url: str | None, body: bytes) -> WebhookRequest:
    url = request.url
    if public_url:
        url = public_url.rstrip("/") + request.full_path.rstrip("?")
    form: dict[str, str] = {}
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = {k: v for k, v in request.form.items()}
    return WebhookRequest(method=request.method, url=url, headers=request.headers,
                          query={k: v for k, v in request.args.items()}, form=form, body=body,
                          remote_addr=request.remote_addr)


def _store(runtime, provider: str, tenant: str, adapter: CallTracking, req: WebhookRequest,
           updates: list[CallUpdate]) -> dict[str, Any]:
    """Store raw events and merged records, enqueue calls that became ready; never network."""
    if not updates:
        return {"status": "ignored"}
    db = runtime.db()
    headers = {k: v for k, v in req.headers.items() if k.lower() in _KEPT_HEADERS}
    to_enqueue: list[int] = []
    call_ids: list[int] = []
    new_events = 0
    for upd in updates:
        event_key = f"{upd.provider_call_id}:{upd.event_id or body_sha256(req.body)}"
        with storage.transaction(db):
            event_id = storage.record_event(db, tenant=tenant, provider=provider, event_key=event_key,
                                            kind=upd.event_kind, headers=headers, body=req.body)
            if event_id is None:
                continue
            new_events += 1
            key = storage.call_key(provider, tenant, upd.provider_call_id)
            existing = storage.get_call_by_key(db, key)
            record = existing["record"] if existing else new_record(provider, tenant, upd.provider_call_id)
            record = apply_update(record, upd, signature_verified=True if adapter.signs else None)
            call_id = storage.upsert_call(db, key, record)
            storage.link_event(db, event_id, call_id)
            call_ids.append(call_id)
            state = existing["state"] if existing else "receiving"
            if is_ready(record) and state not in ("queued", "processing"):
                storage.set_call_state(db, call_id, "queued", enqueued_at=time.time())
                to_enqueue.append(call_id)
    for call_id in to_enqueue:
        runtime.queue.enqueue_call(call_id)
    if not new_events:
        return {"status": "duplicate"}
    return {"status": "accepted", "call_id": call_ids[0], "call_ids": call_ids}
