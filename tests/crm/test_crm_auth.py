"""Tokens: OAuth refresh on 401/expiry/expired_token, revoked tokens park the account, one refresh across workers."""
from __future__ import annotations

import json
import threading
import time

import pytest
from responses import matchers

from crm_helpers import AMO_API, B24, NOW, SECRET_KEY, TENANT, load, make_job, open_db
from integrations.crm.amocrm import AmoCrm
from integrations.crm.base import ReauthRequiredError
from service.crm_store import CrmStore

OAUTH = {"auth": "oauth", "token": None, "client_id": "0f3c1a9e-1111-2222-3333-444455556666",
         "client_secret": "fake-secret-xxxxxxxxxxxxxxxx", "redirect_uri": "https://calls.example.com/crm/oauth/acme/callback"}
TOKEN_URL = "https://acme.amocrm.ru/oauth2/access_token"
NEW_ACCESS = load("amo_token.json")["access_token"]


def seed_amo(store, access="old-access", refresh="def50200fake-refresh-1", expires_at=NOW + 3600):
    return store.save_credentials("acme", "amocrm", host="acme.amocrm.ru", auth_mode="oauth",
                                  secrets={"access_token": access, "refresh_token": refresh}, expires_at=expires_at)


def bearer(token):
    return matchers.header_matcher({"Authorization": f"Bearer {token}"})


def refresh_body(refresh="def50200fake-refresh-1"):
    return matchers.json_params_matcher({"client_id": OAUTH["client_id"], "client_secret": OAUTH["client_secret"],
                                         "grant_type": "refresh_token", "refresh_token": refresh,
                                         "redirect_uri": OAUTH["redirect_uri"]})


def test_amo_401_refreshes_once_saves_new_pair_and_retries(rsps, amo, store):
    seed_amo(store)
    rsps.get(f"{AMO_API}/leads/18500301", status=401, json={"title": "Unauthorized", "status": 401},
             match=[bearer("old-access")])
    rsps.post(TOKEN_URL, json=load("amo_token.json"), match=[refresh_body()])
    rsps.get(f"{AMO_API}/leads/18500301", json=load("amo_lead.json"), match=[bearer(NEW_ACCESS)])

    assert amo(**OAUTH).fetch_deal("18500301").id == "18500301"

    acc = store.get_account("acme")
    assert acc["secrets"] == {"access_token": NEW_ACCESS, "refresh_token": "def50200fake-refresh-2"}
    assert acc["version"] == 2 and acc["expires_at"] == NOW + 86400


def test_amo_refreshes_before_expiry(rsps, amo, store):
    seed_amo(store, expires_at=NOW + 60)
    rsps.post(TOKEN_URL, json=load("amo_token.json"), match=[refresh_body()])
    rsps.get(f"{AMO_API}/leads/18500301", json=load("amo_lead.json"), match=[bearer(NEW_ACCESS)])
    assert amo(**OAUTH).fetch_deal("18500301")


def test_amo_revoked_refresh_token_parks_then_reauthorisation_resumes(rsps, amo, store):
    seed_amo(store)
    rsps.get(f"{AMO_API}/leads/18500301", status=401, json={"status": 401}, match=[bearer("old-access")])
    rsps.post(TOKEN_URL, status=401, json=load("amo_token_revoked.json"))

    with pytest.raises(ReauthRequiredError) as err:
        amo(**OAUTH).write_call(make_job(crm={"amocrm_lead_id": 18500301}))
    assert "Token has been revoked" in str(err.value) and err.value.tenant == "acme"
    [parked] = store.accounts_needing_reauth()
    assert parked["tenant"] == "acme" and "Token has been revoked" in parked["status_reason"]
    assert "secrets" not in parked

    rsps.reset()
    with pytest.raises(ReauthRequiredError):                 # parked: waits, sends nothing
        amo(**OAUTH).write_call(make_job(crm={"amocrm_lead_id": 18500301}))

    rsps.post(TOKEN_URL, json=load("amo_token.json"), match=[matchers.json_params_matcher({
        "client_id": OAUTH["client_id"], "client_secret": OAUTH["client_secret"], "grant_type": "authorization_code",
        "code": "def50200aaaabbbbccccdddd", "redirect_uri": OAUTH["redirect_uri"]})])
    amo(**OAUTH).authorize_code("def50200aaaabbbbccccdddd", referer="acme.amocrm.ru")
    assert store.accounts_needing_reauth() == []

    rsps.get(f"{AMO_API}/leads/18500301", json=load("amo_lead.json"), match=[bearer(NEW_ACCESS)])
    assert amo(**OAUTH).fetch_deal("18500301")


def test_amo_code_for_another_account_is_refused(amo, store):
    with pytest.raises(Exception, match="evil.amocrm.ru"):
        amo(**OAUTH).authorize_code("code", referer="evil.amocrm.ru")
    assert store.get_account("acme") is None


def test_amo_oauth_without_tokens_waits_for_authorisation(rsps, amo, store):
    with pytest.raises(ReauthRequiredError, match="not authorised yet"):
        amo(**OAUTH).write_call(make_job(crm={"amocrm_lead_id": 18500301}))
    assert store.accounts_needing_reauth()[0]["tenant"] == "acme"


def test_amo_long_lived_token_401_parks_until_config_token_changes(rsps, amo, store):
    rsps.get(f"{AMO_API}/leads/18500301", status=401, json={"status": 401})
    with pytest.raises(ReauthRequiredError):
        amo().write_call(make_job(crm={"amocrm_lead_id": 18500301}))
    with pytest.raises(ReauthRequiredError):
        amo().write_call(make_job(crm={"amocrm_lead_id": 18500301}))
    rsps.get(f"{AMO_API}/leads/18500301", json=load("amo_lead.json"), match=[bearer("new-long-lived-token")])
    amo(token="new-long-lived-token").check_account()
    assert store.accounts_needing_reauth() == [] and amo(token="new-long-lived-token").fetch_deal("18500301")


def test_two_workers_refreshing_at_once_refresh_once(rsps, db_path, sleeps):
    """Two processes' worth of connections; both get 401 with the old token at the same moment."""
    stores = [CrmStore(open_db(db_path), SECRET_KEY) for _ in range(2)]
    seed_amo(stores[0])
    both_saw_401 = threading.Barrier(2, timeout=5)
    refreshes = []

    def lead(request):
        if request.headers["Authorization"] == "Bearer old-access":
            both_saw_401.wait()
            return 401, {}, json.dumps({"status": 401})
        return 200, {}, json.dumps(load("amo_lead.json"))

    def token(request):
        refreshes.append(json.loads(request.body)["refresh_token"])
        time.sleep(0.2)                 # hold the lock while the other worker waits for it
        return 200, {}, json.dumps(load("amo_token.json"))

    rsps.add_callback("GET", f"{AMO_API}/leads/18500301", callback=lead)
    rsps.add_callback("POST", TOKEN_URL, callback=token)
    adapters = [AmoCrm({"kind": "amocrm", "base_url": "https://acme.amocrm.ru", "rate_per_s": 0, **OAUTH},
                       store=s, tenant=TENANT, sleep=sleeps, clock=lambda: NOW) for s in stores]
    results, errors = [], []

    def work(adapter):
        try:
            results.append(adapter.fetch_deal("18500301").id)
        except Exception as err:  # noqa: BLE001 - surfaced by the assert below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(a,)) for a in adapters]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)

    assert errors == [] and results == ["18500301", "18500301"]
    assert refreshes == ["def50200fake-refresh-1"]
    assert stores[1].get_account("acme")["secrets"]["refresh_token"] == "def50200fake-refresh-2"


# -- Bitrix24 OAuth ----------------------------------------------------------------------------

B24_OAUTH = {"auth": "oauth", "webhook_url": None, "client_id": "local.5f0e1d2c3b4a59.12345678",
             "client_secret": "b24-fake-secret-xxxxxxxx"}


def seed_b24(store, server="https://oauth.bitrix24.tech"):
    store.save_credentials("acme", "bitrix24", host="acme.bitrix24.ru", auth_mode="oauth",
                           secrets={"access_token": "b24-old", "refresh_token": "b24-refresh-1"},
                           expires_at=NOW + 3600, oauth_server=server)


def test_b24_expired_token_refreshes_at_regional_server_and_retries(rsps, b24, store):
    seed_b24(store)
    rsps.post(f"{B24}/rest/crm.deal.get.json", status=401, json=load("b24_expired.json"),
              match=[matchers.json_params_matcher({"id": 4521, "auth": "b24-old"})])
    rsps.get("https://oauth.bitrix24.tech/oauth/token/", json=load("b24_refresh.json"),
             match=[matchers.query_param_matcher({"grant_type": "refresh_token", "client_id": B24_OAUTH["client_id"],
                                                  "client_secret": B24_OAUTH["client_secret"],
                                                  "refresh_token": "b24-refresh-1"})])
    rsps.post(f"{B24}/rest/crm.deal.get.json", json=load("b24_deal_get.json"),
              match=[matchers.json_params_matcher({"id": 4521, "auth": "a1b2c3d4e5f60000fakeaccess2"})])

    assert b24(**B24_OAUTH).fetch_deal("4521").id == "4521"
    acc = store.get_account("acme")
    assert acc["secrets"]["refresh_token"] == "f6e5d4c3b2a10000fakerefresh2"
    assert acc["expires_at"] == 1773003600 and acc["oauth_server"] == "https://oauth.bitrix24.tech"


def test_b24_does_not_refresh_before_expired_token(rsps, b24, store):
    seed_b24(store)
    store.db.execute("UPDATE crm_accounts SET expires_at = ?", [NOW - 10])
    rsps.post(f"{B24}/rest/crm.deal.get.json", json=load("b24_deal_get.json"))
    assert b24(**B24_OAUTH).fetch_deal("4521")


def test_b24_invalid_grant_parks_then_install_resumes(rsps, b24, store):
    seed_b24(store)
    rsps.post(f"{B24}/rest/crm.deal.get.json", status=401, json=load("b24_expired.json"))
    rsps.get("https://oauth.bitrix24.tech/oauth/token/", status=400, json=load("b24_invalid_grant.json"))
    with pytest.raises(ReauthRequiredError, match="invalid_grant"):
        b24(**B24_OAUTH).write_call(make_job(crm={"bitrix24_deal_id": "4521"}))
    assert store.accounts_needing_reauth()[0]["crm"] == "bitrix24"

    rsps.reset()
    rsps.post(f"{B24}/rest/app.info.json", json={"result": {"ID": 5, "CODE": "local.app", "INSTALLED": True}},
              match=[matchers.json_params_matcher({"auth": "fresh-access"})])
    b24(**B24_OAUTH).install({"DOMAIN": "acme.bitrix24.ru", "AUTH_ID": "fresh-access", "REFRESH_ID": "fresh-refresh",
                              "AUTH_EXPIRES": "3600", "member_id": "a223c6b3710f85df22e9377d6c4f7553"})
    assert store.accounts_needing_reauth() == []
    rsps.post(f"{B24}/rest/crm.deal.get.json", json=load("b24_deal_get.json"),
              match=[matchers.json_params_matcher({"id": 4521, "auth": "fresh-access"})])
    assert b24(**B24_OAUTH).fetch_deal("4521")


def test_b24_code_exchange_uses_server_domain(rsps, b24, store):
    rsps.get("https://oauth.bitrix.info/oauth/token/", json=load("b24_refresh.json"),
             match=[matchers.query_param_matcher({"grant_type": "authorization_code", "code": "abc",
                                                  "client_id": B24_OAUTH["client_id"],
                                                  "client_secret": B24_OAUTH["client_secret"]})])
    b24(**B24_OAUTH).authorize_code("abc", server_domain="oauth.bitrix.info", domain="acme.bitrix24.ru")
    acc = store.get_account("acme")
    assert acc["member_id"] == "a223c6b3710f85df22e9377d6c4f7553" and acc["secrets"]["access_token"]

