"""The YAML config file (CALLTAG_CONFIG): api token and tenants, with ${ENV} interpolation."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
import yaml

_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_TENANT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
TENANT_KEYS = {"webhook_secret", "webhook_secrets", "timezone", "phone_region", "channels", "allow_hosts",
               "providers", "crm", "public_url", "language"}
CHANNEL_ROLES = ("operator", "client", "unknown")


class ConfigError(ValueError):
    """The config file is invalid; the message names the key."""


def interpolate(value: Any, environ: Mapping[str, str], path: str = "") -> Any:
    """Replace ${VAR} and ${VAR:-default} in every string of a parsed YAML tree."""
    if isinstance(value, dict):
        return {k: interpolate(v, environ, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, environ, f"{path}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def sub(m: re.Match) -> str:
        name, default = m.group(1), m.group(2)
        if name in environ:
            return environ[name]
        if default is not None:
            return default
        raise ConfigError(f"config: {path}: environment variable ${{{name}}} is not set")

    return _ENV_RE.sub(sub, value)


def load_config(path: Path | None, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Read, interpolate and validate the config; an absent path gives an empty config."""
    environ = os.environ if environ is None else environ
    if path is None:
        return validate_config({})
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"config: cannot read {path}: {err.strerror}") from err
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        raise ConfigError(f"config: {path}{where}: not valid YAML") from err
    if not isinstance(data, dict):
        raise ConfigError("config: the top level must be a mapping")
    return validate_config(interpolate(data, environ))


def validate_config(data: dict[str, Any]) -> dict[str, Any]:
    """Check types and values, fill defaults; raise ConfigError naming the first bad key."""
    unknown = set(data) - {"api_token", "tenants"}
    if unknown:
        raise ConfigError(f"config: unknown key '{sorted(unknown)[0]}' (allowed: api_token, tenants)")
    token = data.get("api_token")
    if token is not None and (not isinstance(token, str) or len(token) < 16):
        raise ConfigError("config: api_token: must be a string of at least 16 characters")
    tenants = data.get("tenants") or {}
    if not isinstance(tenants, dict):
        raise ConfigError("config: tenants: must be a mapping of tenant name to settings")
    out = {"api_token": token, "tenants": {}}
    for name, tenant in tenants.items():
        out["tenants"][str(name)] = _validate_tenant(str(name), tenant)
    return out


def _validate_tenant(name: str, t: Any) -> dict[str, Any]:
    key = f"tenants.{name}"
    if not _TENANT_RE.match(name):
        raise ConfigError(f"config: {key}: tenant names are lower-case letters, digits, '-' or '_'")
    if not isinstance(t, dict):
        raise ConfigError(f"config: {key}: must be a mapping")
    unknown = set(t) - TENANT_KEYS
    if unknown:
        raise ConfigError(f"config: {key}.{sorted(unknown)[0]}: unknown key (allowed: {', '.join(sorted(TENANT_KEYS))})")
    secrets = t.get("webhook_secrets") or ([t["webhook_secret"]] if t.get("webhook_secret") else [])
    if not secrets or not all(isinstance(s, str) and len(s) >= 16 for s in secrets):
        raise ConfigError(f"config: {key}.webhook_secret: required, a string of at least 16 characters")
    tz = t.get("timezone", "Europe/Moscow")
    try:
        ZoneInfo(str(tz))
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise ConfigError(f"config: {key}.timezone: unknown time zone '{tz}'") from err
    region = str(t.get("phone_region", "RU")).upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ConfigError(f"config: {key}.phone_region: unknown region '{region}' (e.g. RU, KZ, UA, US)")
    channels = t.get("channels", ["operator", "client"])
    if not (isinstance(channels, list) and 1 <= len(channels) <= 2 and all(c in CHANNEL_ROLES for c in channels)):
        raise ConfigError(f"config: {key}.channels: a list like [operator, client] (left, right)")
    hosts = t.get("allow_hosts", [])
    if not (isinstance(hosts, list) and all(isinstance(h, str) for h in hosts)):
        raise ConfigError(f"config: {key}.allow_hosts: a list of host names or IP addresses")
    providers = t.get("providers") or {}
    if not isinstance(providers, dict) or not all(isinstance(v, dict) for v in providers.values()):
        raise ConfigError(f"config: {key}.providers: a mapping of provider name to its settings")
    crm = t.get("crm") or {"kind": "none"}
    if not isinstance(crm, dict) or not isinstance(crm.get("kind", "none"), str):
        raise ConfigError(f"config: {key}.crm: a mapping with 'kind' (none, amocrm, bitrix24)")
    crm.setdefault("kind", "none")
    return {"name": name, "webhook_secrets": list(secrets), "timezone": str(tz), "phone_region": region,
            "channels": list(channels), "allow_hosts": list(hosts), "providers": providers, "crm": crm,
            "public_url": t.get("public_url"), "language": t.get("language", "ru")}
