"""Binotel "API CALL COMPLETED" webhooks (providers.md §1.7, §2.2, §3.7).

Binotel POSTs ``application/x-www-form-urlencoded`` with PHP-style nested keys
(``callDetails[employeeData][name]=…``) once a call is over, and retries (``attemptsCounter``).
There is no signature: the secret in our URL path authenticates it, optionally with an IP
allow-list. The payload's record link is a cabinet page; the audio comes from the API
``stats/call-record`` as a URL valid about 15 minutes, so it is requested at download time.
"""
from __future__ import annotations

import ipaddress
import json
import re
import urllib.parse
from datetime import timedelta
from typing import Any, Mapping

from integrations.base import (AuthError, InvalidSignatureError, PayloadError, PermanentError, Setting, TransientError,
                               request)
from integrations.calltracking.base import CallTracking, CallUpdate, WebhookReply, WebhookRequest
from integrations.normalize import from_unix, iso, to_e164, to_int

SUCCESS = json.dumps({"status": "success"})
MAX_SECONDS = 7 * 86400  # longer "durations" are corrupt data, and would overflow date arithmetic
_KEY_RE = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_MAX_DEPTH = 6
_WITH_AUDIO = ("ANSWER", "VM-SUCCESS", "SUCCESS")
_STATUS = {"ANSWER": "answered", "SUCCESS": "answered", "VM-SUCCESS": "voicemail", "VM": "missed",
           "NO ANSWER": "missed", "NOANSWER": "missed", "CANCEL": "missed", "BUSY": "busy",
           "CONGESTION": "failed", "CHANUNAVAIL": "failed", "FAILED": "failed"}
_UTM = {"utm_source": "source", "utm_medium": "medium", "utm_campaign": "campaign", "utm_content": "content",
        "utm_term": "term", "gaClientId": "ga_client_id", "fullUrl": "landing_page"}


class Binotel(CallTracking):
    name = "binotel"
    docs_url = "https://developers.binotel.ua/"
    settings = {
        "key": Setting(required=True, help="API key (Binotel cabinet → API)"),
        "secret": Setting(required=True, secret=True, help="API secret"),
        "base_url": Setting(default="https://api.binotel.com/api/4.0", help="Binotel API base URL"),
        "allowed_ips": Setting(help="Optional list of source IPs/networks (e.g. 194.88.218.0/24); empty = any"),
        "channels": Setting(help="Stereo layout of the recordings, left then right (❓ unknown by default)"),
    }

    def verify(self, req: WebhookRequest) -> None:
        """No signature exists; when ``allowed_ips`` is set the sender must be in it (🟡 IP lists)."""
        allowed = self.config.get("allowed_ips")
        if not allowed:
            return
        try:
            addr = ipaddress.ip_address(req.remote_addr or "")
        except ValueError as err:
            raise InvalidSignatureError("binotel: sender address unknown") from err
        for net in ([allowed] if isinstance(allowed, str) else allowed):
            try:
                if addr in ipaddress.ip_network(str(net), strict=False):
                    return
            except ValueError:
                continue
        raise InvalidSignatureError("binotel: sender not in allowed_ips")

    def parse(self, req: WebhookRequest) -> list[CallUpdate]:
        data = decode_nested(req.body)
        request_type = data.get("requestType")
        if request_type != "apiCallCompleted":
            if isinstance(request_type, str) and request_type:
                return []  # other Binotel hooks (call settings, "received the call"…) are acknowledged, not used
            raise PayloadError("binotel: requestType missing", ["requestType: apiCallCompleted expected"], status=422)
        details = data.get("callDetails")
        if not isinstance(details, dict):
            raise PayloadError("binotel: callDetails missing", ["callDetails: required"], status=422)
        problems = []
        call_id = details.get("generalCallID")
        if not isinstance(call_id, str) or not call_id.strip() or len(call_id) > 64:
            problems.append("callDetails[generalCallID]: required")
        try:
            started = from_unix(details.get("startTime")) if isinstance(details.get("startTime"), str) else None
            if started is not None:
                started + timedelta(seconds=2 * MAX_SECONDS)  # representable with any duration added
        except (OverflowError, ValueError, OSError):
            started = None
        if started is None:
            problems.append("callDetails[startTime]: unix seconds required")
        for key in ("waitsec", "billsec"):
            val = details.get(key)
            if val not in (None, "") and (not isinstance(val, str) or to_int(val) is None
                                          or not 0 <= to_int(val) <= MAX_SECONDS):
                problems.append(f"callDetails[{key}]: seconds between 0 and {MAX_SECONDS} expected")
        if problems:
            raise PayloadError("binotel: invalid call", problems, status=422)
        call_id = call_id.strip()
        fields: dict[str, Any] = {}
        call_type = _s(details.get("callType"))
        fields["direction"] = {"0": "inbound", "1": "outbound"}.get(call_type, "unknown")
        client_raw = _s(details.get("externalNumber"))
        if client_raw:
            fields["client_phone_raw"] = client_raw
            fields["client_phone"] = to_e164(client_raw, self.region)
        pbx = details.get("pbxNumberData")
        if isinstance(pbx, dict) and _s(pbx.get("number")):
            fields["tracking_number"] = to_e164(_s(pbx.get("number")), self.region)
        fields["operator"] = self._operator(details)
        disposition = _s(details.get("disposition")).upper()
        status = _STATUS.get(disposition, "unknown")
        wait = to_int(details.get("waitsec")) or 0
        talk = to_int(details.get("billsec")) or 0
        fields.update(status=status, status_raw=_s(details.get("disposition")) or None, started_at=iso(started),
                      wait_seconds=wait, talk_seconds=talk if status in ("answered", "voicemail", "unknown") else 0,
                      total_seconds=wait + talk, ended_at=iso(started + timedelta(seconds=wait + talk)))
        if status == "answered":
            fields["answered_at"] = iso(started + timedelta(seconds=wait))
        aux = {k: _s(details.get(v)) for k, v in (("call_id", "callID"), ("company_id", "companyID"))
               if _s(details.get(v))}
        if aux:
            fields["provider_aux_ids"] = aux
        fields["attribution"] = self._attribution(details.get("callTrackingData"))
        crm = self._crm(details.get("customerDataFromOutside"))
        if crm:
            fields["crm"] = crm
        rec = {"provider_recording_id": call_id, "fetch": "api_call", "url": None, "format": "mp3",
               "channels": list(self.config["channels"]) if self.config.get("channels") else None,
               "duration_seconds": None}
        if disposition in _WITH_AUDIO:
            # 'uploaded' is the only value seen (🟡); anything else: ask the API until it has the file
            rec["state"] = "available" if _s(details.get("recordingStatus")).lower() == "uploaded" else "pending"
        else:
            rec["state"] = "absent"  # the API has audio only for ANSWER / VM-SUCCESS / SUCCESS
        # A retry (attemptsCounter > 1) repeats the same call: one event id for all of them.
        return [CallUpdate(call_id, "call_finished", fields, [rec], event_id="call_completed", finished=True)]

    def _operator(self, details: Mapping[str, Any]) -> dict[str, str] | None:
        ext = _s(details.get("internalNumber"))
        emp = details.get("employeeData") if isinstance(details.get("employeeData"), dict) else {}
        history = details.get("historyData")
        if isinstance(history, dict):  # per-leg data: the leg that answered names the operator
            for _, leg in sorted(history.items(), key=lambda kv: to_int(kv[0]) or 0):
                if isinstance(leg, dict) and _s(leg.get("disposition")).upper() == "ANSWER":
                    ext = ext or _s(leg.get("internalNumber"))
                    if not emp and isinstance(leg.get("employeeData"), dict):
                        emp = leg["employeeData"]
        op = {"extension": ext, "name": _s(emp.get("name")), "email": _s(emp.get("email"))}
        op = {k: v for k, v in op.items() if v}
        return op or None

    @staticmethod
    def _attribution(ctd: Any) -> dict[str, Any]:
        if not isinstance(ctd, dict):
            return {}
        out: dict[str, Any] = {}
        extra: dict[str, str] = {}
        for key, val in ctd.items():
            text = _s(val)
            if not text:
                continue
            if key in _UTM:
                out[_UTM[key]] = text
            elif key in ("gclid", "fbclid", "yclid"):
                out[key] = text
            elif key == "id":
                extra["calltracking_id"] = text
            else:
                extra[key] = text  # firstVisitAt, type, … (❓ full key list unknown)
        if extra:
            out["extra"] = extra
        return out

    @staticmethod
    def _crm(cdo: Any) -> dict[str, str]:
        if not isinstance(cdo, dict):
            return {}
        crm = {}
        if _s(cdo.get("linkToCrmUrl")).startswith(("https://", "http://")):
            crm["crm_link"] = _s(cdo.get("linkToCrmUrl"))
        if _s(cdo.get("id")):
            crm["crm_customer_id"] = _s(cdo.get("id"))  # the CRM's contact/customer id, not a deal
        return crm

    def reply(self, req: WebhookRequest, outcome: Mapping[str, Any]) -> WebhookReply:
        return WebhookReply(200, SUCCESS)

    def resolve_recording(self, call: Mapping[str, Any], recording: Mapping[str, Any]) -> tuple[str, dict]:
        """A fresh URL from ``stats/call-record`` every time: it expires in ~15 min, so never reuse one."""
        if recording.get("state") in ("absent", "failed"):
            raise PermanentError(f"binotel: recording {recording.get('state')}")
        call_id = str(recording.get("provider_recording_id") or call.get("provider_call_id") or "")
        if not call_id:
            raise PermanentError("binotel: no generalCallID")
        url = f"{str(self.config['base_url']).rstrip('/')}/stats/call-record.json"
        resp = request(self.http, "POST", url, "binotel stats/call-record",
                       json={"key": str(self.config["key"]), "secret": str(self.config["secret"]),
                             "generalCallID": call_id})
        try:
            payload = resp.json()
        except ValueError as err:
            raise TransientError("binotel stats/call-record: answer is not JSON") from err
        if not isinstance(payload, dict):
            raise TransientError("binotel stats/call-record: unexpected answer")
        link = payload.get("url")
        if payload.get("status") == "success" and isinstance(link, str) and link.startswith(("https://", "http://")):
            return link, {}
        # ❓ error codes are undocumented; a missing file is treated as "not uploaded yet" until the
        # pipeline's retry window (a day) runs out. Wrong key/secret are reported as auth failures.
        message = str(payload.get("message") or payload.get("status") or "no url")[:200]
        if re.search(r"key|secret|auth|access", message, re.I):
            raise AuthError(f"binotel stats/call-record: {message}")
        raise TransientError(f"binotel stats/call-record: {message}", retry_after_s=60)


def _s(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def decode_nested(body: bytes) -> dict[str, Any]:
    """Bracket-aware form decoding: ``a[b][0][c]=v`` → {"a": {"b": {"0": {"c": "v"}}}}.

    Flask's ``request.form`` keeps such keys flat. Empty brackets append (PHP ``a[]``).
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise PayloadError("binotel: body is not UTF-8", status=400) from err
    try:
        pairs = urllib.parse.parse_qsl(text, keep_blank_values=True, max_num_fields=2000)
    except ValueError as err:
        raise PayloadError("binotel: too many fields", status=413) from err
    out: dict[str, Any] = {}
    for key, value in pairs:
        m = _KEY_RE.match(key)
        path = [m.group(1)] + re.findall(r"\[([^\[\]]*)\]", m.group(2)) if m else [key]
        if len(path) > _MAX_DEPTH:
            raise PayloadError(f"binotel: field {key[:60]!r} nested too deep", status=422)
        node = out
        for i, part in enumerate(path):
            last = i == len(path) - 1
            if part == "":
                part = str(len(node))
            if last:
                if isinstance(node.get(part), dict):
                    raise PayloadError(f"binotel: field {key[:60]!r} is both a value and a group", status=422)
                node[part] = value
            else:
                child = node.setdefault(part, {})
                if not isinstance(child, dict):
                    raise PayloadError(f"binotel: field {key[:60]!r} is both a value and a group", status=422)
                node = child
    return out
