"""Frozen data classes passed between pipeline stages."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

SPEAKERS = ("operator", "client", "unknown")


@dataclass(frozen=True)
class Utterance:
    """One turn of speech: who spoke, when (seconds from call start) and what."""

    speaker: str
    start_s: float
    end_s: float
    text: str

    def to_dict(self) -> dict:
        return {"speaker": self.speaker, "start_s": round(self.start_s, 2),
                "end_s": round(self.end_s, 2), "text": self.text}

    @classmethod
    def from_dict(cls, d: Mapping) -> "Utterance":
        return cls(str(d.get("speaker") or "unknown"), float(d.get("start_s") or 0.0),
                   float(d.get("end_s") or 0.0), str(d.get("text") or ""))


@dataclass(frozen=True)
class Transcript:
    """The utterances of one call, ordered by start time."""

    engine: str
    language: str
    utterances: tuple[Utterance, ...] = field(default_factory=tuple)
