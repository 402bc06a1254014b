"""Adapter registry: kind -> name -> "module:Class", imported lazily when selected."""
from __future__ import annotations

import importlib
from typing import Any

from integrations.base import NotConfiguredError

REGISTRY: dict[str, dict[str, str]] = {
    "calltracking": {
        "generic": "integrations.calltracking.generic:GenericJson",
        "calltouch": "integrations.calltracking.calltouch:Calltouch",
        "uis": "integrations.calltracking.uis:Uis",
        "comagic": "integrations.calltracking.uis:Comagic",
        "callgear": "integrations.calltracking.uis:Callgear",
        "mango": "integrations.calltracking.mango:Mango",
        "zadarma": "integrations.calltracking.zadarma:Zadarma",
        "novofon": "integrations.calltracking.zadarma:Novofon",
        "sipuni": "integrations.calltracking.sipuni:Sipuni",
        "roistat": "integrations.calltracking.roistat:Roistat",
        "binotel": "integrations.calltracking.binotel:Binotel",
        "twilio": "integrations.calltracking.twilio:Twilio",
        "callrail": "integrations.calltracking.callrail:CallRail",
    },
    "stt": {
        "whisper_local": "integrations.stt.whisper_local:WhisperLocal",
    },
    "crm": {
        "amocrm": "integrations.crm.amocrm:AmoCrm",
        "kommo": "integrations.crm.amocrm:AmoCrm",
        "bitrix24": "integrations.crm.bitrix24:Bitrix24",
    },
}


def adapter_class(kind: str, name: str) -> Any:
    """Import and return the adapter class registered under kind/name."""
    try:
        target = REGISTRY[kind][name]
    except KeyError as err:
        raise NotConfiguredError(f"unknown {kind} adapter '{name}'") from err
    module_name, _, cls_name = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise NotConfiguredError(f"{kind} adapter '{name}' is not available: {err}") from err
    return getattr(module, cls_name)


def available(kind: str) -> list[str]:
    """Names registered for a kind whose module can be imported."""
    names = []
    for name in REGISTRY[kind]:
        try:
            adapter_class(kind, name)
        except NotConfiguredError:
            continue
        names.append(name)
    return names
