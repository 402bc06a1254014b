"""CRM authorisation: the OAuth callback route (amoCRM code + referer, Bitrix24 code or install data)
and exchange_code(), shared with the CLI. After success, parked calls of the tenant are resumed."""
from __future__ import annotations

import hmac
import logging
from html import escape
from pathlib import Path
from typing import Any, Callable, Mapping

import requests
from flask import Blueprint, current_app, request
from sqlite_utils import Database

from integrations import adapter_class
from integrations.base import CalltagError, NotConfiguredError, PermanentError, TransientError
from service.crm_store import CrmStore, apply_migrations

log = logging.getLogger("calltag.crm")
bp = Blueprint("crm_oauth", __name__)
NAMES = {"amocrm": "amoCRM", "kommo": "Kommo", "bitrix24": "Битрикс24"}


def build_adapter(tenant_name: str, *, config: Mapping, db: Database, secret_key: str,
                  http: requests.Session | None = None) -> Any:
    """The tenant's CRM adapter, or NotConfiguredError naming what is missing."""
    tenant = (config.get("tenants") or {}).get(tenant_name)
    if tenant is None:
        raise NotConfiguredError(f"unknown tenant '{tenant_name}'")
    crm = dict(tenant.get("crm") or {})
    if crm.get("kind", "none") == "none":
        raise NotConfiguredError(f"tenant '{tenant_name}' has no CRM (crm.kind: none)")
    cls = adapter_class("crm", crm["kind"])
    return cls(crm, http, store=CrmStore(db, secret_key or ""), tenant={"name": tenant_name, **tenant})


def resume_parked(db: Database, tenant_name: str) -> int:
    """Re-queue the tenant's parked calls via service.jobs.resume_parked, when it exists."""
    try:
        from service import jobs
    except ImportError:
        return 0
    fn = getattr(jobs, "resume_parked", None)
    return int(fn(db, tenant_name) or 0) if fn else 0


def exchange_code(tenant_name: str, code: str, *, config: Mapping, db: Database, secret_key: str,
                  http: requests.Session | None = None, referer: str | None = None,
                  server_domain: str | None = None, domain: str | None = None,
                  member_id: str | None = None) -> int:
    """Exchange an OAuth code for the tenant's CRM and store the tokens; returns calls resumed.

    :param referer: amoCRM's account host from the redirect (must match the configured base_url).
    :param server_domain: Bitrix24's regional auth server from the redirect.
    """
    adapter = build_adapter(tenant_name, config=config, db=db, secret_key=secret_key, http=http)
    if adapter.name == "bitrix24":
        adapter.authorize_code(code, server_domain=server_domain, domain=domain, member_id=member_id)
    else:
        adapter.authorize_code(code, referer=referer)
    log.info("crm authorised", extra={"tenant": tenant_name, "provider": adapter.name})
    return resume_parked(db, tenant_name)


def _context() -> tuple[dict, dict, Database]:
    ext = current_app.extensions["calltag"]
    settings, config = ext["settings"], ext["config"]
    opener: Callable[[], Database] | None = ext.get("crm_db")
    if opener is None and ext.get("runtime") is not None:
        opener = ext["runtime"].db
    if opener is not None:
        db = opener()
    else:
        from service.storage import open_db

        db = open_db(Path(settings["DATA_DIR"]) / "calltag.db")
    apply_migrations(db)
    return settings, config, db


def _page(title: str, text: str, status: int):
    body = (f"<!doctype html><meta charset=utf-8><title>{escape(title)}</title>"
            f"<h1>{escape(title)}</h1><p>{escape(text)}</p>")
    return body, status, {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store"}


@bp.route("/crm/oauth/<tenant>/callback", methods=["GET", "POST"])
def callback(tenant: str):
    """amoCRM: ?code&referer&state. Bitrix24: ?code&domain&member_id&server_domain, or install POST."""
    settings, config, db = _context()
    args = request.args
    tenant_conf = (config.get("tenants") or {}).get(tenant)
    if not tenant_conf or (tenant_conf.get("crm") or {}).get("kind", "none") == "none":
        return _page("Не найдено", "Нет такого клиента или у него не настроена CRM.", 404)
    expected_state = (tenant_conf.get("crm") or {}).get("oauth_state")
    if expected_state and not hmac.compare_digest(str(args.get("state") or request.form.get("state") or ""),
                                                  str(expected_state)):
        log.warning("crm oauth callback: bad state", extra={"tenant": tenant})
        return _page("Ошибка авторизации", "Неверный параметр state.", 400)
    if args.get("error"):
        return _page("Доступ не предоставлен", f"CRM вернула ошибку: {args.get('error')}", 400)
    secret_key = settings.get("SECRET_KEY") or ""
    try:
        form = request.form.to_dict() if request.method == "POST" else {}
        if form.get("AUTH_ID") or form.get("auth[access_token]"):
            adapter = build_adapter(tenant, config=config, db=db, secret_key=secret_key)
            if adapter.name != "bitrix24":
                return _page("Ошибка авторизации", "Данные установки приложения ждут только от Битрикс24.", 400)
            adapter.install(form)
            resume_parked(db, tenant)
        elif args.get("code"):
            exchange_code(tenant, args["code"], config=config, db=db, secret_key=secret_key,
                          referer=args.get("referer"), server_domain=args.get("server_domain"),
                          domain=args.get("domain"), member_id=args.get("member_id"))
        else:
            return _page("Ошибка авторизации", "В адресе нет параметра code.", 400)
    except TransientError:
        return _page("CRM недоступна", "Не удалось связаться с CRM, попробуйте ещё раз через минуту.", 502)
    except (PermanentError, NotConfiguredError) as err:
        return _page("Ошибка авторизации", str(err), 400)
    except CalltagError as err:
        return _page("Ошибка авторизации", str(err), 400)
    kind = (tenant_conf.get("crm") or {}).get("kind")
    return _page("Готово", f"{NAMES.get(kind, kind)} подключена для «{tenant}». Это окно можно закрыть.", 200)
