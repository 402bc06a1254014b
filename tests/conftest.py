"""Shared fixtures: an app on a temp data dir, its client, a webhook poster, HTTP mocking."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
import responses

REPO = Path(__file__).resolve().parent.parent
RULES_DIR = Path(os.environ.get("CALLTAG_TEST_RULES_DIR", REPO / "rules"))  # rule set under test
TEST_SECRET = "s3cret-webhook-token-0123456789"
API_TOKEN = "test-api-token-0123456789abcdef"


def make_config(**tenant_overrides: Any) -> dict[str, Any]:
    """A config with one tenant 'acme' (overridable keys)."""
    tenant = {"webhook_secret": TEST_SECRET, "timezone": "Europe/Moscow", "phone_region": "RU",
              "allow_hosts": ["127.0.0.1", "localhost"], "providers": {}, "crm": {"kind": "none"}}
    tenant.update(tenant_overrides)
    return {"api_token": API_TOKEN, "tenants": {"acme": tenant}}


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


def webhook_url(provider: str, tenant: str = "acme", secret: str = TEST_SECRET) -> str:
    return f"/webhooks/{provider}/{tenant}/{secret}"


def copy_sample(name: str, dest: Path) -> Path:
    """Copy a test sample (tests/data/...) into a temp dir."""
    src = REPO / "tests" / "data" / name
    dest.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(src, dest / Path(name).name))
