"""Pipeline stages: recording -> transcript -> analysis -> crm. Each checks its stored output first."""
from __future__ import annotations

import logging
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from integrations import REGISTRY, adapter_class
from integrations.base import PermanentError, TransientError
from integrations.calltracking.base import CallTracking
from integrations.calltracking.generic import GenericJson
from service import audio, fetch, storage
from service.metrics import compute_metrics
from service.models import Utterance
from service.record import recording_key
from service.retry import RECORDING_SCHEDULE_S, next_delay
from service.speech import sha256_file

log = logging.getLogger("calltag.pipeline")


class RetryLater(Exception):
    """A stage cannot finish now; try the call again after delay_s."""

    def __init__(self, stage: str, reason: str, delay_s: float):
        super().__init__(f"{stage}: {reason}")
        self.stage, self.reason, self.delay_s = stage, reason, delay_s


def run(rt, db, call_id: int) -> None:
    """Run every stage of one call in order; raises RetryLater or PermanentError."""
    call = storage.get_call(db, call_id)
    tenant = rt.tenant(call["tenant"]) or {"name": call["tenant"], "providers": {}, "allow_hosts": [],
                                           "channels": ["operator", "client"], "crm": {"kind": "none"}}
    provider = provider_adapter(call["provider"], tenant)
    stage_recording(rt, db, call, tenant, provider)
    stage_transcript(rt, db, call, tenant)
    stage_analysis(rt, db, call)
    stage_crm(rt, db, call, tenant)


def provider_adapter(provider: str, tenant: dict) -> CallTracking:
    """The provider's adapter (the generic one for 'generic' and in-process 'cli' calls)."""
    if provider in REGISTRY["calltracking"]:
        cls = adapter_class("calltracking", provider)
        return cls(tenant["providers"].get(provider, {}), tenant=tenant)
    return GenericJson({}, tenant=tenant)


def _stage_done(db, call_id: int, stage: str) -> bool:
    return storage.get_stages(db, call_id).get(stage, {}).get("status") in ("done", "skipped")


def _age_h(call: dict) -> float:
    created = datetime.fromisoformat(call["created_at"])
    return (datetime.now(timezone.utc) - created).total_seconds() / 3600.0


# -- recording -----------------------------------------------------------------------------------

def stage_recording(rt, db, call: dict, tenant: dict, provider: CallTracking) -> None:
    """Download every available recording once; wait for late ones; give up after the retry window."""
    cid = call["id"]
    if _stage_done(db, cid, "recording"):
        return
    have = {r["recording_key"] for r in storage.get_recordings(db, cid)}
    wanted: list[dict] = []
    try:
        record = _enrich(db, call, provider)
        wanted = [r for r in record.get("recordings") or [] if r.get("state") not in ("absent", "failed")]
        if not wanted:
            if record.get("status") in ("answered", "unknown") and provider.expects_recording(record):
                raise TransientError("recording not announced yet")
            storage.save_stage(db, cid, "recording", "skipped", detail={"reason": "no recording for this call"})
            return
        for rec in wanted:
            key = recording_key(rec)
            if key not in have:
                _download_one(rt, db, call, tenant, provider, rec, key)
    except TransientError as err:
        stage = storage.get_stages(db, cid).get("recording", {})
        attempt = (stage.get("attempts") or 0) + 1
        if _age_h(call) >= rt.settings["RECORDING_RETRY_H"] and not wanted:
            storage.save_stage(db, cid, "recording", "skipped", error=str(err), bump=True, detail={
                "reason": f"no recording arrived within {rt.settings['RECORDING_RETRY_H']:g} h"})
            return
        if _age_h(call) >= rt.settings["RECORDING_RETRY_H"]:
            msg = f"recording not available after {rt.settings['RECORDING_RETRY_H']:g} h: {err}"
            storage.save_stage(db, cid, "recording", "failed", error=msg, bump=True)
            raise PermanentError(msg) from err
        storage.save_stage(db, cid, "recording", "retrying", error=str(err), bump=True)
        raise RetryLater("recording", str(err), next_delay(attempt, err.retry_after_s, RECORDING_SCHEDULE_S)) from err
    except PermanentError as err:
        storage.save_stage(db, cid, "recording", "failed", error=str(err), bump=True)
        raise
    storage.save_stage(db, cid, "recording", "done", detail={"count": len(wanted)})


def _enrich(db, call: dict, provider: CallTracking) -> dict:
    """Let the provider API complete the record (attribution, late recordings) before downloading."""
    from service.record import apply_update
    update = provider.enrich(call["record"])
    if update is None:
        return call["record"]
    record = apply_update(call["record"], update, signature_verified=None)
    storage.upsert_call(db, call["call_key"], record)
    call["record"] = record
    return record


def _download_one(rt, db, call, tenant, provider, rec: dict, key: str) -> None:
    dest = Path(rt.settings["DATA_DIR"]) / "recordings" / call["tenant"]
    if rec.get("fetch") == "local" and call["provider"] == "cli":
        src = Path(rec["url"])
        if not src.is_file():
            raise PermanentError(f"no such file: {src}")
        dest.mkdir(parents=True, exist_ok=True)
        path = Path(shutil.copy(src, dest / src.name))
        got = fetch.Downloaded(path, sha256_file(path), path.stat().st_size, "audio/unknown")
    else:
        url, kwargs = provider.resolve_recording(call["record"], rec)
        allow = ["*"] if call["provider"] == "cli" else tenant.get("allow_hosts", [])
        got = fetch.download(provider.http, url, dest, allow_hosts=allow,
                             max_bytes=int(rt.settings["MAX_RECORDING_MB"]) * 1024 * 1024, request_kwargs=kwargs)
    try:
        info = audio.probe(got.path)
    except audio.AudioError as err:
        raise PermanentError(f"recording is not decodable audio: {err}") from err
    storage.save_recording(db, call["id"], key, path=str(got.path), sha256=got.sha256, mime=got.mime,
                           size_bytes=got.size_bytes, duration_s=info["duration_s"], channels=info["channels"],
                           sample_rate=info["sample_rate"])


# -- transcript ----------------------------------------------------------------------------------

def channel_roles(call: dict, tenant: dict, rec_meta: dict | None, n_channels: int) -> list[str]:
    """Speaker per channel: the recording's declared layout, else provider/tenant config, else unknown."""
    if n_channels == 1:
        declared = (rec_meta or {}).get("channels")
        return [declared[0]] if declared and len(declared) == 1 else ["unknown"]
    declared = (rec_meta or {}).get("channels")
    if declared and len(declared) == 2:
        return list(declared)
    prov = tenant.get("providers", {}).get(call["provider"], {})
    return list(prov.get("channels") or tenant.get("channels") or ["operator", "client"])


def stage_transcript(rt, db, call: dict, tenant: dict) -> None:
    """Transcribe the call's recordings (one after another in time) unless a transcript exists."""
    cid = call["id"]
    if storage.get_transcript(db, cid) is not None or _stage_done(db, cid, "transcript"):
        return
    recs = storage.get_recordings(db, cid)
    if not recs:
        storage.save_stage(db, cid, "transcript", "skipped", detail={"reason": "no recording"})
        return
    storage.save_stage(db, cid, "transcript", "running")
    meta_by_key = {recording_key(r): r for r in call["record"].get("recordings") or []}
    engine = rt.stt()
    utterances: list[Utterance] = []
    offset, audio_total, cpu0 = 0.0, 0.0, time.process_time()
    for rec in recs:
        try:
            decoded = audio.decode(rec["path"])
        except audio.AudioError as err:
            storage.save_stage(db, cid, "transcript", "failed", error=f"recording is not decodable audio: {err}")
            raise PermanentError(f"recording is not decodable audio: {err}") from err
        decoded = audio.collapse_fake_stereo(decoded)
        roles = channel_roles(call, tenant, meta_by_key.get(rec["recording_key"]), len(decoded.channels))
        if len(roles) == 1 and len(decoded.channels) == 2:
            decoded = audio.mixdown(decoded)
        for u in engine.transcribe(decoded, roles):
            utterances.append(Utterance(u.speaker, round(u.start_s + offset, 2), round(u.end_s + offset, 2), u.text))
        offset += decoded.duration_s
        audio_total += decoded.duration_s
    cpu_s = time.process_time() - cpu0
    storage.save_transcript(db, cid, engine.name, engine.engine_id, "ru", [u.to_dict() for u in utterances],
                            round(audio_total, 2), round(cpu_s, 2))
    storage.save_stage(db, cid, "transcript", "done", detail={"utterances": len(utterances), "audio_s": round(audio_total, 1)})


# -- analysis ------------------------------------------------------------------------------------

def analysis_input(db, call: dict) -> tuple[list[Utterance], dict[str, Any]]:
    """Utterances and the call mapping the matcher sees (record + metrics)."""
    transcript = storage.get_transcript(db, call["id"])
    utts = [Utterance.from_dict(u) for u in (transcript["utterances"] if transcript else [])]
    record = dict(call["record"])
    metrics = compute_metrics(record, utts, transcript["audio_s"] if transcript else None)
    record["metrics"] = metrics
    attribution = record.get("attribution") or {}
    record.setdefault("source_channel", attribution.get("source"))
    return utts, record


def analyse_call(rt, db, call: dict, ruleset) -> dict:
    """Run the rules on a stored call (no storing): the read API's analysis object."""
    from service.matcher import analyse
    utts, record = analysis_input(db, call)
    started = record.get("started_at") or call["created_at"]

    def history(phone: str, days: float) -> int:
        return storage.count_earlier_calls(db, phone, started, days, call["id"])

    result = analyse(ruleset, utts, record, history=history)
    result["metrics"] = record["metrics"]
    return result


def stage_analysis(rt, db, call: dict) -> None:
    """Tag the call with the live rule set, once per rules version."""
    cid = call["id"]
    ruleset = rt.rules.current()
    if storage.get_analysis(db, cid, ruleset.version) is not None:
        return
    result = analyse_call(rt, db, call, ruleset)
    storage.save_analysis(db, cid, ruleset.version, result)
    storage.save_stage(db, cid, "analysis", "done", detail={"rules_version": ruleset.version})


# -- crm -----------------------------------------------------------------------------------------

def stage_crm(rt, db, call: dict, tenant: dict) -> None:
    """Write the current analysis to the tenant's CRM (skipped for crm.kind none)."""
    cid = call["id"]
    crm_conf = tenant.get("crm") or {"kind": "none"}
    if crm_conf.get("kind", "none") == "none":
        storage.save_stage(db, cid, "crm", "skipped", detail={"reason": "no CRM configured"})
        return
    from service.crm_stage import write_to_crm
    write_to_crm(rt, db, call, tenant, crm_conf)
