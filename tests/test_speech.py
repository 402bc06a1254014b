"""The bundled Whisper base model: assembled once from two packages, checked, reused."""
from __future__ import annotations

import pytest

from service import speech


def test_bundled_model_is_joined_verified_and_reused(tmp_path):
    path = speech.ensure_bundled_model(tmp_path)
    assert (path / "model.bin").stat().st_size == 94371840 + 50845767
    assert speech.sha256_file(path / "model.bin") == speech.BUNDLED_SHA256
    assert {p.name for p in path.iterdir()} >= {"model.bin", "config.json", "tokenizer.json", "vocabulary.json"}
    mtime = (path / "model.bin").stat().st_mtime_ns
    assert speech.ensure_bundled_model(tmp_path) == path
    assert (path / "model.bin").stat().st_mtime_ns == mtime


def test_bundled_model_with_wrong_checksum_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(speech, "BUNDLED_SHA256", "0" * 64)
    with pytest.raises(speech.ModelError, match="sha256"):
        speech.ensure_bundled_model(tmp_path)
    assert not (tmp_path / "models" / speech.BUNDLED_NAME / "model.bin").exists()


def test_custom_model_dir_must_hold_a_model(tmp_path):
    with pytest.raises(speech.ModelError, match="no model.bin"):
        speech.model_path({"WHISPER_MODEL": str(tmp_path), "DATA_DIR": tmp_path})
