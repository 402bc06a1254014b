"""amoCRM / Kommo (API v4): find or create the lead, add tags and UTM fields, call + transcript notes, task."""
from __future__ import annotations

import json
from typing import Any, ClassVar, Mapping

import requests

from integrations.base import AuthError, PermanentError, Setting, TransientError, retry_after
from integrations.crm import note
from integrations.crm.amocrm_auth import AmoAuthMixin
from integrations.crm.base import (COMMON_SETTINGS, Crm, CrmJob, CrmValidationError, Deal, OutcomeUnknownError,
                                   TokenRejected, marker)
from integrations.normalize import national_digits, to_e164

CLOSED_STATUSES = (142, 143)
CALL_STATUS = {"answered": 4, "missed": 6, "busy": 7, "voicemail": 1, "failed": 3, "unknown": 8}
UTM_CODES = {"source": "UTM_SOURCE", "medium": "UTM_MEDIUM", "campaign": "UTM_CAMPAIGN", "content": "UTM_CONTENT",
             "term": "UTM_TERM", "referrer": "UTM_REFERRER", "gclid": "GCLID", "yclid": "YCLID",
             "ga_client_id": "_GA", "ym_client_id": "_YM_UID"}
FIELDS_TTL_S = 24 * 3600


def _problem(resp: requests.Response) -> dict:
    try:
        data = resp.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def validation_message(data: Mapping) -> str:
    """'path: detail (code); ...' from an amoCRM validation-errors body."""
    parts = []
    for item in data.get("validation-errors") or []:
        for err in item.get("errors") or []:
            parts.append(f"{err.get('path')}: {err.get('detail')} ({err.get('code')})")
    head = data.get("detail") or data.get("title") or "Bad Request"
    return f"{head}: {'; '.join(parts)}" if parts else str(head)


class AmoCrm(AmoAuthMixin, Crm):
    """amoCRM and Kommo: same API v4, the account's own host in base_url."""

    name = "amocrm"
    docs_url = "https://www.amocrm.ru/developers/content/crm_platform/api-reference"
    settings: ClassVar[Mapping[str, Setting]] = {
        **COMMON_SETTINGS,
        "auth": Setting(default="long_lived", help="long_lived or oauth"),
        "token": Setting(secret=True, help="Long-lived token (or store it with `crm auth TENANT --token`)"),
        "client_id": Setting(help="OAuth integration id"),
        "client_secret": Setting(secret=True, help="OAuth integration secret"),
        "redirect_uri": Setting(help="OAuth redirect URI, exactly as registered"),
        "oauth_url": Setting(help="OAuth token server (default: base_url)"),
        "source_name": Setting(default="calltag", help="Source name in call notes and incoming leads"),
        "utm_fields": Setting(help="Attribution key -> lead field code or id (default: UTM_* codes)"),
        "utm_overwrite": Setting(default=False, help="Overwrite UTM fields that already have a value"),
        "task_type_id": Setting(default=1, help="Follow-up task type (1 = call)"),
        "refresh_margin_s": Setting(default=300, help="Refresh the OAuth token this long before expiry"),
    }
    create_modes = ("complex", "unsorted", "none")
    auth_modes = ("long_lived", "oauth")
    default_rate = (5.0, 2.0)

    def __init__(self, config: Mapping, http: requests.Session | None = None, **kwargs: Any):
        super().__init__(config, http, **kwargs)
        if self.config.get("auth") == "oauth":
            self._require("client_id", "client_secret", "redirect_uri")
        self.oauth_url = self._check_url("oauth_url", self.config.get("oauth_url") or self.base_url)
        self.api = f"{self.base_url}/api/v4"

    # -- responses -------------------------------------------------------------------------------

    def _parse(self, resp: requests.Response, what: str, create: bool) -> Any:
        code = resp.status_code
        if code == 204:
            return None
        if 200 <= code < 300:
            try:
                return resp.json()
            except ValueError:
                raise (OutcomeUnknownError if create else TransientError)(
                    f"{what}: HTTP {code} with a non-JSON body") from None
        data = _problem(resp)
        if code == 401:
            raise TokenRejected(f"{what}: HTTP 401 {data.get('hint') or data.get('detail') or ''}".strip())
        if code == 404:
            if create:
                raise PermanentError(f"{what}: HTTP 404 {data.get('detail') or 'not found'}".strip())
            return None
        if code == 429:
            self.limiter.penalize(1.0)
            raise TransientError(f"{what}: HTTP 429 too many requests", retry_after(resp))
        if code in (402, 403):
            detail = data.get("detail") or data.get("title") or ("access denied (HTML page)" if not data else "")
            raise AuthError(f"{what}: HTTP {code} {detail}".strip())
        if code in (400, 422):
            raise CrmValidationError(f"{what}: {validation_message(data)}")
        if code >= 500:
            raise (OutcomeUnknownError if create else TransientError)(f"{what}: HTTP {code}")
        if 300 <= code < 400:
            raise PermanentError(f"{what}: unexpected redirect HTTP {code}")
        raise PermanentError(f"{what}: HTTP {code} {data.get('detail') or ''}".strip())

    # -- finding the deal ------------------------------------------------------------------------

    def _deal(self, lead: Mapping) -> Deal:
        emb = lead.get("_embedded") or {}
        contacts = emb.get("contacts") or []
        main = next((c for c in contacts if c.get("is_main")), contacts[0] if contacts else None)
        return Deal(id=str(lead["id"]), url=f"{self.base_url}/leads/detail/{lead['id']}",
                    responsible_id=str(lead["responsible_user_id"]) if lead.get("responsible_user_id") else None,
                    tags=[t["name"] for t in emb.get("tags") or [] if t.get("name")],
                    contact_id=str(main["id"]) if main else None, raw=lead)

    def fetch_deal(self, deal_id: str) -> Deal | None:
        if not str(deal_id).strip().isdigit():
            return None
        lead = self._request("GET", f"{self.api}/leads/{int(deal_id)}", "amocrm get lead",
                             params={"with": "contacts"})
        return self._deal(lead) if lead and not lead.get("is_deleted") else None

    def _phone_matches(self, contact: Mapping, phone: str) -> bool:
        region = self.tenant.get("phone_region") or "RU"
        for field in contact.get("custom_fields_values") or []:
            if field.get("field_code") == "PHONE":
                if any(to_e164(v.get("value"), region) == phone for v in field.get("values") or []):
                    return True
        return False

    def find_deal_by_phone(self, phone: str) -> tuple[Deal | None, str | None]:
        """Contacts `query` by national digits, confirmed on PHONE; then the open lead updated last."""
        data = self._request("GET", f"{self.api}/contacts", "amocrm search contacts",
                             params={"query": national_digits(phone), "with": "leads", "limit": 50})
        contacts = [c for c in ((data or {}).get("_embedded") or {}).get("contacts") or []
                    if self._phone_matches(c, phone)]
        if not contacts:
            return None, None
        contacts.sort(key=lambda c: c.get("updated_at") or 0, reverse=True)
        lead_ids = list(dict.fromkeys(str(lead["id"]) for c in contacts
                                      for lead in (c.get("_embedded") or {}).get("leads") or []))
        if not lead_ids:
            return None, str(contacts[0]["id"])
        leads = self._request("GET", f"{self.api}/leads", "amocrm get leads",
                              params=[("filter[id][]", i) for i in lead_ids[:250]] + [("limit", 250)])
        open_leads = [lead for lead in ((leads or {}).get("_embedded") or {}).get("leads") or []
                      if lead.get("status_id") not in CLOSED_STATUSES and not lead.get("is_deleted")]
        if not open_leads:
            return None, str(contacts[0]["id"])
        pipeline = str(self.config.get("pipeline_id") or "")
        open_leads.sort(key=lambda lead: (pipeline != "" and str(lead.get("pipeline_id")) == pipeline,
                                          lead.get("updated_at") or 0), reverse=True)
        deal = self._deal(open_leads[0])
        owner = next((c for c in contacts if any(str(lead["id"]) == deal.id for lead in
                                                 (c.get("_embedded") or {}).get("leads") or [])), contacts[0])
        deal.contact_id = deal.contact_id or str(owner["id"])
        return deal, str(owner["id"])

    # -- creating the deal -----------------------------------------------------------------------

    def _lead_base(self, job: CrmJob) -> dict:
        rec = job.record
        title = "Исходящий звонок" if rec.get("direction") == "outbound" else "Входящий звонок"
        lead: dict[str, Any] = {"name": f"{title} {rec.get('client_phone') or ''}".strip(), "created_by": 0}
        for key in ("pipeline_id", "status_id", "responsible_user_id"):
            if self.config.get(key):
                lead[key] = int(self.config[key])
        fields = self._utm_values(job, {})
        if fields:
            lead["custom_fields_values"] = fields
        return lead

    def build_deal_payload(self, job: CrmJob, contact_id: str | None) -> list[dict]:
        rec = job.record
        lead = self._lead_base(job)
        if self.config["create_deal"] == "unsorted":
            meta = {"uniq": job.call_key, "from": rec["client_phone"],
                    "phone": str((rec.get("operator") or {}).get("extension") or rec.get("tracking_number") or ""),
                    "called_at": int(self.clock()), "duration": int(rec.get("talk_seconds") or 0),
                    "link": job.recording_link or "", "service_code": "calltag", "is_call_event_needed": True}
            contact = ({"id": int(contact_id)} if contact_id else
                       {"name": rec["client_phone"], "custom_fields_values": [
                           {"field_code": "PHONE", "values": [{"value": rec["client_phone"]}]}]})
            item = {"source_uid": job.call_key, "source_name": self.config["source_name"], "metadata": meta,
                    "_embedded": {"leads": [{k: v for k, v in lead.items()
                                             if k not in ("pipeline_id", "status_id")}],
                                  "contacts": [contact]}}
            if lead.get("pipeline_id"):
                item["pipeline_id"] = lead["pipeline_id"]
            return [item]
        if contact_id:
            lead["_embedded"] = {"contacts": [{"id": int(contact_id), "is_main": True}]}
        else:
            lead["_embedded"] = {"contacts": [{"name": rec["client_phone"], "custom_fields_values": [
                {"field_code": "PHONE", "values": [{"value": rec["client_phone"], "enum_code": "WORK"}]}]}]}
        return [lead]

    def create_deal(self, job: CrmJob, contact_id: str | None) -> Deal:
        payload = self.build_deal_payload(job, contact_id)
        responsible = self.config.get("responsible_user_id")
        responsible = str(responsible) if responsible else None
        if self.config["create_deal"] == "unsorted":
            data = self._request("POST", f"{self.api}/leads/unsorted/sip", "amocrm create incoming lead",
                                 create=True, json=payload)
            emb = data["_embedded"]["unsorted"][0]["_embedded"]
            lead_id = emb["leads"][0]["id"]
            contacts = emb.get("contacts") or []
            new_contact = str(contacts[0]["id"]) if contacts else None
        elif contact_id:
            data = self._request("POST", f"{self.api}/leads", "amocrm create lead", create=True, json=payload)
            lead_id, new_contact = data["_embedded"]["leads"][0]["id"], None
        else:
            data = self._request("POST", f"{self.api}/leads/complex", "amocrm create complex lead", create=True,
                                 json=payload)
            item = data[0] if isinstance(data, list) else data["_embedded"]["leads"][0]
            lead_id = item["id"]
            new_contact = str(item["contact_id"]) if item.get("contact_id") else None
        return Deal(id=str(lead_id), url=f"{self.base_url}/leads/detail/{lead_id}", responsible_id=responsible,
                    contact_id=new_contact if not contact_id else contact_id)

    # -- fields and tags -------------------------------------------------------------------------

    def _lead_fields(self) -> dict[str, int]:
        """Lead custom fields, code -> id (cached per account for a day)."""
        cached = self.store.cache_get(self.account, "lead_fields", now=self.clock())
        if cached is not None:
            return cached
        fields: dict[str, int] = {}
        for page in range(1, 6):
            data = self._request("GET", f"{self.api}/leads/custom_fields", "amocrm lead fields",
                                 params={"limit": 250, "page": page})
            items = ((data or {}).get("_embedded") or {}).get("custom_fields") or []
            for f in items:
                fields[str(f["id"])] = int(f["id"])
                if f.get("code"):
                    fields[str(f["code"]).upper()] = int(f["id"])
            if not data or not ((data.get("_links") or {}).get("next")):
                break
        self.store.cache_set(self.account, "lead_fields", fields, FIELDS_TTL_S, now=self.clock())
        return fields

    def _utm_values(self, job: CrmJob, existing: Mapping[int, Any]) -> list[dict]:
        attribution = {k: v for k, v in (job.record.get("attribution") or {}).items() if v not in (None, "")}
        if not attribution:
            return []
        mapping = dict(UTM_CODES)
        mapping.update(self.config.get("utm_fields") or {})
        known = self._lead_fields()
        out = []
        for key, value in attribution.items():
            field_id = known.get(str(mapping.get(key, "")).upper())
            if field_id is None:
                continue
            if existing.get(field_id) and not self.config.get("utm_overwrite"):
                continue
            out.append({"field_id": field_id, "values": [{"value": str(value)[:256]}]})
        return out

    @staticmethod
    def _field_values(deal: Deal) -> dict[int, Any]:
        raw = getattr(deal, "raw", None) or {}
        return {int(f["field_id"]): f.get("values") for f in raw.get("custom_fields_values") or []
                if f.get("field_id")}

    def write_tags(self, job: CrmJob, deal: Deal, tags: list[str], remove: list[str],
                   fields: list[dict]) -> bool:
        """Add (and remove) tags without touching the others; returns whether a PATCH was needed."""
        have = {t.lower() for t in deal.tags}
        add = [t for t in tags if t.lower() not in have]
        remove = [t for t in remove if t.lower() in have]
        if not (add or remove or fields):
            return False
        merged = [t for t in deal.tags if t.lower() not in {r.lower() for r in remove}] + add
        if self.store.cache_get(self.account, "no_tags_to_add") is None:
            body: dict[str, Any] = {}
            if add:
                body["tags_to_add"] = [{"name": t} for t in add]
            if remove:
                body["tags_to_delete"] = [{"name": t} for t in remove]
        else:
            body = {"_embedded": {"tags": [{"name": t} for t in merged]}} if (add or remove) else {}
        if fields:
            body["custom_fields_values"] = fields
        if self.dry_run:
            self._log_dry(job, "tags", body)
            return True
        url = f"{self.api}/leads/{int(deal.id)}"
        try:
            if self._request("PATCH", url, "amocrm update lead", json=body) is None:
                raise PermanentError(f"amocrm update lead: lead {deal.id} not found")
        except CrmValidationError as err:
            if "tags_to_" not in str(err):
                raise
            self.store.cache_set(self.account, "no_tags_to_add", True, FIELDS_TTL_S)
            fresh = self.fetch_deal(deal.id) or deal      # read-merge-write with the current tag set
            current = [t for t in fresh.tags if t.lower() not in {r.lower() for r in remove}]
            full = current + [t for t in add if t.lower() not in {c.lower() for c in current}]
            body = {"_embedded": {"tags": [{"name": t} for t in full]}}
            if fields:
                body["custom_fields_values"] = fields
            self._request("PATCH", url, "amocrm update lead (merged tags)", json=body)
        return True

    # -- notes and tasks -------------------------------------------------------------------------

    def _notes_payload(self, job: CrmJob, deal: Deal) -> list[dict]:
        rec = job.record
        tz = self.tenant.get("timezone")
        call = {"entity_id": int(deal.id or 0), "request_id": "call",
                "note_type": "call_out" if rec.get("direction") == "outbound" else "call_in",
                "params": {"uniq": job.call_key, "duration": int(rec.get("talk_seconds") or 0),
                           "source": self.config["source_name"], "link": job.recording_link or "",
                           "phone": rec.get("client_phone") or rec.get("client_phone_raw") or "",
                           "call_status": CALL_STATUS.get(rec.get("status") or "unknown", 8),
                           "call_result": note.build_call_result(job)}}
        texts = note.build_notes(job, tz, int(self.config["note_max_chars"]))
        return [call] + [{"entity_id": int(deal.id or 0), "note_type": "common", "request_id": f"note-{i}",
                          "params": {"text": text}} for i, text in enumerate(texts)]

    def _post_notes(self, payload: list[dict]) -> str:
        data = self._request("POST", f"{self.api}/leads/notes", "amocrm add notes", create=True, json=payload)
        notes = ((data or {}).get("_embedded") or {}).get("notes") or []
        if not notes:
            raise OutcomeUnknownError("amocrm add notes: no note ids in the response")
        return self._notes_receipt({str(n.get("request_id")): n["id"] for n in notes})

    @staticmethod
    def _notes_receipt(by_request: Mapping[str, Any]) -> str:
        return json.dumps({"call": str(by_request.get("call", "")),
                           "note": ",".join(str(v) for k, v in sorted(by_request.items()) if k != "call")})

    def _find_notes(self, job: CrmJob, deal: Deal) -> str | None:
        """Our notes on the lead, found by `uniq` or the marker (after an unknown outcome)."""
        data = self._request("GET", f"{self.api}/leads/{int(deal.id)}/notes", "amocrm list notes",
                             params={"limit": 250, "order[id]": "desc"})
        mark, found = marker(job.call_key), {}
        for n in ((data or {}).get("_embedded") or {}).get("notes") or []:
            params = n.get("params") or {}
            if n.get("note_type") in ("call_in", "call_out") and params.get("uniq") == job.call_key:
                found["call"] = n["id"]
            elif n.get("note_type") == "common" and mark in (params.get("text") or "") \
                    and "перетегирован" not in (params.get("text") or ""):
                found[f"note-{n['id']}"] = n["id"]
        return self._notes_receipt(found) if found else None

    def _post_task(self, job: CrmJob, deal: Deal, triggers: list[str]) -> str:
        data = self._request("POST", f"{self.api}/tasks", "amocrm add task", create=True,
                             json=[self._task_payload(job, deal, triggers)])
        return str(data["_embedded"]["tasks"][0]["id"])

    def _task_payload(self, job: CrmJob, deal: Deal, triggers: list[str]) -> dict:
        hours = float(self.config["follow_up_hours"])
        task = {"entity_id": int(deal.id or 0), "entity_type": "leads",
                "text": note.build_task_text(job, triggers, self.tenant.get("timezone")),
                "complete_till": int(self.clock() + hours * 3600), "task_type_id": int(self.config["task_type_id"]),
                "request_id": "follow-up"}
        responsible = deal.responsible_id or self.config.get("responsible_user_id")
        if responsible:
            task["responsible_user_id"] = int(responsible)
        return task

    def _find_task(self, job: CrmJob, deal: Deal) -> str | None:
        data = self._request("GET", f"{self.api}/tasks", "amocrm list tasks",
                             params={"filter[entity_type]": "leads", "filter[entity_id][]": int(deal.id),
                                     "limit": 250})
        for t in ((data or {}).get("_embedded") or {}).get("tasks") or []:
            if marker(job.call_key) in (t.get("text") or ""):
                return str(t["id"])
        return None

    # -- the stage -------------------------------------------------------------------------------

    def write_full(self, job: CrmJob, deal: Deal, actions: dict[str, str]) -> None:
        tags = list(job.analysis.get("tags") or [])
        fields = self._utm_values(job, self._field_values(deal)) if not deal.created else []
        if self.write_tags(job, deal, tags, [], fields):
            if tags:
                actions["tags"] = deal.id or "dry-run"
            if fields:
                actions["fields"] = deal.id or "dry-run"
        self.record_tags(job, tags)
        payload = self._notes_payload(job, deal)
        receipt = self._create_once(job, "note", lambda: self._post_notes(payload),
                                    lambda: self._find_notes(job, deal), payload)
        if receipt == "dry-run":
            actions.update(call="dry-run", note="dry-run")
        else:
            ids = json.loads(receipt)
            actions.update({k: v for k, v in ids.items() if v})
        triggers = self.follow_up_triggers(job.analysis)
        if triggers:
            actions["task"] = self._create_once(job, "task", lambda: self._post_task(job, deal, triggers),
                                                lambda: self._find_task(job, deal),
                                                self._task_payload(job, deal, triggers))

    def write_retag(self, job: CrmJob, deal: Deal, actions: dict[str, str]) -> None:
        tags = list(job.analysis.get("tags") or [])
        previous = self.previous_tags(job)
        removed = [t for t in previous if t not in tags]
        added = [t for t in tags if t.lower() not in {d.lower() for d in deal.tags}]
        if self.write_tags(job, deal, tags, removed, []):
            actions["tags"] = deal.id or "dry-run"
        self.record_tags(job, tags)
        text = note.build_retag_note(job, added, [t for t in removed if t.lower() in
                                                  {d.lower() for d in deal.tags}])
        payload = [{"entity_id": int(deal.id or 0), "note_type": "common", "params": {"text": text}}]
        version = job.analysis.get("rules_version") or ""

        def find() -> str | None:
            data = self._request("GET", f"{self.api}/leads/{int(deal.id)}/notes", "amocrm list notes",
                                 params={"limit": 250, "order[id]": "desc"})
            for n in ((data or {}).get("_embedded") or {}).get("notes") or []:
                if (n.get("params") or {}).get("text") == text:
                    return str(n["id"])
            return None

        def create() -> str:
            data = self._request("POST", f"{self.api}/leads/notes", "amocrm add retag note", create=True,
                                 json=payload)
            return str(data["_embedded"]["notes"][0]["id"])

        actions["note"] = self._create_once(job, f"retag_note:{version}", create, find, payload)
