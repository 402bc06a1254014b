"""Call metrics from the record and the transcript: durations, talk per speaker, shares, turns."""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from service.models import Utterance


def _merged_length(spans: list[tuple[float, float]]) -> float:
    total, cur_s, cur_e = 0.0, None, None
    for s, e in sorted(spans):
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                total += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None:
        total += cur_e - cur_s
    return total


def compute_metrics(record: Mapping[str, Any], utterances: Iterable[Utterance], audio_s: float | None) -> dict:
    """Metrics for analysis.metrics; talk seconds are speech time (overlaps counted once per speaker)."""
    utts = list(utterances)
    by: dict[str, list[tuple[float, float]]] = {"operator": [], "client": [], "unknown": []}
    for u in utts:
        by.setdefault(u.speaker, []).append((u.start_s, max(u.start_s, u.end_s)))
    talk = {k: round(_merged_length(v), 1) for k, v in by.items()}
    attributed = talk["operator"] + talk["client"]
    talk_record = record.get("talk_seconds")
    wait = record.get("wait_seconds")
    duration = record.get("total_seconds")
    if duration is None and talk_record is not None:
        duration = (talk_record or 0) + (wait or 0)
    if not duration and audio_s:
        duration = round(audio_s, 1)
    return {
        "duration_s": duration,
        "wait_s": wait,
        "talk_s": talk_record if talk_record else (round(audio_s, 1) if audio_s else 0),
        "speech_s": round(sum(talk.values()), 1),
        "talk_s_operator": talk["operator"],
        "talk_s_client": talk["client"],
        "talk_s_unknown": talk["unknown"],
        "operator_share": round(talk["operator"] / attributed, 3) if attributed > 0 else None,
        "utterances_operator": sum(1 for u in utts if u.speaker == "operator"),
        "utterances_client": sum(1 for u in utts if u.speaker == "client"),
        "utterances_unknown": sum(1 for u in utts if u.speaker == "unknown"),
        "audio_s": round(audio_s, 1) if audio_s else None,
    }
