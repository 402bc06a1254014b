"""Zadarma (and Novofon 1.0, the legacy Zadarma-based Novofon): NOTIFY_* webhooks and pbx/record/request.

Zadarma POSTs form fields and puts ``Signature = base64(hex(HMAC-SHA1(api_secret, S)))`` in a header,
where S is a concatenation of 2-3 fields that depends on the event (providers.md §1.4). Only those
fields are authenticated. The URL check is a ``?zd_echo=X`` request answered with exactly ``X``.
Recordings: NOTIFY_RECORD names ``call_id_with_rec``; the audio link is requested from
``GET /v1/pbx/record/request/`` (API-key signed) at download time, because links expire.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import urllib.parse
from typing import Any, Mapping

from integrations.base import (InvalidSignatureError, PayloadError, PermanentError, Setting,
                               TransientError, request)
from integrations.calltracking.base import (CallTracking, CallUpdate, WebhookReply, WebhookRequest, not_ready_hook,
                                            secure_equals)
from integrations.normalize import from_local, iso, to_e164, to_int

# Fields whose concatenation is signed, per event (✅ SDK; NOTIFY_ANSWER 🟡).
SIGNED_FIELDS: dict[str, tuple[str, ...]] = {
    "NOTIFY_START": ("caller_id", "called_did", "call_start"),
    "NOTIFY_INTERNAL": ("caller_id", "called_did", "call_start"),
    "NOTIFY_END": ("caller_id", "called_did", "call_start"),
    "NOTIFY_OUT_START": ("internal", "destination", "call_start"),
    "NOTIFY_OUT_END": ("internal", "destination", "call_start"),
    "NOTIFY_RECORD": ("pbx_call_id", "call_id_with_rec"),
    "NOTIFY_ANSWER": ("caller_id", "destination", "call_start"),
}
_STATUS = {"answered": "answered", "busy": "busy", "no answer": "missed", "cancel": "missed"}
# The API answers these while the record is not in storage yet (❓ exact code unconfirmed).
_NOT_READY_STATUSES: tuple[int, ...] = (400, 404, 409, 425)
RECORD_PATH = "/v1/pbx/record/request/"


def zadarma_signature(secret: str, text: str) -> str:
    """base64 of the *hex* HMAC-SHA1 (PHP hash_hmac's default output), as Zadarma computes it."""
    digest = hmac.new(secret.encode("utf-8"), text.encode("utf-8"), hashlib.sha1).hexdigest()
    return base64.b64encode(digest.encode("ascii")).decode("ascii")


def api_auth_header(key: str, secret: str, method: str, params: Mapping[str, str]) -> tuple[str, str]:
    """(sorted query string, Authorization value) for a Zadarma API call (user-api-v1 Client)."""
    query = urllib.parse.urlencode(sorted(params.items()))
    sign = zadarma_signature(secret, method + query + hashlib.md5(query.encode("utf-8")).hexdigest())
    return query, f"{key}:{sign}"






def _form(req: WebhookRequest) -> dict[str, str]:
    """Form fields (also when the Content-Type is missing), query merged underneath."""
    fields = dict(req.query)
    if req.form:
        fields.update(req.form)
        return fields
    try:
        text = req.body.decode("utf-8")
    except UnicodeDecodeError:
        return fields
    if text and "=" in text and not text.lstrip().startswith("{"):
        fields.update(urllib.parse.parse_qsl(text, keep_blank_values=True))
    return fields


class Zadarma(CallTracking):
    """Zadarma PBX notifications (NOTIFY_END / NOTIFY_OUT_END + NOTIFY_RECORD joined on pbx_call_id)."""

    name = "zadarma"
    docs_url = "https://zadarma.com/en/support/api/"
    signs = True
    default_channels = None  # Zadarma does not document stereo: the core probes the file
    default_base_url = "https://api.zadarma.com"
    settings = {
        "api_key": Setting(required=True, secret=True, help="API key (Settings → API); signs our API calls"),
        "api_secret": Setting(required=True, secret=True, help="API secret: verifies webhook Signature, signs API calls"),
        "base_url": Setting(default="https://api.zadarma.com", help="API base URL"),
        "timezone": Setting(default=None, help="Time zone of call_start (❓ account zone); empty = tenant's"),
        "link_lifetime_s": Setting(default=1800, help="Lifetime asked for recording links (180..5184000 s)"),
        "channels": Setting(default=None, help="Stereo layout, e.g. [operator, client]; empty = probe"),
    }

    def __init__(self, config=None, http=None, *, tenant=None):
        config = dict(config or {})
        if not config.get("base_url"):
            config["base_url"] = self.default_base_url
        super().__init__(config, http, tenant=tenant)

    @property
    def call_timezone(self) -> str:
        return self.config.get("timezone") or self.timezone

    # -- webhook side ------------------------------------------------------------------------

    def handshake(self, req: WebhookRequest) -> WebhookReply | None:
        """URL check: ``?zd_echo=X`` must be answered with exactly X as plain text."""
        if "zd_echo" in req.query:
            return WebhookReply(200, req.query["zd_echo"], "text/plain; charset=utf-8")
        return None

    def verify(self, req: WebhookRequest) -> None:
        form = _form(req)
        event = form.get("event")
        if not event:
            raise PayloadError("zadarma: no `event` field", ["event: required"], status=400)
        fields = SIGNED_FIELDS.get(event)
        if fields is None:
            return  # IVR / speech / SMS events: not used, parse() ignores them and nothing is stored
        given = req.headers.get("Signature")
        if not given:
            raise InvalidSignatureError("zadarma: Signature header missing")
        expected = zadarma_signature(str(self.config["api_secret"]), "".join(form.get(k, "") for k in fields))
        if not secure_equals(expected, given.strip()):
            raise InvalidSignatureError("zadarma: bad Signature")

    def parse(self, req: WebhookRequest) -> list[CallUpdate]:
        form = _form(req)
        event = form.get("event")
        if event in ("NOTIFY_END", "NOTIFY_OUT_END"):
            return [self._end(form, outbound=event == "NOTIFY_OUT_END")]
        if event == "NOTIFY_RECORD":
            return [self._record(form)]
        return []  # START / INTERNAL / ANSWER / OUT_START / IVR …: progress only

    def _call_id(self, form: Mapping[str, str]) -> str:
        call_id = (form.get("pbx_call_id") or "").strip()
        if not call_id:
            raise PayloadError("zadarma: pbx_call_id missing", ["pbx_call_id: required"], status=422)
        return call_id

    def _end(self, form: Mapping[str, str], *, outbound: bool) -> CallUpdate:
        call_id = self._call_id(form)
        client_raw = form.get("destination") if outbound else form.get("caller_id")
        tracking_raw = form.get("caller_id") if outbound else form.get("called_did")
        disposition = (form.get("disposition") or "").strip().lower()
        status = _STATUS.get(disposition, "failed" if disposition else "unknown")
        try:
            started = from_local(form.get("call_start"), self.call_timezone)
        except (OverflowError, ValueError):
            started = None
        duration = to_int(form.get("duration"))
        duration = duration if duration is not None and 0 <= duration < 10**7 else None
        talk = (duration or 0) if status == "answered" else 0  # `duration` = talk time (❓ vs total)
        fields: dict[str, Any] = {
            "direction": "outbound" if outbound else "inbound",
            "client_phone_raw": client_raw or None,
            "client_phone": to_e164(client_raw, self.region),
            "tracking_number": to_e164(tracking_raw, self.region),
            "operator": {"extension": form["internal"]} if form.get("internal") else None,
            "started_at": iso(started),
            "talk_seconds": talk,
            "status": status,
            "status_raw": disposition + (f";status_code={form['status_code']}" if form.get("status_code") else ""),
        }
        aux = {"call_id_with_rec": form.get("call_id_with_rec"), "is_recorded": form.get("is_recorded")}
        fields["provider_aux_ids"] = {k: v for k, v in aux.items() if v}
        recordings = []
        if form.get("is_recorded") == "0":
            # The event says the call was not recorded: store that, so nobody waits for audio.
            recordings.append({"provider_recording_id": f"{call_id}:not-recorded", "state": "absent",
                               "fetch": None, "url": None, "channels": None})
        # is_recorded=1 adds no entry here: NOTIFY_RECORD brings it (state "available"), and enrich()
        # adds a pending one if that event is lost. Emitting "pending" here would downgrade an
        # "available" state when NOTIFY_RECORD arrived first (the core merges non-empty values).
        return CallUpdate(provider_call_id=call_id, event_kind="call_finished", fields=fields,
                          recordings=recordings, event_id="end", finished=True)

    def _record(self, form: Mapping[str, str]) -> CallUpdate:
        call_id = self._call_id(form)
        rec_id = (form.get("call_id_with_rec") or "").strip()
        if not rec_id:
            raise PayloadError("zadarma: call_id_with_rec missing", ["call_id_with_rec: required"], status=422)
        return CallUpdate(provider_call_id=call_id, event_kind="recording_ready",
                          fields={"provider_aux_ids": {"call_id_with_rec": rec_id}},
                          recordings=[self._recording(rec_id, "available")],
                          event_id=f"record:{rec_id}", finished=False)

    def _recording(self, rec_id: str, state: str) -> dict[str, Any]:
        ch = self.config.get("channels") or self.default_channels
        return {"provider_recording_id": rec_id, "state": state, "fetch": "api_call", "url": None,
                "format": "mp3", "channels": list(ch) if ch else None}

    def reply(self, req: WebhookRequest, outcome: Mapping[str, Any]) -> WebhookReply:
        # An empty 200: for NOTIFY_START/IVR a JSON body would be read as call-routing commands.
        return WebhookReply(200, "", "text/plain")

    # -- worker side -------------------------------------------------------------------------

    def expects_recording(self, record: Mapping[str, Any]) -> bool:
        recs = record.get("recordings") or []
        if any(r.get("state") in ("available", "absent") for r in recs):
            return False
        aux = record.get("provider_aux_ids") or {}
        return aux.get("is_recorded") == "1" or bool(aux.get("call_id_with_rec"))

    def enrich(self, record: Mapping[str, Any]) -> CallUpdate | None:
        """If NOTIFY_RECORD was lost, add the recording announced by NOTIFY_END as pending (no HTTP)."""
        aux = record.get("provider_aux_ids") or {}
        rec_id = aux.get("call_id_with_rec")
        if aux.get("is_recorded") != "1" or not rec_id:
            return None
        if any(r.get("provider_recording_id") == rec_id for r in record.get("recordings") or []):
            return None
        return CallUpdate(provider_call_id=record["provider_call_id"], event_kind="call_updated",
                          recordings=[self._recording(rec_id, "pending")], event_id=f"enrich:{rec_id}")

    def resolve_recording(self, call: Mapping[str, Any], recording: Mapping[str, Any]) -> tuple[str, dict]:
        """Ask pbx/record/request for a fresh link (they expire); never reuse a stored one."""
        rec_id = recording.get("provider_recording_id")
        if not rec_id or str(rec_id).endswith(":not-recorded"):
            raise PermanentError("zadarma: no recording id to request")
        lifetime = max(180, min(5184000, to_int(self.config.get("link_lifetime_s")) or 1800))
        params = {"call_id": str(rec_id), "lifetime": str(lifetime), "format": "json"}
        query, auth = api_auth_header(str(self.config["api_key"]), str(self.config["api_secret"]), RECORD_PATH, params)
        what = f"{self.name} pbx/record/request"
        url = str(self.config["base_url"]).rstrip("/") + RECORD_PATH + "?" + query
        resp = request(self.http, "GET", url, what, headers={"Authorization": auth},
                       hooks={"response": not_ready_hook(what, _NOT_READY_STATUSES)})
        try:
            data = resp.json()
        except ValueError as err:
            raise TransientError(f"{what}: answer is not JSON") from err
        if not isinstance(data, dict):
            raise TransientError(f"{what}: unexpected answer")
        if data.get("status") != "success":
            # ❓ the "not found yet" wording is unconfirmed: every API-level error counts as not ready;
            # the core gives up after its retry window.
            raise TransientError(f"{what}: {str(data.get('message') or 'error')[:100]}")
        link = data.get("link") or next(iter(data.get("links") or []), None)
        if not isinstance(link, str) or not link.startswith(("https://", "http://")):
            raise TransientError(f"{what}: no link in the answer yet")
        return link, {}


class Novofon(Zadarma):
    """Novofon 1.0 (legacy): the Zadarma API and NOTIFY_* webhooks on Novofon's host (🟡)."""

    name = "novofon"
    docs_url = "https://novofon.com/instructions/api"
    default_base_url = "https://api.novofon.com"
    settings = {**Zadarma.settings, "base_url": Setting(default="https://api.novofon.com", help="API base URL")}

