"""amoCRM/Kommo credentials: long-lived token or OAuth 2 (code exchange, locked single-use refresh)."""
from __future__ import annotations

import logging
from typing import Any

import requests

from integrations.base import PermanentError, TransientError
from integrations.crm.base import ReauthRequiredError, TokenRejected

log = logging.getLogger("calltag.crm")

REFRESH_MARGIN_S = 300.0


def _json(resp: requests.Response) -> dict:
    try:
        data = resp.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


class AmoAuthMixin:
    """Token handling for AmoCrm (expects the attributes Crm sets up)."""

    def _credential_fingerprint(self) -> str | None:
        from service.crm_store import fingerprint

        if self.config.get("auth") == "long_lived":
            token = self._long_lived_token()
            return fingerprint(token) if token else None
        return None

    def _long_lived_token(self) -> str | None:
        acc = self.store.get_account(self.tenant_name)
        if acc and acc["secrets"].get("token"):
            return acc["secrets"]["token"]
        return self.config.get("token") or None

    def _authorize(self, kwargs: dict) -> int:
        headers = dict(kwargs.pop("headers", None) or {})
        acc = self.store.get_account(self.tenant_name)
        version = acc["version"] if acc else 0
        if self.config.get("auth") == "long_lived":
            token = self._long_lived_token()
            if not token:
                raise self._reauth("no long-lived token configured")
        else:
            if not acc or not acc["secrets"].get("access_token"):
                raise self._reauth("not authorised yet: run `crm auth` or open the OAuth link")
            if acc["status"] == "reauth_required":
                raise ReauthRequiredError(f"amocrm account of tenant '{self.tenant_name}' needs re-authorisation",
                                          tenant=self.tenant_name, crm=self.name)
            margin = float(self.config.get("refresh_margin_s") or REFRESH_MARGIN_S)
            if acc.get("expires_at") and acc["expires_at"] - self.clock() < margin:
                self._refresh(version)
                acc = self.store.get_account(self.tenant_name)
                version = acc["version"]
            token = acc["secrets"]["access_token"]
        headers["Authorization"] = f"Bearer {token}"
        if self.config.get("client_id"):
            headers["X-Client-UUID"] = str(self.config["client_id"])
        kwargs["headers"] = headers
        return version

    def _can_refresh(self) -> bool:
        return self.config.get("auth") == "oauth"

    def _token_url(self) -> str:
        return f"{self.oauth_url}/oauth2/access_token"

    def _post_token(self, body: dict[str, Any], what: str) -> dict:
        """POST to the token endpoint; map a dead code/refresh token to ReauthRequiredError."""
        self.limiter.acquire()
        self.request_count += 1
        try:
            resp = self.http.request("POST", self._token_url(), json=body, allow_redirects=False,
                                     timeout=(5.0, float(self.config["timeout_s"])))
        except requests.RequestException as err:
            raise TransientError(f"{what}: {type(err).__name__}") from err
        data = _json(resp)
        if resp.status_code in (400, 401, 403) or (resp.ok and not data.get("access_token")):
            hint = data.get("hint") or data.get("detail") or data.get("title") or f"HTTP {resp.status_code}"
            raise TokenRejected(f"{what} refused: {hint}", expired=False)
        if resp.status_code == 429 or resp.status_code >= 500 or not data:
            raise TransientError(f"{what}: HTTP {resp.status_code}")
        if not resp.ok:
            raise PermanentError(f"{what}: HTTP {resp.status_code}")
        return data

    def _save_tokens(self, data: dict, expect_version: int | None) -> int:
        secrets = {"access_token": data["access_token"], "refresh_token": data.get("refresh_token")}
        expires_at = self.clock() + float(data.get("expires_in") or 86400)
        last: Exception | None = None
        for _ in range(5):   # the old refresh token is already dead: retry the DB write, never the refresh
            try:
                return self.store.save_credentials(self.tenant_name, self.name, host=self.host, auth_mode="oauth",
                                                   secrets=secrets, expires_at=expires_at,
                                                   oauth_server=self.oauth_url, expect_version=expect_version)
            except Exception as err:  # noqa: BLE001 - sqlite "database is locked" and friends
                last = err
                self.sleep(0.2)
        raise TransientError("could not save refreshed amoCRM tokens") from last

    def _refresh(self, seen_version: int) -> None:
        """Refresh under the account lock shared by all workers; skip if someone already did."""
        from service.ratelimit import AccountLock

        with AccountLock(self.store.db, f"refresh:{self.tenant_name}"):
            acc = self.store.get_account(self.tenant_name)
            if not acc or not acc["secrets"].get("refresh_token"):
                raise self._reauth("no refresh token stored")
            if acc["status"] == "reauth_required":
                raise ReauthRequiredError(f"amocrm account of tenant '{self.tenant_name}' needs re-authorisation",
                                          tenant=self.tenant_name, crm=self.name)
            if acc["version"] != seen_version:
                return   # another worker refreshed while we waited for the lock
            body = {"client_id": self.config["client_id"], "client_secret": self.config["client_secret"],
                    "grant_type": "refresh_token", "refresh_token": acc["secrets"]["refresh_token"],
                    "redirect_uri": self.config["redirect_uri"]}
            try:
                data = self._post_token(body, "amocrm token refresh")
            except TokenRejected as rej:
                raise self._reauth(rej.reason) from None
            self._save_tokens(data, expect_version=seen_version)
            log.info("amocrm token refreshed", extra={"tenant": self.tenant_name, "provider": self.name})

    def authorize_code(self, code: str, referer: str | None = None) -> None:
        """Exchange an authorization code (valid 20 min) for tokens and store them; clears re-auth."""
        if self.config.get("auth") != "oauth":
            raise PermanentError("amocrm: auth is not 'oauth' in this tenant's crm config")
        if referer:
            host = referer.split("://")[-1].strip("/").lower()
            if host != self.host.lower():
                raise PermanentError(f"amocrm: the code is for {host}, but this tenant is configured"
                                     f" for {self.host}")
        body = {"client_id": self.config["client_id"], "client_secret": self.config["client_secret"],
                "grant_type": "authorization_code", "code": code, "redirect_uri": self.config["redirect_uri"]}
        try:
            data = self._post_token(body, "amocrm code exchange")
        except TokenRejected as rej:
            raise PermanentError(rej.reason) from None
        self._save_tokens(data, expect_version=None)

    def store_token(self, token: str) -> None:
        """Store a long-lived token (encrypted); it takes precedence over the config's token."""
        self.store.save_credentials(self.tenant_name, self.name, host=self.host, auth_mode="long_lived",
                                    secrets={"token": token})
