"""Call-tracking adapter contract: webhook request in, canonical call updates out."""
from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

from integrations.base import Adapter, PayloadError, TransientError

EVENT_KINDS = ("call_finished", "recording_ready", "call_updated", "call_started")
DIRECTIONS = ("inbound", "outbound", "internal", "unknown")
STATUSES = ("answered", "missed", "busy", "failed", "voicemail", "unknown")
RECORDING_STATES = ("pending", "available", "absent", "failed")
RECORDING_FETCH = ("direct_url", "api_call", "await_event")


@dataclass(frozen=True)
class WebhookRequest:
    """Everything an adapter may look at; built once by the webhook route from the raw request."""

    method: str
    url: str                      # the public URL the provider called (Twilio signs it)
    headers: Mapping[str, str]    # case-insensitive mapping
    query: Mapping[str, str]
    form: Mapping[str, str]       # decoded urlencoded/multipart body, first value per key
    body: bytes                   # raw body, exactly as received
    remote_addr: str | None = None

    def json(self) -> Any:
        """The body as JSON, or PayloadError(400)."""
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as err:
            raise PayloadError("body is not valid JSON", status=400) from err

    def params(self) -> dict[str, str]:
        """Query and form fields merged (form wins): providers send either."""
        merged = dict(self.query)
        merged.update(self.form)
        return merged


@dataclass
class CallUpdate:
    """One event's contribution to a canonical call record (providers.md §2.1).

    ``fields`` holds only what this event knows: direction, client_phone, client_phone_raw,
    tracking_number, operator, started_at/answered_at/ended_at (ISO UTC), wait_seconds,
    talk_seconds, total_seconds, status, status_raw, attribution, crm, provider_aux_ids.
    ``recordings`` entries: provider_recording_id, state, fetch, url, url_expires_at,
    format, channels (e.g. ["operator", "client"] for left/right), duration_seconds.
    ``finished`` is True when the event proves the call is over.
    """

    provider_call_id: str
    event_kind: str
    fields: dict[str, Any] = field(default_factory=dict)
    recordings: list[dict[str, Any]] = field(default_factory=list)
    event_id: str | None = None   # provider's delivery id; None -> sha256 of the raw body
    finished: bool = False


@dataclass(frozen=True)
class WebhookReply:
    """What the route answers the provider (some providers need an exact body)."""

    status: int
    body: str
    content_type: str = "application/json"


class CallTracking(Adapter):
    """A call-tracking provider: verify and parse webhooks, resolve recording downloads."""

    kind: ClassVar[str] = "calltracking"
    signs: ClassVar[bool] = False          # True when the provider signs its requests
    default_channels: ClassVar[tuple[str, ...] | None] = None  # stereo layout if known

    def __init__(self, config: Mapping[str, Any] | None = None, http=None, *, tenant: Mapping[str, Any] | None = None):
        super().__init__(config, http)
        self.tenant = dict(tenant or {})

    @property
    def region(self) -> str:
        return self.tenant.get("phone_region", "RU")

    @property
    def timezone(self) -> str:
        return self.tenant.get("timezone", "Europe/Moscow")

    def handshake(self, req: WebhookRequest) -> WebhookReply | None:
        """Answer a provider's URL check (e.g. Zadarma zd_echo) before anything else, or None."""
        return None

    def verify(self, req: WebhookRequest) -> None:
        """Check the provider's signature on the raw body; raise InvalidSignatureError."""

    def parse(self, req: WebhookRequest) -> list[CallUpdate]:
        """Turn one webhook into call updates (pure); [] for events we ignore; PayloadError if broken."""
        raise NotImplementedError

    def reply(self, req: WebhookRequest, outcome: Mapping[str, Any]) -> WebhookReply:
        """The answer for an accepted webhook; ``outcome`` has status, call_id(s)."""
        code = 202 if outcome.get("status") == "accepted" else 200
        return WebhookReply(code, json.dumps(dict(outcome)))

    def enrich(self, record: Mapping[str, Any]) -> CallUpdate | None:
        """Optionally complete a record from the provider API (worker side, may use HTTP); None = nothing."""
        return None

    def expects_recording(self, record: Mapping[str, Any]) -> bool:
        """Whether a recording may still arrive for a call that has none yet (separate event or API)."""
        return False

    def resolve_recording(self, call: Mapping[str, Any], recording: Mapping[str, Any]) -> tuple[str, dict]:
        """Return (url, requests kwargs) to download one recording.

        Direct links are returned as is; API-fetched recordings call the provider here.
        Raise TransientError while the recording is not ready, PermanentError when it never will be.
        """
        url = recording.get("url")
        if not url:
            raise TransientError("recording link not known yet")
        return url, {}


def not_ready_hook(what: str, statuses: tuple[int, ...]):
    """A requests response hook turning the provider's 'not there yet' statuses into TransientError."""

    def hook(resp, *args, **kwargs):
        if resp.status_code in statuses:
            raise TransientError(f"{what}: recording not ready (HTTP {resp.status_code})")
        return resp

    return hook


def body_sha256(body: bytes) -> str:
    """A stable event id for providers that send none."""
    return hashlib.sha256(body).hexdigest()


def secure_equals(a: str | bytes, b: str | bytes) -> bool:
    """Constant-time comparison for secrets and signatures."""
    if isinstance(a, str):
        a = a.encode()
    if isinstance(b, str):
        b = b.encode()
    return hmac.compare_digest(a, b)
