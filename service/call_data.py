"""Facts about a call (answered, talk/wait seconds, operator share, attribution...) for `call:` conditions."""
from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Callable, Mapping

from service.rule_model import DIRECTIONS, CallCond

NOT_ANSWERED = frozenset({"missed", "busy", "failed", "voicemail", "no_answer", "noanswer", "cancelled"})
UTM_KEYS = {"utm_source": "source", "utm_medium": "medium", "utm_campaign": "campaign",
            "utm_content": "content", "utm_term": "term"}


def _num(value) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


class CallFacts:
    """Derives the values `call:` conditions test from the call record and the utterances.

    Missing values stay unknown (None); a condition on an unknown value never holds.
    """

    def __init__(self, call: Mapping, utts, history: Callable | None):
        self.call = call
        self.metrics = call.get("metrics") or {}
        self.utts = utts
        self.history = history
        self._share = False

    @property
    def answered(self) -> bool | None:
        status = str(self.call.get("status") or "").lower()
        if status == "answered":
            return True
        if status in NOT_ANSWERED:
            return False
        talk = _num(self.call.get("talk_seconds"))
        if talk is not None:
            return talk > 0
        return True if self.utts else None

    def value(self, name: str) -> float | None:
        """talk, wait, duration (seconds) or operator_share (0..1)."""
        c, m = self.call, self.metrics
        if name == "talk":
            v = _num(c.get("talk_seconds"))
            v = _num(m.get("talk_s")) if v is None else v
            if v is None and self.utts and self.answered is not False:
                v = max(u.end for u in self.utts) - min(u.start for u in self.utts)
            return v
        if name == "wait":
            v = _num(c.get("wait_seconds"))
            return _num(m.get("wait_s")) if v is None else v
        if name == "duration":
            v = _num(c.get("total_seconds"))
            v = _num(m.get("duration_s")) if v is None else v
            if v is None:
                talk, wait = self.value("talk"), self.value("wait")
                v = None if talk is None and wait is None else (talk or 0.0) + (wait or 0.0)
            return v
        return self.operator_share()

    def operator_share(self) -> float | None:
        """Share of speaking time by the operator: metrics.operator_share, else from utterance durations."""
        v = _num(self.metrics.get("operator_share"))
        if v is not None:
            return v
        op = sum(max(0.0, u.end - u.start) for u in self.utts if u.speaker == "operator")
        total = sum(max(0.0, u.end - u.start) for u in self.utts)
        return op / total if total > 0 else None

    def strings(self, key: str) -> list[str]:
        """Values a list condition compares against (folded), empty when unknown."""
        c = self.call
        if key == "source":
            vals = [c.get("source_channel")]
        elif key in UTM_KEYS:
            vals = [(c.get("attribution") or {}).get(UTM_KEYS[key])]
        elif key == "operator":
            op = c.get("operator") or {}
            vals = list(op.values()) if isinstance(op, Mapping) else [op]
        else:
            vals = [c.get(key)]
        return [str(v).strip().lower() for v in vals if v not in (None, "")]

    def matches(self, cond: CallCond) -> bool:
        """True when every condition in `cond` holds for this call."""
        if cond.answered is not None and self.answered is not cond.answered:
            return False
        if cond.direction is not None:
            d = DIRECTIONS.get(str(self.call.get("direction") or "unknown").lower(), "unknown")
            if d not in cond.direction:
                return False
        for key, wanted in cond.lists:
            have = self.strings(key)
            if not any(fnmatchcase(h, w) for h in have for w in wanted):
                return False
        for name, lo, hi in cond.ranges:
            v = self.value(name)
            if v is None or (lo is not None and v < lo) or (hi is not None and v >= hi):
                return False
        if cond.history_s is not None:
            phone = self.call.get("client_phone")
            if self.history is None or not phone:
                return False
            if (self.history(phone, cond.history_s / 86400.0) or 0) < cond.history_min:
                return False
        return True
