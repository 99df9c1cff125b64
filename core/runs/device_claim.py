"""A GPU held in the run store by a process that is not one of the app's workers: a plain CLI comparison.

Why: "one run at a time per device" was kept only among the app's workers, so `python -m core compare` on a GPU
trained beside the app's worker there (and ran out of memory). Holding a device is registering as its worker in
the store (`RunStore.register_worker`, one per device and host), so the app's worker and the CLI exclude each other
through the same row; an idle app worker hands the device over at once.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid

from core.progress import ClaimLost
from core.runs.store import HOST, RunStore

log = logging.getLogger(__name__)
HEARTBEAT_S = 1.0  # as the app's workers beat (core.runs.jobs.HEARTBEAT_S)
KIND = "cli"  # the store's `workers.kind` of a device held by a CLI comparison


class DeviceClaim:
    """A process outside the app's workers (a plain CLI comparison) holding `device` in the store, as the app's
    worker for it would: the app's worker then waits, and this one refuses to start while a run trains there.

    An idle app worker gives the device up at once (it exits at its next heartbeat). Heartbeats come from a
    background thread; if this process is written off (paused past the heartbeat limit), `lost` is set and
    `check()` raises `ClaimLost`, so it stops rather than train beside whoever got the device next."""

    def __init__(self, store: RunStore, device: str, *, heartbeat_s: float = HEARTBEAT_S):
        self.store, self.device, self.heartbeat_s = store, device, heartbeat_s
        self.id = f"{HOST}:{os.getpid()}:{KIND}-{uuid.uuid4().hex[:6]}"
        self.lost = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> DeviceClaim:
        if not self.store.register_worker(self.id, self.device, HOST, os.getpid(), evict_idle=True, kind=KIND):
            raise DeviceBusy(self.busy_message())
        self._thread = threading.Thread(target=self._beat, name=f"claim-{self.device}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()
        self.store.retire_worker(self.id)

    def busy_message(self) -> str:
        """One line: who holds the device (the app's worker and its run, or another CLI comparison) and what to do."""
        holder = self.store.holder(self.device, HOST)
        if holder is None:
            return f"{self.device} was taken by another process just now; run the command again"
        if holder["kind"] == KIND:
            return (
                f"{self.device} is busy: another `python -m core compare` (pid {holder['pid']}) trains on it; wait "
                "for it to finish, then run this again"
            )
        run = holder["run"]
        what = f"run {run['id']} ({run['label']}, comparison {run['group_id']})" if run else "a comparison"
        return (
            f"{self.device} is busy: PTune Studio's worker (pid {holder['pid']}) is training {what} on it; wait for "
            "it to finish or cancel it on the Runs page, then run this again"
        )

    def check(self) -> None:
        """Raise `ClaimLost` if the device was taken from this process (its registration was written off)."""
        if self.lost.is_set():
            raise ClaimLost(
                f"{self.device} was handed to another worker while this process was paused past the heartbeat "
                "limit; run the command again"
            )

    def _beat(self) -> None:
        while not self._done.wait(self.heartbeat_s):
            try:
                self.store.heartbeat(self.id)
            except ClaimLost:
                self.lost.set()
                return
            except Exception:  # a busy store: the next beat retries
                log.warning("device claim %s: heartbeat not written", self.id, exc_info=True)


class DeviceBusy(RuntimeError):
    """The device is held by another process's run; one line naming the run and what to do."""
