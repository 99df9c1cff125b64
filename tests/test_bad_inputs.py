"""The bad-input corpus (tests/data/bad/cases.json): every case exits 2 with exactly its one-line message, creates no
output, and never touches a model; plus the same through a real subprocess (no traceback, no retry spew)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import constants

from core.cli import main

ROOT = Path(__file__).resolve().parent.parent
BAD = ROOT / "tests" / "data" / "bad"
CASES = json.loads((BAD / "cases.json").read_text(encoding="utf-8"))


def _fill(text: str, subs: dict[str, str]) -> str:
    for key, value in subs.items():
        text = text.replace(key, value)
    return text


def test_every_file_in_the_corpus_is_a_case():
    used = {Path(arg).name for case in CASES for arg in case["argv"] if arg.startswith("{bad}/")}
    assert used == {p.name for p in BAD.iterdir()} - {"cases.json"}
    assert len({c["case"] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c["case"] for c in CASES])
def test_bad_input_exits_2_with_its_one_line(case, keyword_csv, tmp_path, capsys, monkeypatch):
    (tmp_path / "existing.txt").write_text("not a folder\n")
    subs = {"{bad}": str(BAD), "{data}": str(keyword_csv), "{tmp}": str(tmp_path)}
    if case.get("env", {}).get("HF_HUB_OFFLINE"):
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # read at import, so the env var alone is too late
    assert main([_fill(a, subs) for a in case["argv"]]) == 2
    assert capsys.readouterr().err.splitlines() == [f"error: {_fill(case['error'], subs)}"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing.txt", "keywords.csv"]  # no partial output


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "core", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )


@pytest.mark.parametrize(
    "env",
    [{"HF_HUB_OFFLINE": "1"}, {"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9"}],
    ids=["offline", "hub-unreachable"],
)
def test_unreachable_hub_id_is_one_line_without_retries(env):
    done = _cli("models", "info", "--backbone", "ptune-studio-tests/no-such-model", env=env)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "the Hugging Face Hub is unreachable" in lines[0], done.stderr
