"""Numbers from the environment: a bad one is one line naming the variable and what it takes, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.app.service import Workspace
from core.runs.jobs import JobQueue, ProcessLauncher
from core.runs.store import RunStore
from core.settings import SettingError, env_float, env_int

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("raw", ["lots", "0", "-5", "nan", "inf", "1e999", "²", "٣", "3 s"])
def test_env_float_refuses_what_is_not_a_positive_number(monkeypatch, raw):
    monkeypatch.setenv("PTUNE_X", raw)
    with pytest.raises(SettingError) as err:
        env_float("PTUNE_X", 7.0, above=0)
    message = str(err.value)
    assert len(message.splitlines()) == 1 and message.startswith(f"PTUNE_X={raw!r} cannot be used")
    assert "a number above 0 (default 7)" in message


def test_env_numbers_read_their_value_or_default(monkeypatch):
    monkeypatch.delenv("PTUNE_X", raising=False)
    assert env_float("PTUNE_X", 7.5, above=0) == 7.5
    monkeypatch.setenv("PTUNE_X", " 2.5 ")
    assert env_float("PTUNE_X", 7.5, above=0) == 2.5
    monkeypatch.setenv("PTUNE_X", "0")
    assert env_int("PTUNE_X", 1, at_least=0) == 0
    monkeypatch.setenv("PTUNE_X", "2.5")
    with pytest.raises(SettingError, match="takes a whole number at least 0"):
        env_int("PTUNE_X", 1, at_least=0)


def _run(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *argv], cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=120
    )


def test_a_bad_cache_size_is_one_line_from_the_cli(tmp_path):
    """It was read at import: exit 1 and a traceback before the CLI could say anything."""
    done = _run({"PTUNE_PREFIX_CACHE_MB": "lots"}, "-m", "core", "models", "info", "--backbone", str(tmp_path))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "error: PTUNE_PREFIX_CACHE_MB='lots' cannot be used: it takes a number above 0 "
        "(default: a quarter of the free memory); set it so, or unset it"
    ]


def test_a_bad_idle_time_is_one_line_from_the_worker(tmp_path):
    done = _run({"PTUNE_WORKER_IDLE_S": "soon"}, "-m", "core.runs.worker", "--home", str(tmp_path))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: PTUNE_WORKER_IDLE_S='soon' cannot be used")
    assert not (tmp_path / "runs.db").exists()  # refused before it registered anywhere


@pytest.mark.parametrize(
    "name, raw",
    [("PTUNE_HEARTBEAT_STALE_S", "a minute"), ("PTUNE_HEARTBEAT_STALE_S", "0"), ("PTUNE_WORKER_IDLE_S", "-1")],
)
def test_the_workspace_refuses_a_bad_setting_in_one_line(monkeypatch, tmp_path, name, raw):
    """What the app shows: read when the Workspace is made, not at import (where a bad value crashed it)."""
    monkeypatch.setenv(name, raw)
    with pytest.raises(SettingError) as err:
        Workspace(tmp_path / "home", devices=["cpu"])
    assert str(err.value).startswith(f"{name}={raw!r} cannot be used") and "\n" not in str(err.value)
    assert not (tmp_path / "home").exists()


def test_a_stale_limit_below_the_heartbeat_is_refused(monkeypatch, tmp_path):
    """Below the 1 s heartbeat every live worker would look gone between two beats."""
    monkeypatch.setenv("PTUNE_HEARTBEAT_STALE_S", "0.5")
    with RunStore(tmp_path / "runs.db") as store, pytest.raises(SettingError, match="a number above 1 "):
        JobQueue(store, ProcessLauncher(["true"], log_dir=tmp_path), devices=["cpu"])
