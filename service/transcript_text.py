"""Plain-text rendering of a processed call for the terminal (CLI and demo)."""
from __future__ import annotations

SPEAKER_RU = {"operator": "Менеджер", "client": "Клиент", "unknown": "Говорящий"}


def _ts(seconds: float) -> str:
    s = int(seconds or 0)
    return f"{s // 60:d}:{s % 60:02d}"


def render(view: dict) -> str:
    """Transcript lines, then tags, groups, checkpoints and metrics."""
    lines = []
    call = view.get("call") or {}
    lines.append(f"Звонок #{call.get('id')} ({call.get('call_key')}), состояние: {call.get('state')}")
    for u in view.get("transcript") or []:
        lines.append(f"[{_ts(u['start_s'])}] {SPEAKER_RU.get(u['speaker'], u['speaker'])}: {u['text']}")
    analysis = view.get("analysis") or {}
    if analysis:
        lines.append("")
        lines.append("Теги: " + (", ".join(analysis.get("tags") or []) or "—"))
        for group, value in (analysis.get("groups") or {}).items():
            shown = ", ".join(value) if isinstance(value, list) else (value or "—")
            lines.append(f"  {group}: {shown or '—'}")
        checks = analysis.get("checkpoints") or {}
        if checks:
            lines.append("Скрипт: " + ", ".join(f"{k} {'✓' if v else '✗'}" for k, v in checks.items())
                         + (f" ({round(analysis['script_score'] * 100)}%)" if analysis.get("script_score") is not None else ""))
        m = analysis.get("metrics") or {}
        if m:
            share = m.get("operator_share")
            lines.append(f"Метрики: длительность {m.get('duration_s')} с, ожидание {m.get('wait_s')} с, "
                         f"речь менеджера {m.get('talk_s_operator')} с, клиента {m.get('talk_s_client')} с"
                         + (f", доля менеджера {round(share * 100)}%" if share is not None else ""))
    return "\n".join(lines)
