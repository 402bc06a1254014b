"""Twilio Voice: call status callbacks + recording status callbacks (providers.md §1.8, §2.2, §3.8).

Point both ``statusCallback`` (events: at least ``completed``; ``answered`` helps) and
``recordingStatusCallback`` at ``https://<host>/webhooks/twilio/<tenant>/<secret>``.
Every request is authenticated with ``X-Twilio-Signature`` over the public URL, so the tenant's
``public_url`` must be the exact scheme://host[:port] Twilio calls.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import urllib.parse
from datetime import timedelta
from typing import Any, Mapping

import requests

from integrations.base import (InvalidSignatureError, PayloadError, PermanentError, Setting, TransientError,
                               check_response, request)
from integrations.calltracking.base import (CallTracking, CallUpdate, WebhookReply, WebhookRequest, body_sha256,
                                            secure_equals)
from integrations.normalize import from_rfc2822, iso, to_e164, to_int

EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
_FINAL_CALL_STATUS = {"completed": None, "busy": "busy", "no-answer": "missed", "canceled": "missed",
                      "failed": "failed"}
_DIAL_STATUS = {"completed": "answered", "answered": "answered", "busy": "busy", "no-answer": "missed",
                "canceled": "missed", "failed": "failed"}
MAX_SECONDS = 7 * 86400  # longer "durations" are corrupt data, and would overflow date arithmetic
_RECORDING_STATE = {"completed": "available", "absent": "absent", "failed": "failed", "in-progress": "pending"}


class Twilio(CallTracking):
    name = "twilio"
    docs_url = "https://www.twilio.com/docs/usage/webhooks/webhooks-security"
    signs = True
    # ❓ providers.md §4.4: with <Dial record="record-from-answer-dual"> Twilio puts the parent leg
    # (the caller, i.e. our client on an inbound call) on the left channel and the dialled child leg
    # (the operator) on the right. Not verified on a live call: override with the provider key `channels`.
    default_channels = ("client", "operator")
    settings = {
        "account_sid": Setting(required=True, help="Account SID (AC...); callbacks of other accounts are refused"),
        "auth_token": Setting(required=True, secret=True, help="Auth Token: verifies X-Twilio-Signature"),
        "previous_auth_token": Setting(secret=True, help="The old Auth Token, accepted while rotating"),
        "api_base": Setting(default="https://api.twilio.com", help="Twilio REST API base URL"),
        "recording_format": Setting(default="mp3", help="mp3 or wav: appended to RecordingUrl"),
        "media_basic_auth": Setting(default=True, help="Send Account SID/Auth Token with media requests"),
        "completed_is_answered": Setting(default=False, help="Treat CallStatus=completed as answered even "
                                         "without an answered/in-progress event (status callback only on completed)"),
        "record_calls": Setting(default=True, help="Calls are recorded: wait for a recording callback"),
        "channels": Setting(help="Dual-channel layout, left then right, e.g. [client, operator]"),
    }

    # -- authenticity --------------------------------------------------------------------------

    def verify(self, req: WebhookRequest) -> None:
        signature = req.headers.get("X-Twilio-Signature") or ""
        if not signature:
            raise InvalidSignatureError("twilio: X-Twilio-Signature missing")
        tokens = [t for t in (self.config.get("auth_token"), self.config.get("previous_auth_token")) if t]
        params = self._signed_params(req)
        url = req.url
        if params is None:  # JSON body: the URL carries bodySHA256 and the params are not signed
            query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query, keep_blank_values=True))
            if not query.get("bodySHA256") or not secure_equals(query["bodySHA256"].lower(), body_sha256(req.body)):
                raise InvalidSignatureError("twilio: bodySHA256 does not match the body")
            params = {}
        for candidate in _url_variants(url):
            data = candidate + "".join(k + v for k, vs in sorted(params.items()) for v in sorted(set(vs)))
            for token in tokens:
                expected = base64.b64encode(hmac.new(str(token).encode(), data.encode("utf-8"), hashlib.sha1).digest())
                if secure_equals(expected, signature.encode("utf-8", "replace")):
                    self._check_account(req)
                    return
        raise InvalidSignatureError("twilio: X-Twilio-Signature does not match (check the tenant's public_url)")

    @staticmethod
    def _signed_params(req: WebhookRequest) -> dict[str, list[str]] | None:
        """Form params with every value (Twilio signs repeated keys too); None for a JSON body."""
        if req.method.upper() != "POST":
            return {}
        ctype = (req.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype == "application/json":
            return None
        try:
            text = req.body.decode("utf-8")
        except UnicodeDecodeError as err:
            raise InvalidSignatureError("twilio: body is not UTF-8") from err
        out: dict[str, list[str]] = {}
        for k, v in urllib.parse.parse_qsl(text, keep_blank_values=True):
            out.setdefault(k, []).append(v)
        return out

    def _check_account(self, req: WebhookRequest) -> None:
        sid = self._params(req).get("AccountSid")
        if sid and self.config.get("account_sid") and not secure_equals(sid, str(self.config["account_sid"])):
            raise InvalidSignatureError("twilio: AccountSid is not this tenant's account")

    # -- parsing -------------------------------------------------------------------------------

    @staticmethod
    def _params(req: WebhookRequest) -> dict[str, str]:
        if req.method.upper() == "POST" and req.body and not req.form:
            try:
                return dict(urllib.parse.parse_qsl(req.body.decode("utf-8"), keep_blank_values=True))
            except UnicodeDecodeError as err:
                raise PayloadError("body is not UTF-8", status=400) from err
        return req.params()

    def parse(self, req: WebhookRequest) -> list[CallUpdate]:
        p = self._params(req)
        call_sid = (p.get("CallSid") or "").strip()
        if not call_sid:
            raise PayloadError("twilio: CallSid missing", ["CallSid: required"], status=422)
        status = (p.get("CallStatus") or "").strip().lower()
        if p.get("RecordingStatus") or (p.get("RecordingSid") and not status):
            return [self._recording_update(call_sid, p)]
        if not status:
            raise PayloadError("twilio: neither CallStatus nor RecordingStatus", ["CallStatus: required"], status=422)
        parent = (p.get("ParentCallSid") or "").strip()
        if parent:
            return self._child_leg_update(parent, call_sid, status, p)
        update = self._status_update(call_sid, status, p)
        if p.get("RecordingSid") and update.finished:
            # <Dial record=...> / Record=true: the status callback of the finished call names the recording
            update.recordings = self._recording_update(call_sid, p).recordings
        return [update]

    def _status_update(self, call_sid: str, status: str, p: Mapping[str, str]) -> CallUpdate:
        direction_raw = (p.get("Direction") or "").lower()
        fields: dict[str, Any] = {}
        if direction_raw == "inbound":
            fields["direction"] = "inbound"
            client_raw, tracking_raw = p.get("From"), p.get("To")
        elif direction_raw.startswith("outbound"):
            fields["direction"] = "outbound"
            client_raw, tracking_raw = p.get("To"), p.get("From")
        else:
            client_raw = tracking_raw = None
        if client_raw is not None:
            fields["client_phone_raw"] = client_raw
            fields["client_phone"] = to_e164(client_raw, self.region)
        if tracking_raw is not None:
            fields["tracking_number"] = to_e164(tracking_raw, self.region)
        if p.get("ForwardedFrom"):
            fields["provider_aux_ids"] = {"forwarded_from": p["ForwardedFrom"]}
        ts = from_rfc2822(p.get("Timestamp"))
        seq = p.get("SequenceNumber") or ""
        event_id = f"status:{status}:{seq}"
        if status in ("in-progress", "answered"):
            fields.update(status="answered", answered_at=iso(ts))
            return CallUpdate(call_sid, "call_updated", fields, event_id=event_id)
        if status not in _FINAL_CALL_STATUS:  # queued, initiated, ringing
            return CallUpdate(call_sid, "call_started", fields, event_id=event_id)
        duration = to_int(p.get("CallDuration")) or 0
        if not 0 <= duration <= MAX_SECONDS:
            raise PayloadError("twilio: CallDuration out of range", [f"CallDuration: 0..{MAX_SECONDS}"], status=422)
        fields["status_raw"] = status  # only the final status: intermediate ones may arrive after it
        fields["ended_at"] = iso(ts)
        try:
            fields["started_at"] = iso(ts - timedelta(seconds=duration)) if ts else None
        except OverflowError:
            fields["started_at"] = None
        fields["total_seconds"] = duration
        mapped = _FINAL_CALL_STATUS[status]
        if mapped is None:  # completed: only says the call ended
            dial = (p.get("DialCallStatus") or "").lower()
            if dial in _DIAL_STATUS:
                mapped = _DIAL_STATUS[dial]
            elif self.config.get("completed_is_answered"):
                mapped = "answered"
            else:
                mapped = "unknown"  # an answered/in-progress event (any order) upgrades it
            # ❓ CallDuration includes IVR and ringing; DialCallDuration (from a <Dial action>) is the talk.
            talk = to_int(p.get("DialCallDuration"))
            talk = talk if talk is not None and 0 <= talk <= MAX_SECONDS else None
            fields["talk_seconds"] = talk if talk is not None else duration
        else:
            fields["talk_seconds"] = 0
        fields["status"] = mapped
        return CallUpdate(call_sid, "call_finished", fields, event_id=event_id, finished=True)

    def _child_leg_update(self, parent: str, call_sid: str, status: str, p: Mapping[str, str]) -> list[CallUpdate]:
        """A <Dial> child leg (the operator's phone): evidence that the call was answered, and by whom.

        Its misses are ignored: with several operators dialled at once one leg's no-answer does
        not make the call missed; the parent's own final status covers that.
        """
        if status not in ("in-progress", "answered", "completed"):
            return []
        operator = {}
        phone = to_e164(p.get("To"), self.region)
        if phone:
            operator["phone"] = phone
        elif p.get("To"):
            operator["extension"] = p["To"]
        fields: dict[str, Any] = {"status": "answered", "provider_aux_ids": {"dial_leg_call_sid": call_sid}}
        if operator:
            fields["operator"] = operator
        return [CallUpdate(parent, "call_updated", fields, event_id=f"leg:{call_sid}:{status}")]

    def _recording_update(self, call_sid: str, p: Mapping[str, str]) -> CallUpdate:
        rec_sid = (p.get("RecordingSid") or "").strip()
        status = (p.get("RecordingStatus") or "completed").strip().lower()
        state = _RECORDING_STATE.get(status, "pending")
        n_channels = to_int(p.get("RecordingChannels"))
        url = (p.get("RecordingUrl") or "").strip() or None
        if url and not url.startswith("https://"):
            raise PayloadError("twilio: RecordingUrl is not an https URL", ["RecordingUrl: https URL"], status=422)
        rec = {
            "provider_recording_id": rec_sid or f"{call_sid}:recording",
            "state": state, "fetch": "api_call", "url": url,
            "format": str(self.config.get("recording_format") or "mp3"),
            "channels": self._channels(n_channels),
            "duration_seconds": to_int(p.get("RecordingDuration")),
        }
        if p.get("ErrorCode") not in (None, "", "0"):
            rec["error_code"] = p["ErrorCode"]  # 16101 too short, 16102 silent
        fields: dict[str, Any] = {}
        started = from_rfc2822(p.get("RecordingStartTime"))
        if started and state == "available":
            fields["provider_aux_ids"] = {"recording_started_at": iso(started)}
        finished = state in ("available", "absent", "failed")
        # A finished recording means the recorded conversation is over: the call may be processed
        # even if the status callback is not configured (a late one still merges in).
        return CallUpdate(call_sid, "recording_ready", fields, [rec], event_id=f"recording:{rec_sid}:{status}",
                          finished=finished)

    def _channels(self, n: int | None) -> list[str] | None:
        if n == 2:
            configured = self.config.get("channels")
            return list(configured) if configured else list(self.default_channels or ()) or None
        if n == 1:
            return ["unknown"]
        return None

    # -- answering -----------------------------------------------------------------------------

    def reply(self, req: WebhookRequest, outcome: Mapping[str, Any]) -> WebhookReply:
        """Twilio only checks for a 2xx within 15 s; an empty TwiML document is always safe."""
        return WebhookReply(200, EMPTY_TWIML, "text/xml")

    # -- recordings ----------------------------------------------------------------------------

    def expects_recording(self, record: Mapping[str, Any]) -> bool:
        if not self.config.get("record_calls"):
            return False
        recs = record.get("recordings") or []
        if any(r.get("state") == "pending" for r in recs):
            return True
        if recs:
            return False
        return record.get("status") in ("answered", "unknown")

    def resolve_recording(self, call: Mapping[str, Any], recording: Mapping[str, Any]) -> tuple[str, dict]:
        """RecordingUrl + .mp3 (or .wav), with HTTP Basic auth (harmless when media is public).

        A recording we only know as pending (an ``in-progress`` callback, or a status callback that
        arrived without the recording callback) is looked up in the REST API first: ``processing``
        means "not yet" (TransientError), ``absent``/``deleted``/``failed`` mean never (PermanentError).
        """
        state = recording.get("state")
        if state in ("absent", "failed"):
            raise PermanentError(f"twilio: recording {state}")
        sid = str(recording.get("provider_recording_id") or "")
        url = recording.get("url")
        auth = (str(self.config["account_sid"]), str(self.config["auth_token"]))
        if state != "available" or not url:
            if not sid.startswith("RE"):
                raise TransientError("twilio: recording not announced yet")
            url = self._recording_api_url(sid)
            resp = request(self.http, "GET", url + ".json", "twilio recording status", auth=auth)
            try:
                status = str(resp.json().get("status") or "").lower()
            except ValueError as err:
                raise TransientError("twilio: recording status is not JSON") from err
            if status in ("absent", "deleted", "failed"):
                raise PermanentError(f"twilio: recording {status}")
            if status != "completed":
                raise TransientError(f"twilio: recording {status or 'not ready'}", retry_after_s=60)
        fmt = str(recording.get("format") or self.config.get("recording_format") or "mp3").lstrip(".")
        if not url.lower().endswith((".mp3", ".wav")):
            url = f"{url}.{fmt}"
        if not self.config.get("media_basic_auth"):
            return url, {}
        # ❓ providers.md §5.8: media needs Basic auth only when "enforce HTTP auth on media" is on.
        # Ask once without following redirects: a redirect to a signed media URL is returned bare, so
        # the Account SID/Auth Token never travel to the media host when the download follows it.
        try:
            resp = self.http.get(url, auth=auth, allow_redirects=False, stream=True)
        except (requests.Timeout, requests.ConnectionError) as err:
            raise TransientError(f"twilio recording: {type(err).__name__}") from err
        except requests.RequestException as err:
            raise PermanentError(f"twilio recording: {type(err).__name__}") from err
        with resp:
            if resp.status_code == 404:
                raise TransientError("twilio recording: HTTP 404 (not ready)", retry_after_s=60)
            check_response(resp, "twilio recording")
            location = resp.headers.get("Location")
            if resp.is_redirect and location:
                return urllib.parse.urljoin(url, location), {}
        return url, {"auth": auth}

    def _recording_api_url(self, sid: str) -> str:
        return f"{str(self.config['api_base']).rstrip('/')}/2010-04-01/Accounts/{self.config['account_sid']}/Recordings/{sid}"


def _url_variants(url: str) -> list[str]:
    """The URL as given, plus with/without the default port (Twilio's validators try both)."""
    parts = urllib.parse.urlsplit(url)
    out = [url]
    default = {"https": 443, "http": 80}.get(parts.scheme)
    if parts.port is None and default:
        out.append(urllib.parse.urlunsplit(parts._replace(netloc=f"{parts.netloc}:{default}")))
    elif parts.port == default:
        netloc = parts.netloc.rsplit(":", 1)[0]
        out.append(urllib.parse.urlunsplit(parts._replace(netloc=netloc)))
    return out
