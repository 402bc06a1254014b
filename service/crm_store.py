"""CRM storage: encrypted account credentials, the write ledger and small per-account caches."""
from __future__ import annotations

import base64
import hashlib
import json
import time
from contextlib import contextmanager
from typing import Any, Iterator

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from integrations.base import NotConfiguredError
from service.ratelimit import connection_lock

migrations = Migrations("calltag_crm")

ACCOUNT_OK = "ok"
ACCOUNT_REAUTH = "reauth_required"
KEY_HELP = ("CALLTAG_SECRET_KEY is not set or invalid; generate one with "
            "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'")


@migrations()
def m001_crm_tables(db: Database) -> None:
    """Accounts (encrypted secrets), the write ledger, caches, rate buckets and locks."""
    db["crm_accounts"].create({
        "tenant": str, "crm": str, "host": str, "auth_mode": str, "secrets": str, "expires_at": float,
        "version": int, "status": str, "status_reason": str, "status_at": str, "bad_fingerprint": str,
        "oauth_server": str, "member_id": str, "updated_at": str,
    }, pk="tenant", defaults={"version": 0, "status": ACCOUNT_OK})
    db["crm_ledger"].create({
        "call_key": str, "crm": str, "action": str, "call_id": int, "status": str, "remote_id": str,
        "attempts": int, "error": str, "updated_at": str,
    }, pk=("call_key", "crm", "action"), defaults={"attempts": 0})
    db["crm_ledger"].create_index(["call_id"])
    db["crm_cache"].create({"account": str, "key": str, "value": str, "expires_at": float},
                           pk=("account", "key"))
    db.execute("CREATE TABLE IF NOT EXISTS crm_rate (key TEXT PRIMARY KEY, tokens REAL, updated REAL,"
               " blocked_until REAL DEFAULT 0)")
    db.execute("CREATE TABLE IF NOT EXISTS crm_locks (key TEXT PRIMARY KEY, owner TEXT, expires_at REAL)")


def apply_migrations(db: Database) -> None:
    """Apply every pending CRM migration (safe to call repeatedly)."""
    migrations.apply(db)


def _utcnow() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime())


def fingerprint(secret: str) -> str:
    """A short, non-reversible id of a secret (to recognise a token already known to be bad)."""
    return hashlib.sha256(secret.encode()).hexdigest()[:16]


def _fernet(secret_key: str):
    """Fernet (or MultiFernet for 'new,old' rotation) from the configured key."""
    from cryptography.fernet import Fernet, MultiFernet

    keys = [k.strip() for k in (secret_key or "").split(",") if k.strip()]
    if not keys:
        return None
    fernets = []
    for k in keys:
        try:
            fernets.append(Fernet(k.encode()))
        except (ValueError, TypeError):
            if len(k) < 16:
                raise NotConfiguredError(KEY_HELP) from None
            # A passphrase rather than a Fernet key: derive a key from it.
            fernets.append(Fernet(base64.urlsafe_b64encode(hashlib.sha256(k.encode()).digest())))
    return MultiFernet(fernets)


class CrmStore:
    """All CRM-related SQL. One instance per DB connection; safe for threads sharing it."""

    def __init__(self, db: Database, secret_key: str = ""):
        self.db = db
        self._secret_key = secret_key or ""
        self._fernet = None
        self._lock = connection_lock(db)

    # -- transactions and encryption -------------------------------------------------------------

    @contextmanager
    def transaction(self) -> Iterator[Database]:
        """BEGIN IMMEDIATE ... COMMIT on the autocommit connection (rollback on error)."""
        with self._lock:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield self.db
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

    def _cipher(self):
        if self._fernet is None:
            self._fernet = _fernet(self._secret_key)
            if self._fernet is None:
                raise NotConfiguredError(KEY_HELP)
        return self._fernet

    def encrypt(self, data: dict) -> str:
        return self._cipher().encrypt(json.dumps(data).encode()).decode()

    def decrypt(self, blob: str | None) -> dict:
        if not blob:
            return {}
        from cryptography.fernet import InvalidToken

        try:
            return json.loads(self._cipher().decrypt(blob.encode()))
        except InvalidToken as err:
            raise NotConfiguredError("stored CRM credentials cannot be decrypted with CALLTAG_SECRET_KEY"
                                     " (was the key changed? keep the old one as 'new,old')") from err

    # -- accounts --------------------------------------------------------------------------------

    def get_account(self, tenant: str) -> dict | None:
        """The tenant's CRM account with secrets decrypted under 'secrets', or None."""
        with self._lock:
            rows = list(self.db.query("SELECT * FROM crm_accounts WHERE tenant = ?", [tenant]))
        if not rows:
            return None
        acc = dict(rows[0])
        acc["secrets"] = self.decrypt(acc["secrets"])
        return acc

    def save_credentials(self, tenant: str, crm: str, *, host: str, auth_mode: str, secrets: dict,
                         expires_at: float | None = None, oauth_server: str | None = None,
                         member_id: str | None = None, expect_version: int | None = None) -> int:
        """Store new credentials atomically, clear 're-auth needed'; return the new version.

        With expect_version, the write only happens if the stored version still matches
        (a refresh by another worker wins); returns -1 when it did not match.
        """
        blob = self.encrypt(secrets)
        with self.transaction() as db:
            row = db.execute("SELECT version FROM crm_accounts WHERE tenant = ?", [tenant]).fetchone()
            current = row[0] if row else 0
            if expect_version is not None and current != expect_version:
                return -1
            version = current + 1
            values = {"tenant": tenant, "crm": crm, "host": host, "auth_mode": auth_mode, "secrets": blob,
                      "expires_at": expires_at, "version": version, "status": ACCOUNT_OK,
                      "status_reason": None, "status_at": _utcnow(), "bad_fingerprint": None,
                      "updated_at": _utcnow()}
            if oauth_server is not None:
                values["oauth_server"] = oauth_server
            if member_id is not None:
                values["member_id"] = member_id
            db["crm_accounts"].upsert(values, pk="tenant")
        return version

    def mark_reauth(self, tenant: str, crm: str, reason: str, *, host: str = "",
                    bad_fingerprint: str | None = None) -> None:
        """Flag the account as needing an admin to re-authorise (no secrets in reason)."""
        with self.transaction() as db:
            exists = db.execute("SELECT 1 FROM crm_accounts WHERE tenant = ?", [tenant]).fetchone()
            values = {"status": ACCOUNT_REAUTH, "status_reason": reason[:500], "status_at": _utcnow(),
                      "updated_at": _utcnow(), "bad_fingerprint": bad_fingerprint}
            if exists:
                db["crm_accounts"].update(tenant, values)
            else:
                db["crm_accounts"].insert({"tenant": tenant, "crm": crm, "host": host, "auth_mode": "",
                                           "secrets": None, "version": 0, **values})

    def clear_reauth(self, tenant: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE crm_accounts SET status = ?, status_reason = NULL, bad_fingerprint = NULL,"
                       " status_at = ? WHERE tenant = ?", [ACCOUNT_OK, _utcnow(), tenant])

    def set_host(self, tenant: str, host: str) -> None:
        """Remember a new account host (Bitrix24 portal renamed)."""
        with self._lock:
            self.db.execute("UPDATE crm_accounts SET host = ?, updated_at = ? WHERE tenant = ?",
                            [host, _utcnow(), tenant])

    def accounts(self) -> list[dict]:
        """Every account row without secrets (for `crm status`)."""
        with self._lock:
            rows = list(self.db.query(
                "SELECT tenant, crm, host, auth_mode, status, status_reason, status_at, expires_at, version,"
                " (secrets IS NOT NULL) AS has_credentials FROM crm_accounts ORDER BY tenant"))
        return [dict(r) for r in rows]

    def accounts_needing_reauth(self) -> list[dict]:
        """Accounts waiting for an admin (for /healthz); no secrets."""
        return [{k: a[k] for k in ("tenant", "crm", "host", "status_reason", "status_at")}
                for a in self.accounts() if a["status"] == ACCOUNT_REAUTH]

    # -- ledger ----------------------------------------------------------------------------------

    def ledger_get(self, call_key: str, crm: str, action: str) -> dict | None:
        with self._lock:
            rows = list(self.db.query("SELECT * FROM crm_ledger WHERE call_key = ? AND crm = ? AND action = ?",
                                      [call_key, crm, action]))
        return dict(rows[0]) if rows else None

    def ledger_for_call(self, call_key: str, crm: str | None = None) -> dict[str, dict]:
        sql, params = "SELECT * FROM crm_ledger WHERE call_key = ?", [call_key]
        if crm:
            sql, params = sql + " AND crm = ?", params + [crm]
        with self._lock:
            return {r["action"]: dict(r) for r in self.db.query(sql, params)}

    def _ledger_put(self, call_key: str, crm: str, action: str, call_id: int | None, status: str,
                    remote_id: str | None, error: str | None, bump: bool) -> None:
        with self.transaction() as db:
            row = db.execute("SELECT attempts FROM crm_ledger WHERE call_key = ? AND crm = ? AND action = ?",
                             [call_key, crm, action]).fetchone()
            attempts = (row[0] if row else 0) + (1 if bump else 0)
            db["crm_ledger"].upsert({"call_key": call_key, "crm": crm, "action": action, "call_id": call_id,
                                     "status": status, "remote_id": remote_id, "attempts": attempts,
                                     "error": error, "updated_at": _utcnow()},
                                    pk=("call_key", "crm", "action"))

    def ledger_pending(self, call_key: str, crm: str, action: str, call_id: int | None = None) -> None:
        """Note that a create is about to be sent (its outcome may turn out unknown)."""
        self._ledger_put(call_key, crm, action, call_id, "pending", None, None, True)

    def ledger_done(self, call_key: str, crm: str, action: str, remote_id: Any,
                    call_id: int | None = None) -> None:
        self._ledger_put(call_key, crm, action, call_id, "done", str(remote_id), None, False)

    def ledger_error(self, call_key: str, crm: str, action: str, error: str, call_id: int | None = None) -> None:
        """Keep the CRM's message for an action that failed for good."""
        row = self.ledger_get(call_key, crm, action)
        status = row["status"] if row else "failed"
        self._ledger_put(call_key, crm, action, call_id, status if status == "pending" else "failed",
                         row["remote_id"] if row else None, error[:1000], False)

    # -- cache -----------------------------------------------------------------------------------

    def cache_get(self, account: str, key: str, now: float | None = None) -> Any:
        now = time.time() if now is None else now
        with self._lock:
            row = self.db.execute("SELECT value, expires_at FROM crm_cache WHERE account = ? AND key = ?",
                                  [account, key]).fetchone()
        if not row or (row[1] is not None and row[1] < now):
            return None
        return json.loads(row[0])

    def cache_set(self, account: str, key: str, value: Any, ttl_s: float | None,
                  now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._lock:
            self.db["crm_cache"].upsert({"account": account, "key": key,
                                         "value": json.dumps(value, ensure_ascii=False),
                                         "expires_at": now + ttl_s if ttl_s else None}, pk=("account", "key"))

    def cache_drop(self, account: str, key: str) -> None:
        with self._lock:
            self.db.execute("DELETE FROM crm_cache WHERE account = ? AND key = ?", [account, key])
