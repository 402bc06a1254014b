"""Calltouch: user-configured call webhooks (GET or form POST) + calls-diary API enrichment and audio.

The webhook carries whichever parameters the tenant ticked in the Calltouch UI (providers.md §1.1);
only `callerphone`, `phonenumber`, `calltime`, `status`, `unique`, `utm_source`, `medium`, `source`
are confirmed names (🟡). Every other name below is a ❓ guess, kept in ``PARAMS`` and overridable
per tenant with the ``fields`` setting ({canonical name: webhook parameter}).

No signature exists: the URL secret authenticates, optionally plus a sender network allow-list
(Calltouch publishes 92.118.66.0/23). The call id is often not in the webhook: the call is then
keyed by caller + call time, and ``enrich`` finds the real ``callId`` in the calls-diary API, which
also gives durations, attribution, CRM orders and the recording download.
"""
from __future__ import annotations

import hashlib
import ipaddress
import re
from datetime import datetime, timedelta
from typing import Any, Mapping
from zoneinfo import ZoneInfo

from integrations.base import InvalidSignatureError, PayloadError, PermanentError, Setting, TransientError, request
from integrations.calltracking.base import CallTracking, CallUpdate, WebhookReply, WebhookRequest
from integrations.normalize import from_local, from_unix, iso, to_e164, to_count

# canonical name -> webhook parameter names tried in order (first non-empty wins). ❓ except the 🟡 ones.
PARAMS: dict[str, tuple[str, ...]] = {
    "call_id": ("callId", "call_id", "callid", "ctCallId"),
    "client": ("callerphone", "callerNumber", "caller_phone", "callerPhone"),          # 🟡 callerphone
    "tracking": ("phonenumber", "phoneNumber", "phone_number"),                        # 🟡 phonenumber
    "redirect": ("redirectNumber", "redirect_number"),
    "time": ("calltime", "callTime", "call_time", "date"),                             # 🟡 calltime
    "status": ("status", "successful", "callStatus"),                                  # 🟡 status
    "duration": ("duration", "callDuration", "call_duration"),
    "wait": ("waitingConnect", "waiting_connect", "waitingTime"),
    "manager": ("manager", "managerName"),
    "session": ("sessionId", "session_id", "sessionid"),
    "order": ("orderNumber", "order_number", "dealId", "deal_id"),
}
# webhook / API name -> canonical attribution key
ATTRIBUTION: dict[str, str] = {
    "source": "source", "medium": "medium", "utm_source": "source", "utm_medium": "medium",
    "utm_campaign": "campaign", "utm_content": "content", "utm_term": "term",
    "utmSource": "source", "utmMedium": "medium", "utmCampaign": "campaign", "utmContent": "content",
    "utmTerm": "term", "keyword": "keyword", "url": "landing_page", "landing_page": "landing_page",
    "callUrl": "call_page", "call_url": "call_page", "ref": "referrer", "referrer": "referrer",
    "hostname": "site", "clientId": "ga_client_id", "gaClientId": "ga_client_id", "ga_client_id": "ga_client_id",
    "yaClientId": "ym_client_id", "ym_client_id": "ym_client_id", "sessionId": "session_id",
    "session_id": "session_id", "ctClientId": "visitor_id", "gclid": "gclid", "yclid": "yclid",
}
EXTRA_KEYS = ("unique", "uniqueCall", "targetCall", "uniqTargetCall", "callbackCall", "city", "subPoolName",
              "ctGlobalId", "ctCallerId", "callphase", "statusDetails", "attrs")
_TRUE = {"true", "1", "yes", "successful", "success", "answered"}
_FALSE = {"false", "0", "no", "unsuccessful", "failed", "missed", "notanswered", "not_answered"}
_DMY = re.compile(r"^(\d{2})/(\d{2})/(\d{4})(.*)$")


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    s = str(value).strip()
    return s or None


def _int(value: Any) -> int | None:
    return to_count(_text(value))


def parse_time(value: Any, tz_name: str) -> datetime | None:
    """Calltouch times: unix seconds, 'YYYY-MM-DD HH:MM:SS' or 'dd/mm/yyyy HH:MM:SS' (local) (❓ both)."""
    s = _text(value)
    if not s:
        return None
    try:
        if s.isdigit():
            return from_unix(s)
        m = _DMY.match(s)
        if m:
            s = f"{m.group(1)}.{m.group(2)}.{m.group(3)}{m.group(4)}"
        return from_local(s, tz_name)
    except (OverflowError, OSError, ValueError):
        return None


def _digits(phone: Any) -> str:
    return re.sub(r"\D", "", str(phone or ""))[-10:]


class Calltouch(CallTracking):
    """Calltouch call webhooks; the calls-diary API completes the record and serves the audio."""

    name = "calltouch"
    docs_url = "https://www.calltouch.ru/support/otpravka-informatsii-o-zvonkakh-zayavkakh-chatakh-iz-calltouch-v-lyubuyu-sistemu-s-pomoshchyu-webhoo/"
    signs = False
    # The transcript API marks channel 1 = operator, 0 = client, hinting at stereo sources (❓ for the
    # mp3): unknown by default so the core probes; set `channels` per tenant once checked.
    default_channels = None
    settings = {
        "site_id": Setting(help="Calltouch site id (API: calls-diary and recordings)"),
        "api_token": Setting(secret=True, help="API token (clientApiId) for calls-diary and recordings"),
        "base_url": Setting(default="https://api.calltouch.ru", help="Calltouch API base URL"),
        "fields": Setting(default=None, help="Webhook parameter names: {call_id: callId, client: callerphone, …}"),
        "allowed_networks": Setting(default=None, help="Sender networks, e.g. [92.118.66.0/23]; empty = no check"),
        "finished_on_webhook": Setting(default=True, help="The webhook fires at call end (False: at call start)"),
        "timezone": Setting(default=None, help="Time zone of calltime / API dates; empty = tenant's"),
        "channels": Setting(default=None, help="Stereo layout, e.g. [operator, client]; empty = probe"),
    }

    @property
    def call_timezone(self) -> str:
        return self.config.get("timezone") or self.timezone

    # -- webhook side ------------------------------------------------------------------------

    def verify(self, req: WebhookRequest) -> None:
        networks = self.config.get("allowed_networks") or []
        if not networks:
            return
        try:
            addr = ipaddress.ip_address((req.remote_addr or "").split("%", 1)[0])
        except ValueError as err:
            raise InvalidSignatureError("calltouch: sender address unknown") from err
        for net in networks:
            try:
                if addr in ipaddress.ip_network(str(net), strict=False):
                    return
            except ValueError:
                continue
        raise InvalidSignatureError("calltouch: sender not in allowed_networks")

    def _param(self, data: Mapping[str, Any], name: str) -> str | None:
        custom = (self.config.get("fields") or {}).get(name) if isinstance(self.config.get("fields"), dict) else None
        for key in ((custom,) if custom else ()) + PARAMS[name]:
            value = _text(data.get(key))
            if value:
                return value
        return None

    def _data(self, req: WebhookRequest) -> dict[str, Any]:
        ctype = (req.headers.get("Content-Type") or "").lower()
        if "json" in ctype and req.body.strip():
            data = req.json()
            if not isinstance(data, dict):
                raise PayloadError("calltouch: JSON body must be an object", status=422)
            return {**dict(req.query), **data}
        return req.params()

    def parse(self, req: WebhookRequest) -> list[CallUpdate]:
        data = self._data(req)
        call_id = self._param(data, "call_id")
        client_raw = self._param(data, "client")
        time_raw = self._param(data, "time")
        started = parse_time(time_raw, self.call_timezone)
        if not call_id:
            if not (client_raw and started):
                raise PayloadError("calltouch: need the call id, or the caller number and call time",
                                   ["callId or (callerphone and calltime): required"], status=422)
            # No call id in the webhook: key by caller + start time; enrich() finds the real callId.
            key = hashlib.sha1(f"{_digits(client_raw)}|{iso(started)}".encode()).hexdigest()[:20]
            provider_call_id = f"t-{key}"
        else:
            provider_call_id = call_id
        status_raw = self._param(data, "status")
        status = self._status(status_raw)
        talk = _int(self._param(data, "duration"))
        fields: dict[str, Any] = {
            "direction": "inbound",  # call tracking counts inbound calls (outbound ❓)
            "client_phone_raw": client_raw, "client_phone": to_e164(client_raw, self.region),
            "tracking_number": to_e164(self._param(data, "tracking"), self.region),
            "started_at": iso(started), "status": status, "status_raw": status_raw,
            "wait_seconds": _int(self._param(data, "wait")),
            "talk_seconds": (talk or 0) if status != "missed" else 0,
        }
        operator = {"name": self._param(data, "manager"),
                    "phone": to_e164(self._param(data, "redirect"), self.region)}
        if any(operator.values()):
            fields["operator"] = {k: v for k, v in operator.items() if v}
        aux = {"callId": call_id, "sessionId": self._param(data, "session")}
        fields["provider_aux_ids"] = {k: v for k, v in aux.items() if v}
        fields["attribution"] = self._attribution(data)
        order = self._param(data, "order")
        if order:
            fields["crm"] = {"provider_deal_ref": order}
        recordings = [self._recording(call_id)] if call_id and status != "missed" else []
        finished = bool(self.config.get("finished_on_webhook", True))
        return [CallUpdate(provider_call_id=provider_call_id, event_kind="call_finished" if finished else "call_started",
                           fields=fields, recordings=recordings, event_id=None, finished=finished)]

    @staticmethod
    def _status(raw: str | None) -> str:
        s = (raw or "").strip().lower().replace(" ", "")
        if s in _TRUE:
            return "answered"
        if s in _FALSE:
            return "missed"
        return "unknown"

    @staticmethod
    def _attribution(data: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        extra: dict[str, str] = {}
        for key, canon in ATTRIBUTION.items():
            value = _text(data.get(key))
            if not value:
                continue
            if canon in out and out[canon] != value:
                extra[key] = value  # e.g. utm_source differing from Calltouch's own source
            else:
                out.setdefault(canon, value)
        for key in EXTRA_KEYS:
            value = data.get(key)
            value = None if isinstance(value, (dict, list)) else _text(value)
            if value:
                extra[key] = value
        if extra:
            out["extra"] = extra
        return out

    def _recording(self, call_id: str) -> dict[str, Any]:
        ch = self.config.get("channels") or self.default_channels
        return {"provider_recording_id": str(call_id), "state": "available", "fetch": "api_call", "url": None,
                "format": "mp3", "channels": list(ch) if ch else None}

    def reply(self, req: WebhookRequest, outcome: Mapping[str, Any]) -> WebhookReply:
        return WebhookReply(200, '{"ok": true}')  # expected answer unknown (❓): any fast 2xx

    # -- worker side -------------------------------------------------------------------------

    def expects_recording(self, record: Mapping[str, Any]) -> bool:
        """The audio comes from the API once the callId is known (enrich); none for missed calls."""
        if record.get("status") == "missed":
            return False
        if not (self.config.get("site_id") and self.config.get("api_token")):
            return False
        return not any(r.get("state") in ("available", "pending") for r in record.get("recordings") or [])

    def resolve_recording(self, call: Mapping[str, Any], recording: Mapping[str, Any]) -> tuple[str, dict]:
        """calls-diary/calls/{callId}/download?clientApiId=…; the token travels in kwargs, not the URL."""
        site, token = self.config.get("site_id"), self.config.get("api_token")
        if not site or not token:
            raise PermanentError("calltouch: site_id and api_token are needed to download recordings")
        call_id = recording.get("provider_recording_id") or (call.get("provider_aux_ids") or {}).get("callId")
        if not call_id or not str(call_id).isdigit():
            raise TransientError("calltouch: callId not known yet")
        url = f"{self._api_root()}/calls-diary/calls/{call_id}/download"
        return url, {"params": {"clientApiId": str(token)}}

    def _api_root(self) -> str:
        return f"{str(self.config['base_url']).rstrip('/')}/calls-service/RestAPI/{self.config['site_id']}"

    def enrich(self, record: Mapping[str, Any]) -> CallUpdate | None:
        """Find the call in calls-diary (by callId, else caller number + time) and complete the record."""
        site, token = self.config.get("site_id"), self.config.get("api_token")
        started = record.get("started_at")
        if not site or not token or not started:
            return None
        try:
            at = datetime.fromisoformat(str(started))
        except ValueError:
            return None
        known_id = (record.get("provider_aux_ids") or {}).get("callId")
        day = at.astimezone(ZoneInfo(self.call_timezone)).strftime("%d/%m/%Y")
        best, best_gap = None, None
        page, pages = 1, 1
        while page <= min(pages, 20):
            params = {"clientApiId": token, "dateFrom": day, "dateTo": day, "page": page, "limit": 500,
                      "withOrders": "true", "withMapVisits": "false", "withCallTags": "false"}
            resp = request(self.http, "GET", f"{self._api_root()}/calls-diary/calls", "calltouch calls-diary",
                           params=params)
            try:
                answer = resp.json()
            except ValueError as err:
                raise TransientError("calltouch calls-diary: answer is not JSON") from err
            rows = answer.get("records") if isinstance(answer, dict) else answer
            for row in rows if isinstance(rows, list) else []:
                if not isinstance(row, dict):
                    continue
                if known_id and str(row.get("callId")) == str(known_id):
                    best, best_gap = row, 0
                    break
                if known_id or _digits(row.get("callerNumber")) != _digits(record.get("client_phone_raw")):
                    continue
                when = parse_time(row.get("date"), self.call_timezone)
                gap = abs((when - at).total_seconds()) if when else None
                if gap is not None and gap <= 180 and (best_gap is None or gap < best_gap):
                    best, best_gap = row, gap
            if best_gap == 0:
                break
            pages = _int(answer.get("pageTotal")) if isinstance(answer, dict) else 1
            pages = pages or 1
            page += 1
        if best is None:
            return None
        return self._from_api(str(record["provider_call_id"]), best)

    def _from_api(self, provider_call_id: str, row: Mapping[str, Any]) -> CallUpdate:
        call_id = _text(row.get("callId"))
        successful = row.get("successful")
        status = "unknown" if successful is None else ("answered" if successful in (True, "true", 1) else "missed")
        fields: dict[str, Any] = {
            "client_phone": to_e164(_text(row.get("callerNumber")), self.region),
            "tracking_number": to_e164(_text(row.get("phoneNumber")), self.region),
            "wait_seconds": _int(row.get("waitingConnect")), "talk_seconds": _int(row.get("duration")),
            "status": status, "attribution": self._attribution(row),
            "provider_aux_ids": {k: v for k, v in {"callId": call_id, "sessionId": _text(row.get("sessionId")),
                                                   "sipCallId": _text(row.get("sipCallId"))}.items() if v},
        }
        started = parse_time(row.get("date"), self.call_timezone)
        if started:
            fields["started_at"] = iso(started)
            if fields["wait_seconds"] is not None and status == "answered":
                fields["answered_at"] = iso(started + timedelta(seconds=fields["wait_seconds"]))
        operator = {"name": _text(row.get("manager")), "phone": to_e164(_text(row.get("redirectNumber")), self.region)}
        if any(operator.values()):
            fields["operator"] = {k: v for k, v in operator.items() if v}
        orders = [o for o in row.get("orders") or [] if isinstance(o, dict)]
        deal = next((_text(o.get("orderNumber")) for o in orders if _text(o.get("orderNumber"))), None)
        if deal:
            fields["crm"] = {"provider_deal_ref": deal}
        recordings = [self._recording(call_id)] if call_id and status != "missed" else []
        return CallUpdate(provider_call_id=provider_call_id, event_kind="call_updated", fields=fields,
                          recordings=recordings, event_id=f"enrich:{call_id}")
