"""Cross-process rate limiter and lock, kept in SQLite rows (works across gunicorn/huey processes).

Every process opens the same database file; `BEGIN IMMEDIATE` serialises the read-modify-write of
a bucket or lock row, so all workers on the machine share one budget per CRM account.
"""
from __future__ import annotations

import os
import threading
import time
import uuid
from contextlib import contextmanager
from typing import Callable, Iterator

from sqlite_utils import Database

from integrations.base import TransientError

_TABLES = ("CREATE TABLE IF NOT EXISTS crm_rate (key TEXT PRIMARY KEY, tokens REAL, updated REAL,"
           " blocked_until REAL DEFAULT 0)",
           "CREATE TABLE IF NOT EXISTS crm_locks (key TEXT PRIMARY KEY, owner TEXT, expires_at REAL)")
_EPS = 1e-6   # float slack so a sleep of exactly the computed wait always succeeds
_conn_locks: dict[int, threading.RLock] = {}
_conn_locks_guard = threading.Lock()


def connection_lock(db: Database) -> threading.RLock:
    """One in-process lock per connection, so threads sharing a connection do not nest BEGINs."""
    with _conn_locks_guard:
        return _conn_locks.setdefault(id(db.conn), threading.RLock())


@contextmanager
def _immediate(db: Database, local: threading.RLock) -> Iterator[None]:
    with local:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")


def ensure_tables(db: Database) -> None:
    for sql in _TABLES:
        db.execute(sql)


class RateLimiter:
    """Token bucket per key: `rate_per_s` sustained, `burst` at most; rate 0 disables it.

    :param sleep: injected in tests (a recorder); :param clock: wall clock shared by processes.
    """

    def __init__(self, db: Database, key: str, rate_per_s: float, burst: float = 1.0, *,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.time):
        self.db, self.key = db, key
        self.rate = float(rate_per_s or 0)
        self.burst = max(1.0, float(burst or 1))
        self.sleep, self.clock = sleep, clock
        self._local = connection_lock(db)
        if self.rate > 0:
            ensure_tables(db)

    def _take(self) -> float:
        """Take a token if one is free; else return how long to wait."""
        with _immediate(self.db, self._local):
            now = self.clock()
            row = self.db.execute("SELECT tokens, updated, blocked_until FROM crm_rate WHERE key = ?",
                                  [self.key]).fetchone()
            tokens, updated, blocked = (row if row else (self.burst, now, 0.0))
            tokens = min(self.burst, tokens + max(0.0, now - updated) * self.rate)
            if blocked and now < blocked - _EPS:
                wait = blocked - now
            elif tokens >= 1.0 - _EPS:
                tokens = max(0.0, tokens - 1.0)
                wait = 0.0
            else:
                wait = (1.0 - tokens) / self.rate
            self.db.execute("INSERT OR REPLACE INTO crm_rate (key, tokens, updated, blocked_until)"
                            " VALUES (?, ?, ?, ?)", [self.key, tokens, now, blocked or 0.0])
        return wait

    def acquire(self) -> float:
        """Block until a request may be sent; return the seconds waited."""
        if self.rate <= 0:
            return 0.0
        waited = 0.0
        while True:
            wait = self._take()
            if wait <= 0:
                return waited
            self.sleep(wait)
            waited += wait

    def penalize(self, seconds: float) -> None:
        """The CRM said 'too many requests': empty the bucket and hold everyone for `seconds`."""
        if self.rate <= 0:
            return
        with _immediate(self.db, self._local):
            now = self.clock()
            self.db.execute("INSERT OR REPLACE INTO crm_rate (key, tokens, updated, blocked_until)"
                            " VALUES (?, 0, ?, ?)", [self.key, now, now + max(0.0, seconds)])


class LockTimeout(TransientError):
    """Another worker held the lock for too long; try the job again later."""


class AccountLock:
    """A lease lock row shared by all processes; expires after `ttl_s` if its holder dies."""

    def __init__(self, db: Database, key: str, *, ttl_s: float = 60.0, timeout_s: float = 90.0,
                 poll_s: float = 0.05, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.time):
        self.db, self.key = db, key
        self.ttl_s, self.timeout_s, self.poll_s = ttl_s, timeout_s, poll_s
        self.sleep, self.clock = sleep, clock
        self.owner = f"{os.getpid()}:{threading.get_ident()}:{uuid.uuid4().hex[:8]}"
        self._local = connection_lock(db)
        ensure_tables(db)

    def _try(self) -> bool:
        with _immediate(self.db, self._local):
            now = self.clock()
            row = self.db.execute("SELECT owner, expires_at FROM crm_locks WHERE key = ?", [self.key]).fetchone()
            if row and row[0] != self.owner and row[1] > now:
                return False
            self.db.execute("INSERT OR REPLACE INTO crm_locks (key, owner, expires_at) VALUES (?, ?, ?)",
                            [self.key, self.owner, now + self.ttl_s])
            return True

    def acquire(self) -> None:
        waited = 0.0
        while not self._try():
            if waited >= self.timeout_s:
                raise LockTimeout(f"lock {self.key} is busy", retry_after_s=self.ttl_s)
            self.sleep(self.poll_s)
            waited += self.poll_s

    def release(self) -> None:
        with _immediate(self.db, self._local):
            self.db.execute("DELETE FROM crm_locks WHERE key = ? AND owner = ?", [self.key, self.owner])

    def __enter__(self) -> "AccountLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
