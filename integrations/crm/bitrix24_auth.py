"""Bitrix24 credentials: incoming webhook URL, or OAuth app (refresh only on expired_token, regional server)."""
from __future__ import annotations

import logging
from typing import Any, Mapping
from urllib.parse import urlsplit

import requests

from integrations.base import PermanentError, TransientError
from integrations.crm.base import ReauthRequiredError, TokenRejected

log = logging.getLogger("calltag.crm")

EAST_OAUTH = "https://oauth.bitrix24.tech"
WEST_OAUTH = "https://oauth.bitrix.info"
REAUTH_ERRORS = ("invalid_grant", "invalid_client", "invalid_request", "PAYMENT_REQUIRED")


def default_oauth_server(host: str) -> str:
    """Russian-zone portals use oauth.bitrix24.tech, the others oauth.bitrix.info."""
    return EAST_OAUTH if host.rsplit(".", 1)[-1].split(":")[0] in ("ru", "by", "kz") else WEST_OAUTH


class B24AuthMixin:
    """Token handling for Bitrix24 (expects the attributes Crm sets up)."""

    def _credential_fingerprint(self) -> str | None:
        from service.crm_store import fingerprint

        if self.config.get("auth") == "webhook":
            hook = self._webhook_url()
            return fingerprint(hook) if hook else None
        return None

    def _webhook_url(self) -> str | None:
        acc = self.store.get_account(self.tenant_name)
        if acc and acc["secrets"].get("webhook_url"):
            return acc["secrets"]["webhook_url"]
        return self.config.get("webhook_url") or None

    def _authorize(self, kwargs: dict) -> int:
        method = kwargs.pop("_method")
        acc = self.store.get_account(self.tenant_name)
        version = acc["version"] if acc else 0
        if self.config.get("auth") == "webhook":
            hook = self._webhook_url()
            if not hook:
                raise self._reauth("no incoming webhook URL configured")
            path = urlsplit(hook if "://" in hook else f"https://x/{hook.lstrip('/')}").path.rstrip("/")
            kwargs["_url"] = f"{self.base_url}{path}/{method}.json"
            return version
        if not acc or not acc["secrets"].get("access_token"):
            raise self._reauth("not authorised yet: install the app or run `crm auth`")
        if acc["status"] == "reauth_required":
            raise ReauthRequiredError(f"bitrix24 account of tenant '{self.tenant_name}' needs re-authorisation",
                                      tenant=self.tenant_name, crm=self.name)
        body = dict(kwargs.get("json") or {})
        body["auth"] = acc["secrets"]["access_token"]
        kwargs["json"] = body
        kwargs["_url"] = f"{self.base_url}/rest/{method}.json"
        return version

    def _can_refresh(self) -> bool:
        return self.config.get("auth") == "oauth"

    def _oauth_server(self, acc: Mapping | None = None) -> str:
        if self.config.get("oauth_url"):
            return self.config["oauth_url"].rstrip("/")
        if acc and acc.get("oauth_server"):
            return str(acc["oauth_server"]).rstrip("/")
        return default_oauth_server(self.host)

    def _token_request(self, server: str, params: dict[str, Any], what: str) -> dict:
        """GET {server}/oauth/token/; map invalid_grant & co. to TokenRejected (re-auth needed)."""
        self.limiter.acquire()
        self.request_count += 1
        try:
            resp = self.http.request("GET", f"{server}/oauth/token/", params=params, allow_redirects=False,
                                     timeout=(5.0, float(self.config["timeout_s"])))
        except requests.RequestException as err:
            raise TransientError(f"{what}: {type(err).__name__}") from err
        try:
            data = resp.json()
        except ValueError:
            data = {}
        data = data if isinstance(data, dict) else {}
        if data.get("error") in REAUTH_ERRORS or (resp.status_code in (400, 401) and data.get("error")):
            raise TokenRejected(f"{what} refused: {data.get('error')}", expired=False)
        if resp.status_code == 429 or resp.status_code >= 500 or not data.get("access_token"):
            raise TransientError(f"{what}: HTTP {resp.status_code}")
        return data

    def _save_oauth(self, data: Mapping, server: str, expect_version: int | None) -> int:
        auth_server = f"https://{data['domain']}" if data.get("domain") and "." in str(data["domain"]) else server
        secrets = {"access_token": data["access_token"], "refresh_token": data.get("refresh_token")}
        expires_at = float(data.get("expires") or (self.clock() + float(data.get("expires_in") or 3600)))
        last: Exception | None = None
        for _ in range(5):   # the old refresh token is spent: retry the DB write, never the refresh
            try:
                return self.store.save_credentials(
                    self.tenant_name, self.name, host=self.host, auth_mode="oauth", secrets=secrets,
                    expires_at=expires_at, oauth_server=auth_server,
                    member_id=str(data.get("member_id") or "") or None, expect_version=expect_version)
            except Exception as err:  # noqa: BLE001 - sqlite "database is locked" and friends
                last = err
                self.sleep(0.2)
        raise TransientError("could not save refreshed Bitrix24 tokens") from last

    def _refresh(self, seen_version: int) -> None:
        """Refresh (only after expired_token) under the lock shared by all workers."""
        from service.ratelimit import AccountLock

        with AccountLock(self.store.db, f"refresh:{self.tenant_name}"):
            acc = self.store.get_account(self.tenant_name)
            if not acc or not acc["secrets"].get("refresh_token"):
                raise self._reauth("no refresh token stored")
            if acc["status"] == "reauth_required":
                raise ReauthRequiredError(f"bitrix24 account of tenant '{self.tenant_name}' needs"
                                          " re-authorisation", tenant=self.tenant_name, crm=self.name)
            if acc["version"] != seen_version:
                return
            server = self._oauth_server(acc)
            params = {"grant_type": "refresh_token", "client_id": self.config["client_id"],
                      "client_secret": self.config["client_secret"],
                      "refresh_token": acc["secrets"]["refresh_token"]}
            try:
                data = self._token_request(server, params, "bitrix24 token refresh")
            except TokenRejected as rej:
                raise self._reauth(rej.reason) from None
            self._save_oauth(data, server, expect_version=seen_version)
            log.info("bitrix24 token refreshed", extra={"tenant": self.tenant_name, "provider": self.name})

    def authorize_code(self, code: str, server_domain: str | None = None, domain: str | None = None,
                       member_id: str | None = None) -> None:
        """Exchange an authorization code (valid 30 s) with the regional auth server; clears re-auth."""
        if self.config.get("auth") != "oauth":
            raise PermanentError("bitrix24: auth is not 'oauth' in this tenant's crm config")
        self._check_domain(domain)
        server = f"https://{server_domain}" if server_domain and "." in server_domain else self._oauth_server()
        params = {"grant_type": "authorization_code", "client_id": self.config["client_id"],
                  "client_secret": self.config["client_secret"], "code": code}
        try:
            data = self._token_request(server, params, "bitrix24 code exchange")
        except TokenRejected as rej:
            raise PermanentError(rej.reason) from None
        self._save_oauth(data, server, expect_version=None)

    def install(self, form: Mapping[str, Any]) -> None:
        """Store tokens from app install data (AUTH_ID/REFRESH_ID form or ONAPPINSTALL auth[...]),
        after checking them against the configured portal."""
        get = lambda *keys: next((form[k] for k in keys if form.get(k)), None)  # noqa: E731
        access = get("AUTH_ID", "auth[access_token]")
        refresh = get("REFRESH_ID", "auth[refresh_token]")
        if not access or not refresh:
            raise PermanentError("bitrix24 install: AUTH_ID and REFRESH_ID are required")
        self._check_domain(get("DOMAIN", "auth[domain]"))
        check = self.http.request("POST", f"{self.base_url}/rest/app.info.json", json={"auth": access},
                                  allow_redirects=False, timeout=(5.0, float(self.config["timeout_s"])))
        if check.status_code != 200:
            raise PermanentError(f"bitrix24 install: the portal rejected the token (HTTP {check.status_code})")
        server = get("auth[server_endpoint]")
        server = self._oauth_server() if not server else "https://" + urlsplit(server).netloc
        data = {"access_token": access, "refresh_token": refresh,
                "expires_in": get("AUTH_EXPIRES", "auth[expires_in]") or 3600,
                "member_id": get("member_id", "auth[member_id]")}
        self._save_oauth(data, server, expect_version=None)

    def _check_domain(self, domain: str | None) -> None:
        if domain and domain.split("://")[-1].strip("/").lower() != self.host.lower():
            raise PermanentError(f"bitrix24: the authorisation is for {domain}, but this tenant is configured"
                                 f" for {self.host}")

    def store_webhook(self, url: str) -> None:
        """Store an incoming-webhook URL (encrypted); it takes precedence over the config's."""
        self.store.save_credentials(self.tenant_name, self.name, host=self.host, auth_mode="webhook",
                                    secrets={"webhook_url": url})
