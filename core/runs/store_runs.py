"""SQLite run store: runs, their config, metric time series, final results and artifact paths.

Why SQLite in WAL mode: worker processes write progress while the Streamlit server and the CLI (other
processes) read it; WAL lets readers proceed during a write, and ``busy_timeout`` makes a second process
wait for the write lock instead of failing. Inside one process a single connection is shared by every thread
(``check_same_thread=False``) and guarded by a lock: Streamlit starts a new thread for every script rerun, so
per-thread connections would pile up, and SQLite serialises writers anyway.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import os
import secrets
import shutil
import socket
import sqlite3
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from core.progress import ClaimLost

log = logging.getLogger(__name__)

HOST = socket.gethostname()  # this machine, as worker rows name it
HOME_ENV = "PTUNE_HOME"
REPO_ROOT = Path(__file__).resolve().parents[2]
STATUSES = ("queued", "running", "succeeded", "failed", "cancelled", "interrupted")
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled", "interrupted"})
ACTIVE_STATUSES = ("queued", "running")
SCHEMA_VERSION = 7
BUSY_TIMEOUT_MS = 10_000
BACKUP_SUFFIX = ".bak"  # runs.db.bak: the last copy that passed SQLite's quick_check
DAMAGE_MARKS = ("malformed", "not a database")  # what SQLite says of a damaged file (sqlite3.DatabaseError)

_SCHEMA_V1 = """
CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    method TEXT NOT NULL,
    label TEXT NOT NULL,
    status TEXT NOT NULL,
    group_id TEXT,
    seed INTEGER,
    device TEXT,
    error TEXT,
    progress_step INTEGER NOT NULL DEFAULT 0,
    progress_total INTEGER NOT NULL DEFAULT 0,
    eta_seconds REAL
);
CREATE INDEX runs_created ON runs(created);
CREATE INDEX runs_group ON runs(group_id);
CREATE TABLE configs (run_id TEXT PRIMARY KEY REFERENCES runs(id) ON DELETE CASCADE, json TEXT NOT NULL);
CREATE TABLE results (run_id TEXT PRIMARY KEY REFERENCES runs(id) ON DELETE CASCADE, json TEXT NOT NULL);
CREATE TABLE metrics (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    step INTEGER NOT NULL,
    t REAL NOT NULL,
    name TEXT NOT NULL,
    value REAL
);
CREATE INDEX metrics_run_step ON metrics(run_id, step);
CREATE TABLE artifacts (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    path TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX artifacts_run ON artifacts(run_id);
"""

# v2: every run has an owner (a login or a private workspace key; '' for the CLI and older runs), and a
# comparison can be shared read-only through a random token.
_SCHEMA_V2 = """
ALTER TABLE runs ADD COLUMN owner TEXT NOT NULL DEFAULT '';
CREATE INDEX runs_owner ON runs(owner, group_id);
CREATE TABLE shares (
    token TEXT PRIMARY KEY,
    group_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE share_access (
    owner TEXT NOT NULL,
    group_id TEXT NOT NULL,
    PRIMARY KEY (owner, group_id)
);
"""

# v3: what a run is doing now (its phase: "training", "scoring the test split", ...; progress_step/total count
# within it) and when it started and finished, so a card shows its wall time and each phase its own progress.
_SCHEMA_V3 = """
ALTER TABLE runs ADD COLUMN phase TEXT NOT NULL DEFAULT '';
ALTER TABLE runs ADD COLUMN started REAL;
ALTER TABLE runs ADD COLUMN finished REAL
"""

# v4: the run's K (examples per label; NULL: all training rows), so a learning curve's runs of one method and seed
# at several K are told apart from the run rows alone.
_SCHEMA_V4 = """
ALTER TABLE runs ADD COLUMN k_shot INTEGER
"""

# v5: runs are executed by worker processes (or Ray actors) that claim them here. `workers` lists the live ones
# (one per device and host), each run names its worker and carries its heartbeat, and cancel is a flag the worker
# polls: the store is the only channel between the web server and the work, so either can die without the other.
_SCHEMA_V5 = """
ALTER TABLE runs ADD COLUMN worker TEXT;
ALTER TABLE runs ADD COLUMN heartbeat REAL;
ALTER TABLE runs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
CREATE INDEX runs_status_device ON runs(status, device);
CREATE TABLE workers (
    id TEXT PRIMARY KEY,
    device TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started REAL NOT NULL,
    heartbeat REAL NOT NULL
)
"""

# v6: how fast each method ran on a backbone and device (core.runs.estimate's two rates, blended over finished runs), so
# the Train page's estimate, the launch order and the queue ETA come from this machine's own measured speed.
_SCHEMA_V6 = """
CREATE TABLE throughput (
    backbone TEXT NOT NULL,
    device TEXT NOT NULL,
    method TEXT NOT NULL,
    work_seconds REAL,
    example_seconds REAL NOT NULL,
    runs INTEGER NOT NULL DEFAULT 1,
    updated REAL NOT NULL,
    PRIMARY KEY (backbone, device, method)
)
"""

# v7: a run's claim carries an epoch, bumped at every claim and interruption. Every write a worker makes for its run
# (progress, metrics, result, artifacts, outcome) checks, in its own transaction, that the run is still running
# under the epoch it claimed: a worker written off as gone (paused past the heartbeat limit) writes nothing more.
# A device is held by an app worker ('worker') or by a plain CLI comparison ('cli', core/runs/device_claim.py).
_SCHEMA_V7 = """
ALTER TABLE runs ADD COLUMN claim_epoch INTEGER NOT NULL DEFAULT 0;
ALTER TABLE workers ADD COLUMN kind TEXT NOT NULL DEFAULT 'worker'
"""

# Migration i turns schema version i into version i + 1; append new ones, never edit old ones.
_MIGRATIONS = (_SCHEMA_V1, _SCHEMA_V2, _SCHEMA_V3, _SCHEMA_V4, _SCHEMA_V5, _SCHEMA_V6, _SCHEMA_V7)

# One earlier metric record buffered by a throttled progress reporter: (step, wall time, metrics).
MetricRecord = tuple[int, float, Mapping[str, float]]


class Claim(NamedTuple):
    """A worker's hold on one run: valid while the run is running under this `epoch` (see v7)."""

    run_id: str
    worker: str
    epoch: int


class StoreDamaged(RuntimeError):
    """The store's file is damaged (truncated, overwritten): one line naming the file and how to restore it."""


def ptune_home() -> Path:
    """Where runs, uploads and artifacts live: $PTUNE_HOME, else ``.ptune/`` in the repository root."""
    return Path(os.environ.get(HOME_ENV) or REPO_ROOT / ".ptune").expanduser().resolve()


def backup_path(path: Path) -> Path:
    """Where the last good copy of the store at `path` is kept."""
    return path.with_name(path.name + BACKUP_SUFFIX)


def _damage_message(path: Path, err: BaseException) -> str:
    backup = backup_path(path)
    if backup.is_file():
        taken = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(backup.stat().st_mtime))
        fix = (
            f"stop PTune Studio and its workers, move it aside with its -wal and -shm files and copy {backup} "
            f"(the last good copy, of {taken}) in its place"
        )
    else:
        fix = (
            "no backup of it exists; stop PTune Studio and move it aside (with its -wal and -shm files) to start anew"
        )
    return f"the run store {path} is damaged ({err}); {fix}"


def _is_damage(err: BaseException) -> bool:
    return isinstance(err, sqlite3.DatabaseError) and any(mark in str(err) for mark in DAMAGE_MARKS)


def to_json(obj: Any) -> str:
    """Serialise ``obj`` as strict JSON: NaN/inf become null (the UI and pandas read them as missing).

    Anything that is not plain data raises ``TypeError`` naming where it sits, so a config holding a tensor
    or a Path fails at ``create_run`` rather than producing an unreadable row.
    """
    return json.dumps(_plain(obj, "$"), allow_nan=False)


def _plain(obj: Any, where: str) -> Any:
    """Recursively convert ``obj`` to JSON-ready Python values (see ``to_json``)."""
    if obj is None or isinstance(obj, str | bool):
        return obj
    if isinstance(obj, numbers.Integral):  # includes numpy integers
        return int(obj)
    if isinstance(obj, numbers.Real):  # includes numpy floats
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, Mapping):
        out = {}
        for key, value in obj.items():
            if not isinstance(key, str):
                raise TypeError(f"{where}: key {key!r} is {type(key).__name__}; JSON object keys must be str")
            out[key] = _plain(value, f"{where}.{key}")
        return out
    if isinstance(obj, list | tuple):
        return [_plain(value, f"{where}[{i}]") for i, value in enumerate(obj)]
    raise TypeError(f"{where}: {type(obj).__name__} is not JSON-serialisable; convert it to str, number, list or dict")


def _quick_check(conn: sqlite3.Connection, path: Path) -> None:
    """Raise `StoreDamaged` unless SQLite's quick_check finds the database behind `conn` sound."""
    found = [row[0] for row in conn.execute("PRAGMA quick_check").fetchall()]
    if found != ["ok"]:
        raise StoreDamaged(_damage_message(path, sqlite3.DatabaseError(f"quick_check: {found[0]}")))


def _metric_value(value: float) -> float | None:
    """A metric as REAL, or NULL when it is not finite (keeps charts and aggregates sane)."""
    value = float(value)
    return value if math.isfinite(value) else None


class RunStore:
    """Thread-safe access to one SQLite run database (created with its parent folder when missing)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.restored = self._restore_if_missing()
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(
            self.path, check_same_thread=False, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000
        )
        try:
            with self._damage_said():
                self._conn.row_factory = sqlite3.Row
                self._conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                self._conn.execute("PRAGMA foreign_keys = ON")
                self.journal_mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                self._conn.execute("PRAGMA synchronous = NORMAL")  # durable across app crashes in WAL mode
                self._migrate()
        except BaseException:
            self._conn.close()
            raise

    def _restore_if_missing(self) -> bool:
        """A store whose file is gone while its last good copy exists (deleted by hand, or while the server ran) is
        brought back from that copy rather than started empty: history is what a store is for. Stale -wal/-shm
        files of the deleted store are moved aside first (they belong to the old file). True if restored."""
        backup = backup_path(self.path)
        if self.path.exists() or not backup.is_file():
            return False
        for suffix in ("-wal", "-shm"):
            stale = self.path.with_name(self.path.name + suffix)
            if stale.exists():
                stale.replace(stale.with_name(f"{stale.name}.orphaned-{int(time.time())}"))
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".tmp-restore-", suffix=".db")
        os.close(fd)
        try:
            shutil.copyfile(backup, tmp)
            try:
                os.link(tmp, self.path)  # only if still missing: another process may have restored it first
            except FileExistsError:
                return False
        finally:
            os.unlink(tmp)
        log.warning("%s was missing; restored it from %s", self.path, backup)
        return True

    @contextmanager
    def _damage_said(self) -> Iterator[None]:
        """SQLite's "database disk image is malformed" becomes `StoreDamaged`, naming the file and the way back."""
        try:
            yield
        except sqlite3.DatabaseError as err:
            if _is_damage(err):
                raise StoreDamaged(_damage_message(self.path, err)) from err
            raise

    def _migrate(self) -> None:
        """Bring the schema to ``SCHEMA_VERSION``; refuse a database written by a newer version."""
        with self._tx() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"{self.path} has schema version {version}; this PTune Studio reads up to {SCHEMA_VERSION}"
                )
            for script in _MIGRATIONS[version:]:
                for statement in filter(str.strip, script.split(";")):
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; BEGIN IMMEDIATE takes the write lock up front so it never fails half-way."""
        with self._lock, self._damage_said():
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[dict]:
        with self._lock, self._damage_said():
            return [dict(row) for row in self._conn.execute(sql, params).fetchall()]

    def backup(self) -> Path:
        """Keep a copy of the store beside it (``runs.db.bak``), taken with SQLite's online backup (a consistent
        snapshot while others write). The copy is checked (``PRAGMA quick_check``; pages are copied as they are, so
        a damaged store gives a damaged copy) before it replaces the old one atomically: a damaged store raises
        `StoreDamaged` and never overwrites the last good copy. Returns the copy's path."""
        target = backup_path(self.path)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".tmp-backup-", suffix=".db")
        os.close(fd)
        try:
            with self._lock, self._damage_said():
                with sqlite3.connect(tmp) as copy:
                    self._conn.backup(copy)
                    _quick_check(copy, self.path)
                copy.close()
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        if not self.path.exists():
            log.warning(
                "%s was deleted while in use; its contents are in %s, restored at the next start", self.path, target
            )
        return target

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writes ---------------------------------------------------------------------------------------------

    def create_run(
        self,
        *,
        method: str,
        label: str,
        config: dict,
        group_id: str | None = None,
        seed: int | None = None,
        owner: str = "",
        k_shot: int | None = None,
    ) -> str:
        """Insert a queued run with its full config; returns its id (12 hex digits)."""
        run_id = uuid.uuid4().hex[:12]
        config_json = to_json(config)  # raises before anything is written
        now = time.time()
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO runs (id, created, updated, method, label, status, group_id, seed, owner, k_shot)"
                " VALUES (?,?,?,?,?,?,?,?,?,?)",
                (run_id, now, now, method, label, "queued", group_id, seed, owner, k_shot),
            )
            conn.execute("INSERT INTO configs (run_id, json) VALUES (?, ?)", (run_id, config_json))
        return run_id

    def _update_run(self, conn: sqlite3.Connection, run_id: str, **columns: Any) -> None:
        """Set ``columns`` (column names are ours, never user input) and ``updated``; KeyError for an unknown run."""
        columns["updated"] = time.time()
        assignments = ", ".join(f"{name} = ?" for name in columns)
        cursor = conn.execute(f"UPDATE runs SET {assignments} WHERE id = ?", (*columns.values(), run_id))
        if cursor.rowcount == 0:
            raise KeyError(f"no run {run_id!r} in {self.path}")

    def _fence(self, conn: sqlite3.Connection, claim: Claim | None, *, running: bool = True) -> None:
        """Inside a write transaction: raise `ClaimLost` unless `claim` still holds its run (None: no claim to
        check, as for the server's own writes). `running=False` also accepts the run ended by its own worker
        (its epoch unchanged): a heartbeat between the outcome and the worker noticing it is not a loss."""
        if claim is None:
            return
        still = " AND status = 'running'" if running else ""
        held = conn.execute(
            f"SELECT 1 FROM runs WHERE id = ? AND worker = ? AND claim_epoch = ?{still}", claim
        ).fetchone()
        if held is None:
            raise ClaimLost(f"run {claim.run_id} is no longer held by worker {claim.worker}; it writes nothing more")

    def holds(self, claim: Claim) -> bool:
        """Whether `claim` still holds its run (checked before a checkpoint is replaced)."""
        return bool(
            self._query(
                "SELECT 1 FROM runs WHERE id = ? AND worker = ? AND claim_epoch = ? AND status = 'running'", claim
            )
        )

    def set_status(self, run_id: str, status: str, *, error: str | None = None, claim: Claim | None = None) -> None:
        """Set the status; ``error`` describes the new status, so passing None clears an old error. With `claim`,
        only while it holds the run (`ClaimLost` otherwise)."""
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}; expected one of {', '.join(STATUSES)}")
        columns: dict[str, Any] = {"status": status, "error": error}
        if status == "running":
            columns.update(started=time.time(), finished=None)
        elif status in TERMINAL_STATUSES:
            columns["finished"] = time.time()
        with self._tx() as conn:
            self._fence(conn, claim)
            self._update_run(conn, run_id, **columns)

    def set_device(self, run_id: str, device: str) -> None:
        """Record which device (worker) the run was assigned to."""
        with self._tx() as conn:
            self._update_run(conn, run_id, device=device)

    def record_progress(
        self,
        run_id: str,
        step: int,
        total: int,
        metrics: Mapping[str, float],
        eta_seconds: float | None = None,
        *,
        backlog: Sequence[MetricRecord] = (),
        phase: str | None = None,
        claim: Claim | None = None,
    ) -> None:
        """Update the progress columns (and the phase they count, when given) and append metric rows in one
        transaction.

        ``backlog`` holds earlier (step, time, metrics) records a throttled reporter buffered, so a loss curve
        keeps every step even though the store is written a few times per second at most. With `claim`, nothing is
        written unless it still holds the run (`ClaimLost`).
        """
        now = time.time()
        rows = [
            (run_id, s, t, name, _metric_value(v))
            for s, t, m in (*backlog, (step, now, metrics))
            for name, v in m.items()
        ]
        columns: dict[str, Any] = {"progress_step": step, "progress_total": total, "eta_seconds": eta_seconds}
        if phase is not None:
            columns["phase"] = phase
        with self._tx() as conn:
            self._fence(conn, claim)
            self._update_run(conn, run_id, **columns)
            conn.executemany("INSERT INTO metrics (run_id, step, t, name, value) VALUES (?,?,?,?,?)", rows)

    def save_result(self, run_id: str, result: dict, *, claim: Claim | None = None) -> None:
        """Store (or replace) the run's final result dict (with `claim`: only while it holds the run)."""
        result_json = to_json(result)
        with self._tx() as conn:
            self._fence(conn, claim)
            self._update_run(conn, run_id)
            conn.execute("INSERT OR REPLACE INTO results (run_id, json) VALUES (?, ?)", (run_id, result_json))

    def add_artifact(self, run_id: str, kind: str, path: str, *, claim: Claim | None = None) -> None:
        """Remember a file the run produced (the store keeps paths, never file contents)."""
        with self._tx() as conn:
            self._fence(conn, claim)
            self._update_run(conn, run_id)
            conn.execute(
                "INSERT INTO artifacts (run_id, kind, path, created) VALUES (?,?,?,?)",
                (run_id, kind, str(path), time.time()),
            )

    def record_throughput(
        self,
        backbone: str,
        device: str,
        method: str,
        *,
        work_seconds: float | None,
        example_seconds: float,
        weight: float = 0.5,
    ) -> None:
        """Blend a finished run's rates into the remembered ones (`weight`: the new run's share), so one run on a
        loaded machine moves the estimate without fixing it there. A rate the run could not measure stays."""
        with self._tx() as conn:
            row = conn.execute(
                "SELECT work_seconds, example_seconds, runs FROM throughput WHERE backbone = ? AND device = ?"
                " AND method = ?",
                (backbone, device, method),
            ).fetchone()
            if row is not None:
                old_work = row["work_seconds"]
                if work_seconds is None:
                    work_seconds = old_work
                elif old_work is not None:
                    work_seconds = weight * work_seconds + (1 - weight) * old_work
                example_seconds = weight * example_seconds + (1 - weight) * row["example_seconds"]
            conn.execute(
                "INSERT OR REPLACE INTO throughput (backbone, device, method, work_seconds, example_seconds, runs,"
                " updated) VALUES (?,?,?,?,?,?,?)",
                (
                    backbone,
                    device,
                    method,
                    _metric_value(work_seconds) if work_seconds is not None else None,
                    _metric_value(example_seconds),
                    1 + (row["runs"] if row is not None else 0),
                    time.time(),
                ),
            )

    def throughput(self, backbone: str, device: str) -> dict[str, dict[str, Any]]:
        """Method -> {work_seconds, example_seconds, runs} remembered for this backbone and device."""
        rows = self._query(
            "SELECT method, work_seconds, example_seconds, runs FROM throughput WHERE backbone = ? AND device = ?",
            (backbone, device),
        )
        return {r.pop("method"): r for r in rows if r["example_seconds"] is not None}

    # -- workers: claims, heartbeats, cancel, liveness ------------------------------------------------------------

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
            self._fence(conn, claim, running=False)
            conn.execute("UPDATE runs SET heartbeat = ? WHERE id = ?", (now, claim.run_id))
            row = conn.execute("SELECT cancel_requested FROM runs WHERE id = ?", (claim.run_id,)).fetchone()
        return bool(row and row["cancel_requested"])

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

    def delete_run(self, run_id: str) -> None:
        """Delete a run and its config, metrics, result and artifact rows (artifact files stay on disk)."""
        with self._tx() as conn:
            conn.execute("DELETE FROM runs WHERE id = ?", (run_id,))

    # -- reads ----------------------------------------------------------------------------------------------

    def run_groups(self, run_ids: Sequence[str]) -> dict[str, str | None]:
        """Each known run's group id (unknown runs are left out): a cheap lookup, no config or result read."""
        if not run_ids:
            return {}
        marks = ",".join("?" * len(run_ids))
        rows = self._query(f"SELECT id, group_id FROM runs WHERE id IN ({marks})", tuple(run_ids))
        return {row["id"]: row["group_id"] for row in rows}

    def get_run(self, run_id: str) -> dict | None:
        """The run row plus ``config`` (dict), ``result`` (dict or None) and ``artifacts`` ([{kind, path}])."""
        with self._lock:  # one consistent snapshot across the four reads
            rows = self._query("SELECT * FROM runs WHERE id = ?", (run_id,))
            if not rows:
                return None
            run = rows[0]
            config = self._query("SELECT json FROM configs WHERE run_id = ?", (run_id,))
            result = self._query("SELECT json FROM results WHERE run_id = ?", (run_id,))
            run["artifacts"] = self._query(
                "SELECT kind, path FROM artifacts WHERE run_id = ? ORDER BY rowid", (run_id,)
            )
        run["config"] = json.loads(config[0]["json"]) if config else {}
        run["result"] = json.loads(result[0]["json"]) if result else None
        return run

    def list_runs(
        self, *, group_id: str | None = None, status: str | None = None, owner: str | None = None, limit: int = 500
    ) -> list[dict]:
        """Run rows (no config/result, cheap enough to poll), newest first, optionally filtered."""
        where, params = [], []
        if owner is not None:
            where.append("owner = ?")
            params.append(owner)
        if group_id is not None:
            where.append("group_id = ?")
            params.append(group_id)
        if status is not None:
            where.append("status = ?")
            params.append(status)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        return self._query(f"SELECT * FROM runs {clause} ORDER BY created DESC, rowid DESC LIMIT ?", (*params, limit))

    def group_owner(self, group_id: str) -> str | None:
        """Who made the group (None: no such group)."""
        rows = self._query("SELECT owner FROM runs WHERE group_id = ? LIMIT 1", (group_id,))
        return rows[0]["owner"] if rows else None

    def share(self, group_id: str, owner: str) -> str:
        """A read-only share token for the group (the same one each time it is asked for)."""
        with self._tx() as conn:
            row = conn.execute(
                "SELECT token FROM shares WHERE group_id = ? AND owner = ?", (group_id, owner)
            ).fetchone()
            if row is not None:
                return row["token"]
            token = secrets.token_urlsafe(18)
            conn.execute(
                "INSERT INTO shares (token, group_id, owner, created) VALUES (?,?,?,?)",
                (token, group_id, owner, time.time()),
            )
        return token

    def accept_share(self, token: str, owner: str) -> str | None:
        """Give `owner` read access to the group behind `token`; its group id, or None for an unknown token."""
        with self._tx() as conn:
            row = conn.execute("SELECT group_id FROM shares WHERE token = ?", (token,)).fetchone()
            if row is None:
                return None
            conn.execute(
                "INSERT OR IGNORE INTO share_access (owner, group_id) VALUES (?, ?)", (owner, row["group_id"])
            )
        return row["group_id"]

    def can_read(self, group_id: str, owner: str) -> bool:
        """The owner made the group, or it was shared with them."""
        rows = self._query(
            "SELECT 1 FROM runs WHERE group_id = ? AND owner = ? UNION SELECT 1 FROM share_access"
            " WHERE group_id = ? AND owner = ? LIMIT 1",
            (group_id, owner, group_id, owner),
        )
        return bool(rows)

    def metrics(self, run_id: str) -> list[dict]:
        """The run's metric time series as [{step, t, name, value}] in step order (long format for altair)."""
        return self._query("SELECT step, t, name, value FROM metrics WHERE run_id = ? ORDER BY step, rowid", (run_id,))

    def groups(self, *, owner: str | None = None) -> list[dict]:
        """Comparison groups, newest first: group_id, owner, created (first run), n_runs, statuses {status: count}.

        A resumed run counts once: `n_runs` and `statuses` cover each (method, seed)'s newest attempt, as the Runs
        page shows them (`n_attempts` counts every row). With `owner`: the groups that owner made, then the ones
        shared with them (`shared` is true for those)."""
        mine = (
            ""
            if owner is None
            else " AND (owner = ? OR group_id IN (SELECT group_id FROM share_access WHERE owner = ?))"
        )
        params = () if owner is None else (owner, owner)
        with self._lock:
            groups = self._query(
                "SELECT group_id, MIN(owner) AS owner, MIN(created) AS created, COUNT(*) AS n_attempts FROM runs"
                f" WHERE group_id IS NOT NULL{mine} GROUP BY group_id ORDER BY created DESC",
                params,
            )
            counts = self._query(
                "SELECT group_id, status, COUNT(*) AS n FROM (SELECT group_id, status, ROW_NUMBER() OVER"
                " (PARTITION BY group_id, method, seed ORDER BY created DESC, rowid DESC) AS attempt FROM runs"
                f" WHERE group_id IS NOT NULL{mine}) WHERE attempt = 1 GROUP BY group_id, status",
                params,
            )
        for group in groups:
            group["shared"] = owner is not None and group["owner"] != owner
        by_group: dict[str, dict[str, int]] = {}
        for row in counts:
            by_group.setdefault(row["group_id"], {})[row["status"]] = row["n"]
        return [
            {**group, "statuses": (st := by_group.get(group["group_id"], {})), "n_runs": sum(st.values())}
            for group in groups
        ]
