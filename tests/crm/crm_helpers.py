"""Constants and helpers shared by the CRM tests (fixtures live in conftest.py)."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import sqlite_utils

from integrations.crm.base import CrmJob

FIX = Path(__file__).resolve().parent.parent / "fixtures" / "crm"
AMO = "https://acme.amocrm.ru"
AMO_API = f"{AMO}/api/v4"
B24 = "https://acme.bitrix24.ru"
B24_HOOK = f"{B24}/rest/17/s3cr3tc0de"
SECRET_KEY = "q0sNn3jz8wq4mZ1n9J7pGv1m0Z2lR6Q3kD0vXc1sE5U="  # a valid Fernet key (test only)
CALL_KEY = "mango:acme:12345"
TENANT = {"name": "acme", "timezone": "Europe/Moscow", "phone_region": "RU"}
NOW = 1773000000.0


def load(name: str) -> Any:
    return json.loads((FIX / name).read_text(encoding="utf-8"))


def text(name: str) -> str:
    return (FIX / name).read_text(encoding="utf-8")


def open_db(path: Path) -> sqlite_utils.Database:
    conn = sqlite3.connect(str(path), timeout=30, isolation_level=None, check_same_thread=False)
    db = sqlite_utils.Database(conn)
    db.enable_wal()
    return db


class Sleeps(list):
    """Records sleeps instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def make_job(mode: str = "full", record: dict | None = None, analysis: dict | None = None,
             utterances: list | None = None, **record_overrides: Any) -> CrmJob:
    rec = load("job_record.json") if record is None else record
    rec.update(record_overrides)
    return CrmJob(call_id=7, call_key=CALL_KEY, record=rec,
                  utterances=load("job_utterances.json") if utterances is None else utterances,
                  analysis=load("job_analysis.json") if analysis is None else analysis, mode=mode,
                  recording_link="https://calls.example.com/r/12345")


AMO_CONFIG = {"kind": "amocrm", "base_url": AMO, "auth": "long_lived", "token": "long-lived-token-abcdef",
              "pipeline_id": 7123456, "responsible_user_id": 7012345, "create_deal": "complex",
              "rate_per_s": 0, "backoff_base_s": 0.01}


B24_CONFIG = {"kind": "bitrix24", "base_url": B24, "auth": "webhook", "webhook_url": f"{B24_HOOK}/",
              "responsible_user_id": 17, "create_deal": "contact", "tags_field": "UF_CRM_CALLTAG_TAGS",
              "rate_per_s": 0, "backoff_base_s": 0.01}
