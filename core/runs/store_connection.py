"""One SQLite connection to the run store, shared by a process's threads: open, migrate, transact, back up.

Why SQLite in WAL mode: worker processes write progress while the Streamlit server and the CLI (other
processes) read it; WAL lets readers proceed during a write, and ``busy_timeout`` makes a second process
wait for the write lock instead of failing. Inside one process a single connection is shared by every thread
(``check_same_thread=False``) and guarded by a lock: Streamlit starts a new thread for every script rerun, so
per-thread connections would pile up, and SQLite serialises writers anyway.

`StoreConnection` is the base the store's rooms (`store_runs.RunRecords`, `store_claims.WorkerClaims`) build on:
they reach the database only through `_tx` (one write transaction), `_query` and `_update_run`.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

from core.runs.store_backup import (
    StoreDamaged,
    backup_path,
    damage_message,
    is_damage,
    quick_check,
    restore_if_missing,
)
from core.runs.store_schema import MIGRATIONS, SCHEMA_VERSION

log = logging.getLogger("core.runs.store")  # the name these warnings were always logged under

BUSY_TIMEOUT_MS = 10_000


class StoreConnection:
    """The one connection to a store's database (created with its parent folder when missing, restored from its
    last good copy when deleted, migrated on open), locked for the threads that share it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.restored = restore_if_missing(self.path)
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

    @contextmanager
    def _damage_said(self) -> Iterator[None]:
        """SQLite's "database disk image is malformed" becomes `StoreDamaged`, naming the file and the way back."""
        try:
            yield
        except sqlite3.DatabaseError as err:
            if is_damage(err):
                raise StoreDamaged(damage_message(self.path, err)) from err
            raise

    def _migrate(self) -> None:
        """Bring the schema to ``SCHEMA_VERSION``; refuse a database written by a newer version."""
        with self._tx() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"{self.path} has schema version {version}; this PTune Studio reads up to {SCHEMA_VERSION}"
                )
            for script in MIGRATIONS[version:]:
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
        """Rows of one read, as dicts."""
        with self._lock, self._damage_said():
            return [dict(row) for row in self._conn.execute(sql, params).fetchall()]

    def _update_run(self, conn: sqlite3.Connection, run_id: str, **columns: Any) -> None:
        """Set ``columns`` (column names are ours, never user input) and ``updated``; KeyError for an unknown run."""
        columns["updated"] = time.time()
        assignments = ", ".join(f"{name} = ?" for name in columns)
        cursor = conn.execute(f"UPDATE runs SET {assignments} WHERE id = ?", (*columns.values(), run_id))
        if cursor.rowcount == 0:
            raise KeyError(f"no run {run_id!r} in {self.path}")

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
                    quick_check(copy, self.path)
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
        """Close the connection (the file stays)."""
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
