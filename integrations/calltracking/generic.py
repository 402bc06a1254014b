"""The generic JSON "call finished" webhook: our own documented canonical format."""
from __future__ import annotations

from typing import Any

from integrations.base import PayloadError
from integrations.calltracking.base import (DIRECTIONS, STATUSES, CallTracking, CallUpdate,
                                            WebhookRequest)
from integrations.normalize import from_local, iso, to_e164

_DIRECTION_ALIASES = {"in": "inbound", "incoming": "inbound", "out": "outbound", "outgoing": "outbound"}
_CHANNEL_ROLES = ("operator", "client", "unknown")
ATTRIBUTION_KEYS = ("source", "medium", "campaign", "content", "term", "keyword", "marker", "referrer",
                    "landing_page", "call_page", "site", "ga_client_id", "ym_client_id", "gclid", "yclid",
                    "fbclid", "session_id", "visitor_id")


class GenericJson(CallTracking):
    """POST /webhooks/generic/<tenant>/<secret> with the JSON documented in the README."""

    name = "generic"
    docs_url = "README.md#generic-webhook"

    def parse(self, req: WebhookRequest) -> list[CallUpdate]:
        data = req.json()
        if not isinstance(data, dict):
            raise PayloadError("body must be a JSON object", status=422)
        problems: list[str] = []
        fields: dict[str, Any] = {}
        call_id = data.get("provider_call_id")
        if not isinstance(call_id, (str, int)) or isinstance(call_id, bool) or str(call_id).strip() == "":
            problems.append("provider_call_id: required non-empty string")
        direction = _DIRECTION_ALIASES.get(str(data.get("direction", "")).lower(), data.get("direction"))
        if direction not in DIRECTIONS:
            problems.append(f"direction: must be one of {', '.join(DIRECTIONS)}")
        status = data.get("status")
        if status not in STATUSES:
            problems.append(f"status: must be one of {', '.join(STATUSES)}")
        started = from_local(data.get("started_at"), self.timezone) if isinstance(data.get("started_at"), str) else None
        if started is None:
            problems.append("started_at: required ISO 8601 date-time")
        for key, required in (("talk_seconds", True), ("wait_seconds", False), ("total_seconds", False)):
            value = data.get(key)
            if value is None and not required:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                problems.append(f"{key}: {'required ' if required else ''}number of seconds >= 0")
            else:
                fields[key] = int(round(value))
        phone_raw = data.get("client_phone")
        if phone_raw is not None and not isinstance(phone_raw, (str, int)):
            problems.append("client_phone: string or null")
        fields["operator"] = self._operator(data.get("operator"), problems)
        fields["attribution"] = self._attribution(data.get("attribution"), problems)
        recordings = self._recordings(data.get("recordings"), problems)
        crm = data.get("crm")
        if crm is not None and not isinstance(crm, dict):
            problems.append("crm: object like {\"deal_id\": \"123\"}")
        if problems:
            raise PayloadError("invalid call event", problems)
        fields.update({
            "direction": direction, "status": status, "status_raw": status,
            "started_at": iso(started), "client_phone_raw": None if phone_raw is None else str(phone_raw),
            "client_phone": to_e164(phone_raw, self.region), "tracking_number": to_e164(data.get("tracking_number"), self.region),
        })
        if crm:
            fields["crm"] = {k: str(v) for k, v in crm.items() if v not in (None, "")}
        if not recordings:
            recordings = []
        return [CallUpdate(provider_call_id=str(call_id).strip(), event_kind="call_finished", fields=fields,
                           recordings=recordings, event_id=f"call:{str(call_id).strip()}", finished=True)]

    @staticmethod
    def _operator(value: Any, problems: list[str]) -> dict | None:
        if value is None:
            return None
        if isinstance(value, str):
            return {"name": value}
        if not isinstance(value, dict):
            problems.append("operator: object {provider_id, extension, name, email, phone} or a name")
            return None
        return {k: str(value[k]) for k in ("provider_id", "extension", "name", "email", "phone") if value.get(k) not in (None, "")}

    @staticmethod
    def _attribution(value: Any, problems: list[str]) -> dict | None:
        if value is None:
            return None
        if not isinstance(value, dict):
            problems.append("attribution: object")
            return None
        out: dict[str, Any] = {}
        extra: dict[str, str] = {}
        for key, val in value.items():
            if val in (None, ""):
                continue
            name = key[4:] if key.startswith("utm_") else key
            if name in ATTRIBUTION_KEYS:
                out[name] = str(val)
            else:
                extra[key] = str(val)
        if extra:
            out["extra"] = extra
        return out

    @staticmethod
    def _recordings(value: Any, problems: list[str]) -> list[dict]:
        if value is None:
            return []
        if not isinstance(value, list):
            problems.append("recordings: list of {url, channels}")
            return []
        out = []
        for i, rec in enumerate(value):
            if not isinstance(rec, dict) or not isinstance(rec.get("url"), str) or not rec["url"].startswith(("http://", "https://")):
                problems.append(f"recordings[{i}].url: http(s) URL required")
                continue
            channels = rec.get("channels")
            if channels in (None, "stereo"):
                channels = None
            elif channels == "mono":
                channels = ["unknown"]
            elif not (isinstance(channels, list) and channels and all(c in _CHANNEL_ROLES for c in channels)):
                problems.append(f"recordings[{i}].channels: list like [\"operator\", \"client\"] or \"mono\"")
                continue
            out.append({"provider_recording_id": str(rec.get("id") or rec["url"]), "state": "available",
                        "fetch": "direct_url", "url": rec["url"], "channels": channels,
                        "format": rec.get("format"), "duration_seconds": rec.get("duration_seconds")})
        return out
