"""Bitrix24 REST: find or create the deal, tags in a multiple UF field, UTM_*, timeline comment, to-do."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar, Mapping
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import requests

from integrations.base import AuthError, NotConfiguredError, PermanentError, Setting, TransientError
from integrations.crm import note
from integrations.crm.base import (COMMON_SETTINGS, Crm, CrmJob, CrmValidationError, Deal, OutcomeUnknownError,
                                   TokenRejected, marker)
from integrations.crm.bitrix24_auth import B24AuthMixin
from integrations.normalize import national_digits

UTM = {"source": "UTM_SOURCE", "medium": "UTM_MEDIUM", "campaign": "UTM_CAMPAIGN", "content": "UTM_CONTENT",
       "term": "UTM_TERM"}
AUTH_ERRORS = ("ACCESS_DENIED", "INVALID_CREDENTIALS", "insufficient_scope", "user_access_error", "OVERLOAD_LIMIT",
               "method_confirm_waiting", "PAYMENT_REQUIRED", "PORTAL_DELETED", "ERROR_METHOD_NOT_FOUND")
SERVER_ERRORS = ("INTERNAL_SERVER_ERROR", "ERROR_UNEXPECTED_ANSWER")
FIELD_TTL_S = 7 * 24 * 3600
DEAL_SELECT = ["ID", "TITLE", "CATEGORY_ID", "ASSIGNED_BY_ID", "CONTACT_ID", "DATE_MODIFY", *UTM.values()]


def phone_variants(phone: str) -> list[str]:
    """+79161234567 -> [+79161234567, 79161234567, 89161234567] (what users may have typed)."""
    out = [phone, phone.lstrip("+")]
    if phone.startswith("+7"):
        out.append("8" + national_digits(phone))
    out.append(national_digits(phone))
    return list(dict.fromkeys(out))


def query(pairs: list[tuple[str, Any]]) -> str:
    """A batch command query string; `$result[...]` references stay unescaped."""
    parts = []
    for key, value in pairs:
        v = str(value)
        parts.append(f"{key}={v if v.startswith('$result[') else quote(v, safe='')}")
    return "&".join(parts)


def _fields_pairs(prefix: str, fields: Mapping[str, Any]) -> list[tuple[str, Any]]:
    pairs: list[tuple[str, Any]] = []
    for key, value in fields.items():
        if isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, dict):
                    pairs += [(f"{prefix}[{key}][{i}][{k}]", v) for k, v in item.items()]
                else:
                    pairs.append((f"{prefix}[{key}][]", item))
        else:
            pairs.append((f"{prefix}[{key}]", value))
    return pairs


class Bitrix24(B24AuthMixin, Crm):
    """Bitrix24 cloud or on-premise portal, via incoming webhook or OAuth app."""

    name = "bitrix24"
    docs_url = "https://apidocs.bitrix24.ru/"
    settings: ClassVar[Mapping[str, Setting]] = {
        **COMMON_SETTINGS,
        "create_deal": Setting(default="contact", help="contact (contact + deal) or none"),
        "auth": Setting(default="webhook", help="webhook or oauth"),
        "webhook_url": Setting(secret=True, help="Incoming webhook URL .../rest/<user>/<code>/"),
        "client_id": Setting(help="OAuth app client_id"),
        "client_secret": Setting(secret=True, help="OAuth app client_secret"),
        "oauth_url": Setting(help="OAuth server (default: from the install data, else by portal zone)"),
        "tags_field": Setting(default="UF_CRM_CALLTAG_TAGS", help="Multiple string UF field for tags"),
        "tags_field_label": Setting(default="Теги звонков", help="Label of the tags field when we create it"),
        "source_id": Setting(default="CALL", help="SOURCE_ID of created deals and contacts"),
        "utm_overwrite": Setting(default=False, help="Overwrite UTM_* fields that already have a value"),
    }
    create_modes = ("contact", "none")
    auth_modes = ("webhook", "oauth")
    default_rate = (2.0, 50.0)

    def __init__(self, config: Mapping, http: requests.Session | None = None, **kwargs: Any):
        super().__init__(config, http, **kwargs)
        if self.config["auth"] == "oauth":
            self._require("client_id", "client_secret")
        field = str(self.config["tags_field"])
        if not field.startswith("UF_CRM_") or len(field) > 50 or not field.replace("_", "").isalnum():
            raise NotConfiguredError("bitrix24: setting 'tags_field' must look like UF_CRM_CALLTAG_TAGS"
                                     " (at most 50 characters)")
        self.tags_field = field
        moved = self.store.cache_get(self.account, "moved_to")
        if moved:
            self.base_url = moved
        self._operating_reset_at: float | None = None

    # -- requests --------------------------------------------------------------------------------

    def call(self, method: str, params: Mapping[str, Any] | None = None, *, create: bool = False) -> Any:
        """POST a REST method with a JSON body; returns the whole response (``result`` and friends)."""
        return self._request("POST", method, f"bitrix24 {method}", create=create, json=dict(params or {}),
                             _method=method)

    def _parse(self, resp: requests.Response, what: str, create: bool) -> Any:
        code = resp.status_code
        if code in (301, 302, 307, 308) and resp.headers.get("Location"):
            parts = urlsplit(resp.headers["Location"])
            self.base_url = f"{parts.scheme}://{parts.netloc}"
            self.store.cache_set(self.account, "moved_to", self.base_url, None)
            raise TransientError(f"{what}: portal moved to {parts.netloc}", retry_after_s=0)
        try:
            data = resp.json()
        except ValueError:
            data = None
        unknown = OutcomeUnknownError if create else TransientError
        if not isinstance(data, dict):
            if code == 401:
                raise TokenRejected(f"{what}: HTTP 401")
            if code == 403:
                raise AuthError(f"{what}: HTTP 403 access denied (HTML page)")
            if code in (429, 503):
                raise TransientError(f"{what}: HTTP {code} with a non-JSON body")
            if code < 300 or code >= 500:
                raise unknown(f"{what}: HTTP {code} with a non-JSON body")
            raise PermanentError(f"{what}: HTTP {code}")
        err = data.get("error")
        if code < 300 and err is None:
            self._note_time(data.get("time"))
            return data
        err, desc = str(err or ""), str(data.get("error_description") or "")
        message = f"{what}: {err + ': ' if err else ''}{desc}".strip()
        if err == "expired_token":
            raise TokenRejected(message)
        if err in ("NO_AUTH_FOUND", "invalid_token", "wrong_client", "WRONG_AUTH_TYPE") or code == 401:
            raise TokenRejected(message, expired=self.config["auth"] == "oauth")
        if err == "QUERY_LIMIT_EXCEEDED":
            self.limiter.penalize(1.0)
            raise TransientError(message)
        if err == "OPERATION_TIME_LIMIT":
            wait = (self._operating_reset_at - self.clock()) if self._operating_reset_at else 60.0
            raise TransientError(message, retry_after_s=max(1.0, wait))
        if err in AUTH_ERRORS or code == 403:
            raise AuthError(message)
        if err in SERVER_ERRORS or code >= 500:
            raise unknown(message)
        if err in ("NOT_FOUND", "OWNER_NOT_FOUND") or desc.rstrip(".").lower() == "not found":
            if create:
                raise PermanentError(message)
            return None
        raise CrmValidationError(message)

    def _note_time(self, info: Any) -> None:
        if isinstance(info, dict) and info.get("operating_reset_at"):
            self._operating_reset_at = float(info["operating_reset_at"])

    def batch(self, cmd: Mapping[str, str], halt: int = 0, create: bool = False) -> tuple[dict, dict]:
        """Run a batch; returns (results by command, errors by command)."""
        data = self.call("batch", {"halt": halt, "cmd": dict(cmd)}, create=create) or {}
        result = data.get("result") or {}
        errors = result.get("result_error") or {}
        return (result.get("result") or {}), (errors if isinstance(errors, dict) else {})

    # -- finding and creating the deal -----------------------------------------------------------

    def _deal(self, item: Mapping) -> Deal:
        tags = item.get(self.tags_field) or []
        return Deal(id=str(item["ID"]), url=f"{self.base_url}/crm/deal/details/{item['ID']}/",
                    responsible_id=str(item.get("ASSIGNED_BY_ID") or "") or None,
                    tags=[str(t) for t in (tags if isinstance(tags, list) else [tags]) if t],
                    contact_id=str(item.get("CONTACT_ID") or "") or None, raw=item)

    def fetch_deal(self, deal_id: str) -> Deal | None:
        if not str(deal_id).strip().isdigit():
            return None
        data = self.call("crm.deal.get", {"id": int(deal_id)})
        return self._deal(data["result"]) if data and data.get("result") else None

    def find_deal_by_phone(self, phone: str) -> tuple[Deal | None, str | None]:
        """findbycomm with the number's variants and the contact's open deals, in one batch request."""
        dup = query([("type", "PHONE"), ("entity_type", "CONTACT")] +
                    [("values[]", v) for v in phone_variants(phone)])
        deals = query([("filter[CONTACT_ID]", "$result[dup][CONTACT][0]"), ("filter[STAGE_SEMANTIC_ID]", "P"),
                       ("order[DATE_MODIFY]", "DESC")] +
                      [("select[]", f) for f in DEAL_SELECT + [self.tags_field]])
        results, _ = self.batch({"dup": f"crm.duplicate.findbycomm?{dup}", "deals": f"crm.deal.list?{deals}"})
        found = results.get("dup") or {}
        contacts = found.get("CONTACT") if isinstance(found, dict) else None
        if not contacts:
            return None, None              # an empty reference would make the deal filter meaningless
        contact_id = str(contacts[0])
        items = results.get("deals") or []
        if not items:
            return None, contact_id
        category = str(self.config.get("pipeline_id") or "")
        items = sorted(items, key=lambda d: (category != "" and str(d.get("CATEGORY_ID")) == category,
                                             str(d.get("DATE_MODIFY") or "")), reverse=True)
        deal = self._deal(items[0])
        deal.contact_id = deal.contact_id or contact_id
        return deal, contact_id

    def _deal_fields(self, job: CrmJob) -> dict[str, Any]:
        rec = job.record
        title = "Исходящий звонок" if rec.get("direction") == "outbound" else "Входящий звонок"
        fields: dict[str, Any] = {"TITLE": f"{title} {rec.get('client_phone') or ''}".strip(),
                                  "SOURCE_ID": self.config["source_id"], "OPENED": "Y"}
        for key, target in (("pipeline_id", "CATEGORY_ID"), ("status_id", "STAGE_ID"),
                            ("responsible_user_id", "ASSIGNED_BY_ID")):
            if self.config.get(key) not in (None, ""):
                fields[target] = self.config[key]
        fields.update(self._utm_values(job, {}))
        tags = list(job.analysis.get("tags") or [])
        if tags:
            fields[self.tags_field] = tags
        return fields

    def build_deal_payload(self, job: CrmJob, contact_id: str | None) -> dict:
        fields = self._deal_fields(job)
        if contact_id:
            return {"fields": {**fields, "CONTACT_ID": int(contact_id)}, "params": {"REGISTER_SONET_EVENT": "N"}}
        phone = job.record["client_phone"]
        contact = {"NAME": phone, "OPENED": "Y", "SOURCE_ID": self.config["source_id"],
                   "PHONE": [{"VALUE": phone, "VALUE_TYPE": "WORK"}]}
        if fields.get("ASSIGNED_BY_ID"):
            contact["ASSIGNED_BY_ID"] = fields["ASSIGNED_BY_ID"]
        deal_pairs = _fields_pairs("fields", fields) + [("fields[CONTACT_IDS][]", "$result[c]")]
        return {"halt": 1, "cmd": {"c": f"crm.contact.add?{query(_fields_pairs('fields', contact))}",
                                   "d": f"crm.deal.add?{query(deal_pairs)}"}}

    def create_deal(self, job: CrmJob, contact_id: str | None) -> Deal:
        self._ensure_tags_field()
        payload = self.build_deal_payload(job, contact_id)
        tags = list(job.analysis.get("tags") or [])
        if contact_id:
            deal_id = self.call("crm.deal.add", payload, create=True)["result"]
            new_contact = contact_id
        else:
            results, errors = self.batch(payload["cmd"], halt=1, create=True)
            if errors or not results.get("d"):
                first = next(iter(errors.values()), {}) if errors else {}
                raise CrmValidationError(f"bitrix24 create contact and deal: {first.get('error', '')}: "
                                         f"{first.get('error_description', 'no deal id returned')}")
            deal_id, new_contact = results["d"], str(results["c"])
        return Deal(id=str(deal_id), url=f"{self.base_url}/crm/deal/details/{deal_id}/",
                    responsible_id=str(self.config.get("responsible_user_id") or "") or None, tags=tags,
                    contact_id=new_contact, raw=self._deal_fields(job))

    # -- tags field and UTM ----------------------------------------------------------------------

    def _ensure_tags_field(self) -> None:
        """Create the multiple string UF field on first use (cached per account)."""
        if self.dry_run or self.store.cache_get(self.account, f"field:{self.tags_field}"):
            return
        found = self.call("crm.deal.userfield.list", {"filter": {"FIELD_NAME": self.tags_field}})
        if not (found or {}).get("result"):
            label = self.config["tags_field_label"]
            self.call("crm.deal.userfield.add", {"fields": {
                "FIELD_NAME": self.tags_field[len("UF_CRM_"):], "USER_TYPE_ID": "string", "MULTIPLE": "Y",
                "XML_ID": self.tags_field, "EDIT_FORM_LABEL": label, "LIST_COLUMN_LABEL": label,
                "LIST_FILTER_LABEL": label, "SHOW_FILTER": "Y"}})
        self.store.cache_set(self.account, f"field:{self.tags_field}", True, FIELD_TTL_S)

    def _utm_values(self, job: CrmJob, existing: Mapping[str, Any]) -> dict[str, str]:
        attribution = job.record.get("attribution") or {}
        out = {}
        for key, field in UTM.items():
            value = attribution.get(key)
            if value in (None, ""):
                continue
            if existing.get(field) and not self.config.get("utm_overwrite"):
                continue
            out[field] = str(value)
        return out

    def write_deal(self, job: CrmJob, deal: Deal, tags: list[str], remove: list[str],
                   fields: Mapping[str, str]) -> bool:
        """Merge tags into the UF field (read-merge-write) and set UTM_*; returns whether it wrote."""
        gone = {r.lower() for r in remove}
        have = [t for t in deal.tags if t.lower() not in gone]
        merged = have + [t for t in tags if t.lower() not in {h.lower() for h in have}]
        update: dict[str, Any] = dict(fields)
        if merged != deal.tags:
            update[self.tags_field] = merged
        if not update:
            return False
        body = {"id": int(deal.id or 0), "fields": update, "params": {"REGISTER_SONET_EVENT": "N"}}
        if self.dry_run:
            self._log_dry(job, "tags", body)
            return True
        if self.tags_field in update:
            self._ensure_tags_field()
        self.call("crm.deal.update", body)
        return True

    # -- comments and to-dos ---------------------------------------------------------------------

    def _comment(self, job: CrmJob, deal: Deal, action: str, text: str) -> str:
        payload = {"fields": {"ENTITY_ID": int(deal.id or 0), "ENTITY_TYPE": "deal", "COMMENT": text}}
        head = text.splitlines()[0]

        def create() -> str:
            return str(self.call("crm.timeline.comment.add", payload, create=True)["result"])

        def find() -> str | None:
            data = self.call("crm.timeline.comment.list", {
                "filter": {"ENTITY_ID": int(deal.id), "ENTITY_TYPE": "deal"}, "select": ["ID", "COMMENT"],
                "order": {"ID": "DESC"}})
            for item in (data or {}).get("result") or []:
                body = str(item.get("COMMENT") or "")
                if marker(job.call_key) in body and body.startswith(head):
                    return str(item["ID"])
            return None

        return self._create_once(job, action, create, find, payload)

    def _todo_payload(self, job: CrmJob, deal: Deal, triggers: list[str]) -> dict:
        try:
            tz = ZoneInfo(self.tenant.get("timezone") or "UTC")
        except (ZoneInfoNotFoundError, ValueError):
            tz = timezone.utc
        due = datetime.fromtimestamp(self.clock(), tz) + timedelta(hours=float(self.config["follow_up_hours"]))
        labels = ", ".join((job.analysis.get("labels") or {}).get(t, t) for t in triggers)
        body = {"ownerTypeId": 2, "ownerId": int(deal.id or 0), "deadline": due.isoformat(timespec="seconds"),
                "title": f"Перезвонить клиенту: {labels}",
                "description": note.build_task_text(job, triggers, self.tenant.get("timezone")),
                "pingOffsets": [0, 15]}
        responsible = deal.responsible_id or self.config.get("responsible_user_id")
        if responsible:
            body["responsibleId"] = int(responsible)
        return body

    def _todo(self, job: CrmJob, deal: Deal, triggers: list[str]) -> str:
        payload = self._todo_payload(job, deal, triggers)

        def create() -> str:
            return str(self.call("crm.activity.todo.add", payload, create=True)["result"]["id"])

        def find() -> str | None:
            data = self.call("crm.activity.list", {"filter": {"OWNER_TYPE_ID": 2, "OWNER_ID": int(deal.id)},
                                                   "select": ["ID", "DESCRIPTION"], "order": {"ID": "DESC"}})
            for item in (data or {}).get("result") or []:
                if marker(job.call_key) in str(item.get("DESCRIPTION") or ""):
                    return str(item["ID"])
            return None

        return self._create_once(job, "task", create, find, payload)

    # -- the stage -------------------------------------------------------------------------------

    def write_full(self, job: CrmJob, deal: Deal, actions: dict[str, str]) -> None:
        tags = list(job.analysis.get("tags") or [])
        fields = self._utm_values(job, deal.raw or {}) if not deal.created else {}
        if self.write_deal(job, deal, tags, [], fields):
            if tags:
                actions["tags"] = deal.id or "dry-run"
            if fields:
                actions["fields"] = deal.id or "dry-run"
        self.record_tags(job, tags)
        texts = note.build_notes(job, self.tenant.get("timezone"), int(self.config["note_max_chars"]))
        ids = [self._comment(job, deal, "note" if i == 0 else f"note:{i + 1}", text) for i, text in enumerate(texts)]
        actions["note"] = ",".join(ids)
        triggers = self.follow_up_triggers(job.analysis)
        if triggers:
            actions["task"] = self._todo(job, deal, triggers)

    def write_retag(self, job: CrmJob, deal: Deal, actions: dict[str, str]) -> None:
        tags = list(job.analysis.get("tags") or [])
        removed = [t for t in self.previous_tags(job) if t not in tags]
        have = {t.lower() for t in deal.tags}
        added = [t for t in tags if t.lower() not in have]
        if self.write_deal(job, deal, tags, removed, {}):
            actions["tags"] = deal.id or "dry-run"
        self.record_tags(job, tags)
        text = note.build_retag_note(job, added, [t for t in removed if t.lower() in have])
        version = job.analysis.get("rules_version") or ""
        actions["note"] = self._comment(job, deal, f"retag_note:{version}", text)
