"""Energy-based speech segmentation: robust on 8 kHz telephone channels where neural VADs miss speech."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.audio import SAMPLE_RATE

FRAME_S = 0.03


@dataclass(frozen=True)
class VadParams:
    """Thresholds of the energy cut (dB relative to the channel's noise floor and peak)."""

    above_floor_db: float = 12.0     # speech frames rise this far over the noise floor
    below_peak_db: float = 45.0      # ... and are no quieter than peak minus this
    min_speech_s: float = 0.25       # drop blips shorter than this
    merge_gap_s: float = 0.6         # join segments separated by less silence than this
    pad_s: float = 0.15              # widen each segment by this on both sides
    max_segment_s: float = 25.0      # Whisper sees at most 30 s: split longer ones at their quietest point


def frame_energy_db(samples: np.ndarray) -> np.ndarray:
    """RMS energy per 30 ms frame, in dBFS."""
    n = int(FRAME_S * SAMPLE_RATE)
    usable = len(samples) // n * n
    if usable == 0:
        return np.zeros(0, dtype=np.float32)
    frames = samples[:usable].reshape(-1, n)
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
    return (20 * np.log10(rms)).astype(np.float32)


def speech_segments(samples: np.ndarray, params: VadParams = VadParams()) -> list[tuple[float, float]]:
    """Return (start_s, end_s) spans of speech in one channel."""
    energy = frame_energy_db(samples)
    if energy.size == 0:
        return []
    floor = float(np.percentile(energy, 10))
    peak = float(np.percentile(energy, 99.5))
    threshold = max(floor + params.above_floor_db, peak - params.below_peak_db, -60.0)
    if peak < -55.0:  # the whole channel is silent
        return []
    voiced = energy > threshold
    spans = _runs(voiced)
    spans = _merge([(s * FRAME_S, e * FRAME_S) for s, e in spans], params.merge_gap_s)
    total = len(samples) / SAMPLE_RATE
    spans = [(max(0.0, s - params.pad_s), min(total, e + params.pad_s)) for s, e in spans
             if e - s >= params.min_speech_s]
    spans = _merge(spans, 0.0)
    out: list[tuple[float, float]] = []
    for s, e in spans:
        out.extend(_split_long(energy, s, e, params.max_segment_s))
    return out


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """Index ranges [start, end) where mask is True."""
    padded = np.concatenate([[False], mask, [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return list(zip(edges[0::2].tolist(), edges[1::2].tolist()))


def _merge(spans: list[tuple[float, float]], gap_s: float) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for s, e in spans:
        if out and s - out[-1][1] <= gap_s:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def _split_long(energy: np.ndarray, start: float, end: float, max_s: float) -> list[tuple[float, float]]:
    """Split a span longer than max_s at its quietest frame (recursively)."""
    if end - start <= max_s:
        return [(start, end)]
    lo, hi = int((start + max_s * 0.3) / FRAME_S), int((start + max_s) / FRAME_S)
    cut = (lo + int(np.argmin(energy[lo:hi]))) * FRAME_S if hi > lo else start + max_s
    return [(start, cut)] + _split_long(energy, cut, end, max_s)
