"""The run store's tables, the values a run's status takes, and how each schema version becomes the next.

Owns the file format of `runs.db`: a store is opened by any later PTune Studio, migrated forward in place (migration
i turns version i into i + 1; append new ones, never edit old ones), and refused by an older one.
"""

STATUSES = ("queued", "running", "succeeded", "failed", "cancelled", "interrupted")
TERMINAL_STATUSES = frozenset({"succeeded", "failed", "cancelled", "interrupted"})
ACTIVE_STATUSES = ("queued", "running")
SCHEMA_VERSION = 8

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

# v8: the throughput rates are per token (core.runs.estimate_tokens), so they transfer between datasets of different
# lengths; the per-row rates kept before cannot be read as such and are dropped (the next finished run re-measures).
_SCHEMA_V8 = """
DELETE FROM throughput
"""

# Migration i turns schema version i into version i + 1; append new ones, never edit old ones.
MIGRATIONS = (_SCHEMA_V1, _SCHEMA_V2, _SCHEMA_V3, _SCHEMA_V4, _SCHEMA_V5, _SCHEMA_V6, _SCHEMA_V7, _SCHEMA_V8)
