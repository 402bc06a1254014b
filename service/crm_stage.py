"""The CRM stage: build the job for the tenant's CRM adapter and record what was written."""
from __future__ import annotations

import logging

from integrations import adapter_class
from integrations.base import NotConfiguredError, PermanentError, TransientError
from service import storage
from service.recording_links import recording_link

log = logging.getLogger("calltag.crm")


class Parked(Exception):
    """The CRM account needs re-authorisation: the call waits, it is neither lost nor failed."""


def labels_of(ruleset) -> dict[str, str]:
    """id -> CRM label for every rule, default and checkpoint of the rule set."""
    return {rid: rule.label for rid, rule in ruleset.rules.items() if getattr(rule, "label", None)}


def write_to_crm(rt, db, call: dict, tenant: dict, crm_conf: dict) -> None:
    """Write the call's current analysis once per rules version ('retag' mode when it changed)."""
    from integrations.crm.base import CrmJob, DealNotFoundError, ReauthRequiredError
    from service.crm_store import CrmStore

    cid = call["id"]
    analysis = storage.get_analysis(db, cid)
    if analysis is None:
        return
    stage = storage.get_stages(db, cid).get("crm") or {}
    written_version = (stage.get("detail") or {}).get("rules_version")
    if stage.get("status") == "done" and written_version == analysis["rules_version"]:
        return
    mode = "retag" if stage.get("status") == "done" else "full"
    transcript = storage.get_transcript(db, cid)
    analysis = dict(analysis)
    analysis.setdefault("labels", labels_of(rt.rules.current()))
    link = recording_link(rt.settings, rt.config, tenant, call) if storage.get_recordings(db, cid) else None
    job = CrmJob(call_id=cid, call_key=call["call_key"], record=call["record"],
                 utterances=transcript["utterances"] if transcript else [], analysis=analysis, mode=mode,
                 recording_link=link)
    try:
        cls = adapter_class("crm", crm_conf["kind"])
        adapter = cls(crm_conf, store=CrmStore(db, rt.settings.get("SECRET_KEY") or ""), tenant=tenant)
        receipt = adapter.write_call(job)
    except ReauthRequiredError as err:
        storage.save_stage(db, cid, "crm", "parked", error=str(err), bump=True)
        raise Parked(str(err)) from err
    except DealNotFoundError as err:
        # nothing to attach the call to (hidden number, deal creation switched off): not a failure
        storage.save_stage(db, cid, "crm", "skipped", error=str(err), bump=True)
        return
    except TransientError as err:
        storage.save_stage(db, cid, "crm", "retrying", error=str(err), bump=True)
        raise
    except (PermanentError, NotConfiguredError) as err:
        storage.save_stage(db, cid, "crm", "failed", error=str(err), bump=True)
        raise PermanentError(f"crm: {err}") from err
    storage.save_stage(db, cid, "crm", "done", bump=True, detail={
        "rules_version": analysis["rules_version"], "crm": receipt.crm, "deal_id": receipt.deal_id,
        "deal_url": receipt.deal_url, "actions": dict(receipt.actions), "dry_run": receipt.dry_run, "mode": mode})
