"""Local faster-whisper (CTranslate2, CPU, int8): the default engine, no cloud and no key."""
from __future__ import annotations

import logging
import re
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
        "beam_size": Setting(default=5, help="5 = beam search, 1 = greedy"),
        "threads": Setting(default=0, help="CPU threads, 0 = all cores"),
        "language": Setting(default="ru", help="spoken language"),
        "pack_s": Setting(default=28.0, help="pack short utterances of a channel into one window of this many "
                                               "seconds (0 = one window per utterance)"),
    }

    @property
    def engine_id(self) -> str:
        return f"{self.name}:{self.config['model_path'].rstrip('/').split('/')[-1]}"

    def transcribe(self, audio: DecodedAudio, roles: Sequence[str]) -> list[Utterance]:
        """Utterances of every channel (role per channel), ordered by start time."""
        model = load_model(self.config["model_path"], int(self.config["threads"] or 0))
        utterances: list[Utterance] = []
        for samples, role in zip(audio.channels, roles):
            spans = speech_segments(samples)
            for pack in pack_segments(spans, float(self.config["pack_s"] or 0)):
                texts = self._decode_pack(model, samples, pack)
                for (start, end), text in zip(pack, texts):
                    if text:
                        utterances.append(Utterance(role, round(start, 2), round(end, 2), text))
        utterances.sort(key=lambda u: (u.start_s, u.end_s))
        return utterances

    def _options(self, **extra: Any) -> dict:
        return dict(language=self.config["language"], beam_size=int(self.config["beam_size"]),
                    condition_on_previous_text=False, temperature=list(TEMPERATURES), vad_filter=False,
                    no_speech_threshold=0.6, log_prob_threshold=-1.0, compression_ratio_threshold=2.4, **extra)

    def _decode_pack(self, model: Any, samples: np.ndarray, pack: list[tuple[float, float]]) -> list[str]:
        """Text of each span of a pack: one Whisper window for all of them, split back by word times."""
        pieces = [samples[int(s * SAMPLE_RATE):int(e * SAMPLE_RATE)] for s, e in pack]
        if len(pack) == 1:
            segments, _ = model.transcribe(pieces[0], without_timestamps=True, **self._options())
            return [clean_text(" ".join(seg.text.strip() for seg in segments if _kept(seg)))]
        gap = np.zeros(int(PACK_GAP_S * SAMPLE_RATE), dtype=np.float32)
        joined, bounds, pos = [], [], 0.0
        for piece in pieces:
            joined += [piece, gap]
            bounds.append((pos, pos + len(piece) / SAMPLE_RATE))
            pos += (len(piece) + len(gap)) / SAMPLE_RATE
        segments, _ = model.transcribe(np.concatenate(joined), word_timestamps=True, **self._options())
        words: list[list[str]] = [[] for _ in pack]
        for seg in segments:
            if not _kept(seg):
                continue
            for word in seg.words or []:
                index = _owner(bounds, (word.start + word.end) / 2)
                if index is not None:  # words placed in the silence between spans are hallucinations
                    words[index].append(word.word)
        return [clean_text("".join(w)) for w in words]


PACK_GAP_S = 0.8


def pack_segments(spans: Sequence[tuple[float, float]], pack_s: float) -> list[list[tuple[float, float]]]:
    """Group consecutive speech spans so each group fits one Whisper window (pack_s 0 = one span each)."""
    packs: list[list[tuple[float, float]]] = []
    length = 0.0
    for span in spans:
        dur = span[1] - span[0] + PACK_GAP_S
        if packs and pack_s > 0 and length + dur <= pack_s:
            packs[-1].append(span)
            length += dur
        else:
            packs.append([span])
            length = dur
    return packs


def _owner(bounds: list[tuple[float, float]], t: float, slack_s: float = 0.3) -> int | None:
    """Index of the span that contains time t (with a little slack), else None."""
    for i, (start, end) in enumerate(bounds):
        if start - slack_s <= t <= end + slack_s:
            return i
    return None


# Phrases Whisper invents on silence and noise (subtitle credits of its Russian training data).
_HALLUCINATIONS = re.compile(
    r"(?i:субтитр\w*[^.!?]*[.!?]?|редактор субтитров[^.!?]*|продолжение следует\.*|"
    r"dimatorzok|спасибо за просмотр[.!]?|подписывайтесь на канал[.!]?)|"
    r"\b(?:[А-ЯЁ]{3,} )*(?:МУЗЫКА|МЕЛОДИЯ|АПЛОДИСМЕНТЫ|СМЕХ)\b")


def clean_text(text: str) -> str:
    """Strip known Whisper hallucinations and extra spaces."""
    return re.sub(r"\s{2,}", " ", _HALLUCINATIONS.sub("", text)).strip(" ,")


def _kept(seg: Any) -> bool:
    """Drop segments Whisper itself believes are not speech."""
    return seg.no_speech_prob < 0.8 or seg.avg_logprob > -0.6


def engine_from_settings(settings: Mapping[str, Any]) -> WhisperLocal:
    """Build the engine from process settings (model path resolved, bundled model assembled)."""
    from service.speech import model_path
    return WhisperLocal({"model_path": str(model_path(dict(settings))), "beam_size": settings.get("WHISPER_BEAM", 5),
                         "threads": settings.get("WHISPER_THREADS", 0), "pack_s": settings.get("WHISPER_PACK_S", 28.0)})
