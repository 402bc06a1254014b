"""The only module that knows huey: build the queue, register tasks, enqueue calls."""
from __future__ import annotations

import logging
from typing import Any, Callable

from huey import RedisHuey, SqliteHuey, crontab
from huey.api import Huey

log = logging.getLogger("calltag.queue")


def build_queue(settings: dict[str, Any]) -> Huey:
    """SqliteHuey in DATA_DIR by default, RedisHuey when CALLTAG_REDIS_URL is set."""
    immediate = bool(settings.get("QUEUE_IMMEDIATE"))
    if settings.get("REDIS_URL"):
        return RedisHuey("calltag", url=settings["REDIS_URL"], results=False, immediate=immediate)
    data_dir = settings["DATA_DIR"]
    data_dir.mkdir(parents=True, exist_ok=True)
    return SqliteHuey("calltag", filename=str(data_dir / "queue.db"), results=False, immediate=immediate,
                      timeout=30)


class JobQueue:
    """Registers calltag's tasks on a huey instance and enqueues them."""

    def __init__(self, huey: Huey, run_call: Callable[[int], Any], recover: Callable[[], Any]):
        self.huey = huey
        self._process = huey.task(name="process_call")(run_call)
        self._recover = huey.periodic_task(crontab(minute="*"), name="recover_stalled")(recover)
        self._on_startup = huey.on_startup(name="recover_on_start")(lambda: _safe(recover))

    def enqueue_call(self, call_id: int, delay_s: float | None = None) -> None:
        """Queue processing of a call, now or after a delay."""
        if delay_s and delay_s > 0:
            self._process.schedule(args=(call_id,), delay=delay_s)
        else:
            self._process(call_id)

    def reachable(self) -> bool:
        """True when the queue storage answers."""
        try:
            self.huey.pending_count()
            return True
        except Exception:  # noqa: BLE001 - any storage failure means unreachable
            log.exception("queue storage unreachable")
            return False

    def pending_count(self) -> int:
        return self.huey.pending_count()


def _safe(fn: Callable[[], Any]) -> None:
    try:
        fn()
    except Exception:  # noqa: BLE001 - startup recovery must not kill the consumer
        log.exception("recovery at start-up failed")
