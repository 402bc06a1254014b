"""Roistat call tracking webhooks (providers.md §1.6, §2.2, §3.6).

Roistat POSTs one JSON object when it connects the call ("at call") and one more with the same
``id`` after the call (adds ``status``, ``duration``, ``file_id``, ``link``). Both are sent whether
or not a proxy lead was created. There is no signature: the secret in our URL path authenticates it.
"""
from __future__ import annotations

import json
from typing import Any, Mapping
from urllib.parse import urlsplit

from integrations.base import PayloadError, PermanentError, Setting, TransientError
from integrations.calltracking.base import CallTracking, CallUpdate, WebhookReply, WebhookRequest
from integrations.calltracking.sipuni import probe_direct_link
from integrations.normalize import from_local, iso, to_e164, to_int

_STATUS = {"ANSWER": "answered", "ANSWERED": "answered", "BUSY": "busy", "NOANSWER": "missed",
           "NO ANSWER": "missed", "CANCEL": "missed", "CONGESTION": "failed", "CHANUNAVAIL": "failed",
           "FAILED": "failed"}
_ATTRIBUTION = {"utm_source": "source", "utm_medium": "medium", "utm_campaign": "campaign", "utm_content": "content",
                "utm_term": "term", "marker": "marker", "referrer": "referrer", "landing_page": "landing_page",
                "domain": "site", "google_client_id": "ga_client_id", "metrika_client_id": "ym_client_id",
                "visit_id": "session_id"}
_EXTRA = ("first_visit", "source_level_1", "source_level_2", "roistat_param_1", "roistat_param_2",
          "roistat_param_3", "roistat_param_4", "roistat_param_5", "city", "country")
MAX_SECONDS = 7 * 86400  # longer "durations" are corrupt data, and would overflow date arithmetic
_AFTER_CALL_KEYS = ("status", "duration", "link", "file_id")
_CRM_KEY = {"amocrm": "amocrm_lead_id", "kommo": "amocrm_lead_id", "bitrix24": "bitrix24_deal_id"}


class Roistat(CallTracking):
    name = "roistat"
    docs_url = "https://help-en.roistat.com/features/calltracking/webhook"
    settings = {
        "project": Setting(help="Roistat project number (only checked against recording links when set)"),
        "api_key": Setting(secret=True, help="Roistat API key, sent as Api-key to cloud.roistat.com links (❓)"),
        "channels": Setting(help="Stereo layout of the recordings, left then right (❓ unknown by default)"),
        "probe_recording": Setting(default=True, help="Check the link answers with audio before download"),
    }

    def parse(self, req: WebhookRequest) -> list[CallUpdate]:
        data = self._data(req)
        problems: list[str] = []
        call_id = data.get("id")
        if isinstance(call_id, bool) or not isinstance(call_id, (str, int)) or not str(call_id).strip() \
                or len(str(call_id)) > 128:
            problems.append("id: required call id")
        for key in ("caller", "callee", "date", "status", "link", "marker", "order_id"):
            if data.get(key) is not None and (isinstance(data[key], bool) or not isinstance(data[key], (str, int))):
                problems.append(f"{key}: string expected")
        duration = data.get("duration")
        if duration not in (None, "") and (isinstance(duration, bool) or to_int(duration) is None
                                           or not 0 <= to_int(duration) <= MAX_SECONDS):
            problems.append(f"duration: seconds between 0 and {MAX_SECONDS} expected")
        if problems:
            raise PayloadError("roistat: invalid call webhook", problems, status=422)
        call_id = str(call_id).strip()
        after_call = any(k in data for k in _AFTER_CALL_KEYS)
        fields: dict[str, Any] = {"direction": "inbound"}
        if data.get("caller") not in (None, ""):
            fields["client_phone_raw"] = str(data["caller"])
            fields["client_phone"] = to_e164(data["caller"], self.region)
        if data.get("callee") not in (None, ""):
            fields["tracking_number"] = to_e164(data["callee"], self.region)
        # ❓ providers.md §4.5: `date` is naive; read in the tenant's time zone.
        try:
            started = from_local(data.get("date"), self.timezone)
        except (OverflowError, ValueError):
            started = None  # a date at the edge of the calendar
        if started:
            fields["started_at"] = iso(started)
        fields["attribution"] = self._attribution(data)
        crm = self._crm(data)
        if crm:
            fields["crm"] = crm
        if not after_call:
            return [CallUpdate(call_id, "call_started", fields, event_id="at_call")]
        status_raw = str(data.get("status") or "")
        status = _STATUS.get(status_raw.upper(), "unknown")
        fields.update(status=status, status_raw=status_raw or None)
        talk = to_int(duration) or 0
        # ❓ providers.md §5.6: whether `duration` is talk or total time is unconfirmed; taken as talk.
        fields["talk_seconds"] = talk if status in ("answered", "unknown") else 0
        recordings = [self._recording(call_id, data)]
        return [CallUpdate(call_id, "call_finished", fields, recordings, event_id="after_call", finished=True)]

    @staticmethod
    def _data(req: WebhookRequest) -> dict[str, Any]:
        if req.form.get("id"):
            return dict(req.form)  # tolerated: a form-encoded variant of the same fields
        data = req.json()
        if not isinstance(data, dict):
            raise PayloadError("roistat: body must be a JSON object", status=422)
        return data

    @staticmethod
    def _attribution(data: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for src, dst in _ATTRIBUTION.items():
            val = data.get(src)
            if val not in (None, "") and not isinstance(val, (dict, list)):
                out[dst] = str(val)
        extra = {k: str(data[k]) for k in _EXTRA if data.get(k) not in (None, "") and not isinstance(data[k], (dict, list))}
        custom = data.get("custom_fields")
        if custom:
            extra["custom_fields"] = json.dumps(custom, ensure_ascii=False)
        if extra:
            out["extra"] = extra
        return out

    def _crm(self, data: Mapping[str, Any]) -> dict[str, str]:
        order = data.get("order_id")
        if order in (None, "", 0, "0"):
            return {}
        crm = {"provider_deal_ref": str(order)}
        kind = str((self.tenant.get("crm") or {}).get("kind") or "")
        if kind in _CRM_KEY:
            crm[_CRM_KEY[kind]] = str(order)  # order_id is the deal id in the CRM Roistat is connected to
        return crm

    def _recording(self, call_id: str, data: Mapping[str, Any]) -> dict[str, Any]:
        link = str(data.get("link") or "").strip()
        # the id must not change between deliveries: the call id, plus file_id when Roistat sends one
        rec_id = f"{call_id}:{data['file_id']}" if data.get("file_id") not in (None, "") else call_id
        rec: dict[str, Any] = {"provider_recording_id": rec_id, "fetch": "direct_url",
                               "format": "mp3", "channels": self._channels(), "duration_seconds": None}
        if link.startswith(("https://", "http://")):
            rec.update(state="available", url=link)
        else:
            rec.update(state="absent", url=None)  # the after-call hook is the last word: no link, no audio
        return rec

    def _channels(self) -> list[str] | None:
        configured = self.config.get("channels")
        return list(configured) if configured else None

    def reply(self, req: WebhookRequest, outcome: Mapping[str, Any]) -> WebhookReply:
        return WebhookReply(200, json.dumps({"status": "ok"}))

    def resolve_recording(self, call: Mapping[str, Any], recording: Mapping[str, Any]) -> tuple[str, dict]:
        if recording.get("state") in ("absent", "failed"):
            raise PermanentError(f"roistat: recording {recording.get('state')}")
        url = recording.get("url")
        if not url:
            raise TransientError("roistat: recording link not known yet")
        project = str(self.config.get("project") or "")
        if project and "/projects/" in url and f"/projects/{project}/" not in url:
            raise PermanentError("roistat: recording link belongs to another project")
        kwargs: dict[str, Any] = {}
        host = (urlsplit(url).hostname or "").lower()
        if self.config.get("api_key") and (host == "roistat.com" or host.endswith(".roistat.com")):
            kwargs["headers"] = {"Api-key": str(self.config["api_key"])}  # ❓ §5.6: whether links need auth
        if self.config.get("probe_recording"):
            probe_direct_link(self.http, url, "roistat recording", **{k: dict(v) for k, v in kwargs.items()})
        return url, kwargs
