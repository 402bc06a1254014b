"""Decoding every format we meet, channel handling and the energy VAD."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from service.audio import AudioError, collapse_fake_stereo, decode, probe, DecodedAudio
from service.vad import speech_segments

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize("name, channels, rate", [
    ("calls/a_07_carservice.mp3", 2, 8000), ("calls/a_05_carservice-mono.mp3", 1, 8000),
    ("real/t-one/audio_short.flac", 1, 8000), ("real/pisets/test_sound_ru.wav", 1, 16000),
])
def test_decode_formats_to_16k_channels(name, channels, rate):
    decoded = decode(DATA / name)
    assert len(decoded.channels) == channels and decoded.source_rate == rate
    info = probe(DATA / name)
    assert info["channels"] == channels
    assert abs(decoded.duration_s - info["duration_s"]) < 0.3
    assert all(c.dtype == np.float32 for c in decoded.channels)


def test_decode_garbage_raises_audio_error(tmp_path):
    bad = tmp_path / "x.mp3"
    bad.write_bytes(b"<html>not audio</html>" * 10)
    with pytest.raises(AudioError):
        decode(bad)
    with pytest.raises(AudioError):
        probe(bad)


def test_identical_channels_count_as_mono():
    tone = np.sin(np.linspace(0, 2000, 16000)).astype(np.float32)
    assert len(collapse_fake_stereo(DecodedAudio((tone, tone.copy()), 8000, 2, "x")).channels) == 1
    assert len(collapse_fake_stereo(DecodedAudio((tone, tone * 0.1), 8000, 2, "x")).channels) == 2


def test_vad_finds_each_turn_of_a_stereo_call():
    decoded = decode(DATA / "calls/a_07_carservice.mp3")
    timing = json.loads((DATA / "calls/a_07_carservice.timing.json").read_text())
    for index, role in enumerate(("operator", "client")):
        found = speech_segments(decoded.channels[index])
        expected = [(u["start_s"], u["end_s"]) for u in timing["utterances"] if u["speaker"] == role]
        assert len(found) == len(expected)
        for (fs, fe), (es, ee) in zip(found, expected):
            assert abs(fs - es) < 0.6 and abs(fe - ee) < 0.6


def test_vad_silence_has_no_segments():
    assert speech_segments(np.zeros(16000 * 5, dtype=np.float32)) == []
    assert speech_segments(np.random.default_rng(1).normal(0, 1e-4, 16000 * 3).astype(np.float32)) == []
