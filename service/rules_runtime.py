"""Keeps the current rule set: loaded at start-up, reloaded when rules/ changes, last good kept."""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("calltag.rules")


def fingerprint(rules_dir: Path) -> tuple:
    """Cheap change detector: names, sizes and mtimes of every YAML file under rules_dir."""
    items = []
    for path in sorted(rules_dir.rglob("*.y*ml")):
        try:
            st = path.stat()
        except OSError:
            continue
        items.append((str(path), st.st_size, st.st_mtime_ns))
    return tuple(items)


class RulesProvider:
    """Thread-safe holder of the live RuleSet with hot reload."""

    def __init__(self, rules_dir: Path, reload_s: float = 2.0):
        from service.ruleset import load_ruleset  # raises RuleSetError: start-up must stop
        self.rules_dir = Path(rules_dir)
        self.reload_s = reload_s
        self._lock = threading.Lock()
        self._fp = fingerprint(self.rules_dir)
        self._ruleset = load_ruleset(self.rules_dir)
        self._checked = time.monotonic()
        self.error: str | None = None

    def current(self) -> Any:
        """The live rule set, reloading first if files changed (invalid change: keep the old one)."""
        if time.monotonic() - self._checked >= self.reload_s:
            self.reload()
        return self._ruleset

    def reload(self) -> bool:
        """Re-read rules/ if it changed; return True when a new set went live."""
        from service.ruleset import RuleSetError, load_ruleset
        with self._lock:
            self._checked = time.monotonic()
            fp = fingerprint(self.rules_dir)
            if fp == self._fp:
                return False
            self._fp = fp
            try:
                new = load_ruleset(self.rules_dir)
            except RuleSetError as err:
                self.error = str(err)
                log.error("rules in %s are invalid; still running version %s\n%s",
                          self.rules_dir, self._ruleset.version, err)
                return False
            self.error = None
            if new.version != self._ruleset.version:
                log.info("rules reloaded: version %s -> %s", self._ruleset.version, new.version)
            self._ruleset = new
            return True
