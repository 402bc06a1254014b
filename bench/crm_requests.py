"""CRM requests per processed call, for each CRM and lookup path (counted with `responses`, no network).

    .venv/bin/python bench/crm_requests.py

"cold" = first call of the account (field list / tags field not cached yet); "warm" = steady state.
"+task" = the call raised a follow-up (alert_conflict); "rerun" = the same call processed again.
"""
from __future__ import annotations

import json
import re
import sqlite3
import sys
import tempfile
from pathlib import Path

import responses
import sqlite_utils

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from integrations.crm.amocrm import AmoCrm  # noqa: E402
from integrations.crm.base import CrmJob  # noqa: E402
from integrations.crm.bitrix24 import Bitrix24  # noqa: E402
from service.crm_store import CrmStore, apply_migrations  # noqa: E402

FIX = ROOT / "tests" / "fixtures" / "crm"
AMO = "https://acme.amocrm.ru/api/v4"
B24 = "https://acme.bitrix24.ru/rest/17/s3cr3tc0de"
TENANT = {"name": "acme", "timezone": "Europe/Moscow", "phone_region": "RU"}
KEY = "q0sNn3jz8wq4mZ1n9J7pGv1m0Z2lR6Q3kD0vXc1sE5U="


def load(name: str):
    return json.loads((FIX / name).read_text(encoding="utf-8"))


def job(n: int, path: str, follow_up: bool) -> CrmJob:
    record = load("job_record.json")
    analysis = load("job_analysis.json")
    if not follow_up:
        analysis["groups"]["flag"] = []
    record["crm"] = {"amocrm_lead_id": 18500301, "bitrix24_deal_id": "4521"} if path == "deal id" else {}
    return CrmJob(call_id=n, call_key=f"bench:acme:{n}", record=record, utterances=load("job_utterances.json"),
                  analysis=analysis, recording_link="https://calls.example.com/r/1")


def tagged_lead() -> dict:
    """The lead as it looks after our first write (our tags and UTM values on it)."""
    lead = load("amo_lead.json")
    lead["_embedded"]["tags"] += [{"name": t} for t in load("job_analysis.json")["tags"]]
    lead["custom_fields_values"] = [{"field_id": i, "values": [{"value": "x"}]} for i in (912001, 912002, 912003)]
    return lead


def amo_mock(rsps: responses.RequestsMock, path: str, tagged: bool = False) -> None:
    lead = tagged_lead() if tagged else load("amo_lead.json")
    rsps.get(f"{AMO}/leads/18500301", json=lead)
    rsps.get(f"{AMO}/leads/18500999", json=lead)
    rsps.get(f"{AMO}/leads/custom_fields", json=load("amo_custom_fields.json"))
    if path == "created":
        rsps.get(f"{AMO}/contacts", status=204, body=b"")
    else:
        rsps.get(f"{AMO}/contacts", json=load("amo_contacts_search.json"))
    rsps.get(f"{AMO}/leads", json=load("amo_leads_filter.json"))
    rsps.post(f"{AMO}/leads/complex", json=load("amo_complex.json"))
    rsps.patch(re.compile(rf"{AMO}/leads/\d+"), json=load("amo_lead_patch.json"))
    rsps.post(f"{AMO}/leads/notes", json=load("amo_notes_add.json"))
    rsps.post(f"{AMO}/tasks", json=load("amo_task_add.json"))


def b24_mock(rsps: responses.RequestsMock, path: str, tagged: bool = False) -> None:
    deal = load("b24_deal_get.json")
    if tagged:
        deal["result"]["UF_CRM_CALLTAG_TAGS"] += load("job_analysis.json")["tags"]
        deal["result"]["UTM_CAMPAIGN"] = "x"
    rsps.post(f"{B24}/crm.deal.get.json", json=deal)
    rsps.post(f"{B24}/batch.json", json=load("b24_batch_find_none.json" if path == "created" else "b24_batch_find.json"))
    if path == "created":
        rsps.post(f"{B24}/batch.json", json=load("b24_batch_create.json"))
    rsps.post(f"{B24}/crm.deal.userfield.list.json", json=load("b24_userfield_list.json"))
    rsps.post(f"{B24}/crm.deal.update.json", json=load("b24_deal_update.json"))
    rsps.post(f"{B24}/crm.timeline.comment.add.json", json=load("b24_comment_add.json"))
    rsps.post(f"{B24}/crm.activity.todo.add.json", json=load("b24_todo_add.json"))


def adapter(kind: str, store: CrmStore):
    if kind == "amocrm":
        return AmoCrm({"kind": "amocrm", "base_url": "https://acme.amocrm.ru", "token": "bench-token",
                       "rate_per_s": 0}, store=store, tenant=TENANT)
    return Bitrix24({"kind": "bitrix24", "base_url": "https://acme.bitrix24.ru", "webhook_url": f"{B24}/",
                     "rate_per_s": 0}, store=store, tenant=TENANT)


def count(kind: str, path: str, follow_up: bool) -> tuple[int, int, int]:
    """Requests for (cold cache, warm cache, rerun of the warm call)."""
    with tempfile.TemporaryDirectory() as tmp:
        db = sqlite_utils.Database(sqlite3.connect(str(Path(tmp) / "b.db"), isolation_level=None))
        apply_migrations(db)
        store = CrmStore(db, KEY)
        figures = []
        for n in (1, 2, 2):
            with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
                (amo_mock if kind == "amocrm" else b24_mock)(rsps, path, tagged=len(figures) == 2)
                adapter(kind, store).write_call(job(n, path, follow_up))
                figures.append(len(rsps.calls))
        return figures[0], figures[1], figures[2]


def main() -> int:
    print(f"{'CRM':<9} {'path':<9} {'follow-up':<9} {'cold':>5} {'warm':>5} {'rerun':>6}")
    for kind in ("amocrm", "bitrix24"):
        for path in ("deal id", "phone", "created"):
            for follow_up in (False, True):
                cold, warm, rerun = count(kind, path, follow_up)
                print(f"{kind:<9} {path:<9} {'+task' if follow_up else '-':<9} {cold:>5} {warm:>5} {rerun:>6}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
