"""`rules check` and `rules test` command implementations (wired into `python -m service rules ...`)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Mapping

from service.models import Utterance

DEFAULT_RULES = Path(__file__).resolve().parent.parent / "rules"
AUDIO_SUFFIXES = {".mp3", ".wav", ".flac", ".ogg", ".opus", ".m4a", ".aac", ".amr", ".webm"}
_DIRECTIONS = {"in": "inbound", "out": "outbound"}


def call_from_meta(meta: Mapping) -> dict:
    """Sample-transcript `meta` (direction in|out, answered, wait_s, duration_s…) -> canonical call record."""
    if "status" in meta or "talk_seconds" in meta:  # already a canonical call record
        return dict(meta)
    answered = meta.get("answered")
    call = {"direction": _DIRECTIONS.get(meta.get("direction"), meta.get("direction") or "unknown"),
            "status": "unknown" if answered is None else ("answered" if answered else "missed"),
            "wait_seconds": meta.get("wait_s"), "talk_seconds": meta.get("duration_s") if answered is not False else 0,
            "client_phone": meta.get("client_phone"), "source_channel": meta.get("source_channel")}
    if meta.get("wait_s") is not None and meta.get("duration_s") is not None:
        call["total_seconds"] = meta["wait_s"] + (meta["duration_s"] if answered is not False else 0)
    for key in ("provider", "attribution", "operator", "metrics", "started_at"):
        if key in meta:
            call[key] = meta[key]
    return {k: v for k, v in call.items() if v is not None}


def load_transcript(data: Mapping, *, text: str = "clean") -> tuple[list[Utterance], dict]:
    """A transcript JSON (samples format: meta + utterances [+ asr_text], or {call, utterances}) -> inputs."""
    key = "asr_text" if text == "asr" and data.get("asr_text") else "utterances"
    utts = [Utterance.from_dict(u) for u in data.get(key) or []]
    call = call_from_meta(data.get("call") or data.get("meta") or {})
    return utts, call


def cmd_check(args_list) -> int:
    """`rules check [--strict] [--lang ru|en] [DIR]`: print every problem; exit 1 on errors."""
    from service.ruleset import check, format_report, load_ruleset

    p = argparse.ArgumentParser(prog="python -m service rules check",
                                description="Проверить правила: схема, ссылки, словоформы, примеры.")
    p.add_argument("dir", nargs="?", default=str(DEFAULT_RULES), help="папка с правилами (по умолчанию rules/)")
    p.add_argument("--strict", action="store_true", help="предупреждения тоже считаются ошибками")
    p.add_argument("--lang", choices=("ru", "en"), default="ru", help="язык сообщений")
    args = p.parse_args(args_list)
    problems = check(Path(args.dir), lang=args.lang, strict=args.strict)
    errors = [x for x in problems if x.severity == "error"]
    if problems:
        print(format_report(problems, lang=args.lang))
    if not errors:
        rs = load_ruleset(Path(args.dir)) if not args.strict or not problems else None
        if rs is not None:
            n = len(rs.rules)
            print(f"OK: {n} rules, version {rs.version}" if args.lang == "en"
                  else f"OK: правил {n}, версия {rs.version}")
    return 1 if errors else 0


def _print_analysis(analysis: dict, explain: bool, lang: str) -> None:
    en = lang == "en"
    print(("rules version: " if en else "версия правил: ") + analysis["rules_version"])
    for group, value in analysis["groups"].items():
        shown = value if isinstance(value, str) else (", ".join(value) or "—")
        print(f"  {group}: {shown}")
    if analysis["script_id"]:
        score = analysis["script_score"]
        print(("script " if en else "скрипт ") + f"{analysis['script_id']}: "
              + (f"{score * 100:.0f} %" if score is not None else "—"))
        for cp, ok in analysis["checkpoints"].items():
            print(f"  [{'x' if ok else ' '}] {cp}")
    print(("CRM tags: " if en else "метки CRM: ") + "; ".join(analysis["tags"]))
    if explain:
        print("evidence:" if en else "доказательства:")
        for h in analysis["hits"]:
            m, s = divmod(int(h["start_s"]), 60)
            print(f"  {h['rule_id']:<22} [{m}:{s:02d}] {h['speaker']}: «{h['matched']}» — {h['text']}")


def cmd_test(args_list) -> int:
    """`rules test FILE [--json] [--explain] [--asr] [--rules DIR]`: analyse one transcript JSON."""
    from service.matcher import analyse
    from service.ruleset import RuleSetError, load_ruleset

    p = argparse.ArgumentParser(prog="python -m service rules test",
                                description="Разметить один звонок (JSON расшифровки) текущими правилами.")
    p.add_argument("file", help="JSON расшифровки: meta/call + utterances (формат samples/transcripts)")
    p.add_argument("--json", action="store_true", help="вывести analysis как JSON")
    p.add_argument("--explain", action="store_true", help="показать каждое совпадение с цитатой")
    p.add_argument("--asr", action="store_true", help="использовать asr_text вместо чистого текста")
    p.add_argument("--rules", default=str(DEFAULT_RULES), help="папка с правилами")
    p.add_argument("--lang", choices=("ru", "en"), default="ru")
    args = p.parse_args(args_list)
    path = Path(args.file)
    if path.suffix.lower() in AUDIO_SUFFIXES:
        print("распознавание записи доступно через `python -m service process`; "
              "`rules test` принимает JSON расшифровки")
        return 2
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        print(f"не удалось прочитать {path}: {err}")
        return 2
    try:
        ruleset = load_ruleset(Path(args.rules))
    except RuleSetError as err:
        print(err.__class__.__name__ + ":\n" + str(err) if args.lang == "en" else str(err))
        return 1
    utts, call = load_transcript(data, text="asr" if args.asr else "clean")
    analysis = analyse(ruleset, utts, call)
    if args.json:
        json.dump(analysis, sys.stdout, ensure_ascii=False, indent=2)
        print()
    else:
        _print_analysis(analysis, args.explain, args.lang)
    return 0
