"""amoCRM/Kommo adapter: deal lookup paths, writes, idempotency, errors and retries (HTTP via responses)."""
from __future__ import annotations

import json

import pytest
import requests
from responses import matchers

from integrations.base import AuthError, NotConfiguredError, PermanentError, TransientError
from integrations.crm.base import CrmValidationError, DealNotFoundError, ReauthRequiredError
from crm_helpers import AMO, AMO_API, CALL_KEY, NOW, load, make_job, text

NEW_TAGS = ["Цель: заказ", "Итог: отказ", "Отказ: дорого", "Тема: цена", "Тон: негатив", "Внимание: конфликт"]
UTM_PATCH = [{"field_id": 912002, "values": [{"value": "cpc"}]},
             {"field_id": 912003, "values": [{"value": "brand_spring"}]}]


def lead_job(**crm):
    return make_job(crm={"amocrm_lead_id": 18500301, **crm})


def expect_lead_get(rsps, lead_id=18500301, **kw):
    if "body" not in kw:
        kw.setdefault("json", load("amo_lead.json"))
    rsps.get(f"{AMO_API}/leads/{lead_id}", match=[matchers.query_param_matcher({"with": "contacts"})], **kw)


def expect_fields(rsps):
    rsps.get(f"{AMO_API}/leads/custom_fields", json=load("amo_custom_fields.json"),
             match=[matchers.query_param_matcher({"limit": "250", "page": "1"})])


def expect_patch(rsps, expect_body=None, **kw):
    expect_body = expect_body or {"tags_to_add": [{"name": t} for t in NEW_TAGS], "custom_fields_values": UTM_PATCH}
    if "body" not in kw:
        kw.setdefault("json", load("amo_lead_patch.json"))
    rsps.patch(f"{AMO_API}/leads/18500301", match=[matchers.json_params_matcher(expect_body)], **kw)


def expect_notes(rsps, **kw):
    if "body" not in kw:
        kw.setdefault("json", load("amo_notes_add.json"))
    return rsps.post(f"{AMO_API}/leads/notes", **kw)


def expect_task(rsps, **kw):
    kw.setdefault("json", load("amo_task_add.json"))
    return rsps.post(f"{AMO_API}/tasks", **kw)


def sent(rsps, method, url_part):
    return [c for c in rsps.calls if c.request.method == method and url_part in c.request.url]


# -- happy paths -------------------------------------------------------------------------------

def test_amo_by_deal_id_writes_tags_fields_notes_task(rsps, amo):
    expect_lead_get(rsps)
    expect_fields(rsps)
    expect_patch(rsps)
    expect_notes(rsps)
    expect_task(rsps)

    receipt = amo().write_call(lead_job())

    assert receipt.deal_id == "18500301" and receipt.deal_url == f"{AMO}/leads/detail/18500301"
    assert dict(receipt.actions) == {"tags": "18500301", "fields": "18500301", "call": "96001001",
                                     "note": "96001002", "task": "45000123"}
    assert rsps.calls[0].request.headers["Authorization"] == "Bearer long-lived-token-abcdef"
    notes = json.loads(sent(rsps, "POST", "/leads/notes")[0].request.body)
    assert notes[0]["note_type"] == "call_in"
    assert notes[0]["params"]["uniq"] == CALL_KEY and notes[0]["params"]["duration"] == 248
    assert notes[0]["params"]["link"] == "https://calls.example.com/r/12345"
    assert notes[0]["params"]["phone"] == "+79161234567" and notes[0]["params"]["call_status"] == 4
    body = notes[1]["params"]["text"]
    assert "[00:00] Менеджер: Добрый день" in body and "[00:04] Клиент: Здравствуйте" in body
    assert "Причина отказа: дорого" in body and "Скрипт: 67 % (4 из 6)" in body
    assert "✗ пропущено: Вопрос «Как узнали о нас?», Завершение" in body
    assert f"[calltag:call={CALL_KEY}]" in body and f"[calltag:call={CALL_KEY}]" in notes[0]["params"]["call_result"]
    task = json.loads(sent(rsps, "POST", "/tasks")[0].request.body)[0]
    assert task["responsible_user_id"] == 7012345 and task["entity_id"] == 18500301
    assert task["complete_till"] == int(NOW + 24 * 3600) and "Внимание: конфликт" in task["text"]


def test_amo_by_phone_confirms_phone_field_and_picks_open_lead(rsps, amo):
    rsps.get(f"{AMO_API}/contacts", json=load("amo_contacts_search.json"),
             match=[matchers.query_param_matcher({"query": "9161234567", "with": "leads", "limit": "50"})])
    rsps.get(f"{AMO_API}/leads", json=load("amo_leads_filter.json"),
             match=[matchers.query_string_matcher("filter[id][]=18500301&filter[id][]=18400100&limit=250")])
    expect_fields(rsps)
    expect_patch(rsps)
    expect_notes(rsps)
    expect_task(rsps)

    receipt = amo().write_call(make_job())

    assert receipt.deal_id == "18500301"           # 18400100 is won (142); contact 31000999 only mentions the number
    assert "deal" not in receipt.actions
    assert len(rsps.calls) == 6


def test_amo_no_contact_creates_complex_lead(rsps, amo, store):
    rsps.get(f"{AMO_API}/contacts", status=204, body=b"")
    expect_fields(rsps)
    rsps.post(f"{AMO_API}/leads/complex", json=load("amo_complex.json"), match=[matchers.json_params_matcher([{
        "name": "Входящий звонок +79161234567", "created_by": 0, "pipeline_id": 7123456,
        "responsible_user_id": 7012345,
        "custom_fields_values": [{"field_id": 912001, "values": [{"value": "yandex"}]}] + UTM_PATCH,
        "_embedded": {"contacts": [{"name": "+79161234567", "custom_fields_values": [
            {"field_code": "PHONE", "values": [{"value": "+79161234567", "enum_code": "WORK"}]}]}]}}])])
    rsps.patch(f"{AMO_API}/leads/18500999", json=load("amo_lead_patch.json"),
               match=[matchers.json_params_matcher({"tags_to_add": [{"name": t} for t in NEW_TAGS]})])
    expect_notes(rsps)
    expect_task(rsps)

    receipt = amo().write_call(make_job())

    assert receipt.deal_id == "18500999"
    assert receipt.actions["deal"] == "18500999" and receipt.actions["contact"] == "31000888"
    assert store.ledger_get(CALL_KEY, "amocrm", "deal")["remote_id"] == "18500999"


def test_amo_contact_without_open_lead_gets_new_lead_linked(rsps, amo):
    search = load("amo_contacts_search.json")
    search["_embedded"]["contacts"][1]["_embedded"]["leads"] = []
    rsps.get(f"{AMO_API}/contacts", json=search)
    expect_fields(rsps)
    rsps.post(f"{AMO_API}/leads", json=load("amo_lead_created.json"))
    rsps.patch(f"{AMO_API}/leads/18501100", json=load("amo_lead_patch.json"))
    expect_notes(rsps)
    expect_task(rsps)

    receipt = amo().write_call(make_job())

    body = json.loads(sent(rsps, "POST", "/api/v4/leads")[0].request.body)
    assert body[0]["_embedded"] == {"contacts": [{"id": 31000777, "is_main": True}]}
    assert receipt.deal_id == "18501100" and "contact" not in receipt.actions


def test_amo_unsorted_mode_creates_incoming_lead(rsps, amo):
    rsps.get(f"{AMO_API}/contacts", status=204, body=b"")
    expect_fields(rsps)
    rsps.post(f"{AMO_API}/leads/unsorted/sip", json=load("amo_unsorted.json"))
    rsps.patch(f"{AMO_API}/leads/18501000", json=load("amo_lead_patch.json"))
    expect_notes(rsps)
    expect_task(rsps)

    receipt = amo(create_deal="unsorted").write_call(make_job())

    item = json.loads(sent(rsps, "POST", "/unsorted/sip")[0].request.body)[0]
    assert item["source_uid"] == CALL_KEY and item["metadata"]["from"] == "+79161234567"
    assert item["pipeline_id"] == 7123456
    assert receipt.deal_id == "18501000" and receipt.actions["contact"] == "31000889"


def test_amo_no_deal_and_create_off_raises_deal_not_found(rsps, amo):
    rsps.get(f"{AMO_API}/contacts", status=204, body=b"")
    with pytest.raises(DealNotFoundError):
        amo(create_deal="none").write_call(make_job())


def test_amo_hidden_number_and_no_deal_id_raises_deal_not_found(rsps, amo):
    with pytest.raises(DealNotFoundError, match="no client phone"):
        amo().write_call(make_job(client_phone=None))


# -- idempotency -------------------------------------------------------------------------------

def test_amo_rerun_adds_nothing_twice(rsps, amo):
    expect_lead_get(rsps)
    expect_fields(rsps)
    expect_patch(rsps)
    expect_notes(rsps)
    expect_task(rsps)
    first = amo().write_call(lead_job())

    rsps.reset()
    lead = load("amo_lead.json")
    lead["_embedded"]["tags"] += [{"id": 60000 + i, "name": t} for i, t in enumerate(NEW_TAGS)]
    lead["custom_fields_values"] += [{"field_id": 912002, "values": [{"value": "cpc"}]},
                                     {"field_id": 912003, "values": [{"value": "brand_spring"}]}]
    expect_lead_get(rsps, json=lead)
    second = amo().write_call(lead_job())       # a rerun / retried job / duplicate webhook

    assert len(rsps.calls) == 1                   # only the lead read: no PATCH, no note, no task
    assert second.actions["note"] == first.actions["note"] and second.actions["task"] == first.actions["task"]


def test_amo_timeout_after_notes_create_finds_marker_no_duplicate(rsps, amo, store):
    expect_lead_get(rsps)
    expect_fields(rsps)
    expect_patch(rsps)
    expect_notes(rsps, body=requests.ReadTimeout("read timed out"))
    rsps.get(f"{AMO_API}/leads/18500301/notes", json=load("amo_notes_list.json"))
    expect_task(rsps)

    receipt = amo().write_call(lead_job())

    assert len(sent(rsps, "POST", "/leads/notes")) == 1
    assert receipt.actions["call"] == "96001001" and receipt.actions["note"] == "96001002"
    assert store.ledger_get(CALL_KEY, "amocrm", "note")["status"] == "done"


def test_amo_timeout_after_create_not_applied_sends_again(rsps, amo, sleeps):
    expect_lead_get(rsps)
    expect_fields(rsps)
    expect_patch(rsps)
    expect_notes(rsps, body=requests.ReadTimeout("read timed out"))
    rsps.get(f"{AMO_API}/leads/18500301/notes", status=204, body=b"")
    expect_notes(rsps)
    expect_task(rsps)

    receipt = amo().write_call(lead_job())

    assert len(sent(rsps, "POST", "/leads/notes")) == 2 and receipt.actions["note"] == "96001002"


def test_amo_job_retried_after_unknown_outcome_reconciles_first(rsps, amo, store):
    """The worker died after sending the task: the ledger says pending, the task exists."""
    store.ledger_done(CALL_KEY, "amocrm", "deal", "18500301", 7)
    store.ledger_done(CALL_KEY, "amocrm", "note", json.dumps({"call": "1", "note": "2"}), 7)
    store.ledger_pending(CALL_KEY, "amocrm", "task", 7)
    lead = load("amo_lead.json")
    lead["_embedded"]["tags"] = [{"name": t} for t in NEW_TAGS]
    lead["custom_fields_values"] = None
    expect_lead_get(rsps, json=lead)
    expect_fields(rsps)
    rsps.patch(f"{AMO_API}/leads/18500301", json=load("amo_lead_patch.json"))
    rsps.get(f"{AMO_API}/tasks", json=load("amo_tasks_list.json"), match=[matchers.query_param_matcher(
        {"filter[entity_type]": "leads", "filter[entity_id][]": "18500301", "limit": "250"})])

    receipt = amo().write_call(lead_job())

    assert receipt.actions["task"] == "45000123" and not sent(rsps, "POST", "/tasks")


# -- tags --------------------------------------------------------------------------------------

def test_amo_existing_tags_kept_by_tags_to_add(rsps, amo):
    expect_lead_get(rsps)
    expect_fields(rsps)
    expect_patch(rsps)
    expect_notes(rsps)
    expect_task(rsps)
    amo().write_call(lead_job())
    body = json.loads(sent(rsps, "PATCH", "/leads/18500301")[0].request.body)
    assert "_embedded" not in body and "повторный" not in json.dumps(body, ensure_ascii=False)


def test_amo_tags_to_add_rejected_falls_back_to_read_merge_write(rsps, amo, store):
    expect_lead_get(rsps)
    expect_fields(rsps)
    expect_patch(rsps, status=400, json=load("amo_tags_to_add_rejected.json"))
    expect_lead_get(rsps)
    expect_patch(rsps, expect_body={"_embedded": {"tags": [{"name": t} for t in ["повторный"] + NEW_TAGS]},
                             "custom_fields_values": UTM_PATCH})
    expect_notes(rsps)
    expect_task(rsps)

    amo().write_call(lead_job())

    assert store.cache_get("amocrm:acme.amocrm.ru", "no_tags_to_add") is True


def test_amo_retag_updates_tags_and_adds_short_note_only(rsps, amo, store):
    store.ledger_done(CALL_KEY, "amocrm", "deal", "18500301", 7)
    store.ledger_done(CALL_KEY, "amocrm", "tags", json.dumps(["Тон: негатив", "Тема: цена"]), 7)
    lead = load("amo_lead.json")
    lead["_embedded"]["tags"] += [{"name": "Тон: негатив"}, {"name": "Тема: цена"}]
    expect_lead_get(rsps, json=lead)
    analysis = load("job_analysis.json")
    analysis.update(rules_version="4a0b1c2", tags=["Тема: цена", "Тон: нейтрально"])
    rsps.patch(f"{AMO_API}/leads/18500301", json=load("amo_lead_patch.json"), match=[matchers.json_params_matcher(
        {"tags_to_add": [{"name": "Тон: нейтрально"}], "tags_to_delete": [{"name": "Тон: негатив"}]})])
    expect_notes(rsps, json={"_embedded": {"notes": [{"id": 96002000, "request_id": "0"}]}})

    receipt = amo().write_call(make_job(mode="retag", analysis=analysis, crm={"amocrm_lead_id": 18500301}))

    note = json.loads(sent(rsps, "POST", "/leads/notes")[0].request.body)
    assert len(note) == 1 and note[0]["note_type"] == "common"
    assert note[0]["params"]["text"].startswith("Звонок перетегирован (правила 4a0b1c2)")
    assert "Сняты теги: Тон: негатив" in note[0]["params"]["text"]
    assert dict(receipt.actions) == {"tags": "18500301", "note": "96002000"}
    assert json.loads(store.ledger_get(CALL_KEY, "amocrm", "tags")["remote_id"]) == ["Тема: цена", "Тон: нейтрально"]


# -- dry run -----------------------------------------------------------------------------------

def test_amo_dry_run_reads_but_writes_nothing(rsps, amo, store, caplog):
    rsps.get(f"{AMO_API}/contacts", status=204, body=b"")
    expect_fields(rsps)
    caplog.set_level("INFO", logger="calltag.crm")

    receipt = amo(dry_run=True).write_call(make_job())

    assert receipt.dry_run and receipt.actions["deal"] == "dry-run" and receipt.actions["task"] == "dry-run"
    assert all(c.request.method == "GET" for c in rsps.calls)
    assert store.ledger_for_call(CALL_KEY) == {}
    assert "crm dry run: note" in caplog.text and "9161234567" not in caplog.text


# -- errors and retries ------------------------------------------------------------------------

def test_amo_429_then_success_backs_off(rsps, amo, sleeps):
    rsps.get(f"{AMO_API}/leads/18500301", status=429, body=b"")
    expect_lead_get(rsps)
    expect_fields(rsps)
    expect_patch(rsps, status=429, body="<html>Too Many Requests</html>", content_type="text/html")
    expect_patch(rsps)
    expect_notes(rsps)
    expect_task(rsps)

    receipt = amo().write_call(lead_job())

    assert receipt.actions["tags"] == "18500301" and len(sleeps) == 2


def test_amo_validation_error_is_permanent_with_crm_message_not_retried(rsps, amo, store):
    expect_lead_get(rsps)
    expect_fields(rsps)
    expect_patch(rsps, status=400, json=load("amo_validation_error.json"))

    with pytest.raises(CrmValidationError) as err:
        amo().write_call(lead_job())

    assert isinstance(err.value, PermanentError)
    assert "custom_fields_values.0.field_id: The value you selected is not a valid choice." in str(err.value)
    assert len(sent(rsps, "PATCH", "/leads/")) == 1


def test_amo_validation_error_on_create_kept_in_ledger(rsps, amo, store):
    expect_lead_get(rsps)
    expect_fields(rsps)
    expect_patch(rsps)
    expect_notes(rsps, status=400, json=load("amo_validation_error.json"))
    with pytest.raises(PermanentError):
        amo().write_call(lead_job())
    row = store.ledger_get(CALL_KEY, "amocrm", "note")
    assert row["status"] == "pending" and "not a valid choice" in row["error"]


def test_amo_html_403_is_auth_error_without_html_dump(rsps, amo):
    expect_lead_get(rsps, status=403, body=text("blocked.html"), content_type="text/html")
    with pytest.raises(AuthError) as err:
        amo().write_call(lead_job())
    assert "<html>" not in str(err.value) and len(rsps.calls) == 1


def test_amo_html_body_on_200_is_transient_and_retried(rsps, amo, sleeps):
    expect_lead_get(rsps, status=200, body=text("blocked.html"), content_type="text/html")
    expect_lead_get(rsps)
    expect_fields(rsps)
    expect_patch(rsps)
    expect_notes(rsps)
    expect_task(rsps)
    assert amo().write_call(lead_job()).deal_id == "18500301"
    assert len(sleeps) == 1


def test_amo_5xx_exhausts_attempts_then_transient(rsps, amo, sleeps):
    for _ in range(3):
        expect_lead_get(rsps, status=502, body=b"Bad Gateway")
    with pytest.raises(TransientError):
        amo(max_attempts=3).write_call(lead_job())
    assert len(sleeps) == 2


def test_amo_deleted_deal_id_falls_back_to_phone(rsps, amo):
    expect_lead_get(rsps, status=204, body=b"")
    rsps.get(f"{AMO_API}/contacts", status=204, body=b"")
    with pytest.raises(DealNotFoundError):
        amo(create_deal="none").write_call(lead_job())


# -- configuration -----------------------------------------------------------------------------

def test_amo_describe_masks_secrets(amo):
    text_ = amo(auth="oauth", client_id="cid-123", client_secret="very-secret-value",
                redirect_uri="https://calls.example.com/cb").describe()
    assert "long-lived-token-abcdef" not in text_ and "very-secret-value" not in text_
    assert "token=lo...ef" in text_ and "client_secret=ve...ue" in text_


@pytest.mark.parametrize("overrides,key", [({"base_url": ""}, "base_url"), ({"create_deal": "both"}, "create_deal"),
                                           ({"auth": "password"}, "auth"), ({"auth": "oauth"}, "client_id"),
                                           ({"rate_per_s": "fast"}, "rate_per_s")])
def test_amo_bad_config_names_the_key(amo, overrides, key):
    with pytest.raises(NotConfiguredError, match=f"'{key}'"):
        amo(**overrides)


def test_amo_kommo_host_is_used_as_is(rsps, amo):
    rsps.get("https://acme.kommo.com/api/v4/leads/5", status=204, body=b"")
    rsps.get("https://acme.kommo.com/api/v4/contacts", status=204, body=b"")
    with pytest.raises(DealNotFoundError):
        amo(kind="kommo", base_url="acme.kommo.com", create_deal="none").write_call(
            make_job(crm={"deal_id": "5"}))


def test_amo_non_numeric_deal_hint_is_ignored(rsps, amo):
    rsps.get(f"{AMO_API}/contacts", status=204, body=b"")
    with pytest.raises(DealNotFoundError):
        amo(create_deal="none").write_call(make_job(crm={"deal_id": "abc/../1"}))


def test_amo_notes_endpoint_404_is_permanent(rsps, amo):
    expect_lead_get(rsps)
    expect_fields(rsps)
    expect_patch(rsps)
    expect_notes(rsps, status=404, json={"title": "Not Found", "status": 404, "detail": "Entity not found"})
    with pytest.raises(PermanentError, match="Entity not found"):
        amo().write_call(lead_job())
