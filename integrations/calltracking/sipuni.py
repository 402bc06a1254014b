"""Sipuni PBX events over HTTP (providers.md §1.5, §2.2, §3.5).

Sipuni (Настройки → API → События на АТС) calls one URL with URL-encoded parameters, by GET or
POST, for every PBX event: 1 = call started, 3 = answered, 2 = call finished (final, carries
``call_record_link``), 4 = a secondary leg finished. It must be answered with JSON
``{"success": true}`` or it may stop sending. There is no signature (❓ none documented): the
long secret in our URL path authenticates it.
"""
from __future__ import annotations

import json
import re
from typing import Any, Mapping

import requests

from integrations.base import AuthError, PayloadError, PermanentError, Setting, TransientError
from integrations.calltracking.base import CallTracking, CallUpdate, WebhookReply, WebhookRequest
from integrations.normalize import from_unix, iso, to_e164, to_int

SUCCESS = json.dumps({"success": True})
_STATUS = {"ANSWER": "answered", "ANSWERED": "answered", "BUSY": "busy", "NOANSWER": "missed",
           "NO ANSWER": "missed", "CANCEL": "missed", "CONGESTION": "failed", "CHANUNAVAIL": "failed"}
_SUFFIX_RE = re.compile(r"_id\d+$")
_AUDIO_TYPES = ("audio/", "application/octet-stream", "binary/octet-stream")


class Sipuni(CallTracking):
    name = "sipuni"
    docs_url = "https://help.sipuni.com/articles/134-182-110--otpravka-sobytij-ats-na-skript-http-api/"
    settings = {
        "channels": Setting(help="Stereo layout of the recordings, left then right (❓ unknown by default)"),
        "probe_recording": Setting(default=True, help="Check the record link answers with audio before download"),
    }

    def handshake(self, req: WebhookRequest) -> WebhookReply | None:
        """A request without any parameter (a cabinet 'check URL' ping ❓): answer success."""
        if not req.params() and not req.body.strip():
            return WebhookReply(200, SUCCESS)
        return None

    def parse(self, req: WebhookRequest) -> list[CallUpdate]:
        p = {k: (v or "").strip() for k, v in req.params().items()}
        problems = []
        call_id = p.get("call_id", "")
        event = p.get("event", "")
        if not call_id or len(call_id) > 128:
            problems.append("call_id: required")
        if not event:
            problems.append("event: required (1, 2, 3 or 4)")
        if problems:
            raise PayloadError("sipuni: not a PBX event", problems, status=422)
        if event == "1":
            return [CallUpdate(call_id, "call_started", self._base_fields(p), event_id="event:1")]
        if event == "3":
            fields = self._base_fields(p)
            fields.pop("started_at", None)
            fields["answered_at"] = iso(from_unix(p.get("timestamp")))  # more reliable than call_answer_timestamp
            fields["status"] = "answered"
            return [CallUpdate(call_id, "call_updated", fields, event_id="event:3")]
        if event == "2":
            return [self._finished(call_id, p)]
        return []  # 4: a secondary leg finished; the main call's event 2 carries everything we use

    def _base_fields(self, p: Mapping[str, str]) -> dict[str, Any]:
        src_type, dst_type = p.get("src_type"), p.get("dst_type")
        fields: dict[str, Any] = {}
        src, dst = p.get("src_num", ""), _SUFFIX_RE.sub("", p.get("dst_num", ""))
        if src_type == "1":
            fields["direction"] = "inbound"
            client_raw, operator_ext = src, p.get("last_called") or None
            if p.get("pbxdstnum"):
                fields["tracking_number"] = to_e164(p["pbxdstnum"], self.region)
        elif src_type == "2" and dst_type == "1":
            fields["direction"] = "outbound"
            client_raw, operator_ext = dst, p.get("short_src_num") or src or None
        elif src_type == "2" and dst_type == "2":
            fields["direction"] = "internal"
            client_raw, operator_ext = None, p.get("short_src_num") or src or None
        else:
            client_raw, operator_ext = None, None
        if client_raw:
            fields["client_phone_raw"] = client_raw
            fields["client_phone"] = None if _is_extension(client_raw) else to_e164(client_raw, self.region)
        if operator_ext:
            fields["operator"] = {"extension": operator_ext}
        started = from_unix(p.get("call_start_timestamp"))
        if started:
            fields["started_at"] = iso(started)
        aux = {k: p[k] for k in ("treeName", "treeNumber", "user_id") if p.get(k)}
        if aux:
            fields["provider_aux_ids"] = {"tree_name" if k == "treeName" else "tree_number" if k == "treeNumber"
                                          else "user_id": v for k, v in aux.items()}
        return fields

    def _finished(self, call_id: str, p: Mapping[str, str]) -> CallUpdate:
        fields = self._base_fields(p)
        status_raw = p.get("status", "")
        status = _STATUS.get(status_raw.upper(), "unknown")
        fields["status_raw"] = status_raw or None
        fields["status"] = status
        started = from_unix(p.get("call_start_timestamp"))
        ended = from_unix(p.get("timestamp"))
        answered = from_unix(p.get("call_answer_timestamp")) if to_int(p.get("call_answer_timestamp")) else None
        if answered and started and answered <= started:
            answered = None  # bogus on some routes (equal to or before the start): event 3 gives it instead
        if answered and ended and answered > ended:
            answered = None
        fields["ended_at"] = iso(ended)
        if status == "answered" and answered:
            fields["answered_at"] = iso(answered)
        if started and ended and ended >= started:
            fields["total_seconds"] = int((ended - started).total_seconds())
            if status == "answered" and answered:
                fields["wait_seconds"] = int((answered - started).total_seconds())
                fields["talk_seconds"] = int((ended - answered).total_seconds())
            elif status != "answered":
                fields["wait_seconds"] = fields["total_seconds"]
        if status != "answered":
            fields["talk_seconds"] = 0
        link = p.get("call_record_link", "")
        rec: dict[str, Any] = {"provider_recording_id": call_id, "fetch": "direct_url", "format": "mp3",
                               "channels": self._channels(), "duration_seconds": None}
        if link.startswith(("https://", "http://")):
            rec.update(state="available", url=link)
        else:
            rec.update(state="absent", url=None)  # event 2 without a link: the call was not recorded
        return CallUpdate(call_id, "call_finished", fields, [rec], event_id="event:2", finished=True)

    def _channels(self) -> list[str] | None:
        configured = self.config.get("channels")
        return list(configured) if configured else None

    def reply(self, req: WebhookRequest, outcome: Mapping[str, Any]) -> WebhookReply:
        """Always {"success": true} with 200 for accepted, duplicate and ignored events alike."""
        return WebhookReply(200, SUCCESS)

    def resolve_recording(self, call: Mapping[str, Any], recording: Mapping[str, Any]) -> tuple[str, dict]:
        if recording.get("state") in ("absent", "failed"):
            raise PermanentError(f"sipuni: recording {recording.get('state')}")
        url = recording.get("url")
        if not url:
            raise TransientError("sipuni: record link not known yet")
        if self.config.get("probe_recording"):
            probe_direct_link(self.http, url, "sipuni recording")
        return url, {}


def _is_extension(raw: str) -> bool:
    digits = re.sub(r"\D", "", raw)
    return 0 < len(digits) <= 6


def probe_direct_link(session: requests.Session, url: str, what: str, **kwargs: Any) -> None:
    """Ask for the first bytes of a direct recording link: raise TransientError while it is not audio yet.

    Providers answer a link whose file is still being uploaded with 404 or a small JSON/HTML page
    (❓ Sipuni, Roistat: when the link becomes playable is unconfirmed), so both mean "retry later".
    Never logs the URL: these links carry access hashes.
    """
    headers = dict(kwargs.pop("headers", {}) or {})
    headers.setdefault("Range", "bytes=0-1")
    try:
        resp = session.get(url, headers=headers, stream=True, allow_redirects=True, **kwargs)
    except (requests.Timeout, requests.ConnectionError) as err:
        raise TransientError(f"{what}: {type(err).__name__}") from err
    except requests.RequestException as err:
        raise PermanentError(f"{what}: {type(err).__name__}") from err
    with resp:
        code = resp.status_code
        if code in (401, 403):
            raise AuthError(f"{what}: HTTP {code}")
        if code in (404, 408, 409, 425, 429) or code >= 500:
            raise TransientError(f"{what}: HTTP {code} (not ready)", retry_after_s=None)
        if code >= 400:
            raise PermanentError(f"{what}: HTTP {code}")
        ctype = (resp.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype and not ctype.startswith(_AUDIO_TYPES):
            raise TransientError(f"{what}: answered {ctype}, not audio (not ready)")
