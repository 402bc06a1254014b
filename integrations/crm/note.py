"""Russian text CRM users read: call summary, transcript notes (split when long), task and retag notes.

Pure functions of a CrmJob; both CRMs use them.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Mapping, Sequence
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from integrations.crm.base import CrmJob, marker

SPEAKERS = {"operator": "Менеджер", "client": "Клиент"}
OTHER_SPEAKER = "Собеседник"
DIRECTIONS = {"inbound": "Входящий звонок", "outbound": "Исходящий звонок", "internal": "Внутренний звонок"}
STATUSES = {"answered": "разговор состоялся", "missed": "пропущен", "busy": "занято", "failed": "не удался",
            "voicemail": "автоответчик", "unknown": "статус неизвестен"}
CHECKPOINTS = {"greeting": "Приветствие", "asked_help": "Вопрос «Чем помочь?»", "needs": "Выявление потребности",
               "presentation": "Презентация", "asked_source": "Вопрос «Как узнали о нас?»",
               "closing": "Завершение"}
ATTRIBUTION_KEYS = ("source", "medium", "campaign", "content", "term")


def format_duration(seconds: float | int | None) -> str:
    """4 мин 8 с / 45 с / 1 ч 2 мин."""
    s = int(round(float(seconds or 0)))
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    if h:
        return f"{h} ч {m} мин"
    if m:
        return f"{m} мин {sec} с"
    return f"{sec} с"


def timestamp(seconds: float | int | None) -> str:
    """[mm:ss] (or [h:mm:ss]) of a position in the recording."""
    s = int(float(seconds or 0))
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m:02d}:{sec:02d}"


def local_time(iso: str | None, tz_name: str | None) -> str:
    """'2026-03-08 14:02' in the tenant's time zone (UTC if unknown)."""
    if not iso:
        return ""
    try:
        dt = datetime.fromisoformat(str(iso).replace("Z", "+00:00"))
    except ValueError:
        return str(iso)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    try:
        dt = dt.astimezone(ZoneInfo(tz_name or "UTC"))
    except (ZoneInfoNotFoundError, ValueError):
        dt = dt.astimezone(timezone.utc)
    return dt.strftime("%Y-%m-%d %H:%M")


def _label(analysis: Mapping, ident: str | None) -> str:
    if not ident:
        return ""
    return (analysis.get("labels") or {}).get(ident) or ident


def _values(analysis: Mapping, group: str) -> list[str]:
    value = (analysis.get("groups") or {}).get(group)
    if value in (None, ""):
        return []
    return [v for v in (value if isinstance(value, (list, tuple)) else [value]) if v]


def _after_colon(label: str) -> str:
    """'Цель: заказ' -> 'заказ' (labels already carry the group word)."""
    return label.split(":", 1)[1].strip() if ":" in label else label


def call_title(job: CrmJob, tz_name: str | None) -> str:
    rec = job.record
    direction = DIRECTIONS.get(rec.get("direction") or "", "Звонок")
    when = local_time(rec.get("started_at"), tz_name)
    talk = format_duration(rec.get("talk_seconds"))
    return f"{direction} {when} ({talk})".replace("  ", " ")


def build_summary(job: CrmJob, tz_name: str | None = None) -> str:
    """The summary block: call facts, then the AI results (purpose, result, reasons, tone, script)."""
    rec, an = job.record, job.analysis
    lines = [f"📞 {call_title(job, tz_name)}"]
    if rec.get("client_phone") or rec.get("client_phone_raw"):
        lines.append(f"Клиент: {rec.get('client_phone') or rec.get('client_phone_raw')}")
    op = rec.get("operator") or {}
    if op.get("name") or op.get("extension"):
        ext = f" (доб. {op['extension']})" if op.get("extension") else ""
        lines.append(f"Менеджер: {op.get('name') or ''}{ext}".replace(": (", ": ("))
    lines.append(f"Статус: {STATUSES.get(rec.get('status') or 'unknown', rec.get('status'))}")
    metrics = an.get("metrics") or {}
    wait = metrics.get("wait_s", rec.get("wait_seconds"))
    talk = metrics.get("talk_s", rec.get("talk_seconds"))
    lines.append(f"Ожидание ответа: {format_duration(wait)} · Разговор: {format_duration(talk)}")
    attribution = rec.get("attribution") or {}
    utm = " / ".join(str(attribution[k]) for k in ATTRIBUTION_KEYS if attribution.get(k))
    sources = [_after_colon(_label(an, s)) for s in _values(an, "source")]
    if utm or sources:
        parts = ([f"реклама {utm}"] if utm else []) + ([f"со слов клиента: {', '.join(sources)}"] if sources else [])
        lines.append(f"Источник: {'; '.join(parts)}")
    if job.recording_link:
        lines.append(f"Запись: {job.recording_link}")
    lines.append("")
    lines.append("Итоги (автоматически):")
    for group, title in (("purpose", "Цель"), ("result", "Итог")):
        values = _values(an, group)
        if values:
            lines.append(f"• {title}: {_after_colon(_label(an, values[0]))}")
    reasons = [_after_colon(_label(an, r)) for r in _values(an, "reason")]
    if reasons:
        lines.append(f"• Причина отказа: {', '.join(reasons)}")
    tone = _values(an, "tone")
    if tone:
        lines.append(f"• Тон клиента: {_after_colon(_label(an, tone[0]))}")
    lines.extend(_script_lines(an))
    flags = [_label(an, f) for f in _values(an, "flag")]
    if flags:
        lines.append(f"• Отметки: {', '.join(flags)}")
    if an.get("tags"):
        lines.append(f"• Теги: {', '.join(an['tags'])}")
    return "\n".join(lines)


def _script_lines(an: Mapping) -> list[str]:
    checkpoints = an.get("checkpoints") or {}
    score = an.get("script_score")
    if score is None and not checkpoints:
        return []
    passed = [CHECKPOINTS.get(k, k) for k, ok in checkpoints.items() if ok]
    missed = [CHECKPOINTS.get(k, k) for k, ok in checkpoints.items() if not ok]
    pct = f"{round(float(score) * 100)} %" if score is not None else "—"
    out = [f"• Скрипт: {pct} ({len(passed)} из {len(checkpoints)})"]
    if passed:
        out.append(f"  ✓ выполнено: {', '.join(passed)}")
    if missed:
        out.append(f"  ✗ пропущено: {', '.join(missed)}")
    return out


def transcript_lines(utterances: Sequence[Mapping]) -> list[str]:
    """'[00:12] Менеджер: текст' for each utterance with text."""
    out = []
    for u in utterances:
        text = " ".join(str(u.get("text") or "").split())
        if text:
            who = SPEAKERS.get(str(u.get("speaker")), OTHER_SPEAKER)
            out.append(f"[{timestamp(u.get('start_s'))}] {who}: {text}")
    return out


def _split(lines: list[str], budget: int) -> list[list[str]]:
    """Group lines into chunks of at most `budget` characters (hard-splitting any longer line)."""
    pieces: list[str] = []
    for line in lines:
        while len(line) > budget:
            pieces.append(line[:budget])
            line = "… " + line[budget:]
        pieces.append(line)
    chunks: list[list[str]] = [[]]
    size = 0
    for piece in pieces:
        if chunks[-1] and size + len(piece) + 1 > budget:
            chunks.append([])
            size = 0
        chunks[-1].append(piece)
        size += len(piece) + 1
    return chunks


def build_notes(job: CrmJob, tz_name: str | None = None, max_chars: int = 15000) -> list[str]:
    """Summary + transcript as one or more notes, each at most max_chars and ending with our marker."""
    mark = marker(job.call_key)
    summary = build_summary(job, tz_name)
    lines = transcript_lines(job.utterances)
    header_room = 80 + len(mark)
    first_budget = max(500, max_chars - len(summary) - header_room)
    rest_budget = max(500, max_chars - header_room)
    if not lines:
        return [f"{summary}\n\nРасшифровки нет.\n{mark}"]
    first, *more = _split(lines, first_budget)
    more = _split([line for chunk in more for line in chunk], rest_budget) if more else []
    total = 1 + len(more)
    part = (lambda n: f" (часть {n} из {total})") if total > 1 else (lambda n: "")
    notes = [f"{summary}\n\nРасшифровка{part(1)}:\n" + "\n".join(first) + f"\n{mark}"]
    for i, chunk in enumerate(more, start=2):
        notes.append(f"Расшифровка звонка{part(i)}:\n" + "\n".join(chunk) + f"\n{mark}")
    return notes


def build_call_result(job: CrmJob) -> str:
    """Short result text for the amoCRM call note."""
    an = job.analysis
    parts = [_label(an, v) for g in ("purpose", "result") for v in _values(an, g)[:1]]
    text = "; ".join(p for p in parts if p) or STATUSES.get(job.record.get("status") or "unknown", "")
    return f"{text} {marker(job.call_key)}".strip()


def build_task_text(job: CrmJob, triggers: Sequence[str], tz_name: str | None = None) -> str:
    """Follow-up task text for the deal's responsible user."""
    an = job.analysis
    why = ", ".join(_label(an, t) for t in triggers)
    lines = [f"Проверьте звонок и свяжитесь с клиентом: {why}.", call_title(job, tz_name)]
    reasons = [_after_colon(_label(an, r)) for r in _values(an, "reason")]
    if reasons:
        lines.append(f"Причина отказа: {', '.join(reasons)}")
    if job.recording_link:
        lines.append(f"Запись: {job.recording_link}")
    lines.append(marker(job.call_key))
    return "\n".join(lines)


def build_retag_note(job: CrmJob, added: Sequence[str], removed: Sequence[str]) -> str:
    """The short note after re-running the rules."""
    version = job.analysis.get("rules_version") or ""
    lines = [f"Звонок перетегирован (правила {version})".replace(" ()", "")]
    lines.append(f"Добавлены теги: {', '.join(added)}" if added else "Новых тегов нет")
    if removed:
        lines.append(f"Сняты теги: {', '.join(removed)}")
    lines.append(marker(job.call_key))
    return "\n".join(lines)
