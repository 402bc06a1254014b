"""ASR speed: real-time factor, audio seconds per CPU-second and peak memory on the sample calls.

Usage: python bench/asr.py [--beams 1,5] [FILES...]   (defaults: the stereo sample calls in tests/data/calls)
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from service.audio import decode  # noqa: E402
from integrations.stt.whisper_local import WhisperLocal, load_model  # noqa: E402
from service.speech import model_path  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--beams", default="1,5")
    parser.add_argument("files", nargs="*")
    opts = parser.parse_args()
    files = [Path(f) for f in opts.files] or sorted((REPO / "tests/data/calls").glob("*.mp3"))
    model = str(model_path({"DATA_DIR": REPO / "data", "WHISPER_MODEL": ""}))
    t0 = time.monotonic()
    load_model(model, 0)
    print(f"model: {model}  load: {time.monotonic() - t0:.2f}s")
    print(f"{'file':32} {'beam':>4} {'audio_s':>8} {'wall_s':>7} {'cpu_s':>7} {'RTF':>6} {'audio_s/cpu_s':>13}")
    for beam in [int(b) for b in opts.beams.split(",")]:
        engine = WhisperLocal({"model_path": model, "beam_size": beam, "threads": 0})
        tot_audio = tot_wall = tot_cpu = 0.0
        for path in files:
            decoded = decode(path)
            roles = ["operator", "client"] if len(decoded.channels) == 2 else ["unknown"]
            w0, c0 = time.monotonic(), time.process_time()
            engine.transcribe(decoded, roles)
            wall, cpu = time.monotonic() - w0, time.process_time() - c0
            tot_audio, tot_wall, tot_cpu = tot_audio + decoded.duration_s, tot_wall + wall, tot_cpu + cpu
            print(f"{path.name:32} {beam:4d} {decoded.duration_s:8.1f} {wall:7.1f} {cpu:7.1f} "
                  f"{wall / decoded.duration_s:6.3f} {decoded.duration_s / cpu:13.2f}")
        print(f"{'TOTAL':32} {beam:4d} {tot_audio:8.1f} {tot_wall:7.1f} {tot_cpu:7.1f} "
              f"{tot_wall / tot_audio:6.3f} {tot_audio / tot_cpu:13.2f}")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory (RSS): {peak_mb:.0f} MiB")


if __name__ == "__main__":
    main()
