"""Adapter contract: base classes, typed errors and the shared HTTP session."""
from __future__ import annotations

import logging
import re
from abc import ABC
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import requests

log = logging.getLogger("calltag.http")

DEFAULT_TIMEOUT_S = (5.0, 30.0)  # (connect, read)
MAX_LOGGED_BODY = 2000


class CalltagError(Exception):
    """Base of every error an adapter may raise."""


class NotConfiguredError(CalltagError):
    """A selected adapter lacks a setting or a dependency."""


class InvalidSignatureError(CalltagError):
    """A webhook failed authentication (URL secret, signature, replay window)."""


class PayloadError(CalltagError):
    """A webhook body that cannot be understood; ``problems`` lists each fault."""

    def __init__(self, message: str, problems: list[str] | None = None, status: int = 422):
        super().__init__(message)
        self.problems = problems or [message]
        self.status = status


class TransientError(CalltagError):
    """Worth retrying later: timeouts, 429, 5xx, a recording that is not ready yet."""

    def __init__(self, message: str, retry_after_s: float | None = None):
        super().__init__(message)
        self.retry_after_s = retry_after_s


class PermanentError(CalltagError):
    """Retrying will not help: validation errors, 4xx, unparseable payloads."""


class AuthError(PermanentError):
    """401/403: credentials are wrong or revoked; a human must act."""


@dataclass(frozen=True)
class Setting:
    """One adapter setting: whether it is required or secret, its default and help."""

    required: bool = False
    secret: bool = False
    default: Any = None
    help: str = ""


def mask(value: Any) -> str:
    """Mask a secret for logs and describe(): 'ab...yz'."""
    s = str(value or "")
    if len(s) <= 6:
        return "***" if s else ""
    return f"{s[:2]}...{s[-2:]}"


_PHONE_RE = re.compile(r"\+?\d[\d\s\-()]{8,}\d")


def scrub(text: str) -> str:
    """Remove phone-like numbers from text that goes to logs."""
    return _PHONE_RE.sub("<phone>", text)


class Adapter(ABC):
    """Common shape of every adapter: name, docs URL, declared settings, masking."""

    name: ClassVar[str] = ""
    docs_url: ClassVar[str] = ""
    settings: ClassVar[Mapping[str, Setting]] = {}

    def __init__(self, config: Mapping[str, Any] | None = None, http: requests.Session | None = None):
        self.config = dict(config or {})
        for key, spec in self.settings.items():
            if key not in self.config or self.config[key] in (None, ""):
                if spec.required:
                    raise NotConfiguredError(f"{self.name}: setting '{key}' is required")
                self.config[key] = spec.default
        self.http = http or http_session()

    def describe(self) -> str:
        """Human-readable configuration with secrets masked."""
        parts = []
        for key, spec in self.settings.items():
            val = self.config.get(key)
            if val in (None, ""):
                continue
            parts.append(f"{key}={mask(val) if spec.secret else val}")
        return f"{self.name}({', '.join(parts)})"


class TimeoutSession(requests.Session):
    """A requests session that always applies a timeout."""

    def __init__(self, timeout: tuple[float, float] = DEFAULT_TIMEOUT_S):
        super().__init__()
        self.default_timeout = timeout
        self.headers["User-Agent"] = "calltag/1.0"

    def request(self, method, url, **kwargs):  # noqa: D401 - requests API
        kwargs.setdefault("timeout", self.default_timeout)
        return super().request(method, url, **kwargs)


def http_session(timeout: tuple[float, float] = DEFAULT_TIMEOUT_S) -> requests.Session:
    """A session with connect/read timeouts applied to every request."""
    return TimeoutSession(timeout)


def retry_after(resp: requests.Response) -> float | None:
    """Seconds from a Retry-After header, if it holds a number."""
    value = resp.headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def check_response(resp: requests.Response, what: str) -> requests.Response:
    """Map an HTTP status to a typed error; return the response when it is 2xx."""
    if resp.status_code < 400:
        return resp
    body = scrub(resp.text[:MAX_LOGGED_BODY]) if resp.content else ""
    log.debug("%s failed: HTTP %s %s", what, resp.status_code, body)
    msg = f"{what}: HTTP {resp.status_code}"
    if resp.status_code in (401, 403):
        raise AuthError(msg)
    if resp.status_code == 429 or resp.status_code >= 500:
        raise TransientError(msg, retry_after(resp))
    raise PermanentError(msg)


def request(session: requests.Session, method: str, url: str, what: str, **kwargs) -> requests.Response:
    """Send a request, turning network failures and bad statuses into typed errors."""
    try:
        resp = session.request(method, url, **kwargs)
    except (requests.Timeout, requests.ConnectionError) as err:
        raise TransientError(f"{what}: {type(err).__name__}") from err
    except requests.RequestException as err:
        raise PermanentError(f"{what}: {type(err).__name__}") from err
    return check_response(resp, what)
