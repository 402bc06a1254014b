"""The process-wide runtime: settings, config, per-thread DB handles, queue, rules and speech."""
from __future__ import annotations

import logging
import threading
from typing import Any

from sqlite_utils import Database

from service import crm_store, storage
from service.queue import JobQueue, build_queue
from service.rules_runtime import RulesProvider

log = logging.getLogger("calltag")


class Runtime:
    """Everything a request or a job needs, built once per process by create_app()."""

    def __init__(self, settings: dict[str, Any], config: dict[str, Any]):
        self.settings = settings
        self.config = config
        self.db_path = settings.get("DATABASE") or settings["DATA_DIR"] / "calltag.db"
        self._local = threading.local()
        self.rules = RulesProvider(settings["RULES_DIR"], settings["RULES_RELOAD_S"])
        from service import jobs  # late import: jobs imports the pipeline and its adapters
        self.queue = JobQueue(build_queue(settings), lambda call_id: jobs.run_call_job(self, call_id),
                              lambda: jobs.recover_stalled(self))
        self.db()  # create and migrate the database now, so start-up fails early

    def db(self) -> Database:
        """A database handle for the current thread (opened and migrated on first use)."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = storage.open_db(self.db_path)
            crm_store.apply_migrations(db)
            self._local.db = db
        return db

    def stt(self) -> Any:
        """The speech engine of this process (the model itself is loaded once, on first use)."""
        engine = getattr(self, "_stt", None)
        if engine is None:
            name = self.settings.get("STT_ENGINE", "whisper_local")
            if name != "whisper_local":
                from integrations import adapter_class
                engine = adapter_class("stt", name)({})
            else:
                from integrations.stt.whisper_local import engine_from_settings
                engine = engine_from_settings(self.settings)
            self._stt = engine
        return engine

    def tenant(self, name: str) -> dict[str, Any] | None:
        return self.config["tenants"].get(name)
