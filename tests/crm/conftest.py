"""CRM test fixtures: a tmp-file DB with the CRM migrations, a store, and adapter factories."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import responses
import sqlite_utils

from crm_helpers import AMO_CONFIG, B24_CONFIG, NOW, SECRET_KEY, TENANT, Sleeps, make_job, open_db
from service.crm_store import CrmStore, apply_migrations


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    path = tmp_path / "t.db"
    apply_migrations(open_db(path))
    return path


@pytest.fixture
def crm_db(db_path: Path) -> sqlite_utils.Database:
    return open_db(db_path)


@pytest.fixture
def store(crm_db) -> CrmStore:
    return CrmStore(crm_db, SECRET_KEY)


@pytest.fixture
def rsps():
    """Every request must be registered, and every registered response must be used."""
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def job():
    return make_job


@pytest.fixture
def amo(store, sleeps):
    from integrations.crm.amocrm import AmoCrm

    def factory(_store: CrmStore | None = None, **overrides: Any) -> AmoCrm:
        config = {**AMO_CONFIG, **overrides}
        return AmoCrm(config, store=_store or store, tenant=TENANT, sleep=sleeps, clock=lambda: NOW)

    return factory


@pytest.fixture
def b24(store, sleeps):
    from integrations.crm.bitrix24 import Bitrix24

    def factory(_store: CrmStore | None = None, **overrides: Any) -> Bitrix24:
        config = {**B24_CONFIG, **overrides}
        return Bitrix24(config, store=_store or store, tenant=TENANT, sleep=sleeps, clock=lambda: NOW)

    return factory
