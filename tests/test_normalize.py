"""Phone numbers to E.164 and provider times to UTC."""
from __future__ import annotations

import pytest

from integrations.normalize import from_local, from_rfc2822, from_unix, iso, to_e164


@pytest.mark.parametrize("raw, region, expected", [
    ("+7 968 739-72-95", "RU", "+79687397295"), ("89687397295", "RU", "+79687397295"),
    ("79687397295", "RU", "+79687397295"), ("9687397295", "RU", "+79687397295"),
    ("sip:79687397295@pbx.example.ru", "RU", "+79687397295"), ("tel:+14155552671", "RU", "+14155552671"),
    ("0990123456", "UA", "+380990123456"), ("14155552671", "RU", "+14155552671"),
    ("anonymous", "RU", None), ("", "RU", None), (None, "RU", None), ("101", "RU", None),
])
def test_to_e164(raw, region, expected):
    assert to_e164(raw, region) == expected


def test_times_to_utc():
    assert iso(from_local("2026-06-03 12:00:00", "Europe/Moscow")) == "2026-06-03T09:00:00+00:00"
    assert iso(from_local("2026-06-03T12:00:00+05:00", "Europe/Moscow")) == "2026-06-03T07:00:00+00:00"
    assert iso(from_unix(1717405200)) == "2024-06-03T09:00:00+00:00"
    assert iso(from_unix("1717405200000")) == "2024-06-03T09:00:00+00:00"
    assert iso(from_rfc2822("Mon, 03 Jun 2024 09:00:00 +0000")) == "2024-06-03T09:00:00+00:00"
    assert from_local("not a date", "Europe/Moscow") is None and from_unix("x") is None
