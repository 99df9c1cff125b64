"""JobManager with real worker threads and a real SQLite store."""

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.jobs import JobManager, current_device
from core.progress import Cancelled, ProgressFn, StopFn
from core.store import RunStore

TIMEOUT = 5.0  # generous upper bound; the jobs below finish in milliseconds


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RunStore]:
    with RunStore(tmp_path / "runs.db") as s:
        yield s


@pytest.fixture
def manager(store: RunStore) -> Iterator[JobManager]:
    jm = JobManager(store, devices=("cpu",))
    yield jm
    jm.shutdown()


def new_run(store: RunStore, label: str = "r") -> str:
    return store.create_run(method="test", label=label, config={})


def blocking_job(started: threading.Event, release: threading.Event):
    def job(progress: ProgressFn, should_stop: StopFn) -> dict:
        started.set()
        assert release.wait(TIMEOUT)
        return {"released": True}

    return job


def test_progress_reaches_store_and_run_succeeds(store: RunStore, manager: JobManager) -> None:
    run_id, done = new_run(store), []

    def job(progress: ProgressFn, should_stop: StopFn) -> dict:
        for step in range(1, 6):
            progress(step, 5, {"loss": 1.0 / step})
        return {"accuracy": 0.75}

    manager.submit(run_id, job, on_done=lambda rid, status: done.append((rid, status)))
    assert manager.wait(run_id, timeout=TIMEOUT) == "succeeded"
    run = store.get_run(run_id)
    assert run["result"] == {"accuracy": 0.75} and run["device"] == "cpu" and run["error"] is None
    assert (run["progress_step"], run["progress_total"], run["eta_seconds"]) == (5, 5, 0.0)
    assert [(m["step"], m["value"]) for m in store.metrics(run_id)] == [(s, 1.0 / s) for s in range(1, 6)]
    assert done == [(run_id, "succeeded")]
    assert not manager.is_active(run_id) and manager.active_runs() == []


def test_progress_is_throttled_but_loses_no_step(store: RunStore) -> None:
    manager = JobManager(store, progress_interval=60.0)
    run_id = new_run(store)
    paused, resume = threading.Event(), threading.Event()

    def job(progress: ProgressFn, should_stop: StopFn) -> dict:
        for step in range(1, 10):
            progress(step, 10, {"loss": float(step)})
        paused.set()
        assert resume.wait(TIMEOUT)
        progress(10, 10, {"loss": 10.0})
        return {}

    manager.submit(run_id, job)
    assert paused.wait(TIMEOUT)
    assert store.get_run(run_id)["progress_step"] == 1  # only the first call was written so far
    assert len(store.metrics(run_id)) == 1
    resume.set()
    assert manager.wait(run_id, TIMEOUT) == "succeeded"
    assert [m["step"] for m in store.metrics(run_id)] == list(range(1, 11))  # the final step flushed the backlog
    manager.shutdown()


def test_cancel_running_job_ends_cancelled_quickly(store: RunStore, manager: JobManager) -> None:
    run_id, started = new_run(store), threading.Event()

    def job(progress: ProgressFn, should_stop: StopFn) -> dict:
        started.set()
        step = 0
        while True:
            step += 1
            progress(step, 10**9, {"loss": 1.0})
            if should_stop():
                raise Cancelled
            time.sleep(0.001)

    manager.submit(run_id, job)
    assert started.wait(TIMEOUT)
    assert store.get_run(run_id)["status"] == "running"
    t0 = time.monotonic()
    assert manager.cancel(run_id)
    assert manager.wait(run_id, TIMEOUT) == "cancelled"
    assert time.monotonic() - t0 < 1.0
    assert store.get_run(run_id)["result"] is None
    assert not manager.cancel(run_id)  # no longer active


def test_job_returning_after_stop_request_is_cancelled(store: RunStore, manager: JobManager) -> None:
    run_id, started = new_run(store), threading.Event()

    def job(progress: ProgressFn, should_stop: StopFn) -> dict:
        started.set()
        while not should_stop():
            time.sleep(0.001)
        return {"partial": True}

    manager.submit(run_id, job)
    assert started.wait(TIMEOUT)
    manager.cancel(run_id)
    assert manager.wait(run_id, TIMEOUT) == "cancelled"


def test_cancel_queued_job_never_starts(store: RunStore, manager: JobManager) -> None:
    first, second = new_run(store, "first"), new_run(store, "second")
    started, release, ran = threading.Event(), threading.Event(), []
    manager.submit(first, blocking_job(started, release))
    manager.submit(second, lambda progress, should_stop: ran.append(1) or {})
    assert started.wait(TIMEOUT)
    assert store.get_run(second)["status"] == "queued"
    assert manager.cancel(second)
    assert store.get_run(second)["status"] == "cancelled"  # at once, not when the worker gets to it
    assert manager.wait(second, timeout=0) == "cancelled"
    release.set()
    assert manager.wait(first, TIMEOUT) == "succeeded"
    manager.shutdown()  # drains the queue: the cancelled job was skipped
    assert ran == []


def test_failure_is_recorded_and_next_job_still_runs(store: RunStore, manager: JobManager) -> None:
    bad, good = new_run(store, "bad"), new_run(store, "good")

    def failing(progress: ProgressFn, should_stop: StopFn) -> dict:
        raise ValueError("template has no [MASK]\nsecond line")

    manager.submit(bad, failing)
    manager.submit(good, lambda progress, should_stop: {"ok": True})
    assert manager.wait(bad, TIMEOUT) == "failed"
    assert manager.wait(good, TIMEOUT) == "succeeded"
    run = store.get_run(bad)
    assert run["error"] == "ValueError: template has no [MASK]"
    assert "Traceback" in run["result"]["traceback"] and "in failing" in run["result"]["traceback"]
    assert store.get_run(good)["result"] == {"ok": True}


def test_non_dict_result_fails(store: RunStore, manager: JobManager) -> None:
    run_id = new_run(store)
    manager.submit(run_id, lambda progress, should_stop: [1, 2])
    assert manager.wait(run_id, TIMEOUT) == "failed"
    assert store.get_run(run_id)["error"] == "TypeError: job returned list, expected a result dict"


def test_two_devices_run_in_parallel(store: RunStore) -> None:
    manager = JobManager(store, devices=("cuda:0", "cuda:1"))
    both_running = threading.Barrier(2, timeout=TIMEOUT)  # breaks (job fails) if the jobs ran one after another
    seen: list[str | None] = []

    def job(progress: ProgressFn, should_stop: StopFn) -> dict:
        seen.append(current_device())
        both_running.wait()
        return {}

    runs = [new_run(store, str(i)) for i in range(2)]
    for run_id in runs:
        manager.submit(run_id, job)  # device=None: spread over the least busy devices
    assert [manager.wait(run_id, TIMEOUT) for run_id in runs] == ["succeeded", "succeeded"]
    assert sorted(seen) == ["cuda:0", "cuda:1"]
    assert sorted(store.get_run(r)["device"] for r in runs) == ["cuda:0", "cuda:1"]
    assert current_device() is None
    manager.shutdown()


def test_wait_timeout(store: RunStore, manager: JobManager) -> None:
    run_id, started, release = new_run(store), threading.Event(), threading.Event()
    manager.submit(run_id, blocking_job(started, release))
    assert started.wait(TIMEOUT)
    with pytest.raises(TimeoutError, match=run_id):
        manager.wait(run_id, timeout=0.05)
    assert manager.is_active(run_id) and manager.active_runs() == [run_id]
    release.set()
    assert manager.wait(run_id, timeout=TIMEOUT) == "succeeded"


def test_submit_validation(store: RunStore, manager: JobManager) -> None:
    run_id, started, release = new_run(store), threading.Event(), threading.Event()
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        manager.submit(run_id, lambda p, s: {}, device="tpu")
    with pytest.raises(KeyError):
        manager.submit("missing", lambda p, s: {})
    manager.submit(run_id, blocking_job(started, release))
    with pytest.raises(ValueError, match="already queued or running"):
        manager.submit(run_id, lambda p, s: {})
    release.set()
    manager.wait(run_id, TIMEOUT)
    manager.shutdown()
    with pytest.raises(RuntimeError, match="shut down"):
        manager.submit(new_run(store), lambda p, s: {})


def test_creation_marks_leftover_runs_interrupted(store: RunStore) -> None:
    leftover = new_run(store)
    store.set_status(leftover, "running")
    JobManager(store)
    assert store.get_run(leftover)["status"] == "interrupted"


def test_shutdown_cancels_queued_and_stops_running(store: RunStore) -> None:
    manager = JobManager(store)
    running, queued, started = new_run(store), new_run(store), threading.Event()

    def loop(progress: ProgressFn, should_stop: StopFn) -> dict:
        started.set()
        while not should_stop():
            time.sleep(0.001)
        raise Cancelled

    manager.submit(running, loop)
    manager.submit(queued, lambda p, s: {})
    assert started.wait(TIMEOUT)
    manager.shutdown(wait=True)
    assert store.get_run(running)["status"] == "cancelled"
    assert store.get_run(queued)["status"] == "cancelled"


def test_on_done_failure_does_not_stop_the_worker_and_may_resubmit(store: RunStore, manager: JobManager) -> None:
    first, second, statuses = new_run(store), new_run(store), []

    def broken_callback(run_id: str, status: str) -> None:
        raise RuntimeError("callback bug")

    def resubmit(run_id: str, status: str) -> None:
        statuses.append(status)
        if status == "failed":
            manager.submit(run_id, lambda p, s: {"attempt": 2})

    manager.submit(first, lambda p, s: {}, on_done=broken_callback)
    assert manager.wait(first, TIMEOUT) == "succeeded"
    manager.submit(second, lambda p, s: 1 / 0, on_done=resubmit)
    manager.wait(second, TIMEOUT)  # returns once the first attempt's on_done has resubmitted the run
    assert manager.wait(second, TIMEOUT) == "succeeded"
    assert statuses == ["failed"]  # the second attempt was submitted without a callback
    assert store.get_run(second)["result"] == {"attempt": 2}


def test_phases_reach_the_store_with_their_own_counts_and_a_cancel_shows_as_stopping(
    store: RunStore, manager: JobManager
) -> None:
    from core.progress import enter_phase

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
    manager.submit(run_id, job)
    assert asked.wait(30)
    assert seen == [("scoring the test split", 40, 40)]
    assert not manager.is_stopping(run_id)
    manager.cancel(run_id)
    assert manager.is_stopping(run_id)  # what the card shows until the job sees should_stop()
    release.set()
    assert manager.wait(run_id, 30) == "cancelled" and not manager.is_stopping(run_id)
    metrics = {(m["name"], m["step"]) for m in store.metrics(run_id)}
    assert metrics == {("loss", 5)}  # phases add no metric rows
