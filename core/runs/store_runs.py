"""A run's life in the store: created queued with its config, then progress, metrics, result and artifacts; the
reads the pages poll; who may read a comparison (owners, shares); each method's measured speed.

Every write a worker makes for its run takes its `Claim` and is fenced (`store_claims.fence`) in the same
transaction; the server's own writes pass no claim. Configs and results are stored as strict JSON (`to_json`).
"""

from __future__ import annotations

import json
import math
import numbers
import secrets
import time
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from core.runs.store_claims import Claim, fence
from core.runs.store_connection import StoreConnection
from core.runs.store_schema import STATUSES, TERMINAL_STATUSES

# One earlier metric record buffered by a throttled progress reporter: (step, wall time, metrics).
MetricRecord = tuple[int, float, Mapping[str, float]]


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


def metric_value(value: float) -> float | None:
    """A metric as REAL, or NULL when it is not finite (keeps charts and aggregates sane)."""
    value = float(value)
    return value if math.isfinite(value) else None


class RunRecords(StoreConnection):
    """The run store's run side: each run's rows (status, progress, metrics, result, artifacts) and their reads."""

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
            fence(conn, claim)
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
            (run_id, s, t, name, metric_value(v))
            for s, t, m in (*backlog, (step, now, metrics))
            for name, v in m.items()
        ]
        columns: dict[str, Any] = {"progress_step": step, "progress_total": total, "eta_seconds": eta_seconds}
        if phase is not None:
            columns["phase"] = phase
        with self._tx() as conn:
            fence(conn, claim)
            self._update_run(conn, run_id, **columns)
            conn.executemany("INSERT INTO metrics (run_id, step, t, name, value) VALUES (?,?,?,?,?)", rows)

    def save_result(self, run_id: str, result: dict, *, claim: Claim | None = None) -> None:
        """Store (or replace) the run's final result dict (with `claim`: only while it holds the run)."""
        result_json = to_json(result)
        with self._tx() as conn:
            fence(conn, claim)
            self._update_run(conn, run_id)
            conn.execute("INSERT OR REPLACE INTO results (run_id, json) VALUES (?, ?)", (run_id, result_json))

    def add_artifact(self, run_id: str, kind: str, path: str, *, claim: Claim | None = None) -> None:
        """Remember a file the run produced (the store keeps paths, never file contents)."""
        with self._tx() as conn:
            fence(conn, claim)
            self._update_run(conn, run_id)
            conn.execute(
                "INSERT INTO artifacts (run_id, kind, path, created) VALUES (?,?,?,?)",
                (run_id, kind, str(path), time.time()),
            )

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

    # -- owners and shares ----------------------------------------------------------------------------------

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

    # -- measured throughput, for the estimate ---------------------------------------------------------------

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
                    metric_value(work_seconds) if work_seconds is not None else None,
                    metric_value(example_seconds),
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
