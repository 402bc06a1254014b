"""The OAuth callback route and the `crm` CLI: code exchange, install data, status, resuming parked calls."""
from __future__ import annotations

import io

import pytest
from flask import Flask
from responses import matchers

from crm_helpers import AMO, B24, SECRET_KEY, load, open_db
from service import crm_oauth
from service.crm_cli import cmd_crm
from service.crm_store import CrmStore

AMO_CRM = {"kind": "amocrm", "base_url": AMO, "auth": "oauth", "client_id": "cid-1", "client_secret": "csecret-123",
           "redirect_uri": "https://calls.example.com/crm/oauth/acme/callback", "rate_per_s": 0}
B24_CRM = {"kind": "bitrix24", "base_url": B24, "auth": "oauth", "client_id": "local.app.1",
           "client_secret": "b24-secret-123", "rate_per_s": 0}
HOOK_CRM = {"kind": "bitrix24", "base_url": B24, "auth": "webhook", "rate_per_s": 0}
CONFIG = {"api_token": None, "tenants": {
    "acme": {"name": "acme", "timezone": "Europe/Moscow", "phone_region": "RU", "crm": AMO_CRM},
    "beta": {"name": "beta", "timezone": "Europe/Moscow", "phone_region": "RU", "crm": B24_CRM},
    "gamma": {"name": "gamma", "timezone": "Europe/Moscow", "phone_region": "RU", "crm": HOOK_CRM},
    "plain": {"name": "plain", "crm": {"kind": "none"}}}}
SETTINGS = {"SECRET_KEY": SECRET_KEY, "DATA_DIR": "/nonexistent"}


@pytest.fixture
def app_db(db_path):
    from service import migrations, storage

    db = open_db(db_path)
    migrations.apply(db)
    storage.upsert_call(db, "mango:acme:1", {"tenant_id": "acme", "provider": "mango", "provider_call_id": "1"},
                        state="parked")
    return db


@pytest.fixture
def client(app_db, db_path):
    app = Flask("crm-oauth-test")
    app.extensions["calltag"] = {"settings": SETTINGS, "config": CONFIG, "crm_db": lambda: open_db(db_path)}
    app.register_blueprint(crm_oauth.bp)
    return app.test_client()


def parked(db):
    return db.execute("SELECT count(*) FROM calls WHERE state = 'parked'").fetchone()[0]


def test_amo_callback_exchanges_code_and_resumes_parked_calls(rsps, client, app_db):
    CrmStore(app_db, SECRET_KEY).mark_reauth("acme", "amocrm", "Token has been revoked")
    rsps.post(f"{AMO}/oauth2/access_token", json=load("amo_token.json"), match=[matchers.json_params_matcher({
        "client_id": "cid-1", "client_secret": "csecret-123", "grant_type": "authorization_code", "code": "c0de",
        "redirect_uri": AMO_CRM["redirect_uri"]})])

    resp = client.get("/crm/oauth/acme/callback?code=c0de&referer=acme.amocrm.ru&state=x")

    assert resp.status_code == 200 and "amoCRM подключена" in resp.get_data(as_text=True)
    assert CrmStore(app_db, SECRET_KEY).accounts_needing_reauth() == [] and parked(app_db) == 0


def test_amo_callback_refuses_other_account(client):
    resp = client.get("/crm/oauth/acme/callback?code=c0de&referer=evil.amocrm.ru")
    assert resp.status_code == 400 and "evil.amocrm.ru" in resp.get_data(as_text=True)


def test_callback_state_is_checked_when_configured(client, monkeypatch):
    monkeypatch.setitem(CONFIG["tenants"]["acme"], "crm", {**AMO_CRM, "oauth_state": "s3cret-state"})
    resp = client.get("/crm/oauth/acme/callback?code=c0de&referer=acme.amocrm.ru&state=wrong")
    assert resp.status_code == 400


def test_callback_unknown_tenant_or_no_crm_is_404(client):
    assert client.get("/crm/oauth/nobody/callback?code=x").status_code == 404
    assert client.get("/crm/oauth/plain/callback?code=x").status_code == 404


def test_callback_revoked_code_is_400(rsps, client):
    rsps.post(f"{AMO}/oauth2/access_token", status=400, json=load("amo_token_revoked.json"))
    resp = client.get("/crm/oauth/acme/callback?code=old&referer=acme.amocrm.ru")
    assert resp.status_code == 400 and "csecret" not in resp.get_data(as_text=True)


def test_b24_callback_code_uses_server_domain(rsps, client, app_db):
    rsps.get("https://oauth.bitrix.info/oauth/token/", json=load("b24_refresh.json"))
    resp = client.get("/crm/oauth/beta/callback?code=abc&domain=acme.bitrix24.ru&member_id=a22"
                      "&server_domain=oauth.bitrix.info&scope=crm")
    assert resp.status_code == 200
    assert CrmStore(app_db, SECRET_KEY).get_account("beta")["oauth_server"] == "https://oauth.bitrix24.tech"


def test_b24_install_post_stores_checked_tokens(rsps, client, app_db):
    rsps.post(f"{B24}/rest/app.info.json", json={"result": {"ID": 5}})
    resp = client.post("/crm/oauth/beta/callback", data={
        "DOMAIN": "acme.bitrix24.ru", "AUTH_ID": "acc", "REFRESH_ID": "ref", "AUTH_EXPIRES": "3600", "member_id": "m1"})
    assert resp.status_code == 200
    acc = CrmStore(app_db, SECRET_KEY).get_account("beta")
    assert acc["secrets"] == {"access_token": "acc", "refresh_token": "ref"} and acc["member_id"] == "m1"


def test_b24_install_with_bad_token_is_refused(rsps, client, app_db):
    rsps.post(f"{B24}/rest/app.info.json", status=401, json=load("b24_no_auth.json"))
    resp = client.post("/crm/oauth/beta/callback", data={"DOMAIN": "acme.bitrix24.ru", "AUTH_ID": "x",
                                                          "REFRESH_ID": "y"})
    assert resp.status_code == 400 and CrmStore(app_db, SECRET_KEY).get_account("beta") is None


# -- CLI ---------------------------------------------------------------------------------------

def run(args, db, http=None):
    out = io.StringIO()
    code = cmd_crm(args, settings=SETTINGS, config=CONFIG, db=db, http=http, out=out)
    return code, out.getvalue()


def test_cli_auth_code_then_status(rsps, app_db):
    rsps.post(f"{AMO}/oauth2/access_token", json=load("amo_token.json"))
    code, out = run(["auth", "acme", "--code", "c0de"], app_db)
    assert code == 0 and "1 parked call(s) resumed" in out
    code, out = run(["status"], app_db)
    assert "acme" in out and "ok (oauth, stored)" in out and "gamma" in out and "not authorised" in out
    assert "eyJ0" not in out and "refresh" not in out


def test_cli_status_shows_reauth_and_fails(app_db):
    CrmStore(app_db, SECRET_KEY).mark_reauth("beta", "bitrix24", "invalid_grant")
    code, out = run(["status"], app_db)
    assert code == 1 and "RE-AUTHORISATION NEEDED: invalid_grant" in out


def test_cli_store_webhook_encrypted(app_db):
    code, out = run(["auth", "gamma", "--webhook", f"{B24}/rest/1/c0dec0de/"], app_db)
    assert code == 0
    raw = app_db.execute("SELECT secrets FROM crm_accounts WHERE tenant = 'gamma'").fetchone()[0]
    assert "c0dec0de" not in raw


def test_cli_wrong_credential_kind_and_unknown_tenant(app_db):
    assert run(["auth", "gamma", "--token", "t"], app_db)[0] == 1
    code, out = run(["auth", "nobody", "--token", "t"], app_db)
    assert code == 1 and "unknown tenant 'nobody'" in out
    assert run(["bogus"], app_db)[0] == 2
