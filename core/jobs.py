"""Background job runner: a FIFO queue and one worker thread per device, progress into the run store, cancel.

Why this shape: Streamlit reruns its script on every interaction, so training cannot live in the script thread.
One process-wide ``JobManager`` (made with ``st.cache_resource``) owns the workers; a worker runs one job at a
time per device so two users cannot OOM one GPU. Workers never call ``st.*`` (they have no script context):
they write progress into the ``RunStore`` and pages poll it with ``st.fragment(run_every=...)``. Stopping is
cooperative: ``cancel`` sets an event the job reads through ``should_stop()`` every step.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from core.errors import one_line
from core.progress import Cancelled, ProgressFn, StopFn
from core.store import MetricRecord, RunStore

log = logging.getLogger(__name__)

JobFn = Callable[[ProgressFn, StopFn], dict]  # returns the result dict saved into the store
DoneFn = Callable[[str, str], None]  # on_done(run_id, final_status), called from the worker thread

_worker_device = threading.local()


def visible_devices() -> list[str]:
    """Every GPU this process can see (``cuda:0``, ``cuda:1``, ...), then ``cpu``: the devices the app serves."""
    import torch  # here, not at the top: the job runner itself needs no torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return [f"cuda:{i}" for i in range(gpus)] + ["cpu"]


def place(devices: Sequence[str], active: Mapping[str, int]) -> str:
    """The device for a new run: the one with the fewest queued or running jobs (`active`), ties to the first listed.

    The CPU is used only when no accelerator is listed: a run there is tens of times slower than waiting for a
    GPU. Pure, so that placement is tested with any device list.
    """
    if not devices:
        raise ValueError("no devices to place a run on")
    candidates = [d for d in devices if d != "cpu"] or list(devices)
    return min(candidates, key=lambda d: active.get(d, 0))  # min keeps the first of equals: stable ties


def current_device() -> str | None:
    """The device of the worker running the calling code (None outside a worker).

    A job submitted with ``device=None`` learns here which device the manager gave it.
    """
    return getattr(_worker_device, "name", None)


@dataclass
class _Job:
    run_id: str
    fn: JobFn
    device: str
    on_done: DoneFn | None
    state: str = "queued"  # queued -> running -> done; changed only under JobManager._lock
    stop: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)


class _Progress:
    """The ``progress`` callback of one job: ETA from elapsed time, store writes throttled to ``interval``.

    Calls between writes are buffered and written with the next one, so every step's metrics reach the store
    while a tight loop costs one SQLite transaction per ``interval`` at most. The final step, and any step after
    a cancel request, are written at once. ``phase(name)`` (see ``core.progress.enter_phase``) records what the
    run is doing; each phase's ETA counts from the moment it was first entered (a training phase interrupted by
    dev evaluations keeps one clock). Called only from the job's own thread, so it needs no lock.
    """

    def __init__(self, store: RunStore, job: _Job, interval: float):
        self._store, self._job, self._interval = store, job, interval
        self._phase = ""
        self._started: dict[str, float] = {"": time.monotonic()}
        self._base: dict[str, int] = {}  # per phase: the step count before its first reported step
        self._step = self._total = 0
        self._last_write = -math.inf
        self._backlog: list[MetricRecord] = []

    def phase(self, name: str) -> None:
        """Enter phase ``name``: written at once (with any buffered metrics), step counts carry over until the
        phase reports its own."""
        self._phase = name
        self._started.setdefault(name, time.monotonic())
        self._write(self._step, self._total, {}, None)

    def __call__(self, step: int, total: int, metrics: Mapping[str, float]) -> None:
        now = time.monotonic()
        self._base.setdefault(self._phase, max(step - 1, 0))
        urgent = step >= total or self._job.stop.is_set()
        if not urgent and now - self._last_write < self._interval:
            self._backlog.append((step, time.time(), dict(metrics)))
            self._step, self._total = step, total
            return
        base = self._base.setdefault(self._phase, max(step - 1, 0))
        elapsed = now - self._started.get(self._phase, now)
        eta = elapsed * (total - step) / (step - base) if base < step <= total else None
        self._write(step, total, metrics, eta)

    def _write(self, step: int, total: int, metrics: Mapping[str, float], eta: float | None) -> None:
        self._store.record_progress(
            self._job.run_id, step, total, metrics, eta, backlog=self._backlog, phase=self._phase
        )
        self._backlog = []
        self._step, self._total = step, total
        self._last_write = time.monotonic()


class JobManager:
    """Runs jobs in worker threads, one FIFO queue and worker per device; thread-safe.

    Creating it marks runs a previous process left queued/running as interrupted. Workers start on first use.
    """

    def __init__(self, store: RunStore, *, devices: Sequence[str] = ("cpu",), progress_interval: float = 0.2):
        if not devices or len(set(devices)) != len(devices):
            raise ValueError(f"devices must be a non-empty list of distinct names, got {list(devices)!r}")
        self.store = store
        self.devices = tuple(devices)
        self.progress_interval = progress_interval
        self._lock = threading.Lock()
        self._queues: dict[str, queue.SimpleQueue[_Job | None]] = {d: queue.SimpleQueue() for d in self.devices}
        self._workers: dict[str, threading.Thread] = {}
        self._jobs: dict[str, _Job] = {}  # active (queued or running) jobs, in submission order
        self._closed = False
        store.mark_interrupted()

    def submit(self, run_id: str, fn: JobFn, *, device: str | None = None, on_done: DoneFn | None = None) -> None:
        """Queue ``fn`` for the run on ``device`` (None: where ``place`` puts it, the least busy accelerator).

        ``on_done(run_id, status)`` runs in the worker thread (in the cancelling thread for a run cancelled
        while queued); like the job, it must not call ``st.*``.
        """
        if device is not None and device not in self._queues:
            raise ValueError(f"unknown device {device!r}; this manager has {', '.join(self.devices)}")
        with self._lock:
            if self._closed:
                raise RuntimeError("JobManager is shut down")
            if run_id in self._jobs:
                raise ValueError(f"run {run_id!r} is already queued or running")
            device = device or place(self.devices, self._load())
            self.store.set_status(run_id, "queued")  # KeyError for an unknown run, before anything is queued
            self.store.set_device(run_id, device)
            job = _Job(run_id, fn, device, on_done)
            self._jobs[run_id] = job
            self._start_worker(device)
        self._queues[device].put(job)

    def _load(self) -> dict[str, int]:
        """Queued or running jobs per device (called under the lock)."""
        load = dict.fromkeys(self.devices, 0)
        for job in self._jobs.values():
            load[job.device] += 1
        return load

    def _start_worker(self, device: str) -> None:
        if device not in self._workers:
            thread = threading.Thread(target=self._serve, args=(device,), name=f"ptune-worker-{device}", daemon=True)
            self._workers[device] = thread
            thread.start()

    def cancel(self, run_id: str) -> bool:
        """Ask a run to stop; a queued run is cancelled at once and never starts. False if it is not active."""
        with self._lock:
            job = self._jobs.get(run_id)
            if job is None:
                return False
            job.stop.set()
            claimed = job.state == "queued"
            if claimed:
                job.state = "done"  # the worker will skip it
        if claimed:
            self._finish(job, "cancelled")
        return True

    def is_stopping(self, run_id: str) -> bool:
        """A cancel was asked for and the run has not stopped yet (it stops at its next step or chunk)."""
        with self._lock:
            job = self._jobs.get(run_id)
            return job is not None and job.stop.is_set()

    def is_active(self, run_id: str) -> bool:
        with self._lock:
            return run_id in self._jobs

    def active_runs(self) -> list[str]:
        """Ids of queued and running jobs, in submission order."""
        with self._lock:
            return list(self._jobs)

    def wait(self, run_id: str, timeout: float | None = None) -> str:
        """Block until the run is terminal and return its status; TimeoutError if ``timeout`` passes first."""
        with self._lock:
            job = self._jobs.get(run_id)
        if job is not None and not job.done.wait(timeout):
            raise TimeoutError(f"run {run_id!r} still active after {timeout} s")
        run = self.store.get_run(run_id)
        if run is None:
            raise KeyError(f"no run {run_id!r}")
        return run["status"]

    def shutdown(self, wait: bool = True) -> None:
        """Refuse new jobs, cancel queued ones, ask running ones to stop, and (if ``wait``) join the workers."""
        with self._lock:
            self._closed = True
            active = list(self._jobs)
        for run_id in active:
            self.cancel(run_id)
        for q in self._queues.values():
            q.put(None)
        if wait:
            for thread in list(self._workers.values()):
                thread.join()

    # -- worker side ----------------------------------------------------------------------------------------

    def _serve(self, device: str) -> None:
        """Worker loop: take jobs in FIFO order until the shutdown sentinel; one job's failure never ends it."""
        _worker_device.name = device
        while (job := self._queues[device].get()) is not None:
            with self._lock:
                if job.state != "queued":  # cancelled while waiting
                    continue
                job.state = "running"
            try:
                self._run(job)
            except Exception:  # the store itself failed (e.g. run deleted); keep serving the queue
                log.exception("run %s: could not record its outcome", job.run_id)
                self._finish(job, None)

    def _run(self, job: _Job) -> None:
        """Run one job and record its outcome: succeeded, cancelled or failed (with a one-line error)."""
        self.store.set_status(job.run_id, "running")
        try:
            result = job.fn(_Progress(self.store, job, self.progress_interval), job.stop.is_set)
        except Cancelled:
            self._finish(job, "cancelled")
            return
        except Exception as exc:
            log.error("run %s failed", job.run_id, exc_info=True)
            self._fail(job, exc, traceback.format_exc())
            return
        if job.stop.is_set():
            self._finish(job, "cancelled")
        elif not isinstance(result, dict):
            self._fail(job, TypeError(f"job returned {type(result).__name__}, expected a result dict"), "")
        else:
            self.store.save_result(job.run_id, result)
            self._finish(job, "succeeded")

    def _fail(self, job: _Job, exc: Exception, tb: str) -> None:
        error = f"{type(exc).__name__}: {one_line(exc)}"
        self.store.save_result(job.run_id, {"error": error, "traceback": tb})
        self._finish(job, "failed", error)

    def _finish(self, job: _Job, status: str | None, error: str | None = None) -> None:
        """Record the final status (None: could not), release the job, call ``on_done``, then wake waiters.

        ``on_done`` runs after the release (so it may resubmit the run) and before ``wait`` returns (so a
        waiter sees its effects).
        """
        recorded = False
        try:
            if status is not None:
                self.store.set_status(job.run_id, status, error=error)
                recorded = True
        finally:
            with self._lock:
                job.state = "done"
                self._jobs.pop(job.run_id, None)
            if recorded and job.on_done is not None:
                self._call_on_done(job, status)
            job.done.set()

    @staticmethod
    def _call_on_done(job: _Job, status: str) -> None:
        try:
            job.on_done(job.run_id, status)
        except Exception:  # a caller's callback must not take the worker down
            log.exception("run %s: on_done callback failed", job.run_id)
