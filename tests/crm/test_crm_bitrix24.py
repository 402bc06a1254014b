"""Bitrix24 adapter: lookup paths, UF tags merge, comments, to-dos, idempotency, errors (HTTP via responses)."""
from __future__ import annotations

import json

import pytest
import requests
from responses import matchers

from crm_helpers import B24, B24_HOOK, CALL_KEY, load, make_job, text
from integrations.base import AuthError, NotConfiguredError, TransientError
from integrations.crm.base import CrmValidationError, ReauthRequiredError

TAGS = ["Цель: заказ", "Итог: отказ", "Отказ: дорого", "Тема: цена", "Тон: негатив", "Внимание: конфликт"]
SELECT = ["ID", "TITLE", "CATEGORY_ID", "ASSIGNED_BY_ID", "CONTACT_ID", "DATE_MODIFY", "UTM_SOURCE", "UTM_MEDIUM",
          "UTM_CAMPAIGN", "UTM_CONTENT", "UTM_TERM", "UF_CRM_CALLTAG_TAGS"]
FIND_BATCH = {"halt": 0, "cmd": {
    "dup": "crm.duplicate.findbycomm?type=PHONE&entity_type=CONTACT&values[]=%2B79161234567"
           "&values[]=79161234567&values[]=89161234567&values[]=9161234567",
    "deals": "crm.deal.list?filter[CONTACT_ID]=$result[dup][CONTACT][0]&filter[STAGE_SEMANTIC_ID]=P"
             "&order[DATE_MODIFY]=DESC&" + "&".join(f"select[]={f}" for f in SELECT)}}


def url(method, base=B24_HOOK):
    return f"{base}/{method}.json"


def expect(rsps, method, fixture=None, expect_json=None, **kw):
    if fixture and "body" not in kw:
        kw["json"] = load(fixture)
    match = [matchers.json_params_matcher(expect_json)] if expect_json is not None else []
    return rsps.post(url(method, kw.pop("base", B24_HOOK)), match=match, **kw)


def sent(rsps, method):
    return [json.loads(c.request.body) for c in rsps.calls if c.request.url.endswith(f"/{method}.json")]


def deal_job(**kw):
    return make_job(crm={"bitrix24_deal_id": "4521"}, **kw)


def expect_update(rsps, fields, **kw):
    expect(rsps, "crm.deal.update", "b24_deal_update.json",
           {"id": 4521, "fields": fields, "params": {"REGISTER_SONET_EVENT": "N"}}, **kw)


# -- happy paths -------------------------------------------------------------------------------

def test_b24_by_deal_id_merges_tags_and_writes_comment_and_todo(rsps, b24):
    expect(rsps, "crm.deal.get", "b24_deal_get.json", {"id": 4521})
    expect(rsps, "crm.deal.userfield.list", "b24_userfield_list.json",
           {"filter": {"FIELD_NAME": "UF_CRM_CALLTAG_TAGS"}})
    expect_update(rsps, {"UTM_CAMPAIGN": "brand_spring", "UF_CRM_CALLTAG_TAGS": ["повторный"] + TAGS})
    expect(rsps, "crm.timeline.comment.add", "b24_comment_add.json")
    expect(rsps, "crm.activity.todo.add", "b24_todo_add.json")

    receipt = b24().write_call(deal_job())

    assert receipt.deal_id == "4521" and receipt.deal_url == f"{B24}/crm/deal/details/4521/"
    assert dict(receipt.actions) == {"tags": "4521", "fields": "4521", "note": "99871", "task": "7710"}
    comment = sent(rsps, "crm.timeline.comment.add")[0]["fields"]
    assert comment["ENTITY_TYPE"] == "deal" and comment["ENTITY_ID"] == 4521
    assert "[00:04] Клиент: Здравствуйте" in comment["COMMENT"] and comment["COMMENT"].endswith(
        f"[calltag:call={CALL_KEY}]")
    todo = sent(rsps, "crm.activity.todo.add")[0]
    assert todo["ownerTypeId"] == 2 and todo["ownerId"] == 4521 and todo["responsibleId"] == 17
    assert todo["deadline"] == "2026-03-09T23:00:00+03:00"          # NOW + 24 h in Europe/Moscow
    assert "auth" not in todo                                          # webhook: credentials are in the URL


def test_b24_by_phone_uses_one_batch_and_creates_missing_tags_field(rsps, b24):
    expect(rsps, "batch", "b24_batch_find.json", FIND_BATCH)
    expect(rsps, "crm.deal.userfield.list", "b24_userfield_list_empty.json")
    expect(rsps, "crm.deal.userfield.add", "b24_userfield_add.json", {"fields": {
        "FIELD_NAME": "CALLTAG_TAGS", "USER_TYPE_ID": "string", "MULTIPLE": "Y", "XML_ID": "UF_CRM_CALLTAG_TAGS",
        "EDIT_FORM_LABEL": "Теги звонков", "LIST_COLUMN_LABEL": "Теги звонков", "LIST_FILTER_LABEL": "Теги звонков",
        "SHOW_FILTER": "Y"}})
    expect_update(rsps, {"UTM_CAMPAIGN": "brand_spring", "UF_CRM_CALLTAG_TAGS": ["повторный"] + TAGS})
    expect(rsps, "crm.timeline.comment.add", "b24_comment_add.json")
    expect(rsps, "crm.activity.todo.add", "b24_todo_add.json")

    receipt = b24().write_call(make_job())

    assert receipt.deal_id == "4521" and "deal" not in receipt.actions


def test_b24_no_contact_creates_contact_and_deal_in_one_batch(rsps, b24, store):
    store.cache_set("bitrix24:acme.bitrix24.ru", "field:UF_CRM_CALLTAG_TAGS", True, None)
    expect(rsps, "batch", "b24_batch_find_none.json", FIND_BATCH)
    expect(rsps, "batch", "b24_batch_create.json")
    expect(rsps, "crm.timeline.comment.add", "b24_comment_add.json")
    expect(rsps, "crm.activity.todo.add", "b24_todo_add.json")

    receipt = b24().write_call(make_job())

    create = sent(rsps, "batch")[1]
    assert create["halt"] == 1
    assert create["cmd"]["c"].startswith("crm.contact.add?fields[NAME]=%2B79161234567")
    assert "fields[PHONE][0][VALUE]=%2B79161234567&fields[PHONE][0][VALUE_TYPE]=WORK" in create["cmd"]["c"]
    assert "fields[CONTACT_IDS][]=$result[c]" in create["cmd"]["d"]
    assert "fields[UF_CRM_CALLTAG_TAGS][]=%D0%A6" in create["cmd"]["d"]       # tags set on creation
    assert "fields[UTM_SOURCE]=yandex" in create["cmd"]["d"] and "fields[ASSIGNED_BY_ID]=17" in create["cmd"]["d"]
    assert receipt.deal_id == "4522" and receipt.actions["deal"] == "4522" and receipt.actions["contact"] == "1204"
    assert not sent(rsps, "crm.deal.update")


def test_b24_contact_without_open_deal_gets_deal_linked(rsps, b24, store):
    store.cache_set("bitrix24:acme.bitrix24.ru", "field:UF_CRM_CALLTAG_TAGS", True, None)
    found = load("b24_batch_find.json")
    found["result"]["result"]["deals"] = []
    expect(rsps, "batch", json=found)
    expect(rsps, "crm.deal.add", json={"result": 4523})
    expect(rsps, "crm.timeline.comment.add", "b24_comment_add.json")
    expect(rsps, "crm.activity.todo.add", "b24_todo_add.json")

    receipt = b24().write_call(make_job())

    assert sent(rsps, "crm.deal.add")[0]["fields"]["CONTACT_ID"] == 1203
    assert receipt.deal_id == "4523" and "contact" not in receipt.actions


def test_b24_long_transcript_is_split_into_several_comments(rsps, b24, store):
    store.cache_set("bitrix24:acme.bitrix24.ru", "field:UF_CRM_CALLTAG_TAGS", True, None)
    utterances = [{"speaker": "client" if i % 2 else "operator", "start_s": i * 5, "end_s": i * 5 + 4,
                   "text": f"Реплика номер {i} " + "очень длинная фраза " * 20} for i in range(60)]
    expect(rsps, "crm.deal.get", "b24_deal_get.json")
    expect(rsps, "crm.deal.update", "b24_deal_update.json")
    for i in range(4):
        expect(rsps, "crm.timeline.comment.add", json={"result": 99900 + i})
    expect(rsps, "crm.activity.todo.add", "b24_todo_add.json")

    receipt = b24(note_max_chars=8000).write_call(deal_job(utterances=utterances))

    comments = [c["fields"]["COMMENT"] for c in sent(rsps, "crm.timeline.comment.add")]
    assert all(len(c) <= 8000 for c in comments) and len(comments) == 4
    assert "часть 1 из 4" in comments[0] and comments[3].startswith("Расшифровка звонка (часть 4 из 4)")
    assert all(c.endswith(f"[calltag:call={CALL_KEY}]") for c in comments)
    assert receipt.actions["note"] == "99900,99901,99902,99903"


# -- idempotency -------------------------------------------------------------------------------

def test_b24_rerun_adds_nothing_twice(rsps, b24):
    expect(rsps, "crm.deal.get", "b24_deal_get.json")
    expect(rsps, "crm.deal.userfield.list", "b24_userfield_list.json")
    expect(rsps, "crm.deal.update", "b24_deal_update.json")
    expect(rsps, "crm.timeline.comment.add", "b24_comment_add.json")
    expect(rsps, "crm.activity.todo.add", "b24_todo_add.json")
    b24().write_call(deal_job())

    rsps.reset()
    deal = load("b24_deal_get.json")
    deal["result"].update(UF_CRM_CALLTAG_TAGS=["повторный"] + TAGS, UTM_CAMPAIGN="brand_spring")
    expect(rsps, "crm.deal.get", json=deal)
    receipt = b24().write_call(deal_job())

    assert len(rsps.calls) == 1 and receipt.actions["note"] == "99871" and receipt.actions["task"] == "7710"


def test_b24_timeout_after_comment_add_finds_marker_no_duplicate(rsps, b24):
    expect(rsps, "crm.deal.get", "b24_deal_get.json")
    expect(rsps, "crm.deal.userfield.list", "b24_userfield_list.json")
    expect(rsps, "crm.deal.update", "b24_deal_update.json")
    expect(rsps, "crm.timeline.comment.add", body=requests.ReadTimeout("read timed out"))
    expect(rsps, "crm.timeline.comment.list", "b24_comment_list.json")
    expect(rsps, "crm.activity.todo.add", "b24_todo_add.json")

    receipt = b24().write_call(deal_job())

    assert len(sent(rsps, "crm.timeline.comment.add")) == 1 and receipt.actions["note"] == "99871"


def test_b24_timeout_after_create_deal_finds_it_by_phone(rsps, b24, store):
    store.cache_set("bitrix24:acme.bitrix24.ru", "field:UF_CRM_CALLTAG_TAGS", True, None)
    expect(rsps, "batch", "b24_batch_find_none.json", FIND_BATCH)
    expect(rsps, "batch", body=requests.ReadTimeout("read timed out"))
    expect(rsps, "batch", "b24_batch_find.json", FIND_BATCH)         # the create had gone through
    expect(rsps, "crm.deal.update", "b24_deal_update.json")
    expect(rsps, "crm.timeline.comment.add", "b24_comment_add.json")
    expect(rsps, "crm.activity.todo.add", "b24_todo_add.json")

    receipt = b24().write_call(make_job())

    assert receipt.deal_id == "4521" and len(sent(rsps, "batch")) == 3


# -- retag and dry run -------------------------------------------------------------------------

def test_b24_retag_replaces_our_old_tags_keeps_others_adds_short_comment(rsps, b24, store):
    store.cache_set("bitrix24:acme.bitrix24.ru", "field:UF_CRM_CALLTAG_TAGS", True, None)
    store.ledger_done(CALL_KEY, "bitrix24", "deal", "4521", 7)
    store.ledger_done(CALL_KEY, "bitrix24", "tags", json.dumps(["Тон: негатив", "Тема: цена"]), 7)
    deal = load("b24_deal_get.json")
    deal["result"]["UF_CRM_CALLTAG_TAGS"] = ["повторный", "Тон: негатив", "Тема: цена"]
    expect(rsps, "crm.deal.get", json=deal)
    expect_update(rsps, {"UF_CRM_CALLTAG_TAGS": ["повторный", "Тема: цена", "Тон: нейтрально"]})
    expect(rsps, "crm.timeline.comment.add", json={"result": 99999})
    analysis = load("job_analysis.json")
    analysis.update(rules_version="4a0b1c2", tags=["Тема: цена", "Тон: нейтрально"])

    receipt = b24().write_call(make_job(mode="retag", analysis=analysis))

    comment = sent(rsps, "crm.timeline.comment.add")[0]["fields"]["COMMENT"]
    assert comment.startswith("Звонок перетегирован (правила 4a0b1c2)") and "Сняты теги: Тон: негатив" in comment
    assert dict(receipt.actions) == {"tags": "4521", "note": "99999"}


def test_b24_dry_run_writes_nothing(rsps, b24, store):
    expect(rsps, "batch", "b24_batch_find_none.json")
    receipt = b24(dry_run=True).write_call(make_job())
    assert receipt.dry_run and receipt.actions["deal"] == "dry-run" and len(rsps.calls) == 1
    assert store.ledger_for_call(CALL_KEY) == {}


# -- errors ------------------------------------------------------------------------------------

def test_b24_query_limit_exceeded_then_success(rsps, b24, sleeps):
    expect(rsps, "crm.deal.get", "b24_query_limit.json", status=503)
    expect(rsps, "crm.deal.get", "b24_deal_get.json")
    expect(rsps, "crm.deal.userfield.list", "b24_userfield_list.json")
    expect(rsps, "crm.deal.update", "b24_deal_update.json")
    expect(rsps, "crm.timeline.comment.add", "b24_query_limit.json", status=503)   # safe to resend: not applied
    expect(rsps, "crm.timeline.comment.add", "b24_comment_add.json")
    expect(rsps, "crm.activity.todo.add", "b24_todo_add.json")

    receipt = b24().write_call(deal_job())

    assert receipt.actions["note"] == "99871" and len(sleeps) == 2
    assert not [c for c in rsps.calls if "comment.list" in c.request.url]


def test_b24_validation_error_is_permanent_not_retried(rsps, b24, store):
    expect(rsps, "crm.deal.get", "b24_deal_get.json")
    expect(rsps, "crm.deal.userfield.list", "b24_userfield_list.json")
    expect(rsps, "crm.deal.update", "b24_deal_update.json")
    expect(rsps, "crm.timeline.comment.add", "b24_invalid_arg.json", status=400)
    with pytest.raises(CrmValidationError, match="INVALID_ARG_VALUE: Не задан текст комментария"):
        b24().write_call(deal_job())
    assert "Не задан текст" in store.ledger_get(CALL_KEY, "bitrix24", "note")["error"]


def test_b24_html_500_is_retried(rsps, b24, sleeps):
    expect(rsps, "crm.deal.get", body="<html><body>502 Bad Gateway</body></html>", status=500,
           content_type="text/html")
    expect(rsps, "crm.deal.get", "b24_deal_get.json")
    expect(rsps, "crm.deal.userfield.list", "b24_userfield_list.json")
    expect(rsps, "crm.deal.update", "b24_deal_update.json")
    expect(rsps, "crm.timeline.comment.add", "b24_comment_add.json")
    expect(rsps, "crm.activity.todo.add", "b24_todo_add.json")
    assert b24().write_call(deal_job()).deal_id == "4521" and len(sleeps) == 1


def test_b24_access_denied_is_auth_error(rsps, b24):
    expect(rsps, "crm.deal.get", "b24_access_denied.json", status=403)
    with pytest.raises(AuthError, match="ACCESS_DENIED"):
        b24().write_call(deal_job())


def test_b24_deal_not_found_falls_back_to_phone(rsps, b24, store):
    store.cache_set("bitrix24:acme.bitrix24.ru", "field:UF_CRM_CALLTAG_TAGS", True, None)
    expect(rsps, "crm.deal.get", "b24_not_found.json", status=400)
    expect(rsps, "batch", "b24_batch_find.json")
    expect(rsps, "crm.deal.update", "b24_deal_update.json")
    expect(rsps, "crm.timeline.comment.add", "b24_comment_add.json")
    expect(rsps, "crm.activity.todo.add", "b24_todo_add.json")
    assert b24().write_call(deal_job()).deal_id == "4521"


def test_b24_portal_renamed_302_repeats_post_on_new_host(rsps, b24, store):
    new = "https://acme-new.bitrix24.ru/rest/17/s3cr3tc0de"
    rsps.post(url("crm.deal.get"), status=302, headers={"Location": f"{new}/crm.deal.get.json"})
    expect(rsps, "crm.deal.get", "b24_deal_get.json", {"id": 4521}, base=new)
    assert b24().fetch_deal("4521").id == "4521"
    assert store.cache_get("bitrix24:acme.bitrix24.ru", "moved_to") == "https://acme-new.bitrix24.ru"
    expect(rsps, "crm.deal.get", "b24_deal_get.json", base=new)
    assert b24().fetch_deal("4521").id == "4521"        # a new adapter goes straight to the new host


def test_b24_webhook_rejected_parks_then_new_webhook_resumes(rsps, b24, store):
    expect(rsps, "crm.deal.get", "b24_no_auth.json", status=401)
    with pytest.raises(ReauthRequiredError):
        b24().write_call(deal_job())
    assert [a["tenant"] for a in store.accounts_needing_reauth()] == ["acme"]
    with pytest.raises(ReauthRequiredError):           # parked: no request is sent
        b24().write_call(deal_job())

    new_hook = f"{B24}/rest/17/n3wc0de"
    b24().store_webhook(f"{new_hook}/")
    assert store.accounts_needing_reauth() == []
    expect(rsps, "crm.deal.get", "b24_deal_get.json", base=new_hook)
    assert b24().fetch_deal("4521").id == "4521"


def test_b24_describe_masks_webhook(b24):
    text_ = b24().describe()
    assert "s3cr3tc0de" not in text_ and "webhook_url=ht...e/" in text_


@pytest.mark.parametrize("overrides,key", [({"tags_field": "TAGS"}, "tags_field"),
                                           ({"auth": "oauth"}, "client_id"), ({"create_deal": "complex"}, "create_deal")])
def test_b24_bad_config_names_the_key(b24, overrides, key):
    with pytest.raises(NotConfiguredError, match=f"'{key}'"):
        b24(**overrides)


def test_b24_retries_exhausted_is_transient(rsps, b24, sleeps):
    for _ in range(2):
        expect(rsps, "crm.deal.get", "b24_query_limit.json", status=503)
    with pytest.raises(TransientError):
        b24(max_attempts=2).write_call(deal_job())


def test_b24_operation_time_limit_goes_back_to_the_queue_with_reset_time(rsps, b24, sleeps, store):
    store.cache_set("bitrix24:acme.bitrix24.ru", "field:UF_CRM_CALLTAG_TAGS", True, None)
    expect(rsps, "crm.deal.get", "b24_deal_get.json")              # operating_reset_at = NOW + 600
    expect(rsps, "crm.deal.update", json={"error": "OPERATION_TIME_LIMIT", "error_description": "Method is blocked"},
           status=429)
    adapter = b24()
    deal = adapter.fetch_deal("4521")
    with pytest.raises(TransientError) as err:
        adapter.write_deal(make_job(), deal, ["Тема: цена"], [], {})
    assert err.value.retry_after_s == 600 and sleeps == []         # longer than backoff_cap_s: not slept here
