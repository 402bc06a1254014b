"""UIS / CoMagic / CallGear (one platform): template-rendered event notifications + Data API.

The notification body is whatever the tenant wrote as the template (providers.md §1.2, §3.2):
JSON with ``{{variable}}`` placeholders in every known example. We also accept form or query
parameters, values rendered as strings, and the grouped shape (``contact_info{…}``,
``employee_info{…}``, ``call_record_file_info{…}``). There is no signature: the URL secret is the
authentication, plus an optional ``body_secret`` that the template may carry.

Which notification it is (❓ ``notification_mnemonic`` values unconfirmed) is decided by, in order:
an ``event`` query parameter we tell tenants to append (``?event=finished|lost|record``), the
mnemonic, then the body's shape (``file_link`` → record; ``is_lost`` → lost; durations → finished),
then the notification name.
"""
from __future__ import annotations

import json
import re
import urllib.parse
from datetime import datetime, timedelta
from typing import Any, Mapping
from zoneinfo import ZoneInfo

from integrations.base import (InvalidSignatureError, PayloadError, PermanentError, Setting,
                               TransientError, request)
from integrations.calltracking.base import (CallTracking, CallUpdate, WebhookReply, WebhookRequest,
                                            secure_equals)
from integrations.normalize import from_local, iso, to_e164, to_count, to_int

_GROUPS = ("contact_info", "employee_info", "call_record_file_info", "call_info", "virtual_phone_info")
_TRUE = {"true", "1", "yes", "t"}
_FINISH_KEYS = ("talk_time_duration", "total_time_duration", "wait_time_duration", "finish_time", "finish_reason")
_MEDIA_RE = re.compile(r"/system/media/talk/(?P<session>[^/]+)/(?P<hash>[^/?#]+)")
# Data API (get.calls_report) / notification variable -> canonical attribution key.
_ATTRIBUTION = {
    "utm_source": "source", "utm_medium": "medium", "utm_campaign": "campaign", "utm_content": "content",
    "utm_term": "term", "search_query": "keyword", "referrer": "referrer", "entrance_page": "landing_page",
    "communication_page_url": "call_page", "site_domain_name": "site", "ua_client_id": "ga_client_id",
    "ym_client_id": "ym_client_id", "gclid": "gclid", "yclid": "yclid", "visitor_session_id": "session_id",
    "visitor_id": "visitor_id",
}
_ATTRIBUTION_EXTRA = ("campaign_name", "campaign_id", "channel", "source", "search_engine", "referrer_domain",
                      "visitor_country", "visitor_city", "visitor_region", "visitor_device", "visitor_type",
                      "ymclid", "ef_id", "site_id", "tag_names")
_REPORT_FIELDS = ["id", "start_time", "finish_time", "direction", "is_lost", "wait_duration", "talk_duration",
                  "total_duration", "contact_phone_number", "virtual_phone_number", "last_answered_employee_id",
                  "last_answered_employee_full_name", "call_records", "communication_id", *_ATTRIBUTION,
                  "campaign_name", "search_engine", "visitor_country", "visitor_city", "visitor_device"]


def _flatten(data: Mapping[str, Any]) -> dict[str, Any]:
    """Top-level variables, with grouped objects (contact_info{…}) lifted up (top level wins)."""
    out = {k: v for k, v in data.items() if k not in _GROUPS}
    for group in _GROUPS:
        inner = data.get(group)
        if isinstance(inner, dict):
            for k, v in inner.items():
                out.setdefault(k, v)
    if "call_record_duration" in out:
        out.setdefault("file_duration", out["call_record_duration"])
    return out


def _text(value: Any) -> str | None:
    """A scalar as stripped text; None for empty, null-ish or structured values."""
    if value is None or isinstance(value, (dict, list)):
        return None
    s = str(value).strip()
    return None if s in ("", "null", "None") or s.startswith("{{") else s


def _int(value: Any) -> int | None:
    return to_count(_text(value))


def _truthy(value: Any) -> bool:
    return _text(value) is not None and str(value).strip().lower() in _TRUE


class Uis(CallTracking):
    """UIS (uiscom.ru) notifications; Comagic / Callgear only change the hosts."""

    name = "uis"
    docs_url = "https://www.uiscom.ru/academiya/spravochnyj-centr/uvedomleniya/uvedomleniya-o-sobytiyakh/"
    signs = False
    default_channels = None  # unknown (wav_call_records exist 🟡): the core probes the file
    default_api_url = "https://dataapi.uiscom.ru/v2.0"
    default_media_url = "https://app.uiscom.ru"
    settings = {
        "access_token": Setting(secret=True, help="Data API access token (optional: attribution, missing recordings)"),
        "base_url": Setting(default=None, help="Data API URL (JSON-RPC)"),
        "media_url": Setting(default=None, help="Host of recording links /system/media/talk/{session}/{hash}/"),
        "body_secret": Setting(secret=True, help="Optional: a value the template sends in `secret_field`"),
        "secret_field": Setting(default="secret", help="Body field holding body_secret"),
        "timezone": Setting(default=None, help="Account time zone (get.account.timezone); empty = tenant's"),
        "channels": Setting(default=None, help="Stereo layout, e.g. [operator, client]; empty = probe"),
        "record_calls": Setting(default=True, help="False when talks are not recorded (no waiting)"),
    }

    def __init__(self, config=None, http=None, *, tenant=None):
        config = dict(config or {})
        config["base_url"] = config.get("base_url") or self.default_api_url
        config["media_url"] = config.get("media_url") or self.default_media_url
        super().__init__(config, http, tenant=tenant)

    @property
    def call_timezone(self) -> str:
        return self.config.get("timezone") or self.timezone

    # -- webhook side ------------------------------------------------------------------------

    def _data(self, req: WebhookRequest) -> dict[str, Any]:
        ctype = (req.headers.get("Content-Type") or "").lower()
        if req.form and "json" not in ctype:
            data: Any = dict(req.form)
        elif req.body.strip():
            data = req.json()
        elif req.method == "GET":
            data = {k: v for k, v in req.query.items() if k != "event"}  # ❓ GET delivery
        else:
            raise PayloadError("uis: empty body", status=400)
        if not isinstance(data, dict):
            raise PayloadError("uis: the notification must be a JSON object", status=422)
        return _flatten(data)

    def verify(self, req: WebhookRequest) -> None:
        expected = self.config.get("body_secret")
        if not expected:
            return  # the URL secret (checked by the route) is the only authentication UIS allows
        try:
            data = self._data(req)
        except PayloadError as err:
            raise InvalidSignatureError("uis: body secret missing") from err
        given = _text(data.get(str(self.config.get("secret_field") or "secret")))
        if not given or not secure_equals(given, str(expected)):
            raise InvalidSignatureError("uis: body secret missing or wrong")

    def parse(self, req: WebhookRequest) -> list[CallUpdate]:
        data = self._data(req)
        kind = self._kind(req, data)
        if kind is None:
            return []  # call start / talk start / other notifications: nothing to keep
        session = _text(data.get("call_session_id"))
        if not session:
            raise PayloadError("uis: call_session_id missing (add {{call_session_id}} to the template)",
                               ["call_session_id: required"], status=422)
        if kind == "record":
            return [self._record(session, data)]
        return [self._finished(session, data, lost=kind == "lost")]

    @staticmethod
    def _kind(req: WebhookRequest, data: Mapping[str, Any]) -> str | None:
        explicit = (req.query.get("event") or "").strip().lower()
        aliases = {"finished": "finished", "call_finished": "finished", "end": "finished", "lost": "lost",
                   "lost_call": "lost", "record": "record", "recorded": "record", "recording": "record"}
        if explicit in aliases:
            return aliases[explicit]
        mnemonic = (_text(data.get("notification_mnemonic")) or "").lower()  # ❓ values unconfirmed
        for needle, kind in (("record", "record"), ("lost", "lost"), ("finish", "finished"), ("end", "finished")):
            if needle in mnemonic:
                return kind
        if _text(data.get("file_link")):
            return "record"
        if _text(data.get("is_lost")) is not None and _truthy(data.get("is_lost")):
            return "lost"
        if any(_text(data.get(k)) is not None for k in _FINISH_KEYS):
            return "finished"
        name = (_text(data.get("notification_name")) or "").lower()
        for needle, kind in (("запис", "record"), ("record", "record"), ("потерян", "lost"), ("lost", "lost"),
                             ("заверш", "finished"), ("finish", "finished"), ("ended", "finished")):
            if needle in name:
                return kind
        return None

    def _time(self, value: Any) -> datetime | None:
        try:
            return from_local(_text(value), self.call_timezone)
        except (OverflowError, ValueError):
            return None

    def _common(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """Fields every notification may carry: phones, operator, ids, attribution."""
        fields: dict[str, Any] = {}
        phone = _text(data.get("contact_phone_number"))
        if phone:
            fields["client_phone_raw"] = phone
            fields["client_phone"] = to_e164(phone, self.region)
        tracking = _text(data.get("virtual_phone_number"))
        if tracking:
            fields["tracking_number"] = to_e164(tracking, self.region)
        operator = {"provider_id": _text(data.get("employee_id")), "name": _text(data.get("employee_full_name")),
                    "email": _text(data.get("employee_email")),
                    "phone": to_e164(_text(data.get("employee_phone_number")), self.region)}
        operator = {k: v for k, v in operator.items() if v}
        if operator:
            fields["operator"] = operator
        aux = {k: _text(data.get(k)) for k in ("communication_id", "external_id", "call_api_external_id",
                                                 "contact_id", "scenario_name", "leg_id")}
        aux = {k: v for k, v in aux.items() if v}
        if aux:
            fields["provider_aux_ids"] = aux
        attribution = self._attribution(data)
        if attribution:
            fields["attribution"] = attribution
        return fields

    @staticmethod
    def _attribution(data: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, canon in _ATTRIBUTION.items():
            value = _text(data.get(key))
            if value:
                out[canon] = value
        extra = {}
        for key in _ATTRIBUTION_EXTRA:
            value = data.get(key)
            if isinstance(value, list):
                value = ", ".join(str(v) for v in value if v not in (None, ""))
            value = _text(value)
            if value:
                extra[key] = value
        if extra:
            out["extra"] = extra
        return out

    def _finished(self, session: str, data: Mapping[str, Any], *, lost: bool) -> CallUpdate:
        fields = self._common(data)
        direction = (_text(data.get("direction")) or "").lower()
        fields["direction"] = "internal" if _truthy(data.get("is_internal")) else \
            {"in": "inbound", "out": "outbound"}.get(direction, "unknown")
        if fields["direction"] == "internal":
            fields["client_phone"] = None
        wait, talk, total = (_int(data.get(k)) for k in ("wait_time_duration", "talk_time_duration",
                                                         "total_time_duration"))
        ended = self._time(data.get("notification_time") or data.get("finish_time"))
        started = self._time(data.get("start_time"))
        if started is None and ended and total is not None:
            started = ended - timedelta(seconds=total)
        if lost or _truthy(data.get("is_lost")) or talk == 0:
            status = "missed"
        elif talk:
            status = "answered"
        else:
            status = "unknown"
        fields.update({"started_at": iso(started), "ended_at": iso(ended), "wait_seconds": wait,
                       "talk_seconds": talk or 0, "total_seconds": total, "status": status,
                       "status_raw": "lost" if lost else (_text(data.get("finish_reason")) or
                                                          ("is_lost=true" if status == "missed" else None))})
        if started and wait is not None and status == "answered":
            fields["answered_at"] = iso(started + timedelta(seconds=wait))
        return CallUpdate(provider_call_id=session, event_kind="call_finished", fields=fields,
                          event_id="lost" if lost else "finished", finished=True)

    def _record(self, session: str, data: Mapping[str, Any]) -> CallUpdate:
        link = _text(data.get("file_link"))
        if not link or not link.startswith(("https://", "http://")):
            raise PayloadError("uis: file_link must be an http(s) URL", ["file_link: URL required"], status=422)
        match = _MEDIA_RE.search(urllib.parse.urlsplit(link).path)
        rec_id = match.group("hash") if match else link
        recording = {"provider_recording_id": rec_id, "state": "available", "fetch": "direct_url", "url": link,
                     "format": None, "channels": self._channels(), "duration_seconds": _int(data.get("file_duration"))}
        return CallUpdate(provider_call_id=session, event_kind="recording_ready", fields=self._common(data),
                          recordings=[recording], event_id=f"record:{rec_id}", finished=False)

    def _channels(self) -> list[str] | None:
        ch = self.config.get("channels") or self.default_channels
        return list(ch) if ch else None

    def reply(self, req: WebhookRequest, outcome: Mapping[str, Any]) -> WebhookReply:
        # Expected answer unknown (❓): a plain 200 is the safest for a notification sender.
        return WebhookReply(200, json.dumps({"status": outcome.get("status", "ok")}))

    # -- worker side -------------------------------------------------------------------------

    def expects_recording(self, record: Mapping[str, Any]) -> bool:
        if not self.config.get("record_calls", True) or record.get("status") not in ("answered", "unknown"):
            return False
        return not any(r.get("state") in ("available", "pending") for r in record.get("recordings") or [])

    def media_link(self, session: str, file_hash: str) -> str:
        return f"{str(self.config['media_url']).rstrip('/')}/system/media/talk/{session}/{file_hash}/"

    def resolve_recording(self, call: Mapping[str, Any], recording: Mapping[str, Any]) -> tuple[str, dict]:
        """Direct media links need no credentials; a hash-only recording gets its link built.

        Readiness of the link itself is left to the downloader (404 → retried later).
        """
        url = recording.get("url")
        if url:
            return str(url), {}
        rec_id, session = recording.get("provider_recording_id"), call.get("provider_call_id")
        if rec_id and session:
            return self.media_link(str(session), str(rec_id)), {}
        raise TransientError("uis: recording link not known yet")

    def enrich(self, record: Mapping[str, Any]) -> CallUpdate | None:
        """Data API get.calls_report: attribution, and recordings when no record notification came."""
        token = self.config.get("access_token")
        started = record.get("started_at")
        if not token or not started:
            return None
        try:
            at = datetime.fromisoformat(str(started)).astimezone(ZoneInfo(self.call_timezone))
        except ValueError:
            return None
        fmt = "%Y-%m-%d %H:%M:%S"
        session = str(record["provider_call_id"])
        params = {"access_token": token, "date_from": (at - timedelta(hours=1)).strftime(fmt),
                  "date_till": (at + timedelta(hours=3)).strftime(fmt), "fields": _REPORT_FIELDS,
                  "filter": {"field": "id", "operator": "=", "value": to_int(session) or session}}
        body = {"jsonrpc": "2.0", "id": f"calltag-{session}", "method": "get.calls_report", "params": params}
        resp = request(self.http, "POST", str(self.config["base_url"]), "uis get.calls_report", json=body)
        try:
            answer = resp.json()
        except ValueError as err:
            raise TransientError("uis get.calls_report: answer is not JSON") from err
        if not isinstance(answer, dict) or answer.get("error"):
            err = (answer or {}).get("error") if isinstance(answer, dict) else None
            code = str((err or {}).get("code", "?")) if isinstance(err, dict) else "?"
            if code in ("-32001", "-32002", "-32003"):  # ❓ auth-type error codes
                raise PermanentError(f"uis get.calls_report: error {code}")
            raise TransientError(f"uis get.calls_report: error {code}")
        rows = ((answer.get("result") or {}).get("data") or []) if isinstance(answer.get("result"), dict) else []
        row = next((r for r in rows if isinstance(r, dict) and str(r.get("id")) == session), None)
        if row is None:
            return None
        fields: dict[str, Any] = {}
        attribution = self._attribution(row)
        if attribution:
            fields["attribution"] = attribution
        wait, talk, total = (_int(row.get(k)) for k in ("wait_duration", "talk_duration", "total_duration"))
        for key, value in (("wait_seconds", wait), ("talk_seconds", talk), ("total_seconds", total)):
            if value is not None:
                fields[key] = value
        emp = {"provider_id": _text(row.get("last_answered_employee_id")),
               "name": _text(row.get("last_answered_employee_full_name"))}
        if any(emp.values()):
            fields["operator"] = {k: v for k, v in emp.items() if v}
        recordings = [{"provider_recording_id": str(h), "state": "available", "fetch": "direct_url",
                       "url": self.media_link(session, str(h)), "format": None, "channels": self._channels()}
                      for h in row.get("call_records") or [] if isinstance(h, (str, int)) and str(h)]
        return CallUpdate(provider_call_id=session, event_kind="call_updated", fields=fields,
                          recordings=recordings, event_id="enrich:calls_report")


class Comagic(Uis):
    """CoMagic: the UIS platform on comagic.ru hosts."""

    name = "comagic"
    docs_url = "https://www.comagic.ru/support/api/"
    default_api_url = "https://dataapi.comagic.ru/v2.0"
    default_media_url = "https://app.comagic.ru"


class Callgear(Uis):
    """CallGear: the UIS platform on callgear.com hosts (use media_url https://app.callgear.ae for the UAE)."""

    name = "callgear"
    docs_url = "https://www.callgear.com/support/api/"
    default_api_url = "https://dataapi.callgear.com/v2.0"
    default_media_url = "https://app.callgear.com"
