"""Background work outside the web server: a queue in the run store, worker processes that claim from it.

Why this shape: training inside the Streamlit process slowed every page and died with the server (a restart
killed every run). Now the store is the only channel. The server (``JobQueue``) writes a queued run and makes
sure a worker serves its device; a ``Worker`` — its own process, started detached (``ProcessLauncher``), or a
Ray actor — claims runs in a transaction, trains in a background thread while its main thread writes heartbeats
and polls the cancel flag, and reports progress into the store, which pages poll. A run is interrupted only when
its worker is gone (dead pid on this host, or a stale heartbeat): never because some process opened the store.
One worker per device and host, registered in the store, keeps one run at a time per GPU across servers; a plain
CLI comparison on a GPU registers the same way (``core.runs.device_claim``). Every write a worker makes for its run is
fenced by its claim (``core.runs.store.Claim``): one written off as gone stops at its next write and exits, whatever its
clock says.
"""

from __future__ import annotations

import logging
import math
import os
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from core.allocator import allocator_env
from core.errors import one_line
from core.progress import Cancelled, ClaimLost, ProgressFn, StopFn, claim_held
from core.runs.store import ACTIVE_STATUSES, HOST, Claim, MetricRecord, RunStore
from core.settings import env_float

log = logging.getLogger(__name__)

JobFn = Callable[[ProgressFn, StopFn], dict]  # returns the result dict saved into the store
JobFactory = Callable[[dict], JobFn]  # a stored run (row + config) -> the work it stands for
HEARTBEAT_S = 1.0  # how often a worker says it is alive (and reads its cancel flag)
BACKUP_EVERY_S = 600.0  # the server refreshes the store's last good copy this often (and as each run ends)

LOST = "lost"  # a run's outcome as its worker sees it when its claim was taken away (the store keeps its own)
_worker_device = threading.local()  # set in a run's own thread: the device its worker serves


def heartbeat_stale_s() -> float:
    """``PTUNE_HEARTBEAT_STALE_S`` (default 60): a worker silent this long is gone. Above the heartbeat interval,
    or every live worker would look gone between two heartbeats."""
    return env_float("PTUNE_HEARTBEAT_STALE_S", 60.0, above=HEARTBEAT_S)


def worker_idle_s() -> float:
    """``PTUNE_WORKER_IDLE_S`` (default 300): a worker with nothing queued stops after this many seconds."""
    return env_float("PTUNE_WORKER_IDLE_S", 300.0, above=0)


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
    """The device of the worker running the calling code (None outside a worker's run)."""
    return getattr(_worker_device, "name", None)


def stopping(run: Mapping) -> bool:
    """A cancel was asked for and the run (a store row) has not stopped yet: it stops at its next step or chunk."""
    return run["status"] in ACTIVE_STATUSES and bool(run["cancel_requested"])


def pid_alive(pid: int, started: float | None = None) -> bool:
    """A process with this pid runs on this host (not a zombie; when `started` is given, the same process and not
    a later one that reused the pid)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or proc.create_time() <= started + 1.0
    except psutil.Error:
        return False


def worker_alive(worker: Mapping) -> bool:
    """A registered worker is alive as far as this host can tell: its pid, when it runs here; else trust the
    heartbeat (the store's `reap` checks its age)."""
    return worker["host"] != HOST or pid_alive(worker["pid"], worker["started"])


class _Progress:
    """The ``progress`` callback of one run: ETA from elapsed time, store writes throttled to ``interval``.

    Calls between writes are buffered and written with the next one, so every step's metrics reach the store
    while a tight loop costs one SQLite transaction per ``interval`` at most. The final step, and any step after
    a cancel request, are written at once. ``phase(name)`` (see ``core.progress.enter_phase``) records what the
    run is doing; each phase's ETA counts from the moment it was first entered (a training phase interrupted by
    dev evaluations keeps one clock). Called only from the run's own thread, so it needs no lock.
    """

    def __init__(self, store: RunStore, claim: Claim, stopping: Callable[[], bool], interval: float):
        self._store, self._claim, self._stopping, self._interval = store, claim, stopping, interval
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
        urgent = step >= total or self._stopping()
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
            self._claim.run_id, step, total, metrics, eta, backlog=self._backlog, phase=self._phase, claim=self._claim
        )
        self._backlog = []
        self._step, self._total = step, total
        self._last_write = time.monotonic()


class _CancelFlag:
    """``should_stop`` of one run: the store's cancel flag, read at every call (one indexed SELECT, small beside a
    step) so a cancel is seen at the next step; once set it stays set. Once the heartbeat has found the claim
    lost, it raises `ClaimLost` instead: the run stops without the checkpoint a cancel writes."""

    def __init__(self, store: RunStore, run_id: str):
        self._store, self._run_id = store, run_id
        self._event, self.lost = threading.Event(), threading.Event()

    def set(self) -> None:
        self._event.set()

    def __call__(self) -> bool:
        if self.lost.is_set():
            raise ClaimLost(f"run {self._run_id} was taken from this worker")
        if not self._event.is_set() and self._store.cancel_requested(self._run_id):
            self._event.set()
        return self._event.is_set()


class Worker:
    """Claims runs for one device from the store and runs them one at a time, until idle for ``idle_exit_s``.

    The run itself executes in a background thread; this thread writes the heartbeat every ``heartbeat_s`` and
    passes a cancel on. A run's failure is recorded on that run and never ends the worker.
    """

    def __init__(
        self,
        store: RunStore,
        device: str,
        make_job: JobFactory,
        *,
        heartbeat_s: float = HEARTBEAT_S,
        idle_exit_s: float | None = None,  # None: $PTUNE_WORKER_IDLE_S
        progress_interval: float = 0.2,
        poll_s: float = 0.25,
    ):
        self.store, self.device, self.make_job = store, device, make_job
        self.heartbeat_s = heartbeat_s
        self.idle_exit_s = worker_idle_s() if idle_exit_s is None else idle_exit_s
        self.progress_interval, self.poll_s = progress_interval, poll_s
        self.id = f"{HOST}:{os.getpid()}:{uuid.uuid4().hex[:6]}"

    def serve(self) -> int:
        """Register as the device's worker and run queued runs until none has come for ``idle_exit_s``.

        Returns how many runs it ran; 0 at once when another live worker already serves the device here. Returns
        early when it was written off as gone (its registration or a run's claim taken away): another worker may
        serve the device by then, so it must not take anything more."""
        if not self.store.register_worker(self.id, self.device, HOST, os.getpid()):
            log.info("device %s already has a worker on %s; nothing to do", self.device, HOST)
            return 0
        ran, idle_since = 0, time.monotonic()
        try:
            while True:
                claim = self.store.claim(self.id, device=self.device)
                if claim is not None:
                    status = self.run_claimed(claim)
                    ran, idle_since = ran + 1, time.monotonic()
                    if status == LOST:
                        return ran
                    continue
                self.store.heartbeat(self.id)  # ClaimLost: written off while idle (or the device was handed over)
                if time.monotonic() - idle_since >= self.idle_exit_s and self.store.retire_worker(
                    self.id, device=self.device
                ):
                    return ran
                time.sleep(self.poll_s)
        except ClaimLost as lost:
            log.warning("worker %s exits: %s", self.id, lost)
            return ran
        finally:
            self.store.retire_worker(self.id)

    def run_one(self, run_id: str) -> str | None:
        """Claim and run the run ``run_id`` (a Ray actor's whole job); None if it is no longer queued."""
        self.store.register_worker(self.id, self.device, HOST, os.getpid(), local=False)
        try:
            claim = self.store.claim(self.id, run_id=run_id)
            return None if claim is None else self.run_claimed(claim)
        finally:
            self.store.retire_worker(self.id)

    def run_claimed(self, claim: Claim) -> str:
        """Run a claimed run in a background thread, heartbeating here; returns its final status (`LOST` when the
        claim was taken away: the run thread stops at its next write or step, and nothing more is written)."""
        stop = _CancelFlag(self.store, claim.run_id)
        outcome: list[str] = []
        thread = threading.Thread(
            target=lambda: outcome.append(self._execute(claim, stop)), name=f"run-{claim.run_id}", daemon=True
        )
        thread.start()
        while thread.is_alive():
            thread.join(self.heartbeat_s)
            if stop.lost.is_set():
                continue
            try:
                if self.store.heartbeat(self.id, claim):
                    stop.set()
            except ClaimLost as lost:
                log.warning("run %s: %s", claim.run_id, lost)
                stop.lost.set()
            except Exception:  # a busy store must not stop the run; the next beat retries
                log.warning("run %s: heartbeat not written", claim.run_id, exc_info=True)
        return LOST if stop.lost.is_set() else (outcome[0] if outcome else "failed")

    def _execute(self, claim: Claim, stop: _CancelFlag) -> str:
        """Run the job and record its outcome: succeeded, cancelled or failed (with a one-line error); nothing at
        all once the claim is lost (`LOST`)."""
        _worker_device.name = self.device
        run_id = claim.run_id

        def check() -> None:
            if stop.lost.is_set() or not self.store.holds(claim):
                stop.lost.set()
                raise ClaimLost(f"run {run_id} was taken from worker {claim.worker}")

        try:
            with claim_held(check, lambda: self.store.holding(claim)):
                return self._outcome(claim, stop)
        except ClaimLost as lost:
            log.warning("run %s: stopped without writing: %s", run_id, lost)
            stop.lost.set()
            return LOST

    def _outcome(self, claim: Claim, stop: _CancelFlag) -> str:
        run_id = claim.run_id
        try:
            run = self.store.get_run(run_id)
            job = self.make_job({**run, "claim": claim})
            result = job(_Progress(self.store, claim, stop, self.progress_interval), stop)
        except Cancelled:
            return self._finish(claim, "cancelled")
        except ClaimLost:
            raise
        except Exception as exc:
            log.error("run %s failed", run_id, exc_info=True)
            return self._fail(claim, exc, traceback.format_exc())
        if stop():
            return self._finish(claim, "cancelled")
        if not isinstance(result, dict):
            return self._fail(claim, TypeError(f"job returned {type(result).__name__}, expected a result dict"), "")
        self.store.save_result(run_id, result, claim=claim)
        return self._finish(claim, "succeeded")

    def _fail(self, claim: Claim, exc: Exception, tb: str) -> str:
        error = f"{type(exc).__name__}: {one_line(exc)}"
        self.store.save_result(claim.run_id, {"error": error, "traceback": tb}, claim=claim)
        return self._finish(claim, "failed", error)

    def _finish(self, claim: Claim, status: str, error: str | None = None) -> str:
        try:
            self.store.set_status(claim.run_id, status, error=error, claim=claim)
        except ClaimLost:
            raise
        except Exception:  # the run was deleted meanwhile; keep serving the queue
            log.exception("run %s: could not record %s", claim.run_id, status)
        keep_a_copy(self.store)  # a run's end is a clean point
        return status


def keep_a_copy(store: RunStore) -> None:
    """Refresh the store's last good copy (`RunStore.backup`); a damaged or busy store leaves the copy as it is."""
    try:
        store.backup()
    except Exception as err:
        log.warning("the run store's copy was not refreshed: %s", one_line(err))


class ProcessLauncher:
    """Starts a detached worker process per device on demand (``argv`` + ``--device D``): a new session, its
    own log file, lower CPU priority, so it survives the server's stop, restart or SIGKILL."""

    def __init__(self, argv: Sequence[str], *, log_dir: Path, cwd: Path | None = None):
        self.argv, self.log_dir, self.cwd = list(argv), Path(log_dir), cwd
        self._started: dict[str, subprocess.Popen] = {}
        self._registered: set[int] = set()  # pids of our workers seen registered in the store
        self._lock = threading.Lock()

    def ensure(self, device: str, store: RunStore) -> None:
        """A worker serves `device` on this host, or one is starting (one we started, not yet seen registered, that
        has not exited). One seen registered that no longer is was written off (or retired): it starts nothing
        more, so a new one is started even while its process lingers (a paused one)."""
        here = [w for w in store.workers() if w["device"] == device and w["host"] == HOST]
        if here:
            self._registered.update(w["pid"] for w in here)
            return
        with self._lock:
            proc = self._started.get(device)
            if proc is not None and proc.poll() is None and proc.pid not in self._registered:
                return  # still starting (it registers once torch is imported)
            self.log_dir.mkdir(parents=True, exist_ok=True)
            name = device.replace(":", "-")
            with open(self.log_dir / f"worker-{name}.log", "ab") as out:
                self._started[device] = subprocess.Popen(
                    [*self.argv, "--device", device],
                    cwd=self.cwd,
                    env=allocator_env(os.environ),  # huge pages for its tensors, from its first allocation
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # not in the server's process group: Ctrl-C or a kill of it spares us
                )
        log.info("started a worker for %s (pid %d)", device, self._started[device].pid)

    def submit(self, run_id: str, device: str, store: RunStore) -> None:
        self.ensure(device, store)

    def check(self, store: RunStore, queued_devices: Sequence[str]) -> None:
        """Collect our exited workers (no zombies while the server lives), note which have registered, and give
        every device with queued runs a worker again (one that died or was written off leaves its queue to a new
        one)."""
        ours = {proc.pid for proc in self._started.values()}
        self._registered.update(w["pid"] for w in store.workers() if w["host"] == HOST and w["pid"] in ours)
        with self._lock:
            for device, proc in list(self._started.items()):
                if proc.poll() is not None:
                    del self._started[device]
        for device in queued_devices:
            self.ensure(device, store)


class Launcher(Protocol):
    """Where queued runs get executed: local worker processes, or a Ray cluster."""

    def submit(self, run_id: str, device: str, store: RunStore) -> None: ...

    def check(self, store: RunStore, queued_devices: Sequence[str]) -> None: ...


class JobQueue:
    """The server's side of background work: queue runs, place them on devices, cancel, watch liveness.

    Holds no work itself, so the server can stop or restart at any time; a second process making a JobQueue on
    the same store changes nothing that is alive.
    """

    _last_backup = -math.inf  # when this queue last refreshed the store's copy (monotonic)

    def __init__(
        self,
        store: RunStore,
        launcher: Launcher,
        *,
        devices: Sequence[str] = ("cpu",),
        stale_after: float | None = None,  # None: $PTUNE_HEARTBEAT_STALE_S
    ):
        if not devices or len(set(devices)) != len(devices):
            raise ValueError(f"devices must be a non-empty list of distinct names, got {list(devices)!r}")
        self.store, self.launcher, self.devices = store, launcher, tuple(devices)
        self.stale_after = heartbeat_stale_s() if stale_after is None else stale_after
        self._last_check = -math.inf
        self.check(force=True)

    def submit(self, run_id: str, *, device: str | None = None) -> str:
        """Queue the (already created) run on `device` (None: where ``place`` puts it); returns the device."""
        if device is not None and device not in self.devices:
            raise ValueError(f"unknown device {device!r}; this app serves {', '.join(self.devices)}")
        run = self.store.get_run(run_id)
        if run is None:
            raise KeyError(f"no run {run_id!r}")
        if run["status"] in ACTIVE_STATUSES and run.get("device"):
            raise ValueError(f"run {run_id!r} is already queued or running")
        device = device or place(self.devices, self._load())
        self.store.set_device(run_id, device)
        self.store.set_status(run_id, "queued")
        self.launcher.submit(run_id, device, self.store)
        return device

    def _active_rows(self) -> list[dict]:
        return [r for s in ACTIVE_STATUSES for r in self.store.list_runs(status=s, limit=100_000)]

    def _load(self) -> dict[str, int]:
        load = dict.fromkeys(self.devices, 0)
        for row in self._active_rows():
            if row["device"] in load:
                load[row["device"]] += 1
        return load

    def cancel(self, run_id: str) -> bool:
        """Ask a run to stop; a queued run is cancelled at once and never starts. False if it is not active."""
        return self.store.request_cancel(run_id)

    def is_stopping(self, run_id: str) -> bool:
        run = self.store.get_run(run_id)
        return run is not None and stopping(run)

    def active_runs(self) -> list[str]:
        """Ids of queued and running runs, oldest first."""
        return [r["id"] for r in sorted(self._active_rows(), key=lambda r: r["created"])]

    def check(self, *, force: bool = False, every: float = 2.0) -> list[str]:
        """Liveness, at most every `every` seconds: runs whose worker is gone become interrupted (returned), and
        every device with queued runs gets a worker again (one that died leaves its queue to a new one)."""
        now = time.monotonic()
        if not force and now - self._last_check < every:
            return []
        self._last_check = now
        interrupted = self.store.reap(worker_alive, stale_after=self.stale_after)
        for run_id in interrupted:
            log.warning("run %s: its worker is gone; marked interrupted", run_id)
        queued = {r["device"] for r in self.store.list_runs(status="queued", limit=100_000)}
        self.launcher.check(self.store, sorted(queued & set(self.devices)))
        if now - self._last_backup >= BACKUP_EVERY_S:
            self._last_backup = now
            keep_a_copy(self.store)
        return interrupted

    def wait(self, run_id: str, timeout: float | None = None, *, poll: float = 0.1) -> str:
        """Block until the run is terminal and return its status; TimeoutError if ``timeout`` passes first."""
        deadline = math.inf if timeout is None else time.monotonic() + timeout
        while True:
            run = self.store.get_run(run_id)
            if run is None:
                raise KeyError(f"no run {run_id!r}")
            if run["status"] not in ACTIVE_STATUSES:
                return run["status"]
            if time.monotonic() >= deadline:
                raise TimeoutError(f"run {run_id!r} still active after {timeout} s")
            self.check()
            time.sleep(poll)


def worker_argv(module: str, home: Path) -> list[str]:
    """The command that starts a worker process of `module` for the store in `home` (``--device`` follows)."""
    return [sys.executable, "-m", module, "--home", str(home)]
