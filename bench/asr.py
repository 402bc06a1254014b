"""ASR speed: real-time factor, audio seconds per CPU-second and peak memory on the sample calls.

Usage: python bench/asr.py [--beams 1,5] [--pack-s 28] [FILES...]   (defaults: the stereo sample calls in tests/data/calls)
"""
from __future__ import annotations

import argparse
import json
import re
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from service.audio import decode  # noqa: E402
from integrations.stt.whisper_local import WhisperLocal, load_model  # noqa: E402
from service.speech import model_path  # noqa: E402


def words(text: str) -> list[str]:
    return re.findall(r"[а-яёa-z0-9]+", text.lower().replace("ё", "е"))


def wer(ref: list[str], hyp: list[str]) -> float:
    """Word error rate (Levenshtein over words)."""
    prev = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        cur = [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (r != h))
        prev = cur
    return prev[-1] / max(1, len(ref))


def reference(path: Path) -> list[str] | None:
    timing = path.with_suffix(".timing.json")
    if not timing.exists():
        return None
    utts = json.loads(timing.read_text(encoding="utf-8"))["utterances"]
    return words(" ".join(u["text"] for u in sorted(utts, key=lambda u: u["start_s"])))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--beams", default="1,5")
    parser.add_argument("--pack-s", type=float, default=28.0, help="0 = one Whisper window per utterance")
    parser.add_argument("files", nargs="*")
    opts = parser.parse_args()
    files = [Path(f) for f in opts.files] or sorted((REPO / "tests/data/calls").glob("*.mp3"))
    model = str(model_path({"DATA_DIR": REPO / "data", "WHISPER_MODEL": ""}))
    t0 = time.monotonic()
    load_model(model, 0)
    print(f"model: {model}  load: {time.monotonic() - t0:.2f}s")
    print(f"{'file':32} {'beam':>4} {'audio_s':>8} {'wall_s':>7} {'cpu_s':>7} {'RTF':>6} {'audio_s/cpu_s':>13} {'WER':>5}")
    for beam in [int(b) for b in opts.beams.split(",")]:
        engine = WhisperLocal({"model_path": model, "beam_size": beam, "threads": 0, "pack_s": opts.pack_s})
        tot_audio = tot_wall = tot_cpu = 0.0
        ref_words = err_words = 0.0
        for path in files:
            decoded = decode(path)
            roles = ["operator", "client"] if len(decoded.channels) == 2 else ["unknown"]
            w0, c0 = time.monotonic(), time.process_time()
            utts = engine.transcribe(decoded, roles)
            ref = reference(path)
            rate = wer(ref, words(" ".join(u.text for u in utts))) if ref else None
            err = f"{rate:5.2f}" if rate is not None else "    -"
            if rate is not None:
                ref_words, err_words = ref_words + len(ref), err_words + rate * len(ref)
            wall, cpu = time.monotonic() - w0, time.process_time() - c0
            tot_audio, tot_wall, tot_cpu = tot_audio + decoded.duration_s, tot_wall + wall, tot_cpu + cpu
            print(f"{path.name:32} {beam:4d} {decoded.duration_s:8.1f} {wall:7.1f} {cpu:7.1f} "
                  f"{wall / decoded.duration_s:6.3f} {decoded.duration_s / cpu:13.2f} {err}")
        print(f"{'TOTAL':32} {beam:4d} {tot_audio:8.1f} {tot_wall:7.1f} {tot_cpu:7.1f} "
              f"{tot_wall / tot_audio:6.3f} {tot_audio / tot_cpu:13.2f} "
              f"{err_words / ref_words if ref_words else float('nan'):5.2f}")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory (RSS): {peak_mb:.0f} MiB")


if __name__ == "__main__":
    main()
