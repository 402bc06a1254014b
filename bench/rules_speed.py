"""Tagging speed: calls/s for a 5-minute transcript with the default rules, and cost as the rule count grows.

Usage: .venv/bin/python bench/rules_speed.py [--seconds 3] [--minutes 5] [--repeat 1]
Runs on one core (single process) and counts CPU time (time.process_time). On a shared or virtual machine other load
still slows CPU time down, so use --repeat N: every figure is then measured N times and printed as best / median.
Tokenising is included in every call; the per-word morphology cache is warm after the first call, as it is in a
long-running worker.
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from service import morph  # noqa: E402
from service.matcher import analyse  # noqa: E402
from service.models import Utterance  # noqa: E402
from service.ruleset import load_ruleset  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from rules_accuracy import data_dir  # noqa: E402


def long_transcript(minutes: float, text: str = "utterances") -> tuple[list[Utterance], dict]:
    """Glue sample calls together until the transcript lasts `minutes`."""
    utts, t = [], 0.0
    files = sorted(data_dir(None).glob("*.json"))
    while t < minutes * 60:
        for f in files:
            data = json.loads(f.read_text(encoding="utf-8"))
            for u in data.get(text) or []:
                utts.append(Utterance(u["speaker"], t + u["start_s"], t + u["end_s"], u["text"]))
            t = utts[-1].end_s + 1 if utts else t + 1
            if t >= minutes * 60:
                break
    call = {"status": "answered", "direction": "inbound", "talk_seconds": t, "wait_seconds": 5,
            "client_phone": "+79990000000"}
    return utts, call


def rate(ruleset, utts, call, seconds: float) -> float:
    """Calls per second for analyse() on one core."""
    analyse(ruleset, utts, call)
    n, start = 0, time.process_time()
    while time.process_time() - start < seconds:
        analyse(ruleset, utts, call, history=lambda phone, days: 0)
        n += 1
    return n / (time.process_time() - start)


def rates(ruleset, utts, call, seconds: float, repeat: int) -> tuple[float, float]:
    """(best, median) calls per second over `repeat` measurements."""
    got = sorted(rate(ruleset, utts, call, seconds) for _ in range(max(1, repeat)))
    return got[-1], statistics.median(got)


def shown(best: float, median: float, repeat: int) -> str:
    return f"{best:.0f} calls/s" if repeat <= 1 else f"best {best:.0f}, median {median:.0f} calls/s"


def synthetic_rules(folder: Path, count: int, vocab: list[str], seed: int = 7) -> None:
    """Write `count` tags rules: 8 lemmas, 3 two-word phrases, a speaker and a negation mode each."""
    rng = random.Random(seed)
    lines = ["kind: tags", "version: 1", "group: synthetic", "rules:"]
    for i in range(count):
        lemmas = ", ".join(rng.sample(vocab, 8))
        phrases = ", ".join(f'"{a} {b}"' for a, b in (rng.sample(vocab, 2) for _ in range(3)))
        lines += [f"  - id: rule_{i}", f"    label: Правило {i}", f"    speaker: {rng.choice(['client', 'any'])}",
                  "    any:", f"      - lemmas: [{lemmas}]", f"      - phrases: [{phrases}]", "        max_gap: 1"]
    (folder / "synthetic.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    ap.add_argument("--minutes", type=float, default=5.0, help="transcript length")
    ap.add_argument("--repeat", type=int, default=1, help="measure each figure N times; print best and median")
    args = ap.parse_args(argv)
    utts, call = long_transcript(args.minutes)
    words = sum(len(morph.tokenize(u.text)) for u in utts)
    default = load_ruleset(ROOT / "rules")
    print(f"transcript: {args.minutes:g} min, {len(utts)} utterances, {words} words")
    print(f"default rules ({len(default.rules)} ids, version {default.version}): "
          f"{shown(*rates(default, utts, call, args.seconds, args.repeat), args.repeat)} (clean text)")
    asr_utts, asr_call = long_transcript(args.minutes, "asr_text")
    print(f"default rules, ASR text: {shown(*rates(default, asr_utts, asr_call, args.seconds, args.repeat), args.repeat)}")
    vocab = sorted({f for u in utts for t in morph.tokenize(u.text) for f in t.forms
                    if f.isalpha() and len(f) > 3 and not f.startswith("=")})
    print("\nsynthetic tags rules (8 lemmas + 3 phrases each) on the same transcript:")
    print(f"{'rules':>6} {'load s':>7} {'calls/s':>8} {'ms/call':>8}" + (f" {'median':>8}" if args.repeat > 1 else ""))
    for count in (10, 100, 1000):
        with tempfile.TemporaryDirectory() as tmp:
            synthetic_rules(Path(tmp), count, vocab)
            t0 = time.process_time()
            rs = load_ruleset(Path(tmp))
            load_s = time.process_time() - t0
            r, med = rates(rs, utts, call, args.seconds, args.repeat)
            print(f"{count:>6} {load_s:7.2f} {r:8.0f} {1000 / r:8.2f}" + (f" {med:8.0f}" if args.repeat > 1 else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
