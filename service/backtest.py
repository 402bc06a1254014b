"""`python -m service rules backtest [--since 30d] [--apply]`: re-tag stored calls with the current rules."""
from __future__ import annotations

import argparse
import re
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Iterable, Sequence


def parse_since(text: str) -> timedelta:
    """'30d', '12h', '90m' or '2w' as a timedelta."""
    m = re.fullmatch(r"(\d+)([mhdw])", text.strip())
    if not m:
        raise argparse.ArgumentTypeError("use a number with m, h, d or w, e.g. 30d")
    n, unit = int(m.group(1)), m.group(2)
    return {"m": timedelta(minutes=n), "h": timedelta(hours=n), "d": timedelta(days=n), "w": timedelta(weeks=n)}[unit]


def ids_of(analysis: dict | None) -> set[str]:
    """Every group value and passed checkpoint of an analysis, as ids."""
    if not analysis:
        return set()
    out: set[str] = set()
    for value in (analysis.get("groups") or {}).values():
        out.update(value if isinstance(value, list) else [value] if value else [])
    out.update(f"checkpoint:{k}" for k, v in (analysis.get("checkpoints") or {}).items() if v)
    return out


def backtest(rt, since: timedelta, apply: bool) -> dict:
    """Compare stored and fresh analyses for calls created within `since`; optionally store the new ones."""
    from service import pipeline, storage
    db = rt.db()
    ruleset = rt.rules.current()
    start = (datetime.now(timezone.utc) - since).isoformat()
    before, after = Counter(), Counter()
    gained: dict[str, list[int]] = {}
    lost: dict[str, list[int]] = {}
    rows = list(db.query("SELECT id FROM calls WHERE created_at >= ? AND state = 'done' ORDER BY id", [start]))
    changed = 0
    for row in rows:
        call = storage.get_call(db, row["id"])
        old = storage.get_analysis(db, call["id"])
        new = pipeline.analyse_call(rt, db, call, ruleset)
        old_ids, new_ids = ids_of(old), ids_of(new)
        before.update(old_ids)
        after.update(new_ids)
        for tag in new_ids - old_ids:
            gained.setdefault(tag, []).append(call["id"])
        for tag in old_ids - new_ids:
            lost.setdefault(tag, []).append(call["id"])
        if old is None or old.get("rules_version") != ruleset.version:
            changed += old_ids != new_ids or (old or {}).get("tags") != new.get("tags")
            if apply:
                storage.save_analysis(db, call["id"], ruleset.version, new)
                tenant = rt.tenant(call["tenant"]) or {}
                if (tenant.get("crm") or {}).get("kind", "none") != "none":
                    storage.set_call_state(db, call["id"], "queued", enqueued_at=time.time())
                    rt.queue.enqueue_call(call["id"])
    return {"calls": len(rows), "changed": changed, "before": before, "after": after, "gained": gained,
            "lost": lost, "version": ruleset.version}


def format_report(result: dict, samples: int = 5) -> Iterable[str]:
    yield f"rules version {result['version']}: {result['calls']} calls, {result['changed']} with changed tags"
    tags = sorted(set(result["before"]) | set(result["after"]))
    yield f"{'tag':32} {'before':>7} {'after':>7} {'delta':>7}"
    for tag in tags:
        b, a = result["before"][tag], result["after"][tag]
        yield f"{tag:32} {b:7d} {a:7d} {a - b:+7d}"
    for title, table in (("gained", result["gained"]), ("lost", result["lost"])):
        for tag, ids in sorted(table.items()):
            yield f"{title} {tag}: calls {', '.join(map(str, ids[:samples]))}{' …' if len(ids) > samples else ''}"


def cmd_backtest(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m service rules backtest")
    parser.add_argument("--since", type=parse_since, default=parse_since("30d"))
    parser.add_argument("--apply", action="store_true", help="store the new analyses and queue CRM re-tagging")
    opts = parser.parse_args(argv)
    from service import create_app
    rt = create_app().extensions["calltag"]["runtime"]
    result = backtest(rt, opts.since, opts.apply)
    for line in format_report(result):
        print(line)
    if opts.apply:
        print("applied: new analyses stored")
    return 0
