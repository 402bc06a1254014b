"""Local faster-whisper (CTranslate2, CPU, int8): the default engine, no cloud and no key."""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Mapping, Sequence

import numpy as np

from integrations.base import Adapter, NotConfiguredError, Setting
from service.audio import SAMPLE_RATE, DecodedAudio
from service.models import Utterance
from service.vad import speech_segments

log = logging.getLogger("calltag.stt")
_MODELS: dict[tuple[str, int], Any] = {}
_MODELS_LOCK = threading.Lock()
TEMPERATURES = (0.0, 0.2, 0.4)  # bounded fallback: never the default six-step ladder


def load_model(path: str, threads: int = 0) -> Any:
    """Load a CTranslate2 Whisper model once per process (keyed by path and threads)."""
    key = (str(path), int(threads))
    with _MODELS_LOCK:
        if key not in _MODELS:
            try:
                from faster_whisper import WhisperModel
            except ImportError as err:
                raise NotConfiguredError("pip install faster-whisper") from err
            started = time.monotonic()
            _MODELS[key] = WhisperModel(str(path), device="cpu", compute_type="int8", cpu_threads=threads,
                                        local_files_only=True)
            log.info("loaded Whisper model %s in %.1fs", path, time.monotonic() - started)
        return _MODELS[key]


class WhisperLocal(Adapter):
    """Transcribe each speech segment of each channel and merge the turns by time."""

    name = "whisper_local"
    docs_url = "https://github.com/SYSTRAN/faster-whisper"
    settings = {
        "model_path": Setting(required=True, help="CTranslate2 Whisper model directory"),
        "beam_size": Setting(default=1, help="1 = greedy (fast), 5 = beam search"),
        "threads": Setting(default=0, help="CPU threads, 0 = all cores"),
        "language": Setting(default="ru", help="spoken language"),
    }

    @property
    def engine_id(self) -> str:
        return f"{self.name}:{self.config['model_path'].rstrip('/').split('/')[-1]}"

    def transcribe(self, audio: DecodedAudio, roles: Sequence[str]) -> list[Utterance]:
        """Utterances of every channel (role per channel), ordered by start time."""
        model = load_model(self.config["model_path"], int(self.config["threads"] or 0))
        utterances: list[Utterance] = []
        for samples, role in zip(audio.channels, roles):
            for start, end in speech_segments(samples):
                text = self._decode_segment(model, samples[int(start * SAMPLE_RATE):int(end * SAMPLE_RATE)])
                if text:
                    utterances.append(Utterance(role, round(start, 2), round(end, 2), text))
        utterances.sort(key=lambda u: (u.start_s, u.end_s))
        return utterances

    def _decode_segment(self, model: Any, samples: np.ndarray) -> str:
        segments, _info = model.transcribe(
            samples, language=self.config["language"], beam_size=int(self.config["beam_size"]),
            condition_on_previous_text=False, temperature=list(TEMPERATURES), vad_filter=False,
            without_timestamps=True, no_speech_threshold=0.6, log_prob_threshold=-1.0,
            compression_ratio_threshold=2.4)
        parts = [s.text.strip() for s in segments if s.no_speech_prob < 0.8 or s.avg_logprob > -0.6]
        return " ".join(p for p in parts if p).strip()


def engine_from_settings(settings: Mapping[str, Any]) -> WhisperLocal:
    """Build the engine from process settings (model path resolved, bundled model assembled)."""
    from service.speech import model_path
    return WhisperLocal({"model_path": str(model_path(dict(settings))), "beam_size": settings.get("WHISPER_BEAM", 1),
                         "threads": settings.get("WHISPER_THREADS", 0)})
