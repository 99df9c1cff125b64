"""A damaged or deleted run store: the last good copy beside it (`runs.db.bak`) and the one-line error.

Owns what a person reads when the store's file is damaged (`StoreDamaged`, naming the file and the copy to put
back), how damage is told from other SQLite errors, the check a copy passes before it may replace the last good
one, and the store brought back from that copy when its file is gone.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path

log = logging.getLogger("core.runs.store")  # the name these warnings were always logged under

BACKUP_SUFFIX = ".bak"  # runs.db.bak: the last copy that passed SQLite's quick_check
DAMAGE_MARKS = ("malformed", "not a database")  # what SQLite says of a damaged file (sqlite3.DatabaseError)


class StoreDamaged(RuntimeError):
    """The store's file is damaged (truncated, overwritten): one line naming the file and how to restore it."""


def backup_path(path: Path) -> Path:
    """Where the last good copy of the store at `path` is kept."""
    return path.with_name(path.name + BACKUP_SUFFIX)


def damage_message(path: Path, err: BaseException) -> str:
    """The one line `StoreDamaged` says: the file, what SQLite found, and the way back."""
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


def is_damage(err: BaseException) -> bool:
    """Whether SQLite's error says the file itself is damaged (not a lock, a constraint or a bad query)."""
    return isinstance(err, sqlite3.DatabaseError) and any(mark in str(err) for mark in DAMAGE_MARKS)


def quick_check(conn: sqlite3.Connection, path: Path) -> None:
    """Raise `StoreDamaged` unless SQLite's quick_check finds the database behind `conn` sound."""
    found = [row[0] for row in conn.execute("PRAGMA quick_check").fetchall()]
    if found != ["ok"]:
        raise StoreDamaged(damage_message(path, sqlite3.DatabaseError(f"quick_check: {found[0]}")))


def restore_if_missing(path: Path) -> bool:
    """A store whose file is gone while its last good copy exists (deleted by hand, or while the server ran) is
    brought back from that copy rather than started empty: history is what a store is for. Stale -wal/-shm
    files of the deleted store are moved aside first (they belong to the old file). True if restored."""
    backup = backup_path(path)
    if path.exists() or not backup.is_file():
        return False
    for suffix in ("-wal", "-shm"):
        stale = path.with_name(path.name + suffix)
        if stale.exists():
            stale.replace(stale.with_name(f"{stale.name}.orphaned-{int(time.time())}"))
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-restore-", suffix=".db")
    os.close(fd)
    try:
        shutil.copyfile(backup, tmp)
        try:
            os.link(tmp, path)  # only if still missing: another process may have restored it first
        except FileExistsError:
            return False
    finally:
        os.unlink(tmp)
    log.warning("%s was missing; restored it from %s", path, backup)
    return True
