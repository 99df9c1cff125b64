"""Runs live in worker processes, not in whoever launched them: real processes, real signals, a real store."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from core.app.service import Workspace
from core.runs.jobs import pid_alive
from core.runs.store import RunStore
from tests.test_workspace import ALICE, request

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 120.0


def wait_running(store: RunStore, run_id: str, *, min_step: int = 1, timeout: float = TIMEOUT) -> dict:
    """Until the run is running in a worker and has reported `min_step` steps; the run row."""
    deadline = time.monotonic() + timeout
    while True:
        run = store.get_run(run_id)
        if run["status"] == "running" and run["progress_step"] >= min_step and run["worker"]:
            return run
        assert run["status"] in ("queued", "running"), run["status"]
        assert time.monotonic() < deadline, f"run {run_id} did not start: {run['status']}"
        time.sleep(0.1)


def kill_worker_of(store: RunStore, run_id: str) -> int:
    """SIGKILL the worker process running the run (as the OOM killer would); its pid."""
    worker = store.get_run(run_id)["worker"]
    pid = next(w["pid"] for w in store.workers() if w["id"] == worker)
    assert pid != os.getpid()
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return pid


def test_a_run_survives_sigkill_of_the_process_that_launched_it(tmp_path: Path, tiny_gpt2: Path) -> None:
    """The launcher (a script standing in for the web server) queues a trained run and is SIGKILLed while the run
    trains: the worker goes on and the run succeeds, as the same run, with no resume."""
    home = tmp_path / "home"
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from core.app.service import Workspace
        from tests.test_workspace import ALICE, request
        ws = Workspace({str(home)!r})
        options = {{"patience": 0, "eval_every": 10}}
        req = request({str(tiny_gpt2)!r}, seeds=[0], methods={{"prompt_tuning": options}}, max_steps=400, tune=False)
        print(ws.user(ALICE).launch(req), flush=True)
        time.sleep(600)
        """
    )
    launcher = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    group = launcher.stdout.readline().strip()
    assert group, "the launcher printed no group id"
    with RunStore(home / "runs.db") as store:
        (row,) = store.list_runs(group_id=group)
        running = wait_running(store, row["id"], min_step=2)
        launcher.kill()  # SIGKILL: no atexit, no cleanup
        launcher.wait(10)
        step_at_kill = max(m["step"] for m in store.metrics(row["id"]) if m["name"] == "loss")
        ws = Workspace(home)  # the server starting again: it must leave the live run alone
        try:
            assert ws.jobs.wait(row["id"], TIMEOUT) == "succeeded"
            final = store.get_run(row["id"])
            trained = [m["step"] for m in store.metrics(row["id"]) if m["name"] == "loss"]
            assert final["worker"] == running["worker"] and max(trained) == 400 > step_at_kill  # it trained on
            assert len(store.list_runs(group_id=group)) == 1  # the same run finished: nothing was resumed
            assert ws.user(ALICE).summary(group)["methods"][0]["method"] == "prompt_tuning"
        finally:
            ws.close()


def test_a_killed_worker_interrupts_its_own_run_only_and_it_resumes(tmp_path: Path, tiny_gpt2: Path) -> None:
    """SIGKILL the worker mid-run: that run becomes interrupted and resumable, the run queued behind it gets a new
    worker and succeeds, the workspace keeps answering, and the resumed run continues from its checkpoint."""
    ws = Workspace(tmp_path / "home")
    try:
        options = {"prompt_tuning": {"patience": 0, "eval_every": 5, "checkpoint_every": 5}, "baseline": {}}
        group = ws.user(ALICE).launch(request(tiny_gpt2, seeds=[0], methods=options, max_steps=2000, tune=False))
        runs = {r["method"]: r for r in ws.user(ALICE).runs(group)}
        wait_running(ws.store, runs["prompt_tuning"]["id"], min_step=12)
        kill_worker_of(ws.store, runs["prompt_tuning"]["id"])
        assert ws.jobs.wait(runs["prompt_tuning"]["id"], TIMEOUT) == "interrupted"
        assert ws.jobs.wait(runs["baseline"]["id"], TIMEOUT) == "succeeded"  # a new worker took the queue
        card = next(r for r in ws.user(ALICE).runs(group) if r["id"] == runs["prompt_tuning"]["id"])
        assert card["resumable"] and card["finished"] is not None and "worker" in card["error"]
        new_id = ws.user(ALICE).resume(card["id"])
        wait_running(ws.store, new_id, min_step=1)
        deadline = time.monotonic() + TIMEOUT
        while not ws.store.metrics(new_id):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        first_step = min(m["step"] for m in ws.store.metrics(new_id))
        assert first_step > 5  # continued from a checkpoint, not from step 1
        assert ws.user(ALICE).cancel(new_id) and ws.jobs.wait(new_id, TIMEOUT) == "cancelled"
    finally:
        ws.close()


@pytest.fixture(autouse=True)
def no_worker_left(tmp_path: Path):
    """A failed test must not leave its worker training 100,000 steps: one did, and slowed every later test."""
    yield
    import psutil  # noqa: PLC0415

    for proc in psutil.process_iter(["cmdline"]):
        if str(tmp_path) in " ".join(proc.info["cmdline"] or []):
            with contextlib.suppress(psutil.Error):
                proc.kill()


def pause_between_writes(store: RunStore, pid: int) -> None:
    """SIGSTOP the process at a moment it holds no write lock on the store (a pause inside a transaction would
    block every other process until it resumes, which is SQLite's business, not this test's)."""
    while True:
        os.kill(pid, signal.SIGSTOP)
        wait_stopped(pid)  # the signal lands a moment later: probing before that let a last write slip in
        try:
            with contextlib.closing(sqlite3.connect(store.path, timeout=0.5, isolation_level=None)) as probe:
                probe.execute("BEGIN IMMEDIATE")
                probe.execute("ROLLBACK")
            return
        except sqlite3.OperationalError:  # paused mid-write: let it finish and try again
            os.kill(pid, signal.SIGCONT)
            time.sleep(0.05)


def wait_stopped(pid: int) -> None:
    """Until every thread of `pid` is stopped (state T in /proc): SIGSTOP is delivered asynchronously."""
    deadline = time.monotonic() + TIMEOUT
    tasks = Path(f"/proc/{pid}/task")
    while not all(_state(t / "stat") in ("T", "t", "") for t in tasks.iterdir()):
        assert time.monotonic() < deadline, f"worker {pid} did not stop"
        time.sleep(0.01)


def _state(stat: Path) -> str:
    try:
        return stat.read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return ""  # a thread that ended meanwhile


def written_off(ws: Workspace, run_id: str) -> dict:
    """Until the workspace's liveness check marks the run interrupted (its worker silent past the limit)."""
    deadline = time.monotonic() + TIMEOUT
    while ws.store.get_run(run_id)["status"] != "interrupted":
        assert time.monotonic() < deadline, "the paused worker was never written off"
        ws.jobs.check(force=True)
        time.sleep(0.2)
    return ws.store.get_run(run_id)


def wait_exit(pid: int) -> None:
    deadline = time.monotonic() + TIMEOUT
    while pid_alive(pid):
        assert time.monotonic() < deadline, f"worker {pid} did not exit"
        time.sleep(0.05)


def trained_run(ws: Workspace, tiny_gpt2: Path) -> tuple[dict, Path]:
    """A long prompt-tuning run, checkpointed every 5 steps, running in a worker process past its first
    checkpoint; the run row and its checkpoint file."""
    options = {"prompt_tuning": {"patience": 0, "eval_every": 5, "checkpoint_every": 5}}
    group = ws.user(ALICE).launch(request(tiny_gpt2, seeds=[0], methods=options, max_steps=100_000, tune=False))
    (row,) = ws.user(ALICE).runs(group)
    wait_running(ws.store, row["id"], min_step=12)
    ckpt = Path(ws.store.get_run(row["id"])["config"]["options"]["checkpoint_dir"]) / "checkpoint.safetensors"
    assert ckpt.is_file()
    return ws.store.get_run(row["id"]), ckpt


def worker_pid(store: RunStore, run: dict) -> int:
    return next(w["pid"] for w in store.workers() if w["id"] == run["worker"])


def test_a_worker_paused_past_the_heartbeat_limit_writes_nothing_when_it_wakes(tmp_path: Path, tiny_gpt2: Path):
    """SIGSTOP a training worker until it is written off (its run interrupted), then SIGCONT it: it writes no
    metric, checkpoint or outcome to the run shown as interrupted, and exits."""
    ws = Workspace(tmp_path / "home")
    try:
        ws.jobs.stale_after = 2.0
        run, ckpt = trained_run(ws, tiny_gpt2)
        pid = worker_pid(ws.store, run)
        pause_between_writes(ws.store, pid)
        try:
            before = written_off(ws, run["id"])
            metrics, saved = len(ws.store.metrics(run["id"])), ckpt.read_bytes()
        finally:
            os.kill(pid, signal.SIGCONT)
        wait_exit(pid)
        assert ws.store.get_run(run["id"]) == before and len(ws.store.metrics(run["id"])) == metrics
        assert ckpt.read_bytes() == saved and before["result"] is None
        assert ws.store.workers() == []
    finally:
        ws.close()


def test_a_paused_worker_whose_run_was_resumed_stops_and_leaves_the_device_to_the_resume(
    tmp_path: Path, tiny_gpt2: Path
):
    """Written off while paused, its run resumed by a new worker on the same device and checkpoint folder, then
    SIGCONT: the old worker writes nothing more and exits while the resumed run trains on, alone."""
    ws = Workspace(tmp_path / "home")
    try:
        ws.jobs.stale_after = 2.0
        run, _ = trained_run(ws, tiny_gpt2)
        pid = worker_pid(ws.store, run)
        pause_between_writes(ws.store, pid)
        try:
            before = written_off(ws, run["id"])
            metrics = len(ws.store.metrics(run["id"]))
            new_id = ws.user(ALICE).resume(run["id"])
            resumed = wait_running(ws.store, new_id, min_step=before["progress_step"] + 5)
            assert worker_pid(ws.store, resumed) != pid
        finally:
            os.kill(pid, signal.SIGCONT)
        wait_exit(pid)
        assert ws.store.get_run(run["id"]) == before and len(ws.store.metrics(run["id"])) == metrics
        now = ws.store.get_run(new_id)
        assert now["status"] == "running" and now["worker"] == resumed["worker"]
        assert [w["pid"] for w in ws.store.workers()] == [worker_pid(ws.store, resumed)]  # one worker, one device
        assert ws.user(ALICE).cancel(new_id) and ws.jobs.wait(new_id, TIMEOUT) == "cancelled"
    finally:
        ws.close()


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory) -> Path:
    from tests.tiny_models import save_tiny

    return save_tiny("gpt2", tmp_path_factory.mktemp("models") / "tiny-gpt2")
