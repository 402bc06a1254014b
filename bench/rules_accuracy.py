"""Accuracy of the default rules on the labelled sample calls, on clean text and on ASR text.

Usage: .venv/bin/python bench/rules_accuracy.py [--rules DIR] [--data DIR] [--errors]
Prints per-group accuracy (exact value / exact set) and per-id precision, recall, F1.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from service.matcher import analyse  # noqa: E402
from service.rules_cli import load_transcript  # noqa: E402
from service.ruleset import load_ruleset  # noqa: E402

# analysis group -> labels key in the sample files
GROUPS = {"purpose": "purpose", "result": "result", "reason": "reasons", "topic": "topics", "source": "sources",
          "tone": "tone", "flag": "flags", "checkpoint": "checkpoints"}
UNLABELLED = {"repeat_call", "alert_conflict"}   # samples leave these out (history / policy)


def data_dir(explicit: str | None) -> Path:
    """The labelled transcripts: --data, ../shared/samples, /work/shared/samples, or tests/data."""
    for cand in ([Path(explicit)] if explicit else []) + [ROOT.parent / "shared/samples/transcripts",
                                                          Path("/work/shared/samples/transcripts"),
                                                          ROOT / "tests/data/transcripts"]:
        if cand.is_dir() and any(cand.glob("*.json")):
            return cand
    raise SystemExit("no labelled transcripts found")


def predicted(analysis: dict, group: str):
    if group == "checkpoint":
        return {k for k, v in analysis["checkpoints"].items() if v}
    value = analysis["groups"].get(group)
    return value if isinstance(value, str) else set(value or []) - UNLABELLED


def evaluate(ruleset, files, text: str, show_errors: bool):
    """Per-group accuracy and per-id (tp, fp, fn) counts."""
    acc = defaultdict(list)
    counts = defaultdict(lambda: [0, 0, 0])
    for f in files:
        data = json.loads(f.read_text(encoding="utf-8"))
        utts, call = load_transcript(data, text=text)
        analysis = analyse(ruleset, utts, call)
        for group, key in GROUPS.items():
            gold = data["labels"].get(key)
            pred = predicted(analysis, group)
            if isinstance(pred, str):
                acc[group].append(pred == gold)
                for i in {pred, gold}:
                    counts[(group, i)][0] += pred == gold == i
                    counts[(group, i)][1] += pred == i != gold
                    counts[(group, i)][2] += gold == i != pred
                if show_errors and pred != gold:
                    print(f"  {text:5} {f.stem:18} {group:10} got {pred}, want {gold}")
                continue
            gold = set(gold or []) - UNLABELLED
            acc[group].append(pred == gold)
            for i in pred | gold:
                counts[(group, i)][0] += i in pred and i in gold
                counts[(group, i)][1] += i in pred and i not in gold
                counts[(group, i)][2] += i in gold and i not in pred
            if show_errors and pred != gold:
                print(f"  {text:5} {f.stem:18} {group:10} extra {sorted(pred - gold)} missing {sorted(gold - pred)}")
    return acc, counts


def prf(tp, fp, fn):
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 1.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rules", default=str(ROOT / "rules"))
    ap.add_argument("--data")
    ap.add_argument("--errors", action="store_true", help="list every wrong call and group")
    args = ap.parse_args(argv)
    ruleset = load_ruleset(Path(args.rules))
    files = sorted(data_dir(args.data).glob("*.json"))
    print(f"rules {ruleset.version}, {len(files)} labelled calls")
    results = {t: evaluate(ruleset, files, t, args.errors) for t in ("clean", "asr")}
    print(f"\n{'group':12} {'acc clean':>9} {'acc asr':>8} {'microF1 clean':>14} {'microF1 asr':>12}")
    for group in GROUPS:
        row = []
        for t in ("clean", "asr"):
            acc, counts = results[t]
            row.append(sum(acc[group]) / len(acc[group]))
        for t in ("clean", "asr"):
            _, counts = results[t]
            tp = sum(c[0] for (g, _), c in counts.items() if g == group)
            fp = sum(c[1] for (g, _), c in counts.items() if g == group)
            fn = sum(c[2] for (g, _), c in counts.items() if g == group)
            row.append(prf(tp, fp, fn)[2])
        print(f"{group:12} {row[0]:9.2f} {row[1]:8.2f} {row[2]:14.2f} {row[3]:12.2f}")
    print(f"\n{'id':24} {'P':>5} {'R':>5} {'F1':>5} | {'P asr':>5} {'R asr':>5} {'F1 asr':>6}  support")
    ids = sorted({k for t in results for k in results[t][1]})
    for key in ids:
        cells = []
        for t in ("clean", "asr"):
            tp, fp, fn = results[t][1].get(key, (0, 0, 0))
            cells.extend(prf(tp, fp, fn))
        support = sum(results["clean"][1].get(key, (0, 0, 0))[i] for i in (0, 2))
        print(f"{key[1]:24} {cells[0]:5.2f} {cells[1]:5.2f} {cells[2]:5.2f} | {cells[3]:5.2f} {cells[4]:5.2f} "
              f"{cells[5]:6.2f}  {support}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
