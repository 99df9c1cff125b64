"""Probes of the run store's trust guarantees, from a user's point of view (issue 33 items 1, 6 and 9).

Each probe attacks one promise — a written-off worker writes nothing more, a damaged store says which file and how
to restore it, one run at a time per GPU whoever starts it — against the real SQLite store, real `Worker`s and
real processes (no model is loaded), and returns (passed, what it saw). Prints one line per probe and the count.

    .venv/bin/python benchmarks/probes_trust_runs.py
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from probe_runner import Probes, Result  # noqa: E402  (beside this script)

from core import cli  # noqa: E402
from core.engine import training  # noqa: E402
from core.progress import ClaimLost, claim_held  # noqa: E402
from core.runs.device_claim import DeviceBusy, DeviceClaim  # noqa: E402
from core.runs.jobs import HOST, ProcessLauncher, Worker  # noqa: E402
from core.runs.store import RunStore, StoreDamaged, backup_path  # noqa: E402
from tests.test_worker_processes import pause_between_writes  # noqa: E402

PROBES = Probes()


probe = PROBES.add


@contextlib.contextmanager
def store_at(folder: Path) -> Iterator[RunStore]:
    with RunStore(folder / "runs.db") as store:
        yield store


def running_run(store: RunStore, device: str = "cpu", worker: str = "w1") -> tuple[str, object]:
    """A run claimed by `worker` (registered here); (run id, claim)."""
    run_id = store.create_run(method="m", label="probe run", config={}, group_id="g")
    store.set_device(run_id, device)
    store.register_worker(worker, device, HOST, os.getpid(), local=False)
    return run_id, store.claim(worker, device=device)


def written_off(store: RunStore) -> None:
    """What the server does to a worker silent past the heartbeat limit, whatever its clock."""
    store.reap(lambda w: True, stale_after=-1.0)


def refused(write: Callable[[], object]) -> bool:
    try:
        write()
    except ClaimLost:
        return True
    return False


# -- 1. a written-off worker writes nothing more ----------------------------------------------------------------


@probe
def stale_progress_is_refused(tmp: Path) -> Result:
    """A written-off worker's progress and metric rows are refused; the run's curve stops where it was."""
    with store_at(tmp) as store:
        run_id, claim = running_run(store)
        store.record_progress(run_id, 1, 9, {"loss": 1.0}, claim=claim)
        written_off(store)
        ok = refused(lambda: store.record_progress(run_id, 2, 9, {"loss": 0.5}, claim=claim))
        rows = len(store.metrics(run_id))
    return ok and rows == 1, f"refused={ok}, metric rows={rows} (1 expected)"


@probe
def stale_outcome_is_refused(tmp: Path) -> Result:
    """A written-off worker cannot turn its interrupted run into 'succeeded' (the STALE_S=0 symptom)."""
    with store_at(tmp) as store:
        run_id, claim = running_run(store)
        written_off(store)
        ok = refused(lambda: store.set_status(run_id, "succeeded", claim=claim))
        status = store.get_run(run_id)["status"]
    return ok and status == "interrupted", f"refused={ok}, status={status}"


@probe
def stale_result_is_refused(tmp: Path) -> Result:
    """A written-off worker's result is refused."""
    with store_at(tmp) as store:
        run_id, claim = running_run(store)
        written_off(store)
        ok = refused(lambda: store.save_result(run_id, {"accuracy": 1.0}, claim=claim))
        result = store.get_run(run_id)["result"]
    return ok and result is None, f"refused={ok}, result={result}"


@probe
def stale_artifact_is_refused(tmp: Path) -> Result:
    """A written-off worker cannot attach a prompt file to the run."""
    with store_at(tmp) as store:
        run_id, claim = running_run(store)
        written_off(store)
        ok = refused(lambda: store.add_artifact(run_id, "prompt", "/tmp/x.json", claim=claim))
        arts = store.get_run(run_id)["artifacts"]
    return ok and arts == [], f"refused={ok}, artifacts={arts}"


@probe
def written_off_worker_claims_nothing(tmp: Path) -> Result:
    """A written-off worker takes no queued run (another worker may serve the device by now)."""
    with store_at(tmp) as store:
        running_run(store)
        written_off(store)
        queued = store.create_run(method="m", label="q", config={})
        store.set_device(queued, "cpu")
        claim = store.claim("w1", device="cpu")
    return claim is None, f"claim={claim}"


@probe
def written_off_idle_heartbeat_says_so(tmp: Path) -> Result:
    """An idle worker written off learns it at its next heartbeat (ClaimLost) instead of beating on."""
    with store_at(tmp) as store:
        store.register_worker("idle", "cpu", HOST, os.getpid())
        written_off(store)
        ok = refused(lambda: store.heartbeat("idle"))
    return ok, f"heartbeat raised ClaimLost={ok}"


@probe
def resumed_run_is_not_touched_by_the_old_worker(tmp: Path) -> Result:
    """After a resume, the old worker's claim writes to neither run; the new worker's writes go through."""
    with store_at(tmp) as store:
        old_id, old = running_run(store, worker="old")
        written_off(store)
        new_id, new = running_run(store, worker="new")
        store.record_progress(new_id, 1, 9, {"loss": 1.0}, claim=new)
        ok = refused(lambda: store.record_progress(old_id, 5, 9, {"loss": 0.1}, claim=old))
        ok_new = refused(lambda: store.record_progress(new_id, 5, 9, {"loss": 0.1}, claim=old._replace(run_id=new_id)))
        rows = (len(store.metrics(old_id)), len(store.metrics(new_id)))
    return ok and ok_new and rows == (0, 1), f"old fenced={ok}, cross-write fenced={ok_new}, rows={rows}"


@probe
def requeued_run_fences_the_previous_epoch(tmp: Path) -> Result:
    """The same run re-queued and claimed again: the earlier claim (same run id) is fenced by its epoch."""
    with store_at(tmp) as store:
        run_id, first = running_run(store, worker="a")
        written_off(store)
        store.set_status(run_id, "queued")
        store.register_worker("b", "cpu", HOST, os.getpid(), local=False)
        second = store.claim("b", device="cpu")
        fenced = refused(lambda: store.record_progress(run_id, 3, 9, {}, claim=first._replace(worker="b")))
        store.record_progress(run_id, 3, 9, {}, claim=second)
    return fenced and second.epoch == first.epoch + 2, f"epochs {first.epoch} -> {second.epoch}, old fenced={fenced}"


@probe
def checkpoint_is_not_written_after_the_claim_is_lost(tmp: Path) -> Result:
    """A training checkpoint is not replaced by a worker whose claim was taken (another attempt may read it)."""
    param = torch.nn.Parameter(torch.zeros(3))
    opt = torch.optim.AdamW([param])
    path = tmp / "checkpoint.safetensors"
    training.save_checkpoint(path, "k", {"p": param}, {}, opt, training.LoopState(step=5))
    before = path.read_bytes()

    def lost() -> None:
        raise ClaimLost("taken")

    with claim_held(lost):
        ok = refused(lambda: training.save_checkpoint(path, "k", {"p": param}, {}, opt, training.LoopState(step=9)))
    return ok and path.read_bytes() == before, f"refused={ok}, file unchanged={path.read_bytes() == before}"


@probe
def healthy_worker_written_off_ends_interrupted(tmp: Path) -> Result:
    """A healthy worker written off mid-run (heartbeat limit below its beat) leaves the run interrupted, never
    'succeeded', and stops serving."""
    with store_at(tmp) as store:
        run_id = store.create_run(method="m", label="r", config={})
        store.set_device(run_id, "cpu")
        go = threading.Event()

        def job(progress, should_stop):
            progress(1, 2, {"loss": 1.0})
            go.wait(10)
            progress(2, 2, {"loss": 0.5})
            return {"accuracy": 1.0}

        worker = Worker(RunStore(store.path), "cpu", lambda run: job, idle_exit_s=0, heartbeat_s=0.05, poll_s=0.01)
        thread = threading.Thread(target=worker.serve)
        thread.start()
        deadline = time.monotonic() + 10
        while store.get_run(run_id)["progress_step"] < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        written_off(store)
        go.set()
        thread.join(10)
        worker.store.close()
        status = store.get_run(run_id)["status"]
    return status == "interrupted" and not thread.is_alive(), f"status={status}, worker exited={not thread.is_alive()}"


@probe
def paused_process_wakes_and_writes_nothing(tmp: Path) -> Result:
    """A real worker process SIGSTOPped, written off, then SIGCONTed writes no more rows and exits."""
    db = tmp / "runs.db"
    with RunStore(db) as store:
        run_id = store.create_run(method="m", label="r", config={})
        store.set_device(run_id, "cpu")
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(ROOT)!r})
        from core.runs.jobs import Worker
        from core.runs.store import RunStore
        def job(progress, should_stop):
            for step in range(1, 100000):
                progress(step, 100000, {{"loss": 1.0}})
                time.sleep(0.01)
            return {{}}
        with RunStore({str(db)!r}) as store:
            Worker(store, "cpu", lambda run: job, idle_exit_s=0, heartbeat_s=0.2, progress_interval=0.05).serve()
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    with RunStore(db) as store:
        deadline = time.monotonic() + 30
        while store.get_run(run_id)["progress_step"] < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        pause_between_writes(store, proc.pid)
        written_off(store)
        rows = len(store.metrics(run_id))
        os.kill(proc.pid, signal.SIGCONT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        after = len(store.metrics(run_id))
        status = store.get_run(run_id)["status"]
    ok = after == rows and status == "interrupted" and proc.returncode == 0
    return ok, f"rows {rows} -> {after}, status={status}, exit={proc.returncode}"


@probe
def launcher_replaces_a_written_off_worker(tmp: Path) -> Result:
    """The server starts a new worker for a device whose worker was written off but lingers (paused)."""
    launcher = ProcessLauncher([sys.executable, "-c", "import time; time.sleep(60)"], log_dir=tmp / "logs")
    with store_at(tmp) as store:
        launcher.ensure("cpu", store)
        first = launcher._started["cpu"]
        store.register_worker("lingering", "cpu", HOST, first.pid)
        launcher.check(store, [])
        written_off(store)
        launcher.ensure("cpu", store)
        second = launcher._started["cpu"]
    for proc in {first, second}:
        proc.kill()
        proc.wait()
    return second is not first, f"first pid {first.pid}, second pid {second.pid}"


# -- 6. a damaged store ------------------------------------------------------------------------------------------


def damaged_store(tmp: Path) -> tuple[RunStore, Path, bytes]:
    """A store with a good copy, then cut to 100 bytes under its open connection."""
    store = RunStore(tmp / "runs.db")
    run_id = store.create_run(method="m", label="kept", config={})
    copy = store.backup()
    store.record_progress(run_id, 1, 1, {f"m{i}": float(i) for i in range(2000)})
    with sqlite3.connect(store.path) as other:
        other.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with open(store.path, "r+b") as f:
        f.truncate(100)
    return store, copy, copy.read_bytes()


@probe
def truncated_store_names_file_and_copy(tmp: Path) -> Result:
    """runs.db cut to 100 bytes while open: the error is one line naming the file and the copy to restore."""
    store, copy, _ = damaged_store(tmp)
    try:
        store.list_runs()
        return False, "no error"
    except StoreDamaged as err:
        msg = str(err)
        return "\n" not in msg and str(store.path) in msg and str(copy) in msg, msg[:160]
    finally:
        store.close()


@probe
def damaged_store_never_overwrites_the_copy(tmp: Path) -> Result:
    """Backing up a damaged store is refused and the last good copy stays byte for byte."""
    store, copy, good = damaged_store(tmp)
    try:
        store.backup()
        refused_backup = False
    except StoreDamaged:
        refused_backup = True
    store.close()
    return refused_backup and copy.read_bytes() == good, f"refused={refused_backup}"


@probe
def garbage_file_is_named_on_open(tmp: Path) -> Result:
    """A runs.db overwritten with other bytes: opening it says which file and what to do, in one line."""
    path = tmp / "runs.db"
    path.write_bytes(b"this is not a database" * 10)
    try:
        RunStore(path).close()
        return False, "opened"
    except StoreDamaged as err:
        msg = str(err)
        return str(path) in msg and "\n" not in msg and "start anew" in msg, msg[:160]


@probe
def deleted_store_comes_back(tmp: Path) -> Result:
    """runs.db deleted while open: the runs go on, the copy keeps them, and the next start restores them."""
    store = RunStore(tmp / "runs.db")
    run_id = store.create_run(method="m", label="kept", config={})
    store.path.unlink()
    store.record_progress(run_id, 1, 1, {"loss": 1.0})
    store.backup()
    store.close()
    with RunStore(tmp / "runs.db") as again:
        labels = [r["label"] for r in again.list_runs()]
        ok = again.restored and labels == ["kept"] and len(again.metrics(run_id)) == 1
    return ok, f"restored={again.restored}, runs={labels}"


@probe
def deleted_store_with_stale_wal_is_set_aside(tmp: Path) -> Result:
    """A stale -wal left by the deleted store is moved aside, not replayed onto the restored copy."""
    path = tmp / "runs.db"
    with RunStore(path) as store:
        store.create_run(method="m", label="kept", config={})
        store.backup()
    path.unlink()
    (tmp / "runs.db-wal").write_bytes(b"stale" * 100)
    with RunStore(path) as again:
        labels = [r["label"] for r in again.list_runs()]
    aside = list(tmp.glob("runs.db-wal.orphaned-*"))
    return labels == ["kept"] and len(aside) == 1, f"runs={labels}, set aside={[p.name for p in aside]}"


@probe
def backups_leave_no_temporary_files(tmp: Path) -> Result:
    """Repeated backups replace the copy atomically and leave no temporary files behind."""
    with store_at(tmp) as store:
        for i in range(5):
            store.create_run(method="m", label=f"r{i}", config={})
            store.backup()
    stray = [p.name for p in tmp.iterdir() if p.name.startswith(".tmp")]
    with contextlib.closing(sqlite3.connect(f"file:{backup_path(tmp / 'runs.db')}?immutable=1", uri=True)) as c:
        n = c.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    return not stray and n == 5, f"stray={stray}, runs in copy={n}"


# -- 9. the device claim -----------------------------------------------------------------------------------------


@probe
def cli_refused_on_a_busy_gpu(tmp: Path) -> Result:
    """A plain CLI compare on a GPU the app trains on is refused, naming the run and what to do."""
    with store_at(tmp) as store:
        run_id, _ = running_run(store, device="cuda:0", worker="app")  # the app's worker trains there
        try:
            with DeviceClaim(store, "cuda:0"):
                return False, "claimed a busy GPU"
        except DeviceBusy as err:
            msg = str(err)
    return "\n" not in msg and "cancel" in msg and run_id in msg, msg[:160]


@probe
def cli_takes_a_gpu_from_an_idle_worker(tmp: Path) -> Result:
    """An idle app worker hands its GPU to a CLI run at once (not after its 5-minute idle exit)."""
    with store_at(tmp) as store:
        worker = Worker(RunStore(store.path), "cuda:0", lambda run: None, idle_exit_s=300, poll_s=0.01)
        thread = threading.Thread(target=worker.serve)
        thread.start()
        deadline = time.monotonic() + 10
        while not store.workers() and time.monotonic() < deadline:
            time.sleep(0.01)
        with DeviceClaim(store, "cuda:0"):
            thread.join(10)
        worker.store.close()
    return not thread.is_alive(), f"idle worker exited={not thread.is_alive()}"


@probe
def app_worker_waits_while_the_cli_holds_the_gpu(tmp: Path) -> Result:
    """While a CLI run holds the GPU, the app's worker for it registers nothing and runs nothing."""
    with store_at(tmp) as store, DeviceClaim(store, "cuda:0"):
        queued = store.create_run(method="m", label="q", config={})
        store.set_device(queued, "cuda:0")
        ran = Worker(store, "cuda:0", lambda run: lambda p, s: {}).serve()
        status = store.get_run(queued)["status"]
    return ran == 0 and status == "queued", f"ran={ran}, queued run {status}"


@probe
def second_cli_does_not_take_a_held_gpu(tmp: Path) -> Result:
    """A second CLI comparison on a GPU another CLI run holds is refused (it holds no run in the store, yet it is
    not idle)."""
    with store_at(tmp) as store, DeviceClaim(store, "cuda:0"):
        try:
            with DeviceClaim(store, "cuda:0"):
                return False, "took the GPU from the first CLI run"
        except DeviceBusy as err:
            msg = str(err)
        held = len(store.workers())
    return "another `python -m core compare`" in msg and held == 1, msg[:160]


@probe
def cli_claim_released_even_on_error(tmp: Path) -> Result:
    """A CLI run that fails mid-way still gives the GPU back."""
    with store_at(tmp) as store:
        with contextlib.suppress(RuntimeError), DeviceClaim(store, "cuda:0"):
            raise RuntimeError("boom")
        left = store.workers()
    return left == [], f"registrations left={left}"


@probe
def cli_claim_lost_while_paused_stops(tmp: Path) -> Result:
    """A CLI run written off while paused is told so at its next step instead of training beside the next owner."""
    with store_at(tmp) as store, DeviceClaim(store, "cuda:0", heartbeat_s=0.02) as claim:
        written_off(store)
        deadline = time.monotonic() + 5
        while not claim.lost.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)
        ok = refused(claim.check)
    return ok, f"check raised ClaimLost={ok}"


@probe
def cli_on_cpu_claims_nothing(tmp: Path) -> Result:
    """The CPU stays shared: a CLI run there claims nothing (the app's CPU worker goes on)."""
    os.environ["PTUNE_HOME"] = str(tmp)
    try:
        with cli._device_claim("cpu") as claim, store_at(tmp) as store:
            workers = store.workers()
    finally:
        os.environ.pop("PTUNE_HOME")
    return claim is None and workers == [], f"claim={claim}, workers={workers}"


@probe
def cli_names_bare_cuda_as_cuda0(tmp: Path) -> Result:
    """`cuda` (no index) is claimed as cuda:0, the name the app's worker uses."""
    os.environ["PTUNE_HOME"] = str(tmp)
    try:
        with cli._device_claim("cuda"), store_at(tmp) as store:
            devices = [w["device"] for w in store.workers()]
    finally:
        os.environ.pop("PTUNE_HOME")
    return devices == ["cuda:0"], f"claimed {devices}"


def main() -> int:
    logging.basicConfig(level=logging.ERROR)  # the store's and workers' warnings are what the probes provoke
    return PROBES.run()


if __name__ == "__main__":
    raise SystemExit(main())
