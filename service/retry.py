"""Retry timing as pure values: when to try a stage again."""
from __future__ import annotations

# providers.md §4.1: 40 s, 1 m, 2 m, 5 m, 10 m, 30 m, then hourly up to about a day.
RECORDING_SCHEDULE_S = (40, 60, 120, 300, 600, 1800)
GENERAL_SCHEDULE_S = (30, 60, 120, 300, 600, 1800)


def backoff(attempt: int, schedule: tuple[int, ...] = GENERAL_SCHEDULE_S, then_s: int = 3600) -> int:
    """Seconds to wait before retry number `attempt` (1-based)."""
    if attempt <= 0:
        return schedule[0]
    return schedule[attempt - 1] if attempt <= len(schedule) else then_s


def next_delay(attempt: int, retry_after_s: float | None, schedule: tuple[int, ...] = GENERAL_SCHEDULE_S) -> float:
    """The larger of our schedule and the server's Retry-After."""
    return max(float(backoff(attempt, schedule)), float(retry_after_s or 0))
