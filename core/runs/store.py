"""SQLite run store: runs, their config, metric time series, final results and artifact paths; the channel
between the pages and the workers. `RunStore` is put together from the modules that own each concern:

- `store_connection.py`: the one shared connection (WAL), migrations on open, transactions, `backup()`;
- `store_schema.py`: the tables, `SCHEMA_VERSION`, the migrations, the status values;
- `store_backup.py`: `StoreDamaged`, the last good copy (`runs.db.bak`), a deleted store restored from it;
- `store_claims.py`: workers, claims fenced by their epoch, heartbeats, cancel flags, `reap`;
- `store_runs.py`: a run's rows and their reads, shares, measured throughput.

Import the store and its names from here (`core.runs.store`).
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from core.runs.store_backup import BACKUP_SUFFIX, DAMAGE_MARKS, StoreDamaged, backup_path
from core.runs.store_claims import Claim, WorkerClaims
from core.runs.store_connection import BUSY_TIMEOUT_MS
from core.runs.store_runs import MetricRecord, RunRecords, to_json
from core.runs.store_schema import ACTIVE_STATUSES, SCHEMA_VERSION, STATUSES, TERMINAL_STATUSES
from core.runs.store_schema import MIGRATIONS as _MIGRATIONS  # the name tests/test_store.py knows

HOST = socket.gethostname()  # this machine, as worker rows name it
HOME_ENV = "PTUNE_HOME"
REPO_ROOT = Path(__file__).resolve().parents[2]

__all__ = [
    "_MIGRATIONS",
    "ACTIVE_STATUSES",
    "BACKUP_SUFFIX",
    "BUSY_TIMEOUT_MS",
    "DAMAGE_MARKS",
    "HOME_ENV",
    "HOST",
    "REPO_ROOT",
    "SCHEMA_VERSION",
    "STATUSES",
    "TERMINAL_STATUSES",
    "Claim",
    "MetricRecord",
    "RunStore",
    "StoreDamaged",
    "backup_path",
    "ptune_home",
    "to_json",
]


def ptune_home() -> Path:
    """Where runs, uploads and artifacts live: $PTUNE_HOME, else ``.ptune/`` in the repository root."""
    return Path(os.environ.get(HOME_ENV) or REPO_ROOT / ".ptune").expanduser().resolve()


class RunStore(RunRecords, WorkerClaims):
    """Thread-safe access to one SQLite run database (created with its parent folder when missing): the runs'
    side (`RunRecords`) and the workers' side (`WorkerClaims`) over one shared connection (`StoreConnection`)."""
