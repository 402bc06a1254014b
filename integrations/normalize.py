"""Pure helpers adapters share: phone numbers to E.164, provider times to UTC."""
from __future__ import annotations

import re
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from zoneinfo import ZoneInfo

import phonenumbers

_HIDDEN = {"", "anonymous", "unknown", "private", "restricted", "hidden", "null", "none", "0"}


def to_e164(raw: object, region: str = "RU") -> str | None:
    """Normalise a provider phone value (+7/8/national/sip: URI) to E.164, or None if hidden/invalid."""
    if raw is None:
        return None
    s = str(raw).strip()
    if s.lower() in _HIDDEN:
        return None
    m = re.match(r"^(?:sips?|tel):([^@;]+)", s, re.I)
    if m:
        s = m.group(1)
    s = s.split("@", 1)[0]
    digits = re.sub(r"[^\d+]", "", s)
    bare = digits.lstrip("+")
    if len(bare) < 5:
        return None
    if digits.startswith("+"):
        candidates = [(digits, None)]
    else:
        candidates = []
        if region.upper() in ("RU", "KZ") and len(bare) == 11 and bare[0] == "8":
            candidates.append(("+7" + bare[1:], None))
        candidates += [(bare, region.upper()), ("+" + bare, None)]
    for text, reg in candidates:
        try:
            num = phonenumbers.parse(text, reg)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(num):
            return phonenumbers.format_number(num, phonenumbers.PhoneNumberFormat.E164)
    return None


def national_digits(e164: str) -> str:
    """The national significant number of an E.164 phone (for CRM searches)."""
    num = phonenumbers.parse(e164, None)
    return str(num.national_number)


def from_unix(value: object) -> datetime | None:
    """Unix seconds (int, float or numeric string) to an aware UTC datetime."""
    if value in (None, ""):
        return None
    try:
        ts = float(value)
        if ts > 1e11:  # milliseconds
            ts /= 1000.0
        return datetime.fromtimestamp(ts, tz=timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def from_local(value: object, tz_name: str) -> datetime | None:
    """A naive provider-local time string (or ISO with offset) to aware UTC."""
    if value in (None, ""):
        return None
    s = str(value).strip().replace("T", " ").replace("Z", "+00:00")
    for fmt in (None, "%Y-%m-%d %H:%M:%S", "%d.%m.%Y %H:%M:%S", "%Y-%m-%d %H:%M", "%d.%m.%Y %H:%M"):
        try:
            dt = datetime.fromisoformat(s) if fmt is None else datetime.strptime(s, fmt)
            break
        except ValueError:
            continue
    else:
        return None
    try:
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=ZoneInfo(tz_name))
        return dt.astimezone(timezone.utc)
    except (OverflowError, ValueError):
        return None


def from_rfc2822(value: object) -> datetime | None:
    """An RFC 2822 date (Twilio's Timestamp) to aware UTC."""
    if not value:
        return None
    try:
        return parsedate_to_datetime(str(value)).astimezone(timezone.utc)
    except (TypeError, ValueError):
        return None


def iso(dt: datetime | None) -> str | None:
    """ISO 8601 UTC text for storage ('2026-01-02T03:04:05+00:00')."""
    return dt.astimezone(timezone.utc).isoformat() if dt else None


def to_int(value: object) -> int | None:
    """An int from a number or numeric string, else None."""
    if value in (None, ""):
        return None
    try:
        return int(float(value))
    except (TypeError, ValueError, OverflowError):
        return None


def to_count(value: object, upper: int = 10**8) -> int | None:
    """A non-negative int below `upper` (seconds, counters) from untrusted input, else None."""
    n = to_int(value)
    return n if n is not None and 0 <= n < upper else None
