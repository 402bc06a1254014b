"""`python -m service process` on a real recording, as a user runs it."""
from __future__ import annotations

import json
import os
import subprocess
import sys

from support import REPO, RULES_DIR


def run_cli(args, data_dir):
    env = {**os.environ, "CALLTAG_DATA_DIR": str(data_dir), "CALLTAG_RULES_DIR": str(RULES_DIR), "PYTHONPATH": str(REPO)}
    env.pop("CALLTAG_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "service", *args], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=600)


def test_cli_process_json_prints_the_read_api_object(data_dir):
    out = run_cli(["process", str(REPO / "tests/data/calls/a_07_carservice.mp3"), "--json",
                   "--channels", "operator,client"], data_dir)
    assert out.returncode == 0, out.stderr
    view = json.loads(out.stdout)
    assert set(view) == {"call", "transcript", "analysis"}
    assert view["call"]["state"] == "done"
    assert [u["speaker"] for u in view["transcript"]][:2] == ["operator", "client"]
    assert set(view["transcript"][0]) == {"speaker", "start_s", "end_s", "text"}
    assert "topic_price" in view["analysis"]["groups"]["topic"]
    assert isinstance(view["analysis"]["checkpoints"], dict)
    assert view["analysis"]["metrics"]["utterances_client"] == 3


def test_cli_process_text_and_errors(data_dir):
    out = run_cli(["process", str(REPO / "tests/data/real/pisets/test_sound_ru.wav")], data_dir)
    assert out.returncode == 0, out.stderr
    assert "Говорящий:" in out.stdout and "Теги:" in out.stdout
    missing = run_cli(["process", "/nonexistent.mp3"], data_dir)
    assert missing.returncode == 2 and "no such file" in missing.stderr
    bad = run_cli(["process", "x.mp3", "--channels", "boss,client"], data_dir)
    assert bad.returncode == 2


def test_cli_without_command_prints_usage(data_dir):
    out = run_cli([], data_dir)
    assert out.returncode == 2 and "process PATH_OR_URL" in out.stdout
