"""CRM part of the adapter contract: job/receipt types, errors, and the request/ledger machinery
both CRMs share (rate limiter, tenacity retries, token refresh hook, idempotent creates, dry run)."""
from __future__ import annotations

import json
import logging
import os
import random
import time
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping, Sequence
from urllib.parse import urlsplit

import requests
import tenacity

from integrations.base import (Adapter, CalltagError, NotConfiguredError, PermanentError, Setting,
                               TransientError, scrub)

log = logging.getLogger("calltag.crm")

DEFAULT_FOLLOW_UP = ("alert_conflict",)
CLOSED = object()


@dataclass(frozen=True)
class CrmJob:
    """Everything the CRM stage needs about one processed call."""

    call_id: int
    call_key: str
    record: Mapping
    utterances: Sequence[Mapping]
    analysis: Mapping
    mode: str = "full"                 # "full" | "retag"
    recording_link: str | None = None


@dataclass(frozen=True)
class WriteReceipt:
    """What the CRM stage wrote: the deal and, per action, the remote id."""

    crm: str
    deal_id: str
    deal_url: str | None
    actions: Mapping[str, str]
    dry_run: bool = False


@dataclass
class Deal:
    """A deal as found in the CRM (only what the write needs)."""

    id: str
    url: str | None = None
    responsible_id: str | None = None
    tags: list[str] = field(default_factory=list)
    contact_id: str | None = None
    created: bool = False
    raw: Mapping | None = None


class ReauthRequiredError(CalltagError):
    """The account needs an admin to re-authorise; the caller parks the call (not failed, not lost)."""

    def __init__(self, message: str, *, tenant: str = "", crm: str = ""):
        super().__init__(message)
        self.tenant, self.crm = tenant, crm


class OutcomeUnknownError(TransientError):
    """A create timed out or got a 5xx: it may have been applied; look for our marker before resending."""


class DealNotFoundError(PermanentError):
    """No deal to write to, and creating one is switched off or impossible (no phone)."""


class CrmValidationError(PermanentError):
    """The CRM rejected the payload; the message is the CRM's own text."""


class TokenRejected(Exception):
    """Internal: the CRM said the access token is expired/invalid (never escapes an adapter)."""

    def __init__(self, reason: str, expired: bool = True):
        super().__init__(reason)
        self.reason, self.expired = reason, expired


def marker(call_key: str) -> str:
    """The text put in every note/comment so reruns and humans can recognise our writes."""
    return f"[calltag:call={call_key}]"


def as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


COMMON_SETTINGS: dict[str, Setting] = {
    "kind": Setting(required=True, help="amocrm, kommo or bitrix24"),
    "base_url": Setting(required=True, help="Account URL, scheme + host: https://acme.amocrm.ru"),
    "create_deal": Setting(default="complex", help="When no deal is found: complex|unsorted (amo), contact (b24), none"),
    "pipeline_id": Setting(help="Pipeline (amo) / CATEGORY_ID (b24) for created deals"),
    "status_id": Setting(help="Stage (amo status_id / b24 STAGE_ID) for created deals"),
    "responsible_user_id": Setting(help="Responsible user for created deals and follow-ups"),
    "follow_up_groups": Setting(default=list(DEFAULT_FOLLOW_UP),
                                help="Analysis ids or group names that create a follow-up task"),
    "follow_up_hours": Setting(default=24, help="Deadline of a follow-up task, hours from now"),
    "note_max_chars": Setting(default=15000, help="Longest note/comment; longer transcripts are split"),
    "dry_run": Setting(default=False, help="Compute and log everything, write nothing"),
    "rate_per_s": Setting(help="Client-side request rate per account (default: amo 5, b24 2)"),
    "rate_burst": Setting(help="Bucket size (default: amo 2, b24 50)"),
    "max_attempts": Setting(default=5, help="Attempts per request for transient errors"),
    "backoff_base_s": Setting(default=1.0, help="Backoff base (full jitter, doubled each attempt)"),
    "backoff_cap_s": Setting(default=60.0, help="Longest backoff sleep; longer waits go back to the queue"),
    "timeout_s": Setting(default=30.0, help="Read timeout per request"),
    "oauth_state": Setting(secret=True, help="If set, the OAuth callback requires ?state= with this value"),
}


class Crm(Adapter):
    """Base CRM adapter: `write_call(job)` finds/creates the deal and writes tags, notes, UTM, follow-up."""

    settings: ClassVar[Mapping[str, Setting]] = COMMON_SETTINGS
    default_rate: ClassVar[tuple[float, float]] = (5.0, 2.0)
    create_modes: ClassVar[tuple[str, ...]] = ("none",)
    auth_modes: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: Mapping, http: requests.Session | None = None, *, store, tenant: Mapping,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.time):
        super().__init__(config, http)
        from service.ratelimit import RateLimiter

        self.store, self.tenant = store, dict(tenant or {})
        self.tenant_name = str(self.tenant.get("name") or "")
        if not self.tenant_name:
            raise NotConfiguredError(f"{self.name}: tenant 'name' is required")
        self.sleep, self.clock = sleep, clock
        self.base_url = self._check_url("base_url", self.config["base_url"])
        self.host = urlsplit(self.base_url).netloc
        self.dry_run = as_bool(self.config.get("dry_run"))
        self._check_choice("create_deal", self.create_modes)
        self._check_choice("auth", self.auth_modes)
        for key in ("follow_up_hours", "note_max_chars", "max_attempts", "backoff_base_s", "backoff_cap_s",
                    "timeout_s", "rate_per_s", "rate_burst"):
            self._check_number(key)
        groups = self.config.get("follow_up_groups")
        if isinstance(groups, str):
            groups = [g.strip() for g in groups.split(",") if g.strip()]
        self.follow_up_groups = list(groups or [])
        rate = self.config.get("rate_per_s")
        burst = self.config.get("rate_burst")
        self.limiter = RateLimiter(store.db, f"{self.name}:{self.host}",
                                   self.default_rate[0] if rate is None else float(rate),
                                   self.default_rate[1] if burst is None else float(burst),
                                   sleep=sleep, clock=clock)
        self.account = f"{self.name}:{self.host}"
        self.request_count = 0

    # -- validation ------------------------------------------------------------------------------

    def _check_url(self, key: str, value: Any) -> str:
        url = str(value or "").strip().rstrip("/")
        if "://" not in url:
            url = "https://" + url
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise NotConfiguredError(f"{self.name}: setting '{key}' must be a URL like https://acme.amocrm.ru")
        return f"{parts.scheme}://{parts.netloc}"

    def _check_choice(self, key: str, allowed: Sequence[str]) -> None:
        if allowed and str(self.config.get(key)) not in allowed:
            raise NotConfiguredError(f"{self.name}: setting '{key}' must be one of {', '.join(allowed)};"
                                     f" got {self.config.get(key)!r}")

    def _check_number(self, key: str) -> None:
        value = self.config.get(key)
        if value is None:
            return
        try:
            if float(value) < 0:
                raise ValueError
        except (TypeError, ValueError):
            raise NotConfiguredError(f"{self.name}: setting '{key}' must be a non-negative number") from None

    def _require(self, *keys: str) -> None:
        for key in keys:
            if self.config.get(key) in (None, ""):
                raise NotConfiguredError(f"{self.name}: setting '{key}' is required"
                                         f" with auth: {self.config.get('auth')}")

    # -- subclass hooks --------------------------------------------------------------------------

    def _authorize(self, kwargs: dict) -> int:
        """Add credentials to the request kwargs; return the credentials' version."""
        raise NotImplementedError

    def _parse(self, resp: requests.Response, what: str, create: bool) -> Any:
        """Turn a response into data or a typed error (raise TokenRejected for expired tokens)."""
        raise NotImplementedError

    def _can_refresh(self) -> bool:
        return False

    def _refresh(self, seen_version: int) -> None:
        raise NotImplementedError

    def _credential_fingerprint(self) -> str | None:
        return None

    # -- account state ---------------------------------------------------------------------------

    def _reauth(self, reason: str) -> ReauthRequiredError:
        """Mark the account as needing re-authorisation and return the error to raise."""
        self.store.mark_reauth(self.tenant_name, self.name, reason, host=self.host,
                               bad_fingerprint=self._credential_fingerprint())
        log.warning("crm account needs re-authorisation", extra={"tenant": self.tenant_name,
                                                                 "provider": self.name, "stage": "crm"})
        return ReauthRequiredError(f"{self.name} account of tenant '{self.tenant_name}' needs re-authorisation:"
                                   f" {reason}", tenant=self.tenant_name, crm=self.name)

    def check_account(self) -> None:
        """Raise ReauthRequiredError while the account waits for an admin."""
        acc = self.store.get_account(self.tenant_name)
        if not acc or acc["status"] != "reauth_required":
            return
        fp = self._credential_fingerprint()
        if fp and acc.get("bad_fingerprint") and fp != acc["bad_fingerprint"]:
            self.store.clear_reauth(self.tenant_name)   # the admin changed the configured token
            return
        raise ReauthRequiredError(f"{self.name} account of tenant '{self.tenant_name}' needs re-authorisation:"
                                  f" {acc.get('status_reason') or 'no credentials'}",
                                  tenant=self.tenant_name, crm=self.name)

    # -- requests --------------------------------------------------------------------------------

    def _backoff(self, attempt: int) -> float:
        base, cap = float(self.config["backoff_base_s"]), float(self.config["backoff_cap_s"])
        return random.uniform(0, min(cap, base * 2 ** max(0, attempt - 1)))

    def _wait(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        return max(self._backoff(state.attempt_number), getattr(exc, "retry_after_s", None) or 0.0)

    def _retryable(self, exc: BaseException) -> bool:
        if not isinstance(exc, TransientError) or isinstance(exc, OutcomeUnknownError):
            return False
        ra = exc.retry_after_s
        return ra is None or ra <= float(self.config["backoff_cap_s"])

    def _send(self, method: str, url: str, what: str, create: bool, kwargs: dict) -> requests.Response:
        self.limiter.acquire()
        self.request_count += 1
        kwargs.setdefault("timeout", (5.0, float(self.config["timeout_s"])))
        try:
            return self.http.request(method, url, allow_redirects=False, **kwargs)
        except requests.ConnectTimeout as err:
            raise TransientError(f"{what}: connect timeout") from err
        except (requests.Timeout, requests.ConnectionError) as err:
            cls = OutcomeUnknownError if create else TransientError
            raise cls(f"{what}: {type(err).__name__}") from err
        except requests.RequestException as err:
            raise PermanentError(f"{what}: {type(err).__name__}") from err

    def _once_with_auth(self, method: str, url: str, what: str, create: bool, kwargs: dict) -> Any:
        """One attempt; on an expired token refresh once (under the account lock) and resend."""
        for refreshed in (False, True):
            kw = dict(kwargs)
            version = self._authorize(kw)
            resp = self._send(method, kw.pop("_url", url), what, create, kw)
            try:
                return self._parse(resp, what, create)
            except TokenRejected as rej:
                if refreshed or not rej.expired or not self._can_refresh():
                    raise self._reauth(rej.reason) from None
                self._refresh(version)
        raise AssertionError("unreachable")

    def _request(self, method: str, url: str, what: str, *, create: bool = False, **kwargs: Any) -> Any:
        """Send with the rate limiter, auth refresh and jittered retries of transient errors."""
        retrying = tenacity.Retrying(stop=tenacity.stop_after_attempt(int(self.config["max_attempts"])),
                                     wait=self._wait, retry=tenacity.retry_if_exception(self._retryable),
                                     sleep=self.sleep, reraise=True)
        return retrying(self._once_with_auth, method, url, what, create, kwargs)

    # -- idempotent creates ----------------------------------------------------------------------

    def _create_once(self, job: CrmJob, action: str, create: Callable[[], Any],
                     find: Callable[[], Any] | None = None, payload: Any = None) -> str:
        """Create something at most once per (call, CRM, action), reconciling unknown outcomes.

        :param create: sends the create and returns the remote id (str or list of str).
        :param find: looks for our marker in the CRM and returns the remote id or None.
        """
        row = self.store.ledger_get(job.call_key, self.name, action)
        if row and row["status"] == "done":
            return row["remote_id"]
        if self.dry_run:
            self._log_dry(job, action, payload)
            return "dry-run"
        if row and row["status"] == "pending" and find:
            found = find()
            if found:
                return self._done(job, action, found)
        attempts = int(self.config["max_attempts"])
        for attempt in range(1, attempts + 1):
            self.store.ledger_pending(job.call_key, self.name, action, job.call_id)
            try:
                return self._done(job, action, create())
            except OutcomeUnknownError as err:
                log.warning("crm create outcome unknown, reconciling", extra=self._extra(job, action))
                found = find() if find else None
                if found:
                    return self._done(job, action, found)
                if attempt == attempts:
                    raise TransientError(str(err)) from err
                self.sleep(self._backoff(attempt))
            except PermanentError as err:
                self.store.ledger_error(job.call_key, self.name, action, str(err), job.call_id)
                raise
        raise AssertionError("unreachable")

    def _done(self, job: CrmJob, action: str, remote: Any) -> str:
        rid = ",".join(str(r) for r in remote) if isinstance(remote, (list, tuple)) else str(remote)
        self.store.ledger_done(job.call_key, self.name, action, rid, job.call_id)
        return rid

    def _extra(self, job: CrmJob, action: str) -> dict:
        return {"call_key": job.call_key, "provider": self.name, "stage": "crm", "action": action}

    def _log_dry(self, job: CrmJob, action: str, payload: Any) -> None:
        text = json.dumps(payload, ensure_ascii=False, default=str) if payload is not None else ""
        log.info("crm dry run: %s (%d bytes)", action, len(text), extra=self._extra(job, action))
        if os.environ.get("CALLTAG_LOG_PII") == "1":   # payloads hold transcripts: PII
            log.debug("crm dry run payload %s: %s", action, scrub(text[:4000]), extra=self._extra(job, action))

    # -- shared decisions ------------------------------------------------------------------------

    def follow_up_triggers(self, analysis: Mapping) -> list[str]:
        """The configured ids/groups present in this analysis (non-empty = create a follow-up)."""
        groups = analysis.get("groups") or {}
        ids: set[str] = set()
        present_groups = set()
        for name, value in groups.items():
            values = value if isinstance(value, (list, tuple)) else [value]
            values = [v for v in values if v]
            ids.update(values)
            if values:
                present_groups.add(name)
        return [g for g in self.follow_up_groups if g in ids or g in present_groups]

    def deal_hint(self, record: Mapping) -> str | None:
        """The deal id the call-tracking provider gave, if any."""
        crm = record.get("crm") or {}
        for key in (f"{self.name}_deal_id", "amocrm_lead_id" if self.name == "amocrm" else "bitrix24_deal_id",
                    "deal_id"):
            value = crm.get(key)
            if value not in (None, "", 0, "0"):
                return str(value)
        return None

    def previous_tags(self, job: CrmJob) -> list[str]:
        row = self.store.ledger_get(job.call_key, self.name, "tags")
        if not row or not row.get("remote_id"):
            return []
        try:
            return list(json.loads(row["remote_id"]))
        except ValueError:
            return []

    def record_tags(self, job: CrmJob, tags: Sequence[str]) -> None:
        if not self.dry_run:
            self.store.ledger_done(job.call_key, self.name, "tags", json.dumps(list(tags), ensure_ascii=False),
                                   job.call_id)

    def resolve_deal(self, job: CrmJob) -> Deal:
        """Ledger -> provider deal id -> client phone -> create (as configured)."""
        row = self.store.ledger_get(job.call_key, self.name, "deal")
        if row and row["status"] == "done" and row["remote_id"]:
            deal = self.fetch_deal(row["remote_id"])
            if deal:
                deal.created = (row["attempts"] or 0) > 0
                return deal
        hint = self.deal_hint(job.record)
        if hint:
            deal = self.fetch_deal(hint)
            if deal:
                return self._remember(job, deal)
        phone = job.record.get("client_phone")
        contact_id = None
        if phone:
            deal, contact_id = self.find_deal_by_phone(phone)
            if deal:
                return self._remember(job, deal)
        if job.mode == "retag" or self.config.get("create_deal") == "none":
            raise DealNotFoundError(f"{self.name}: no deal for this call and create_deal is off")
        if not phone:
            raise DealNotFoundError(f"{self.name}: no deal id and no client phone; nothing to attach the call to")
        if self.dry_run:
            self._log_dry(job, "deal", self.build_deal_payload(job, contact_id))
            return Deal(id="", created=True)
        self.store.ledger_pending(job.call_key, self.name, "deal", job.call_id)
        try:
            deal = self.create_deal(job, contact_id)
        except OutcomeUnknownError:
            deal, _ = self.find_deal_by_phone(phone)
            if not deal:
                raise
        except PermanentError as err:
            self.store.ledger_error(job.call_key, self.name, "deal", str(err), job.call_id)
            raise
        deal.created = True
        self._done(job, "deal", deal.id)
        if deal.contact_id and not contact_id:
            self._done(job, "contact", deal.contact_id)
        return deal

    def _remember(self, job: CrmJob, deal: Deal) -> Deal:
        if not self.dry_run:
            self.store.ledger_done(job.call_key, self.name, "deal", deal.id, job.call_id)
        return deal

    def fetch_deal(self, deal_id: str) -> Deal | None:
        raise NotImplementedError

    def find_deal_by_phone(self, phone: str) -> tuple[Deal | None, str | None]:
        raise NotImplementedError

    def build_deal_payload(self, job: CrmJob, contact_id: str | None) -> Any:
        """The request body that would create the deal (used by create_deal and dry runs)."""
        raise NotImplementedError

    def create_deal(self, job: CrmJob, contact_id: str | None) -> Deal:
        raise NotImplementedError

    # -- the entry point -------------------------------------------------------------------------

    def write_call(self, job: CrmJob) -> WriteReceipt:
        """Find or create the deal and write tags, fields, notes and a follow-up; safe to rerun."""
        if job.mode not in ("full", "retag"):
            raise PermanentError(f"{self.name}: unknown mode {job.mode!r}")
        self.check_account()
        deal = self.resolve_deal(job)
        actions: dict[str, str] = {}
        if deal.created:
            actions["deal"] = deal.id or "dry-run"
            row = self.store.ledger_get(job.call_key, self.name, "contact")
            if row and row["status"] == "done":
                actions["contact"] = row["remote_id"]
        if job.mode == "retag":
            self.write_retag(job, deal, actions)
        else:
            self.write_full(job, deal, actions)
        log.info("crm write done", extra=self._extra(job, ",".join(actions)))
        return WriteReceipt(crm=self.name, deal_id=deal.id, deal_url=deal.url, actions=actions,
                            dry_run=self.dry_run)

    def write_full(self, job: CrmJob, deal: Deal, actions: dict[str, str]) -> None:
        raise NotImplementedError

    def write_retag(self, job: CrmJob, deal: Deal, actions: dict[str, str]) -> None:
        raise NotImplementedError
