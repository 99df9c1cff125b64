"""Workers and their claims on runs: registration per device, claims fenced by an epoch, heartbeats, cancel.

The store is the only channel between the web server and the work, so either can die without the other: a worker
registers for a device (one per device and host), claims a queued run in one transaction (a new claim epoch, so
two workers never take one run), proves it is alive by heartbeats, and polls the cancel flag. A worker written off
as gone (`reap`) loses its runs' epochs: `fence`, called inside every write a worker makes for its run, then
raises `ClaimLost` and it writes nothing more.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NamedTuple

from core.progress import ClaimLost
from core.runs.store_connection import StoreConnection
from core.runs.store_schema import ACTIVE_STATUSES


class Claim(NamedTuple):
    """A worker's hold on one run: valid while the run is running under this `epoch` (see v7)."""

    run_id: str
    worker: str
    epoch: int


def fence(conn: sqlite3.Connection, claim: Claim | None, *, running: bool = True) -> None:
    """Inside a write transaction: raise `ClaimLost` unless `claim` still holds its run (None: no claim to
    check, as for the server's own writes). `running=False` also accepts the run ended by its own worker
    (its epoch unchanged): a heartbeat between the outcome and the worker noticing it is not a loss."""
    if claim is None:
        return
    still = " AND status = 'running'" if running else ""
    held = conn.execute(f"SELECT 1 FROM runs WHERE id = ? AND worker = ? AND claim_epoch = ?{still}", claim).fetchone()
    if held is None:
        raise ClaimLost(f"run {claim.run_id} is no longer held by worker {claim.worker}; it writes nothing more")


class WorkerClaims(StoreConnection):
    """The run store's worker side: who serves which device, which run each holds, whether it is still alive."""

    def register_worker(
        self,
        worker_id: str,
        device: str,
        host: str,
        pid: int,
        *,
        local: bool = True,
        evict_idle: bool = False,
        kind: str = "worker",
    ) -> bool:
        """Make `worker_id` the worker of `device` on `host`; False if a worker already serves it there.

        `local`: one worker per (device, host) — the rule that keeps one run at a time per GPU across servers and
        CLIs sharing this store. Ray actors register with ``local=False`` (Ray's resources place them).
        `evict_idle`: an app worker running nothing (waiting out its idle time) gives the device up at once; it
        notices at its next heartbeat and exits, and it can claim nothing more (see `claim`). `kind`: 'worker' (the
        app's) or 'cli' (a CLI comparison's hold, never evicted: its runs are not in the store)."""
        now = time.time()
        with self._tx() as conn:
            if local:
                holders = conn.execute("SELECT id, kind FROM workers WHERE device = ? AND host = ?", (device, host))
                busy = False
                for row in holders.fetchall():
                    running = conn.execute(
                        "SELECT 1 FROM runs WHERE worker = ? AND status = 'running' LIMIT 1", (row["id"],)
                    ).fetchone()
                    if running or not evict_idle or row["kind"] != "worker":
                        busy = True
                    else:
                        conn.execute("DELETE FROM workers WHERE id = ?", (row["id"],))
                if busy:
                    return False
            conn.execute(
                "INSERT INTO workers (id, device, host, pid, started, heartbeat, kind) VALUES (?,?,?,?,?,?,?)",
                (worker_id, device, host, pid, now, now, kind),
            )
        return True

    def retire_worker(self, worker_id: str, *, device: str | None = None) -> bool:
        """Remove the worker, unless runs are still queued for `device` (then it keeps serving): one transaction,
        so a run queued while the worker decides to stop is never left without one."""
        with self._tx() as conn:
            if (
                device is not None
                and conn.execute(
                    "SELECT 1 FROM runs WHERE status = 'queued' AND device = ? LIMIT 1", (device,)
                ).fetchone()
            ):
                return False
            conn.execute("DELETE FROM workers WHERE id = ?", (worker_id,))
        return True

    def workers(self) -> list[dict]:
        """The registered workers (id, device, host, pid, started, heartbeat)."""
        return self._query("SELECT * FROM workers ORDER BY started")

    def holder(self, device: str, host: str) -> dict | None:
        """Who holds `device` on `host`: the worker row plus the run it is running (`run`: id, label, group_id,
        owner; None while idle). None when nobody does."""
        rows = self._query("SELECT * FROM workers WHERE device = ? AND host = ? ORDER BY started", (device, host))
        if not rows:
            return None
        worker = rows[0]
        runs = self._query(
            "SELECT id, label, group_id, owner FROM runs WHERE worker = ? AND status = 'running' LIMIT 1",
            (worker["id"],),
        )
        return {**worker, "run": runs[0] if runs else None}

    def claim(self, worker_id: str, *, device: str | None = None, run_id: str | None = None) -> Claim | None:
        """Take the oldest queued run on `device` (or the run `run_id` if it is still queued) for `worker_id`: it
        becomes running under a new claim epoch in the same transaction, so two workers never take one run. None
        when there is none, or when `worker_id` is no longer registered (written off: it takes nothing more)."""
        now = time.time()
        with self._tx() as conn:
            if conn.execute("SELECT 1 FROM workers WHERE id = ?", (worker_id,)).fetchone() is None:
                return None
            if run_id is not None:
                row = conn.execute(
                    "SELECT id, claim_epoch FROM runs WHERE id = ? AND status = 'queued'", (run_id,)
                ).fetchone()
            else:
                row = conn.execute(
                    "SELECT id, claim_epoch FROM runs WHERE status = 'queued' AND device = ?"
                    " ORDER BY created, rowid LIMIT 1",
                    (device,),
                ).fetchone()
            if row is None:
                return None
            claim = Claim(row["id"], worker_id, row["claim_epoch"] + 1)
            self._update_run(
                conn,
                claim.run_id,
                status="running",
                worker=worker_id,
                claim_epoch=claim.epoch,
                heartbeat=now,
                started=now,
                finished=None,
                error=None,
            )
        return claim

    def heartbeat(self, worker_id: str, claim: Claim | None = None) -> bool:
        """The worker (and the run it holds) is alive now; returns whether a cancel was asked for that run.

        Raises `ClaimLost` when the worker was written off meanwhile (its registration is gone) or its run was
        taken from it: whatever its clock says, a worker that was paused past the limit learns it here."""
        now = time.time()
        with self._tx() as conn:
            if conn.execute("UPDATE workers SET heartbeat = ? WHERE id = ?", (now, worker_id)).rowcount == 0:
                raise ClaimLost(f"worker {worker_id} was written off as gone; it takes and writes nothing more")
            if claim is None:
                return False
            fence(conn, claim, running=False)
            conn.execute("UPDATE runs SET heartbeat = ? WHERE id = ?", (now, claim.run_id))
            row = conn.execute("SELECT cancel_requested FROM runs WHERE id = ?", (claim.run_id,)).fetchone()
        return bool(row and row["cancel_requested"])

    @contextmanager
    def holding(self, claim: Claim) -> Iterator[None]:
        """Run the block (a checkpoint's rename) inside one write transaction that first checks `claim` still holds
        its run (`ClaimLost` if not): a write-off takes the same lock, so it cannot come between check and block."""
        with self._tx() as conn:
            fence(conn, claim)
            yield

    def holds(self, claim: Claim) -> bool:
        """Whether `claim` still holds its run (a cheap check before work whose only use is a checkpoint)."""
        return bool(
            self._query(
                "SELECT 1 FROM runs WHERE id = ? AND worker = ? AND claim_epoch = ? AND status = 'running'", claim
            )
        )

    def request_cancel(self, run_id: str) -> bool:
        """Cancel a run: a queued one at once (it never starts), a running one through the flag its worker polls.
        False when the run is not active."""
        with self._tx() as conn:
            row = conn.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None or row["status"] not in ACTIVE_STATUSES:
                return False
            if row["status"] == "queued":
                self._update_run(conn, run_id, status="cancelled", finished=time.time(), error=None)
            else:
                self._update_run(conn, run_id, cancel_requested=1)
        return True

    def cancel_requested(self, run_id: str) -> bool:
        rows = self._query("SELECT cancel_requested FROM runs WHERE id = ?", (run_id,))
        return bool(rows and rows[0]["cancel_requested"])

    def reap(self, is_alive: Callable[[dict], bool], *, stale_after: float) -> list[str]:
        """Forget workers that are gone and mark the runs they were running interrupted; returns those runs.

        A worker is gone when `is_alive(worker row)` says so (its pid is dead on this host) or its heartbeat is
        older than `stale_after` seconds (another host, or a hung process). Queued runs are never touched: opening
        the store, or another server starting, changes nothing that is alive."""
        now = time.time()
        dead = [w["id"] for w in self.workers() if now - w["heartbeat"] > stale_after or not is_alive(w)]
        with self._tx() as conn:
            for worker_id in dead:
                conn.execute("DELETE FROM workers WHERE id = ?", (worker_id,))
            orphans = conn.execute(
                "SELECT id FROM runs WHERE status = 'running' AND (worker IS NULL OR heartbeat IS NULL"
                " OR heartbeat < ? OR worker NOT IN (SELECT id FROM workers))",
                (now - stale_after,),
            ).fetchall()
            for row in orphans:
                self._interrupt(conn, row["id"], "its worker process stopped while it ran; resume it to continue")
        return [row["id"] for row in orphans]

    def _interrupt(self, conn: sqlite3.Connection, run_id: str, error: str) -> None:
        """Mark the run interrupted and bump its claim epoch: whoever held it can write nothing more to it."""
        conn.execute("UPDATE runs SET claim_epoch = claim_epoch + 1 WHERE id = ?", (run_id,))
        self._update_run(conn, run_id, status="interrupted", finished=time.time(), error=error)

    def interrupt_queued(self, run_id: str, error: str) -> bool:
        """A queued run whose executor is gone (a Ray actor lost before it started) becomes interrupted, so it
        says why and can be resumed; False if it is no longer queued (it started or ended meanwhile)."""
        with self._tx() as conn:
            row = conn.execute("SELECT 1 FROM runs WHERE id = ? AND status = 'queued'", (run_id,)).fetchone()
            if row is None:
                return False
            self._interrupt(conn, run_id, error)
        return True
