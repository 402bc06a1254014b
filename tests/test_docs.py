"""The README stays current: every setting, provider and CLI command is documented."""
from __future__ import annotations

from integrations import REGISTRY
from service.cli import USAGE
from service.settings import SETTINGS
from support import REPO

README = (REPO / "README.md").read_text(encoding="utf-8")


def test_every_setting_is_in_the_readme():
    missing = [f"CALLTAG_{s.name}" for s in SETTINGS if f"`CALLTAG_{s.name}`" not in README]
    assert missing == []


def test_every_provider_has_a_readme_row():
    missing = [name for name in REGISTRY["calltracking"] if f"/webhooks/{name}/" not in README and f"`{name}`" not in README]
    assert missing == []
    assert "/webhooks/generic/" in README


def test_every_cli_command_is_in_the_readme():
    for line in USAGE.splitlines():
        line = line.strip()
        if line and not line.startswith(("usage", "commands")):
            command = " ".join(line.split()[:2]).replace("PATH_OR_URL", "").strip()
            assert f"python -m service {command}" in README, command
