"""Typed process settings from CALLTAG_* environment variables; fails fast on bad values."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

REPO_DIR = Path(__file__).resolve().parent.parent


class SettingsError(ValueError):
    """A CALLTAG_* variable holds a value of the wrong type."""


def _bool(value: str) -> bool:
    v = value.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected 1/0, true/false, yes/no")


@dataclass(frozen=True)
class SettingSpec:
    """One environment setting: its name, parser, default, secrecy and help."""

    name: str
    parse: Callable[[str], Any]
    default: Any
    help: str
    secret: bool = False


SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec("CONFIG", Path, None, "Path to the YAML config (tenants, api_token, providers, CRM)."),
    SettingSpec("DATA_DIR", Path, REPO_DIR / "data", "Directory for the database, queue, recordings and model files."),
    SettingSpec("RULES_DIR", Path, REPO_DIR / "rules", "Directory of the YAML rule files."),
    SettingSpec("STT_ENGINE", str, "whisper_local", "Speech engine: whisper_local (default, offline)."),
    SettingSpec("WHISPER_MODEL", str, "", "Path to a CTranslate2 Whisper model directory; empty = bundled Whisper base."),
    SettingSpec("WHISPER_BEAM", int, 5, "Beam size for decoding (5 = beam search; 1 = greedy, about 3 % less CPU)."),
    SettingSpec("WHISPER_THREADS", int, 0, "CPU threads per transcription (0 = all cores)."),
    SettingSpec("WHISPER_PACK_S", float, 28.0, "Pack a channel's short utterances into one Whisper window of up to this many seconds (0 = one window per utterance)."),
    SettingSpec("REDIS_URL", str, "", "Use a Redis job queue at this URL instead of the SQLite one."),
    SettingSpec("QUEUE_IMMEDIATE", _bool, False, "Run jobs inline in the web process (tests and one-off runs)."),
    SettingSpec("WORKERS", int, 1, "Worker threads of the queue consumer."),
    SettingSpec("JOB_LEASE_S", int, 1800, "Seconds a worker owns a call before another may take it over."),
    SettingSpec("MAX_BODY_BYTES", int, 1024 * 1024, "Largest accepted webhook body."),
    SettingSpec("MAX_RECORDING_MB", int, 200, "Largest recording downloaded, in MiB."),
    SettingSpec("RECORDING_RETRY_H", float, 24.0, "Hours to keep retrying a recording that is not ready."),
    SettingSpec("RECEIVING_TIMEOUT_H", float, 3.0, "Process a call whose 'call finished' event never came after this many hours."),
    SettingSpec("RULES_RELOAD_S", float, 2.0, "How often to look for changed rule files (seconds)."),
    SettingSpec("SECRET_KEY", str, "", "Key that encrypts CRM tokens at rest (Fernet, base64).", secret=True),
    SettingSpec("PUBLIC_URL", str, "", "Public base URL of this service as providers call it (Twilio signs it)."),
    SettingSpec("LOG_LEVEL", str, "INFO", "Log level."),
    SettingSpec("LOG_PII", _bool, False, "Allow phone numbers and transcript text in logs."),
)


def load_settings(environ: Mapping[str, str], overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Parse CALLTAG_* variables into a dict keyed by setting name; overrides win (tests)."""
    out: dict[str, Any] = {}
    for spec in SETTINGS:
        raw = environ.get(f"CALLTAG_{spec.name}")
        if raw is None or raw == "":
            out[spec.name] = spec.default
            continue
        try:
            out[spec.name] = spec.parse(raw)
        except ValueError as err:
            shown = "***" if spec.secret else repr(raw)
            raise SettingsError(f"CALLTAG_{spec.name}={shown}: {err}") from err
    for key, value in (overrides or {}).items():
        out[key] = value
    for key in ("DATA_DIR", "RULES_DIR"):
        out[key] = Path(out[key])
    return out
