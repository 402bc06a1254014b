"""CallRail webhooks: post-call and call modified (pre-call / routing complete tolerated).

providers.md §1.9, §2.2, §3.9. JSON bodies signed with the company's signing key. The exact
scheme is only 🟡 observed: header ``Signature`` = base64(HMAC-SHA1(signing_key, raw body)).
Header name, hash and encoding are settings so a live check can fix them without code changes.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import timedelta
from typing import Any, Mapping
from urllib.parse import urlsplit

import requests

from integrations.base import (AuthError, InvalidSignatureError, NotConfiguredError, PayloadError, PermanentError,
                               Setting, TransientError, check_response)
from integrations.calltracking.base import CallTracking, CallUpdate, WebhookReply, WebhookRequest, secure_equals
from integrations.normalize import from_local, iso, to_e164, to_int

_ATTRIBUTION = (("utm_source", "source"), ("utm_medium", "medium"), ("utm_campaign", "campaign"),
                ("utm_content", "content"), ("utm_term", "term"), ("keywords", "keyword"),
                ("landing_page_url", "landing_page"), ("last_requested_url", "call_page"), ("gclid", "gclid"),
                ("fbclid", "fbclid"), ("ga", "ga_client_id"), ("person_resource_id", "visitor_id"))
_FALLBACK = {"source": "source", "medium": "medium", "campaign": "campaign"}  # CallRail's own names
_EXTRA = ("source_name", "msclkid", "referrer_domain", "customer_city", "customer_state", "customer_country",
          "first_call", "lead_status", "value", "call_type")
MAX_SECONDS = 7 * 86400  # longer "durations" are corrupt data, and would overflow date arithmetic
_HASHES = {"sha1": hashlib.sha1, "sha256": hashlib.sha256}


class CallRail(CallTracking):
    name = "callrail"
    docs_url = "https://support.callrail.com/hc/en-us/articles/5711246459149-Webhooks"
    signs = True
    settings = {
        "signing_key": Setting(required=True, secret=True, help="Company signing key (Integrations → Webhooks)"),
        "previous_signing_key": Setting(secret=True, help="The old signing key, accepted while rotating"),
        "api_key": Setting(secret=True, help="API v3 key: downloads recordings"),
        "account_id": Setting(help="Account id (the a/<id> in API URLs); only needed if a webhook lacks 'recording'"),
        "api_base": Setting(default="https://api.callrail.com/v3", help="CallRail API base URL"),
        # ❓ providers.md §1.9: header/hash/encoding observed in one implementation only.
        "signature_header": Setting(default="Signature", help="Header carrying the signature"),
        "signature_hash": Setting(default="sha1", help="sha1 or sha256"),
        "record_calls": Setting(default=True, help="Calls are recorded: wait for a late 'call modified'"),
        "channels": Setting(help="Stereo layout of the recordings, left then right (❓ unknown by default)"),
    }

    def __init__(self, config=None, http=None, *, tenant=None):
        super().__init__(config, http, tenant=tenant)
        if str(self.config.get("signature_hash") or "sha1").lower() not in _HASHES:
            raise NotConfiguredError("callrail: signature_hash must be sha1 or sha256")

    # -- authenticity --------------------------------------------------------------------------

    def verify(self, req: WebhookRequest) -> None:
        header = str(self.config.get("signature_header") or "Signature")
        given = (req.headers.get(header) or req.headers.get("X-CallRail-Signature") or "").strip()
        if not given:
            raise InvalidSignatureError(f"callrail: {header} header missing")
        digest = _HASHES[str(self.config.get("signature_hash") or "sha1").lower()]
        if given.lower().startswith(("sha1=", "sha256=")):
            given = given.split("=", 1)[1]
        keys = [k for k in (self.config.get("signing_key"), self.config.get("previous_signing_key")) if k]
        for key in keys:
            mac = hmac.new(str(key).encode(), req.body, digest).digest()
            # base64 is the observed encoding; hex is accepted too (❓) at no cost to security
            for expected in (base64.b64encode(mac).decode(), mac.hex()):
                if secure_equals(expected, given):
                    return
        raise InvalidSignatureError("callrail: signature does not match the body")

    # -- parsing -------------------------------------------------------------------------------

    def parse(self, req: WebhookRequest) -> list[CallUpdate]:
        data = req.json()
        if not isinstance(data, dict):
            raise PayloadError("callrail: body must be a JSON object", status=422)
        problems = []
        call_id = data.get("resource_id")
        if not isinstance(call_id, str) or not call_id.strip() or len(call_id) > 128:
            problems.append("resource_id: required call id (CAL...)")
        for key in ("direction", "customer_phone_number", "customer_number", "tracking_phone_number", "start_time",
                    "recording", "agent_email"):
            if data.get(key) is not None and not isinstance(data[key], str):
                problems.append(f"{key}: string expected")
        for key in ("duration", "recording_duration"):
            val = data.get(key)
            if val not in (None, "") and (isinstance(val, bool) or to_int(val) is None
                                          or not 0 <= to_int(val) <= MAX_SECONDS):
                problems.append(f"{key}: seconds between 0 and {MAX_SECONDS} expected")
        for key in ("answered", "voicemail"):
            if data.get(key) is not None and not isinstance(data[key], bool):
                problems.append(f"{key}: true or false expected")
        started = _safe_local(data.get("start_time"), self.timezone) if isinstance(data.get("start_time"), str) else None
        if data.get("start_time") and started is None:
            problems.append("start_time: ISO 8601 date-time expected")
        if problems:
            raise PayloadError("callrail: invalid call webhook", problems, status=422)
        call_id = call_id.strip()
        fields: dict[str, Any] = {}
        direction = str(data.get("direction") or "").lower()
        if direction in ("inbound", "outbound"):
            fields["direction"] = direction
        client_raw = data.get("customer_phone_number") or data.get("customer_number")
        if client_raw:
            fields["client_phone_raw"] = client_raw
            fields["client_phone"] = to_e164(client_raw, self.region)
        if data.get("tracking_phone_number"):
            fields["tracking_number"] = to_e164(data["tracking_phone_number"], self.region)
        if data.get("agent_email"):
            fields["operator"] = {"email": data["agent_email"]}
        if started:
            fields["started_at"] = iso(started)
        aux = {k: str(data[k]) for k in ("company_resource_id", "tracker_resource_id", "person_resource_id")
               if isinstance(data.get(k), str) and data[k]}
        if data.get("business_phone_number"):
            aux["business_phone_number"] = str(to_e164(data["business_phone_number"], self.region)
                                               or data["business_phone_number"])
        if aux:
            fields["provider_aux_ids"] = aux
        fields["attribution"] = self._attribution(data)
        duration = to_int(data.get("duration"))
        if duration is None:  # pre-call / routing complete: the call is still going on
            return [CallUpdate(call_id, "call_started", fields)]
        voicemail, answered = data.get("voicemail") is True, data.get("answered")
        status = "voicemail" if voicemail else "answered" if answered is True else "missed" if answered is False \
            else "unknown"
        fields.update(status=status, status_raw=str(data.get("call_type") or "") or None, total_seconds=duration,
                      talk_seconds=duration if status in ("answered", "unknown") else 0)
        if started:
            try:
                fields["ended_at"] = iso(started + timedelta(seconds=duration))
            except OverflowError:
                pass
        recordings = self._recordings(call_id, data, status)
        kind = "recording_ready" if data.get("recording") and req.query.get("event") == "modified" else "call_finished"
        # No delivery id: post-call and each call-modified differ in body, so the body hash keys them.
        return [CallUpdate(call_id, kind, fields, recordings, event_id=None, finished=True)]

    @staticmethod
    def _attribution(data: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        extra: dict[str, str] = {}
        for src, dst in _ATTRIBUTION:
            val = data.get(src)
            if val not in (None, "") and not isinstance(val, (dict, list)):
                out[dst] = str(val)
        for src, dst in _FALLBACK.items():
            val = data.get(src)
            if val in (None, "") or isinstance(val, (dict, list)):
                continue
            if dst in out:
                if out[dst] != str(val):
                    extra[f"callrail_{src}"] = str(val)  # e.g. "Google Ads" next to utm_source=google
            else:
                out[dst] = str(val)
        referrer = data.get("referring_url") or data.get("referrer_domain")
        if referrer and isinstance(referrer, str):
            out["referrer"] = referrer
        for key in _EXTRA:
            val = data.get(key)
            if val not in (None, "") and not isinstance(val, (dict, list)):
                extra[key] = str(val).lower() if isinstance(val, bool) else str(val)
        tags = data.get("tags")
        if isinstance(tags, list) and tags:
            extra["tags"] = ", ".join(str(t.get("name", t)) if isinstance(t, dict) else str(t) for t in tags)
        if extra:
            out["extra"] = extra
        return out

    def _recordings(self, call_id: str, data: Mapping[str, Any], status: str) -> list[dict[str, Any]]:
        url = data.get("recording")
        base = {"provider_recording_id": call_id, "fetch": "api_call", "format": "mp3",
                "channels": self._channels(), "duration_seconds": to_int(data.get("recording_duration"))}
        if url:
            if not url.startswith("https://"):
                raise PayloadError("callrail: recording is not an https URL", ["recording: https URL"], status=422)
            return [dict(base, state="available", url=url)]
        if status == "missed":
            return [dict(base, state="absent", url=None)]
        return []  # answered without a recording yet: a late one comes through "call modified"

    def _channels(self) -> list[str] | None:
        configured = self.config.get("channels")
        return list(configured) if configured else None

    def reply(self, req: WebhookRequest, outcome: Mapping[str, Any]) -> WebhookReply:
        return WebhookReply(200, json.dumps({"status": "ok"}))

    # -- recordings ----------------------------------------------------------------------------

    def expects_recording(self, record: Mapping[str, Any]) -> bool:
        """CallRail waits at most 20 min before post-call; a later recording arrives via call modified."""
        if not self.config.get("record_calls") or record.get("recordings"):
            return False
        return record.get("status") in ("answered", "voicemail", "unknown")

    def resolve_recording(self, call: Mapping[str, Any], recording: Mapping[str, Any]) -> tuple[str, dict]:
        """GET the API ``recording`` URL with the API key; it names (or redirects to) a temporary mp3 URL.

        ❓ providers.md §1.9: the response shape is unconfirmed; handled: a redirect, JSON with
        ``url``, or the audio itself (then the API URL is downloaded with the key).
        """
        if recording.get("state") in ("absent", "failed"):
            raise PermanentError(f"callrail: recording {recording.get('state')}")
        if not self.config.get("api_key"):
            raise AuthError("callrail: api_key is required to download recordings")
        url = recording.get("url")
        if not url:
            if not self.config.get("account_id"):
                raise TransientError("callrail: recording not announced yet")
            url = (f"{str(self.config['api_base']).rstrip('/')}/a/{self.config['account_id']}/calls/"
                   f"{call.get('provider_call_id')}/recording.json")
        api_host = urlsplit(str(self.config["api_base"])).hostname
        if urlsplit(url).hostname != api_host or urlsplit(url).scheme != "https":
            raise PermanentError("callrail: recording URL is not on the CallRail API host; the key is not sent")
        headers = {"Authorization": f'Token token="{self.config["api_key"]}"'}
        try:
            resp = self.http.get(url, headers=headers, allow_redirects=False, stream=True)
        except (requests.Timeout, requests.ConnectionError) as err:
            raise TransientError(f"callrail recording: {type(err).__name__}") from err
        except requests.RequestException as err:
            raise PermanentError(f"callrail recording: {type(err).__name__}") from err
        with resp:
            if resp.status_code == 404:
                raise TransientError("callrail recording: HTTP 404 (not ready)")
            check_response(resp, "callrail recording")
            location = resp.headers.get("Location")
            if 300 <= resp.status_code < 400 and location:
                return location, {}
            ctype = (resp.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            if ctype.startswith("audio/") or ctype == "application/octet-stream":
                return url, {"headers": headers}
            try:
                payload = json.loads(resp.content or b"null")
            except ValueError as err:
                raise TransientError("callrail recording: answer is neither JSON nor audio") from err
        link = payload.get("url") if isinstance(payload, dict) else None
        if not isinstance(link, str) or not link.startswith("https://"):
            raise TransientError("callrail recording: no URL yet")
        return link, {}


def _safe_local(value: Any, tz_name: str):
    """from_local, but a date at the edge of the calendar is 'unparseable', not an OverflowError."""
    try:
        return from_local(value, tz_name)
    except (OverflowError, ValueError):
        return None
