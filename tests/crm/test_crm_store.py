"""CrmStore (encryption at rest, ledger, re-auth state) and the cross-process rate limiter and lock."""
from __future__ import annotations

import threading

import pytest
from cryptography.fernet import Fernet

from crm_helpers import SECRET_KEY, open_db
from integrations.base import NotConfiguredError
from service.crm_store import CrmStore, apply_migrations
from service.ratelimit import AccountLock, LockTimeout, RateLimiter


def test_tokens_are_encrypted_at_rest(store, crm_db):
    store.save_credentials("acme", "amocrm", host="acme.amocrm.ru", auth_mode="oauth",
                           secrets={"access_token": "plain-access-123", "refresh_token": "plain-refresh-456"})
    raw = crm_db.execute("SELECT secrets FROM crm_accounts").fetchone()[0]
    assert "plain-access-123" not in raw and "plain-refresh" not in raw
    assert store.get_account("acme")["secrets"]["refresh_token"] == "plain-refresh-456"


def test_storing_a_token_without_key_names_the_setting(crm_db):
    with pytest.raises(NotConfiguredError, match="CALLTAG_SECRET_KEY"):
        CrmStore(crm_db, "").save_credentials("acme", "amocrm", host="h", auth_mode="oauth", secrets={"a": 1})


def test_key_rotation_reads_old_rows(crm_db):
    CrmStore(crm_db, SECRET_KEY).save_credentials("acme", "amocrm", host="h", auth_mode="x", secrets={"t": "v"})
    new_key = Fernet.generate_key().decode()
    assert CrmStore(crm_db, f"{new_key},{SECRET_KEY}").get_account("acme")["secrets"] == {"t": "v"}
    with pytest.raises(NotConfiguredError, match="cannot be decrypted"):
        CrmStore(crm_db, new_key).get_account("acme")


def test_passphrase_key_is_accepted_short_one_refused(crm_db):
    CrmStore(crm_db, "a long enough passphrase").save_credentials("t", "amocrm", host="h", auth_mode="x",
                                                                   secrets={"t": 1})
    with pytest.raises(NotConfiguredError):
        CrmStore(crm_db, "short").save_credentials("u", "amocrm", host="h", auth_mode="x", secrets={"t": 1})


def test_refresh_write_loses_to_a_newer_version(store):
    v1 = store.save_credentials("acme", "amocrm", host="h", auth_mode="oauth", secrets={"r": 1})
    assert store.save_credentials("acme", "amocrm", host="h", auth_mode="oauth", secrets={"r": 2},
                                  expect_version=v1) == v1 + 1
    assert store.save_credentials("acme", "amocrm", host="h", auth_mode="oauth", secrets={"r": 3},
                                  expect_version=v1) == -1
    assert store.get_account("acme")["secrets"] == {"r": 2}


def test_reauth_flag_round_trip_without_secrets(store):
    store.save_credentials("acme", "amocrm", host="h", auth_mode="oauth", secrets={"r": 1})
    store.mark_reauth("acme", "amocrm", "Token has been revoked")
    store.mark_reauth("beta", "bitrix24", "no webhook", host="b.bitrix24.ru")
    assert [(a["tenant"], a["status_reason"]) for a in store.accounts_needing_reauth()] == [
        ("acme", "Token has been revoked"), ("beta", "no webhook")]
    assert all("secrets" not in a for a in store.accounts())
    store.save_credentials("acme", "amocrm", host="h", auth_mode="oauth", secrets={"r": 2})
    assert [a["tenant"] for a in store.accounts_needing_reauth()] == ["beta"]


def test_ledger_pending_done_error(store):
    store.ledger_pending("k", "amocrm", "note", 1)
    store.ledger_pending("k", "amocrm", "note", 1)
    store.ledger_error("k", "amocrm", "note", "Bad Request: text: too long")
    row = store.ledger_get("k", "amocrm", "note")
    assert (row["status"], row["attempts"], row["error"]) == ("pending", 2, "Bad Request: text: too long")
    store.ledger_done("k", "amocrm", "note", 42, 1)
    assert store.ledger_for_call("k")["note"]["remote_id"] == "42"


def test_migrations_are_idempotent(crm_db):
    apply_migrations(crm_db)
    apply_migrations(crm_db)
    assert {"crm_accounts", "crm_ledger", "crm_cache", "crm_rate", "crm_locks"} <= set(crm_db.table_names())


class FakeClock:
    def __init__(self):
        self.now = 1000.0
        self.sleeps = []

    def __call__(self):
        return self.now

    def sleep(self, s):
        self.sleeps.append(round(s, 3))
        self.now += s


def test_rate_limiter_bucket_is_shared_between_connections(db_path):
    clock = FakeClock()
    a = RateLimiter(open_db(db_path), "amocrm:acme", 5, 2, sleep=clock.sleep, clock=clock)
    b = RateLimiter(open_db(db_path), "amocrm:acme", 5, 2, sleep=clock.sleep, clock=clock)
    assert [a.acquire(), b.acquire()] == [0, 0]          # the burst
    assert b.acquire() == pytest.approx(0.2) and a.acquire() == pytest.approx(0.2)
    a.penalize(3)
    assert b.acquire() == pytest.approx(3.0, abs=0.01)


def test_rate_limiter_zero_rate_is_off(crm_db):
    limiter = RateLimiter(crm_db, "x", 0, sleep=lambda s: pytest.fail("slept"))
    assert all(limiter.acquire() == 0 for _ in range(100))


def test_rate_limiter_many_threads_never_exceed_rate(db_path):
    clock = FakeClock()
    lock = threading.Lock()
    grants = []

    def advance(seconds):
        with lock:
            clock.now += seconds

    def work():
        limiter = RateLimiter(open_db(db_path), "b24:acme", 2, 1, sleep=advance, clock=clock)
        for _ in range(5):
            limiter.acquire()
            with lock:
                grants.append(clock.now)
                clock.now += 0.1

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(grants) == 15
    grants.sort()
    assert grants[-1] - grants[0] >= (15 - 1) / 2 - 0.01     # 2/s sustained, burst 1


def test_account_lock_excludes_other_holders_and_expires(db_path):
    clock = FakeClock()
    first = AccountLock(open_db(db_path), "refresh:acme", ttl_s=30, timeout_s=1, poll_s=0.5,
                        sleep=clock.sleep, clock=clock)
    second = AccountLock(open_db(db_path), "refresh:acme", ttl_s=30, timeout_s=1, poll_s=0.5,
                         sleep=clock.sleep, clock=clock)
    first.acquire()
    with pytest.raises(LockTimeout):
        second.acquire()
    clock.now += 60                                            # the holder died: its lease ran out
    second.acquire()
    second.release()
    with first:
        pass
