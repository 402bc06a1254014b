"""Decode any recording (MP3, WAV, OGG/Opus, FLAC, AAC…) to 16 kHz float32 channels with PyAV."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

SAMPLE_RATE = 16000


class AudioError(ValueError):
    """The file is not decodable audio."""


@dataclass(frozen=True)
class DecodedAudio:
    """Per-channel 16 kHz mono float32 arrays plus facts about the source file."""

    channels: tuple[np.ndarray, ...]
    source_rate: int
    source_channels: int
    codec: str

    @property
    def duration_s(self) -> float:
        return len(self.channels[0]) / SAMPLE_RATE if self.channels else 0.0


def decode(path: Path | str, max_channels: int = 2) -> DecodedAudio:
    """Decode the first audio stream, keeping up to two channels separate (stereo = two speakers)."""
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as err:
        raise AudioError(f"cannot open audio: {type(err).__name__}") from err
    with container:
        if not container.streams.audio:
            raise AudioError("no audio stream in the file")
        stream = container.streams.audio[0]
        n_src = stream.codec_context.channels or 1
        n_out = 2 if n_src >= 2 and max_channels >= 2 else 1
        resampler = av.AudioResampler(format="fltp", layout="stereo" if n_out == 2 else "mono", rate=SAMPLE_RATE)
        chunks: list[np.ndarray] = []
        try:
            for frame in container.decode(stream):
                frame.pts = None
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray())
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray())
        except av.error.FFmpegError as err:
            if not chunks:
                raise AudioError(f"cannot decode audio: {type(err).__name__}") from err
        rate = stream.codec_context.sample_rate or 0
        codec = stream.codec_context.name
    if not chunks:
        raise AudioError("the file holds no audio samples")
    data = np.concatenate(chunks, axis=1).astype(np.float32)
    return DecodedAudio(tuple(np.ascontiguousarray(data[i]) for i in range(data.shape[0])), rate, n_src, codec)


def probe(path: Path | str) -> dict:
    """Duration, channel count and sample rate without decoding the whole file."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise AudioError("no audio stream in the file")
            stream = container.streams.audio[0]
            duration = None
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            elif container.duration:
                duration = container.duration / 1_000_000
            return {"duration_s": round(duration, 2) if duration else None,
                    "channels": stream.codec_context.channels or 1, "sample_rate": stream.codec_context.sample_rate}
    except av.error.FFmpegError as err:
        raise AudioError(f"cannot open audio: {type(err).__name__}") from err


def collapse_fake_stereo(decoded: DecodedAudio) -> DecodedAudio:
    """A 'stereo' file whose channels are the same signal is really mono: keep one channel."""
    if len(decoded.channels) != 2:
        return decoded
    left, right = decoded.channels
    scale = max(float(np.abs(left).max()), float(np.abs(right).max()), 1e-9)
    if float(np.abs(left - right).max()) / scale < 0.02:
        return DecodedAudio((left,), decoded.source_rate, decoded.source_channels, decoded.codec)
    return decoded


def mixdown(decoded: DecodedAudio) -> DecodedAudio:
    """Average all channels into one."""
    mixed = np.mean(np.stack(decoded.channels), axis=0).astype(np.float32)
    return DecodedAudio((mixed,), decoded.source_rate, decoded.source_channels, decoded.codec)
