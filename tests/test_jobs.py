"""The store-backed job queue with real `Worker`s (in threads here; as processes in test_worker_processes.py) and
a real SQLite store."""

import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from core import cli
from core.progress import Cancelled, ProgressFn, StopFn
from core.runs.device_claim import DeviceBusy, DeviceClaim
from core.runs.jobs import HOST, JobFn, JobQueue, Worker, current_device
from core.runs.store import RunStore, backup_path
from tests.worker_threads import ThreadLauncher

TIMEOUT = 10.0  # generous upper bound; the jobs below finish in milliseconds


class Jobs:
    """A JobQueue whose runs execute the functions a test hands it (by run id), through real workers."""

    def __init__(self, db: Path, *, devices=("cpu",), progress_interval: float = 0.2):
        self.store = RunStore(db)
        self.fns: dict[str, JobFn] = {}
        self.launcher = ThreadLauncher(db, lambda run: self.fns[run["id"]], progress_interval=progress_interval)
        self.queue = JobQueue(self.store, self.launcher, devices=devices)

    def submit(self, run_id: str, fn: JobFn, device: str | None = None) -> str:
        self.fns[run_id] = fn
        return self.queue.submit(run_id, device=device)

    def close(self) -> None:
        self.launcher.join()
        self.store.close()


@pytest.fixture
def jobs(tmp_path: Path) -> Iterator[Jobs]:
    j = Jobs(tmp_path / "runs.db")
    yield j
    j.close()


def new_run(store: RunStore, label: str = "r") -> str:
    return store.create_run(method="test", label=label, config={})


def blocking_job(started: threading.Event, release: threading.Event) -> JobFn:
    def job(progress: ProgressFn, should_stop: StopFn) -> dict:
        started.set()
        assert release.wait(TIMEOUT)
        return {"released": True}

    return job


def wait_for(condition: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_progress_reaches_store_and_run_succeeds(jobs: Jobs) -> None:
    store = jobs.store
    run_id = new_run(store)

    def job(progress: ProgressFn, should_stop: StopFn) -> dict:
        for step in range(1, 6):
            progress(step, 5, {"loss": 1.0 / step})
        return {"accuracy": 0.75}

    jobs.submit(run_id, job)
    assert jobs.queue.wait(run_id, timeout=TIMEOUT) == "succeeded"
    run = store.get_run(run_id)
    assert run["result"] == {"accuracy": 0.75} and run["device"] == "cpu" and run["error"] is None
    assert (run["progress_step"], run["progress_total"], run["eta_seconds"]) == (5, 5, 0.0)
    assert [(m["step"], m["value"]) for m in store.metrics(run_id)] == [(s, 1.0 / s) for s in range(1, 6)]
    assert run["worker"] and run["heartbeat"] is not None and run["finished"] >= run["started"]
    assert jobs.queue.active_runs() == []


def test_progress_is_throttled_but_loses_no_step(tmp_path: Path) -> None:
    jobs = Jobs(tmp_path / "runs.db", progress_interval=60.0)
    store = jobs.store
    run_id = new_run(store)
    paused, resume = threading.Event(), threading.Event()

    def job(progress: ProgressFn, should_stop: StopFn) -> dict:
        for step in range(1, 10):
            progress(step, 10, {"loss": float(step)})
        paused.set()
        assert resume.wait(TIMEOUT)
        progress(10, 10, {"loss": 10.0})
        return {}

    jobs.submit(run_id, job)
    assert paused.wait(TIMEOUT)
    assert store.get_run(run_id)["progress_step"] == 1  # only the first call was written so far
    assert len(store.metrics(run_id)) == 1
    resume.set()
    assert jobs.queue.wait(run_id, TIMEOUT) == "succeeded"
    assert [m["step"] for m in store.metrics(run_id)] == list(range(1, 11))  # the final step flushed the backlog
    jobs.close()


def test_cancel_running_job_ends_cancelled_within_a_step(jobs: Jobs) -> None:
    store = jobs.store
    run_id, started, looked = new_run(store), threading.Event(), threading.Event()

    def job(progress: ProgressFn, should_stop: StopFn) -> dict:
        started.set()
        step = 0
        while True:
            step += 1
            progress(step, 10**9, {"loss": 1.0})
            if looked.is_set() and should_stop():  # the test reads the card's state first: no race with the stop
                raise Cancelled
            time.sleep(0.001)

    jobs.submit(run_id, job)
    assert started.wait(TIMEOUT)
    assert store.get_run(run_id)["status"] == "running"
    assert jobs.queue.cancel(run_id)
    assert jobs.queue.is_stopping(run_id)  # what the card shows until the job sees should_stop()
    t0 = time.monotonic()
    looked.set()
    assert jobs.queue.wait(run_id, TIMEOUT) == "cancelled"
    assert time.monotonic() - t0 < 1.0
    assert store.get_run(run_id)["result"] is None
    assert not jobs.queue.cancel(run_id) and not jobs.queue.is_stopping(run_id)  # no longer active


def test_job_returning_after_stop_request_is_cancelled(jobs: Jobs) -> None:
    run_id, started = new_run(jobs.store), threading.Event()

    def job(progress: ProgressFn, should_stop: StopFn) -> dict:
        started.set()
        while not should_stop():
            time.sleep(0.001)
        return {"partial": True}

    jobs.submit(run_id, job)
    assert started.wait(TIMEOUT)
    jobs.queue.cancel(run_id)
    assert jobs.queue.wait(run_id, TIMEOUT) == "cancelled"


def test_cancel_queued_job_never_starts(jobs: Jobs) -> None:
    store = jobs.store
    first, second = new_run(store, "first"), new_run(store, "second")
    started, release, ran = threading.Event(), threading.Event(), []
    jobs.submit(first, blocking_job(started, release))
    jobs.submit(second, lambda progress, should_stop: ran.append(1) or {})
    assert started.wait(TIMEOUT)
    assert store.get_run(second)["status"] == "queued"
    assert jobs.queue.cancel(second)
    assert store.get_run(second)["status"] == "cancelled"  # at once, not when the worker gets to it
    assert jobs.queue.wait(second, timeout=0) == "cancelled"
    release.set()
    assert jobs.queue.wait(first, TIMEOUT) == "succeeded"
    jobs.launcher.join()  # the worker retired with nothing left: the cancelled run was never claimed
    assert ran == []


def test_failure_is_recorded_and_next_job_still_runs(jobs: Jobs) -> None:
    store = jobs.store
    bad, good = new_run(store, "bad"), new_run(store, "good")

    def failing(progress: ProgressFn, should_stop: StopFn) -> dict:
        raise ValueError("template has no [MASK]\nsecond line")

    jobs.submit(bad, failing)
    jobs.submit(good, lambda progress, should_stop: {"ok": True})
    assert jobs.queue.wait(bad, TIMEOUT) == "failed"
    assert jobs.queue.wait(good, TIMEOUT) == "succeeded"
    run = store.get_run(bad)
    assert run["error"] == "ValueError: template has no [MASK]"
    assert "Traceback" in run["result"]["traceback"] and "in failing" in run["result"]["traceback"]
    assert store.get_run(good)["result"] == {"ok": True}


def test_non_dict_result_fails(jobs: Jobs) -> None:
    run_id = new_run(jobs.store)
    jobs.submit(run_id, lambda progress, should_stop: [1, 2])
    assert jobs.queue.wait(run_id, TIMEOUT) == "failed"
    assert jobs.store.get_run(run_id)["error"] == "TypeError: job returned list, expected a result dict"


def test_two_devices_run_in_parallel(tmp_path: Path) -> None:
    jobs = Jobs(tmp_path / "runs.db", devices=("cuda:0", "cuda:1"))
    both_running = threading.Barrier(2, timeout=TIMEOUT)  # breaks (job fails) if the jobs ran one after another
    seen: list[str | None] = []

    def job(progress: ProgressFn, should_stop: StopFn) -> dict:
        seen.append(current_device())
        both_running.wait()
        return {}

    runs = [new_run(jobs.store, str(i)) for i in range(2)]
    for run_id in runs:
        jobs.submit(run_id, job)  # device=None: spread over the least busy devices
    assert [jobs.queue.wait(run_id, TIMEOUT) for run_id in runs] == ["succeeded", "succeeded"]
    assert sorted(seen) == ["cuda:0", "cuda:1"]
    assert sorted(jobs.store.get_run(r)["device"] for r in runs) == ["cuda:0", "cuda:1"]
    assert current_device() is None
    jobs.close()


def test_wait_timeout(jobs: Jobs) -> None:
    run_id, started, release = new_run(jobs.store), threading.Event(), threading.Event()
    jobs.submit(run_id, blocking_job(started, release))
    assert started.wait(TIMEOUT)
    with pytest.raises(TimeoutError, match=run_id):
        jobs.queue.wait(run_id, timeout=0.05)
    assert jobs.queue.active_runs() == [run_id]
    release.set()
    assert jobs.queue.wait(run_id, timeout=TIMEOUT) == "succeeded"


def test_submit_validation(jobs: Jobs) -> None:
    run_id, started, release = new_run(jobs.store), threading.Event(), threading.Event()
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        jobs.submit(run_id, lambda p, s: {}, device="tpu")
    with pytest.raises(KeyError):
        jobs.submit("missing", lambda p, s: {})
    jobs.submit(run_id, blocking_job(started, release))
    with pytest.raises(ValueError, match="already queued or running"):
        jobs.submit(run_id, lambda p, s: {})
    release.set()
    jobs.queue.wait(run_id, TIMEOUT)


def test_a_second_queue_on_the_store_leaves_live_runs_alone(jobs: Jobs, tmp_path: Path) -> None:
    """Another process (a second server, a CLI) opening the store changes nothing that is alive: the running run
    keeps running, the queued one stays queued and runs next."""
    store = jobs.store
    first, second = new_run(store, "first"), new_run(store, "second")
    started, release = threading.Event(), threading.Event()
    jobs.submit(first, blocking_job(started, release))
    jobs.submit(second, lambda p, s: {"second": True})
    assert started.wait(TIMEOUT)
    other = Jobs(tmp_path / "runs.db")
    try:
        assert other.queue.check(force=True) == []
        assert {r["id"]: r["status"] for r in other.store.list_runs()} == {first: "running", second: "queued"}
    finally:
        other.close()
    release.set()
    assert [jobs.queue.wait(r, TIMEOUT) for r in (first, second)] == ["succeeded", "succeeded"]


def test_a_run_whose_worker_is_gone_is_interrupted_and_only_that_run(tmp_path: Path) -> None:
    """A worker that stops heartbeating (a hung or vanished process elsewhere) leaves its run interrupted, with
    the time it finished; queued runs wait for a new worker and then run."""
    store = RunStore(tmp_path / "runs.db")
    running, queued = new_run(store, "running"), new_run(store, "queued")
    for run_id in (running, queued):
        store.set_device(run_id, "cpu")
    assert store.register_worker("elsewhere:1:abc", "cpu", "another-host", 1)
    assert store.claim("elsewhere:1:abc", device="cpu").run_id == running
    assert store.reap(lambda w: True, stale_after=60.0) == []  # fresh heartbeat: alive
    time.sleep(0.05)
    assert store.reap(lambda w: True, stale_after=0.01) == [running]
    row = store.get_run(running)
    assert row["status"] == "interrupted" and row["finished"] is not None and "worker" in row["error"]
    assert store.get_run(queued)["status"] == "queued" and store.workers() == []
    worker = Worker(store, "cpu", lambda run: lambda p, s: {"ran": run["id"]}, idle_exit_s=0.0, poll_s=0.01)
    assert worker.serve() == 1 and store.get_run(queued)["status"] == "succeeded"
    store.close()


def test_one_worker_per_device_and_host(tmp_path: Path) -> None:
    with RunStore(tmp_path / "runs.db") as store:
        assert store.register_worker("w1", "cuda:0", "h", 10)
        assert not store.register_worker("w2", "cuda:0", "h", 11)  # the GPU is taken on this host
        assert store.register_worker("w3", "cuda:0", "other", 12) and store.register_worker("w4", "cuda:1", "h", 13)
        second = Worker(store, "cuda:0", lambda run: lambda p, s: {})
        assert second.serve() == 0  # registers nothing, runs nothing
        assert [w["id"] for w in store.workers()] == ["w1", "w3", "w4"]


def test_phases_reach_the_store_with_their_own_counts(jobs: Jobs) -> None:
    from core.progress import enter_phase

    store = jobs.store
    seen: list[tuple] = []
    asked, release = threading.Event(), threading.Event()

    def job(progress: ProgressFn, should_stop: StopFn) -> dict:
        enter_phase(progress, "training")
        progress(5, 5, {"loss": 1.0})
        enter_phase(progress, "scoring the test split")
        progress(0, 40, {})
        progress(40, 40, {})
        row = store.get_run(run_id)
        seen.append((row["phase"], row["progress_step"], row["progress_total"]))
        asked.set()
        assert release.wait(30)
        return {}

    run_id = new_run(store)
    jobs.submit(run_id, job)
    assert asked.wait(30)
    assert seen == [("scoring the test split", 40, 40)]
    release.set()
    assert jobs.queue.wait(run_id, 30) == "succeeded"
    metrics = {(m["name"], m["step"]) for m in store.metrics(run_id)}
    assert metrics == {("loss", 5)}  # phases add no metric rows


def test_a_worker_written_off_mid_run_writes_nothing_more_and_exits(tmp_path: Path) -> None:
    """The reaper writes off a healthy worker (a heartbeat limit shorter than its beat, or a pause): its run stays
    interrupted — no later metric, result or 'succeeded' — and the worker stops serving at once, leaving the
    run queued behind it to the next worker."""
    store = RunStore(tmp_path / "runs.db")
    run_id, queued = new_run(store, "running"), new_run(store, "queued")
    for rid in (run_id, queued):
        store.set_device(rid, "cpu")
    started, release = threading.Event(), threading.Event()

    def job(progress: ProgressFn, should_stop: StopFn) -> dict:
        progress(1, 3, {"loss": 1.0})
        started.set()
        assert release.wait(TIMEOUT)
        for step in (2, 3):
            progress(step, 3, {"loss": 1.0 / step})
        return {"accuracy": 1.0}

    worker = Worker(RunStore(store.path), "cpu", lambda run: job, idle_exit_s=0.0, heartbeat_s=0.05, poll_s=0.01)
    served: list[int] = []
    thread = threading.Thread(target=lambda: served.append(worker.serve()))
    thread.start()
    assert started.wait(TIMEOUT)
    assert store.reap(lambda w: True, stale_after=-1.0) == [run_id]  # written off, whatever the clock says
    release.set()
    thread.join(TIMEOUT)
    assert served == [1] and not thread.is_alive()
    run = store.get_run(run_id)
    assert run["status"] == "interrupted" and run["result"] is None and "worker" in run["error"]
    assert [m["step"] for m in store.metrics(run_id)] == [1]
    assert store.get_run(queued)["status"] == "queued" and store.workers() == []
    worker.store.close()
    store.close()


def test_an_idle_worker_gives_its_device_to_a_cli_claim_at_once(tmp_path: Path) -> None:
    """A plain CLI run claiming a GPU the app's worker holds while idle takes it at once (no wait for the worker's
    idle exit); the idle worker exits at its next heartbeat and claims nothing queued meanwhile."""
    store = RunStore(tmp_path / "runs.db")
    worker = Worker(RunStore(store.path), "cuda:0", lambda run: lambda p, s: {}, idle_exit_s=600.0, poll_s=0.01)
    thread = threading.Thread(target=worker.serve)
    thread.start()
    wait_for(lambda: [w["id"] for w in store.workers()] == [worker.id])
    with DeviceClaim(store, "cuda:0") as claim:
        thread.join(TIMEOUT)
        assert not thread.is_alive()  # the idle worker left
        queued = new_run(store)
        store.set_device(queued, "cuda:0")
        assert [w["id"] for w in store.workers()] == [claim.id]
        assert not Worker(store, "cuda:0", lambda run: lambda p, s: {}).serve()  # the app waits for the CLI
        assert store.get_run(queued)["status"] == "queued"
    assert store.workers() == []  # released when the CLI's comparison ends
    worker.store.close()
    store.close()


def test_a_cli_claim_on_a_busy_device_names_the_run_there(tmp_path: Path) -> None:
    with RunStore(tmp_path / "runs.db") as store:
        run_id = store.create_run(method="m", label="P-tuning · seed 0", config={}, group_id="g1")
        store.set_device(run_id, "cuda:0")
        assert store.register_worker("app-worker", "cuda:0", HOST, 4242)
        assert store.claim("app-worker", device="cuda:0").run_id == run_id
        with pytest.raises(DeviceBusy) as err:
            DeviceClaim(store, "cuda:0").__enter__()
        message = str(err.value)
        assert "\n" not in message and run_id in message and "P-tuning · seed 0" in message and "4242" in message
        assert [w["id"] for w in store.workers()] == ["app-worker"]  # the running worker keeps its device
        with DeviceClaim(store, "cuda:1"):  # another GPU is free
            assert len(store.workers()) == 2


def test_a_plain_cli_comparison_claims_its_gpu_in_the_apps_store(tmp_path: Path, monkeypatch) -> None:
    """`python -m core compare` on a GPU holds it in $PTUNE_HOME's store for its whole run (refused, naming the run,
    while the app trains there); on the CPU it claims nothing, as before (the CPU is shared)."""
    monkeypatch.setenv("PTUNE_HOME", str(tmp_path))
    with RunStore(tmp_path / "runs.db") as store:
        run_id = store.create_run(method="m", label="prompt tuning · seed 0", config={})
        store.set_device(run_id, "cuda:0")
        assert store.register_worker("app-worker", "cuda:0", HOST, 4242)
        assert store.claim("app-worker", device="cuda:0") is not None
        with pytest.raises(DeviceBusy, match=run_id), cli._device_claim("cuda"):  # "cuda" is cuda:0
            pass
        with cli._device_claim("cuda:1") as claim:
            assert claim is not None and {w["device"] for w in store.workers()} == {"cuda:0", "cuda:1"}
        with cli._device_claim("cpu") as claim:
            assert claim is None
        assert [w["id"] for w in store.workers()] == ["app-worker"]


def test_a_run_that_ends_refreshes_the_stores_last_good_copy(jobs: Jobs) -> None:
    def in_copy() -> tuple | None:
        uri = f"file:{backup_path(jobs.store.path)}?immutable=1"
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as copy:
            row = copy.execute("SELECT status, json FROM runs JOIN results ON run_id = id WHERE id = ?", (run_id,))
            return row.fetchone()

    run_id = new_run(jobs.store)
    assert in_copy() is None  # the copy the queue took as it started
    jobs.submit(run_id, lambda p, s: {"accuracy": 0.5})
    assert jobs.queue.wait(run_id, TIMEOUT) == "succeeded"
    wait_for(lambda: in_copy() == ("succeeded", '{"accuracy": 0.5}'))


def test_a_second_cli_comparison_on_a_held_gpu_is_told_another_one_runs(tmp_path: Path) -> None:
    with RunStore(tmp_path / "runs.db") as store, DeviceClaim(store, "cuda:0"):
        with pytest.raises(DeviceBusy, match="another `python -m core compare`"):
            DeviceClaim(store, "cuda:0").__enter__()
        assert len(store.workers()) == 1
