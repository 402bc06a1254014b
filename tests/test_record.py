"""Merging partial events into one canonical record."""
from __future__ import annotations

from integrations.calltracking.base import CallUpdate
from service.record import apply_update, new_record


def test_events_in_any_order_merge_to_the_same_record():
    summary = CallUpdate("e1", "call_finished", {"status": "answered", "talk_seconds": 177, "client_phone": "+79990001122"},
                         finished=True)
    rec = CallUpdate("e1", "recording_ready", {"status": "unknown"},
                     recordings=[{"provider_recording_id": "r1", "state": "available", "fetch": "api_call"}])
    a = apply_update(apply_update(new_record("mango", "acme", "e1"), summary, signature_verified=True), rec,
                     signature_verified=True)
    b = apply_update(apply_update(new_record("mango", "acme", "e1"), rec, signature_verified=True), summary,
                     signature_verified=True)
    assert a == b
    assert a["status"] == "answered" and a["finished"] is True and a["talk_seconds"] == 177
    assert [r["provider_recording_id"] for r in a["recordings"]] == ["r1"]


def test_recordings_are_deduplicated_and_updated():
    base = new_record("x", "acme", "1")
    first = CallUpdate("1", "call_finished", recordings=[{"provider_recording_id": "r", "state": "pending"}])
    second = CallUpdate("1", "recording_ready", recordings=[{"provider_recording_id": "r", "state": "available",
                                                             "url": "https://x/r.mp3"}])
    merged = apply_update(apply_update(base, first, signature_verified=None), second, signature_verified=None)
    assert merged["recordings"] == [{"provider_recording_id": "r", "state": "available", "url": "https://x/r.mp3"}]
    assert merged["signature_verified"] is None


def test_attribution_merges_without_losing_keys():
    base = new_record("x", "acme", "1")
    a = CallUpdate("1", "call_finished", {"attribution": {"source": "yandex"}})
    b = CallUpdate("1", "call_updated", {"attribution": {"medium": "cpc", "source": ""}})
    merged = apply_update(apply_update(base, a, signature_verified=None), b, signature_verified=None)
    assert merged["attribution"] == {"source": "yandex", "medium": "cpc"}
