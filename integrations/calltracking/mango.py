"""Mango Office VPBX (API-коннектор): signed form webhooks, recordings via queries/recording/post.

Mango POSTs `application/x-www-form-urlencoded` with three fields: `vpbx_api_key`, `sign` and `json`
(a JSON *string*), where ``sign = sha256_hex(vpbx_api_key + json + vpbx_api_salt)`` (providers.md §1.3).
Mango appends an event suffix to the configured URL (``events/summary``, ``events/record/added`` …).
The event is taken from that suffix when the route passes it on, else recognised by the JSON's shape,
so the adapter works whichever way the URL reaches it.
"""
from __future__ import annotations

import hashlib
import json
import urllib.parse
from typing import Any, Mapping

from integrations.base import (InvalidSignatureError, PayloadError, PermanentError, Setting,
                               TransientError, request)
from integrations.calltracking.base import (CallTracking, CallUpdate, WebhookReply, WebhookRequest, not_ready_hook,
                                            secure_equals)
from integrations.normalize import from_unix, iso, to_e164, to_int

_DIRECTIONS = {0: "internal", 1: "inbound", 2: "outbound"}
# The Mango API answers these while a recording is not (yet) in cloud storage. ❓ unconfirmed codes:
# 404 is what an absent object most likely gives; 409/425 are harmless to include.
_NOT_READY_STATUSES: tuple[int, ...] = (404, 409, 425)




def mango_sign(api_key: str, payload_json: str, salt: str) -> str:
    """Mango's signature: lowercase hex SHA-256 over key + json + salt."""
    return hashlib.sha256((api_key + payload_json + salt).encode("utf-8")).hexdigest()




def _ts(value: int | None) -> str | None:
    """Unix seconds to ISO UTC, None for absent or absurd values."""
    if not value:
        return None
    try:
        return iso(from_unix(value))
    except (OverflowError, OSError, ValueError):
        return None


def _form(req: WebhookRequest) -> dict[str, str]:
    """The form fields, also when the sender forgot the Content-Type."""
    if req.form:
        return dict(req.form)
    try:
        text = req.body.decode("utf-8")
    except UnicodeDecodeError:
        return {}
    if not text or text.lstrip().startswith("{"):
        return {}
    return dict(urllib.parse.parse_qsl(text, keep_blank_values=True))


def _event_suffix(req: WebhookRequest) -> str | None:
    """`summary`, `record/added`, `recording`, `call`, … from the URL path, when present."""
    path = urllib.parse.urlsplit(req.url).path.rstrip("/")
    marker = "/events/"
    if marker in path:
        return path.split(marker, 1)[1]
    if path.endswith("/ping"):
        return "ping"
    return None


class Mango(CallTracking):
    """Mango Office VPBX webhooks (summary + record/added joined on entry_id)."""

    name = "mango"
    docs_url = "https://www.mango-office.ru/support/api/"
    signs = True
    # Reported stereo only with "Речевая аналитика" (🟡, one secondary source): unknown by default,
    # so the core probes the file; a tenant may set `channels: [operator, client]`.
    default_channels = None
    settings = {
        "api_key": Setting(required=True, secret=True, help="VPBX unique code (vpbx_api_key) from the API connector page"),
        "api_salt": Setting(required=True, secret=True, help="VPBX signing key (salt) from the API connector page"),
        "base_url": Setting(default="https://app.mango-office.ru/vpbx", help="Mango VPBX API base URL"),
        "channels": Setting(default=None, help="Stereo layout of recordings, e.g. [operator, client]; empty = probe"),
        "record_calls": Setting(default=True, help="False when the account does not record calls (no waiting)"),
    }

    # -- webhook side ------------------------------------------------------------------------

    def handshake(self, req: WebhookRequest) -> WebhookReply | None:
        """The "check connection" button (and `ping`) send no `json`: answer 200, store nothing."""
        form = _form(req)
        if "json" not in form and "sign" not in form:
            return WebhookReply(200, "", "text/plain")
        return None

    def verify(self, req: WebhookRequest) -> None:
        form = _form(req)
        key, sign, payload = form.get("vpbx_api_key"), form.get("sign"), form.get("json")
        if not key or not sign or payload is None:
            raise InvalidSignatureError("mango: vpbx_api_key, sign or json missing")
        if not secure_equals(key, str(self.config["api_key"])):
            raise InvalidSignatureError("mango: vpbx_api_key does not match this tenant")
        expected = mango_sign(str(self.config["api_key"]), payload, str(self.config["api_salt"]))
        if not secure_equals(expected, sign.strip().lower()):
            raise InvalidSignatureError("mango: bad sign")

    def parse(self, req: WebhookRequest) -> list[CallUpdate]:
        form = _form(req)
        try:
            data = json.loads(form.get("json", ""))
        except ValueError as err:
            raise PayloadError("mango: `json` is not valid JSON", status=400) from err
        if not isinstance(data, dict):
            raise PayloadError("mango: `json` must be an object", status=422)
        kind = self._kind(req, data)
        if kind == "summary":
            return [self._summary(data)]
        if kind == "record/added":
            return [self._record_added(data)]
        # events/call, events/recording, dtmf, sms, ping, result/*: progress only, nothing to store.
        return []

    @staticmethod
    def _kind(req: WebhookRequest, data: Mapping[str, Any]) -> str:
        suffix = _event_suffix(req)
        if suffix:
            return suffix
        if "recording_state" in data:
            return "recording"
        if "recording_id" in data:
            return "record/added"
        if "call_state" in data:
            return "call"
        if "entry_result" in data or ("end_time" in data and "create_time" in data):
            return "summary"
        return "unknown"

    def _entry_id(self, data: Mapping[str, Any]) -> str:
        entry = data.get("entry_id")
        if not isinstance(entry, (str, int)) or isinstance(entry, bool) or not str(entry).strip():
            raise PayloadError("mango: entry_id missing", ["entry_id: required"], status=422)
        return str(entry).strip()

    def _summary(self, data: Mapping[str, Any]) -> CallUpdate:
        entry = self._entry_id(data)
        problems = []
        for key in ("from", "to"):
            if data.get(key) is not None and not isinstance(data.get(key), dict):
                problems.append(f"{key}: object expected")
        if problems:
            raise PayloadError("mango: invalid summary", problems, status=422)
        src, dst = data.get("from") or {}, data.get("to") or {}
        direction = _DIRECTIONS.get(to_int(data.get("call_direction")), "unknown")
        if direction == "inbound":
            client_raw, ext = src.get("number"), dst.get("extension")
        elif direction == "outbound":
            client_raw, ext = dst.get("number"), src.get("extension")
        else:
            client_raw, ext = None, src.get("extension") or dst.get("extension")
        created, talk, ended = (to_int(data.get(k)) for k in ("create_time", "talk_time", "end_time"))
        result = to_int(data.get("entry_result"))
        # entry_result: 1 = answered, anything else = missed (🟡; one public note says the opposite).
        answered = result == 1
        fields: dict[str, Any] = {
            "direction": direction,
            "client_phone_raw": None if client_raw in (None, "") else str(client_raw),
            "client_phone": to_e164(client_raw, self.region) if direction != "internal" else None,
            "tracking_number": to_e164(data.get("line_number"), self.region),
            "operator": {"extension": str(ext)} if ext not in (None, "") else None,
            "started_at": _ts(created),
            "ended_at": _ts(ended),
            "status": "answered" if answered else ("missed" if result is not None else "unknown"),
            "status_raw": f"entry_result={data.get('entry_result')};disconnect_reason={data.get('disconnect_reason')}",
        }
        if created and ended and ended >= created:
            fields["total_seconds"] = ended - created
        if answered and talk and created and talk >= created:
            fields["answered_at"] = _ts(talk)
            fields["wait_seconds"] = talk - created
            fields["talk_seconds"] = max(0, (ended or talk) - talk)
        else:
            fields["talk_seconds"] = 0
            if created and ended and ended >= created:
                fields["wait_seconds"] = ended - created  # the caller waited until the call ended
        aux = {"sip_call_id": data.get("sip_call_id"), "disconnect_reason": data.get("disconnect_reason")}
        fields["provider_aux_ids"] = {k: str(v) for k, v in aux.items() if v not in (None, "")}
        return CallUpdate(provider_call_id=entry, event_kind="call_finished", fields=fields,
                          event_id="summary", finished=True)

    def _record_added(self, data: Mapping[str, Any]) -> CallUpdate:
        entry = self._entry_id(data)
        rec_id = data.get("recording_id")
        if not isinstance(rec_id, (str, int)) or isinstance(rec_id, bool) or not str(rec_id).strip():
            raise PayloadError("mango: recording_id missing", ["recording_id: required"], status=422)
        fields: dict[str, Any] = {}
        if data.get("user_id") not in (None, ""):
            fields["operator"] = {"provider_id": str(data["user_id"])}
        if data.get("product_id") not in (None, ""):
            fields["provider_aux_ids"] = {"product_id": str(data["product_id"])}
        recording = {"provider_recording_id": str(rec_id).strip(), "state": "available", "fetch": "api_call",
                     "url": None, "format": "mp3", "channels": self._channels()}
        return CallUpdate(provider_call_id=entry, event_kind="recording_ready", fields=fields,
                          recordings=[recording], event_id=f"record:{str(rec_id).strip()}", finished=False)

    def _channels(self) -> list[str] | None:
        ch = self.config.get("channels") or self.default_channels
        return list(ch) if ch else None

    def reply(self, req: WebhookRequest, outcome: Mapping[str, Any]) -> WebhookReply:
        # Mango only needs a 2xx (❓ retry policy unconfirmed); a 202 could be read as an error by strict senders.
        return WebhookReply(200, "", "text/plain")

    # -- worker side -------------------------------------------------------------------------

    def expects_recording(self, record: Mapping[str, Any]) -> bool:
        """A `record/added` may still come for an answered call that has no recording yet."""
        if not self.config.get("record_calls", True):
            return False
        if record.get("status") not in ("answered", "unknown"):
            return False
        return not any(r.get("state") == "available" for r in record.get("recordings") or [])

    def resolve_recording(self, call: Mapping[str, Any], recording: Mapping[str, Any]) -> tuple[str, dict]:
        """POST queries/recording/post (signed) → 302 to a one-time temporary link, asked for fresh each time."""
        rec_id = recording.get("provider_recording_id")
        if not rec_id:
            raise PermanentError("mango: recording without recording_id")
        payload = json.dumps({"recording_id": str(rec_id), "action": "download"}, separators=(",", ":"))
        key, salt = str(self.config["api_key"]), str(self.config["api_salt"])
        form = {"vpbx_api_key": key, "sign": mango_sign(key, payload, salt), "json": payload}
        what = "mango recording/post"
        url = str(self.config["base_url"]).rstrip("/") + "/queries/recording/post"
        resp = request(self.http, "POST", url, what, data=form, allow_redirects=False,
                       hooks={"response": not_ready_hook(what, _NOT_READY_STATUSES)})
        location = resp.headers.get("Location")
        if resp.is_redirect and location:
            return urllib.parse.urljoin(url, location), {}
        ctype = resp.headers.get("Content-Type", "")
        if resp.status_code == 200 and ctype.startswith("application/json"):
            # ❓ Mango answers JSON with a `result` code instead of a redirect when it has no link to give.
            raise TransientError(f"{what}: no link yet (result {_result_code(resp)})")
        raise TransientError(f"{what}: unexpected answer HTTP {resp.status_code} without a link")


def _result_code(resp) -> str:
    try:
        return str(resp.json().get("result"))
    except (ValueError, AttributeError):
        return "?"

