"""The real `core.runs.jobs.Worker` hosted in a thread of the test process instead of a process of its own.

Why: a test can then give runs plain functions as jobs (to script a cancel or a failure at an exact moment) or
patch what a run calls. Claims, heartbeats, the cancel flag and progress go through the real store exactly as in
a worker process; the process boundary itself is tested in tests/test_worker_processes.py.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

from core.runs.jobs import JobFactory, Worker
from core.runs.store import RunStore


class ThreadLauncher:
    """A `core.runs.jobs.Launcher` that serves each device with a `Worker` in a daemon thread of this process."""

    def __init__(self, db: Path, make_job: JobFactory, *, idle_exit_s: float = 0.3, progress_interval: float = 0.2):
        self.db, self.make_job = Path(db), make_job
        self.idle_exit_s, self.progress_interval = idle_exit_s, progress_interval
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    def submit(self, run_id: str, device: str, store: RunStore) -> None:
        self._ensure(device)

    def check(self, store: RunStore, queued_devices: Sequence[str]) -> None:
        for device in queued_devices:
            self._ensure(device)

    def _ensure(self, device: str) -> None:
        with self._lock:
            thread = self._threads.get(device)
            if thread is not None and thread.is_alive():
                return  # a retiring worker re-checks the queue in the same transaction that retires it
            thread = threading.Thread(target=self._serve, args=(device,), name=f"worker-{device}", daemon=True)
            self._threads[device] = thread
            thread.start()

    def _serve(self, device: str) -> None:
        with RunStore(self.db) as store:
            worker = Worker(
                store,
                device,
                self.make_job,
                idle_exit_s=self.idle_exit_s,
                progress_interval=self.progress_interval,
                heartbeat_s=0.1,
                poll_s=0.02,
            )
            worker.serve()

    def join(self, timeout: float = 10.0) -> None:
        """Wait for every worker thread to retire (their queues are empty)."""
        for thread in list(self._threads.values()):
            thread.join(timeout)
