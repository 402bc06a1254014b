"""Shared fixtures: an app on a temp data dir, its client, a webhook poster, HTTP mocking."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import responses

from support import API_TOKEN, REPO, RULES_DIR, TEST_SECRET, copy_sample, make_config, webhook_url  # noqa: F401


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A fresh data dir; the assembled bundled model is shared between tests via a symlink."""
    d = tmp_path / "data"
    (d / "models").mkdir(parents=True)
    shared = REPO / "data" / "models" / "whisper-base-ct2"
    if shared.exists():
        (d / "models" / "whisper-base-ct2").symlink_to(shared)
    return d


@pytest.fixture
def app_factory(data_dir: Path):
    """Build apps with overrides: app_factory(config=..., QUEUE_IMMEDIATE=False, ...)."""
    from service import create_app

    def factory(config: dict[str, Any] | None = None, **settings: Any):
        values = {"TESTING": True, "DATA_DIR": data_dir, "QUEUE_IMMEDIATE": True,
                  "RULES_DIR": RULES_DIR, "CONFIG_DATA": config or make_config()}
        values.update(settings)
        return create_app(values)

    return factory


@pytest.fixture
def app(app_factory):
    return app_factory()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runtime(app):
    return app.extensions["calltag"]["runtime"]


@pytest.fixture
def db(runtime):
    return runtime.db()


@pytest.fixture
def mocked_http():
    """Every outgoing requests call must be registered; unregistered URLs fail the test."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


