"""`python -m service crm ...`: authorise a tenant's CRM account, show account status."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Mapping, TextIO

import requests
from sqlite_utils import Database

from integrations.base import CalltagError
from service.crm_store import CrmStore, apply_migrations

USAGE = """usage:
  crm auth TENANT --code CODE [--referer HOST] [--server-domain DOMAIN]   exchange an OAuth code
  crm auth TENANT --token TOKEN                                          store an amoCRM long-lived token
  crm auth TENANT --webhook URL                                          store a Bitrix24 incoming webhook
  crm status                                                             accounts and re-authorisation state"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m service crm", add_help=True)
    sub = p.add_subparsers(dest="cmd", required=True)
    auth = sub.add_parser("auth", help="store credentials for a tenant's CRM")
    auth.add_argument("tenant")
    how = auth.add_mutually_exclusive_group(required=True)
    how.add_argument("--code")
    how.add_argument("--token")
    how.add_argument("--webhook")
    auth.add_argument("--referer")
    auth.add_argument("--server-domain")
    sub.add_parser("status", help="list CRM accounts (no secrets)")
    return p


def _load(settings: Mapping | None, config: Mapping | None, db: Database | None) -> tuple[Mapping, Mapping, Database]:
    if settings is None:
        from service.settings import load_settings

        settings = load_settings(os.environ)
    if config is None:
        from service.config import load_config

        config = load_config(settings.get("CONFIG"))
    if db is None:
        from service.storage import open_db

        db = open_db(settings.get("DATABASE") or Path(settings["DATA_DIR"]) / "calltag.db")
    apply_migrations(db)
    return settings, config, db


def cmd_crm(args_list: list[str], *, settings: Mapping | None = None, config: Mapping | None = None,
            db: Database | None = None, http: requests.Session | None = None, out: TextIO | None = None) -> int:
    """Run a `crm` subcommand; returns the exit code (0 ok, 1 failed, 2 usage)."""
    out = out or sys.stdout
    try:
        args = _parser().parse_args(args_list)
    except SystemExit as exc:
        return int(exc.code or 0) and 2
    try:
        settings, config, db = _load(settings, config, db)
        if args.cmd == "status":
            return _status(config, db, settings, out)
        return _auth(args, settings, config, db, http, out)
    except CalltagError as err:
        print(f"error: {err}", file=out)
        return 1


def _auth(args: Any, settings: Mapping, config: Mapping, db: Database, http: requests.Session | None,
          out: TextIO) -> int:
    from service.crm_oauth import build_adapter, exchange_code, resume_parked

    secret_key = settings.get("SECRET_KEY") or ""
    if args.code:
        resumed = exchange_code(args.tenant, args.code, config=config, db=db, secret_key=secret_key, http=http,
                                referer=args.referer, server_domain=args.server_domain)
    else:
        adapter = build_adapter(args.tenant, config=config, db=db, secret_key=secret_key, http=http)
        if args.token and adapter.name == "amocrm":
            adapter.store_token(args.token)
        elif args.webhook and adapter.name == "bitrix24":
            adapter.store_webhook(args.webhook)
        else:
            print(f"error: --{'token' if args.token else 'webhook'} does not apply to {adapter.name}", file=out)
            return 1
        resumed = resume_parked(db, args.tenant)
    print(f"ok: {args.tenant} authorised; {resumed} parked call(s) resumed", file=out)
    return 0


def _status(config: Mapping, db: Database, settings: Mapping, out: TextIO) -> int:
    accounts = {a["tenant"]: a for a in CrmStore(db, settings.get("SECRET_KEY") or "").accounts()}
    rows = []
    for name, tenant in sorted((config.get("tenants") or {}).items()):
        crm = tenant.get("crm") or {}
        if crm.get("kind", "none") == "none":
            continue
        acc = accounts.get(name) or {}
        if acc.get("status") == "reauth_required":
            state = f"RE-AUTHORISATION NEEDED: {acc.get('status_reason') or ''}"
        elif acc.get("has_credentials"):
            state = f"ok ({acc.get('auth_mode')}, stored)"
        elif crm.get("token") or crm.get("webhook_url"):
            state = "ok (from config)"
        else:
            state = "not authorised"
        mode = " dry-run" if crm.get("dry_run") else ""
        rows.append(f"{name:<20} {crm['kind']:<9} {crm.get('base_url', ''):<34} {state}{mode}")
    print("\n".join(rows) if rows else "no tenant has a CRM configured", file=out)
    return 1 if any("RE-AUTHORISATION" in r for r in rows) else 0
