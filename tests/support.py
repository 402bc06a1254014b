"""Shared test helpers and constants (import from here, not from conftest)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

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



def make_config(**tenant_overrides: Any) -> dict[str, Any]:
    """A config with one tenant 'acme' (overridable keys)."""
    tenant = {"webhook_secret": TEST_SECRET, "timezone": "Europe/Moscow", "phone_region": "RU",
              "allow_hosts": ["127.0.0.1", "localhost"], "providers": {}, "crm": {"kind": "none"}}
    tenant.update(tenant_overrides)
    return {"api_token": API_TOKEN, "tenants": {"acme": tenant}}


def webhook_url(provider: str, tenant: str = "acme", secret: str = TEST_SECRET) -> str:
    return f"/webhooks/{provider}/{tenant}/{secret}"


def copy_sample(name: str, dest: Path) -> Path:
    """Copy a test sample (tests/data/...) into a temp dir."""
    src = REPO / "tests" / "data" / name
    dest.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(src, dest / Path(name).name))
