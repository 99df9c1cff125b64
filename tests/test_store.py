"""RunStore against real SQLite files: roundtrips, ordering, concurrency, WAL, restart handling."""

import math
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest

from core.atomic import replacing, write_atomic
from core.progress import ClaimLost, check_claim, claim_held
from core.runs.store import _MIGRATIONS, SCHEMA_VERSION, RunStore, StoreDamaged, backup_path


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    with RunStore(tmp_path / "sub" / "runs.db") as s:
        yield s


def test_create_get_list_roundtrip(store: RunStore) -> None:
    config = {"method": {"lr": 1e-3, "steps": 10}, "template": "[P*3] {text} [MASK]", "labels": ["neg", "pos"]}
    first = store.create_run(method="ptuning", label="P-tuning s0", config=config, group_id="g1", seed=0)
    second = store.create_run(method="manual", label="Manual", config={}, group_id="g2")

    run = store.get_run(first)
    assert run["id"] == first and run["method"] == "ptuning" and run["label"] == "P-tuning s0"
    assert run["status"] == "queued" and run["group_id"] == "g1" and run["seed"] == 0
    assert run["config"] == config and run["result"] is None and run["artifacts"] == []
    assert store.get_run("nope") is None
    assert [r["id"] for r in store.list_runs()] == [second, first]  # newest first
    assert [r["id"] for r in store.list_runs(group_id="g1")] == [first]
    assert store.list_runs(status="running") == []
    assert len(store.list_runs(limit=1)) == 1


def test_status_progress_metrics_results_artifacts(store: RunStore) -> None:
    run_id = store.create_run(method="ptuning", label="p", config={})
    store.set_status(run_id, "running")
    store.record_progress(run_id, 2, 10, {"loss": 0.5, "acc": 0.7}, eta_seconds=8.0, backlog=[(1, 0.0, {"loss": 0.9})])
    store.record_progress(run_id, 3, 10, {"loss": float("nan")})
    store.save_result(run_id, {"accuracy": 0.8, "per_seed": [0.7, math.inf], "n": np.int64(4), "f": np.float32(0.5)})
    store.add_artifact(run_id, "prompt", "/tmp/p.safetensors")
    store.set_status(run_id, "failed", error="ValueError: boom")

    run = store.get_run(run_id)
    assert (run["progress_step"], run["progress_total"], run["eta_seconds"]) == (3, 10, None)
    assert run["status"] == "failed" and run["error"] == "ValueError: boom"
    assert run["result"] == {"accuracy": 0.8, "per_seed": [0.7, None], "n": 4, "f": 0.5}
    assert run["artifacts"] == [{"kind": "prompt", "path": "/tmp/p.safetensors"}]
    rows = store.metrics(run_id)
    assert [(r["step"], r["name"], r["value"]) for r in rows] == [
        (1, "loss", 0.9),
        (2, "loss", 0.5),
        (2, "acc", 0.7),
        (3, "loss", None),
    ]
    store.set_status(run_id, "running")
    assert store.get_run(run_id)["error"] is None  # error describes the current status


def test_metrics_ordered_by_step_even_when_written_out_of_order(store: RunStore) -> None:
    run_id = store.create_run(method="m", label="m", config={})
    for step in (5, 1, 3):
        store.record_progress(run_id, step, 5, {"loss": float(step)})
    assert [r["step"] for r in store.metrics(run_id)] == [1, 3, 5]


def test_bad_input_is_refused_clearly(store: RunStore) -> None:
    with pytest.raises(TypeError, match=r"\$\.backbone\.path: PosixPath"):
        store.create_run(method="m", label="m", config={"backbone": {"path": Path("/x")}})
    with pytest.raises(TypeError, match="keys must be str"):
        store.create_run(method="m", label="m", config={1: "x"})
    assert store.list_runs() == []  # nothing half-written
    run_id = store.create_run(method="m", label="m", config={})
    with pytest.raises(ValueError, match="unknown status 'done'"):
        store.set_status(run_id, "done")
    with pytest.raises(KeyError):
        store.set_status("missing", "running")
    with pytest.raises(TypeError, match="Tensor|object"):
        store.save_result(run_id, {"x": object()})


def test_groups_summary(store: RunStore) -> None:
    a = store.create_run(method="m", label="a", config={}, group_id="g", seed=0)
    b = store.create_run(method="m", label="b", config={}, group_id="g", seed=1)
    store.create_run(method="m", label="c", config={})
    store.set_status(a, "succeeded")
    (group,) = store.groups()
    assert group["group_id"] == "g" and group["n_runs"] == 2
    assert group["statuses"] == {"succeeded": 1, "queued": 1}
    store.set_status(b, "cancelled")
    store.create_run(method="m", label="b again", config={}, group_id="g", seed=1)  # b resumed
    (group,) = store.groups()  # the resumed run counts once, as its newest attempt
    assert group["n_runs"] == 2 and group["n_attempts"] == 3
    assert group["statuses"] == {"succeeded": 1, "queued": 1}


def test_a_run_records_its_phase_and_its_wall_time(store: RunStore) -> None:
    run = store.create_run(method="m", label="a", config={})
    store.set_status(run, "running")
    store.record_progress(run, 3, 10, {"loss": 1.0}, 2.0, phase="training")
    row = store.get_run(run)
    assert row["phase"] == "training" and row["started"] is not None and row["finished"] is None
    store.record_progress(run, 5, 40, {}, phase="scoring the test split")
    store.record_progress(run, 6, 40, {})  # no phase given: it stays
    assert store.get_run(run)["phase"] == "scoring the test split"
    store.set_status(run, "succeeded")
    row = store.get_run(run)
    assert row["finished"] >= row["started"]


def test_wal_mode_and_schema_version(store: RunStore) -> None:
    assert store.journal_mode == "wal"
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(RuntimeError, match="schema version"):
        RunStore(store.path)


def test_reopen_keeps_data_and_leaves_active_runs_alone(tmp_path: Path) -> None:
    """Opening the store (a restarted server, a second tab's process, a CLI) never marks runs interrupted: only
    `reap` does, for runs whose worker is gone."""
    path = tmp_path / "runs.db"
    with RunStore(path) as s:
        queued = s.create_run(method="m", label="q", config={})
        running = s.create_run(method="m", label="r", config={})
        done = s.create_run(method="m", label="d", config={})
        s.set_device(running, "cpu")
        assert s.register_worker("w", "cpu", "host", 1) and s.claim("w", device="cpu").run_id == running
        s.set_status(done, "succeeded")
    with RunStore(path) as s:
        expected = {queued: "queued", running: "running", done: "succeeded"}
        assert {r["id"]: r["status"] for r in s.list_runs()} == expected
        assert s.reap(lambda worker: True, stale_after=60.0) == []  # its worker is alive
        assert s.reap(lambda worker: False, stale_after=60.0) == [running]  # its worker's pid is gone
        assert {r["id"]: r["status"] for r in s.list_runs()} == {**expected, running: "interrupted"}


def test_delete_run_cascades(store: RunStore) -> None:
    run_id = store.create_run(method="m", label="m", config={"a": 1})
    store.record_progress(run_id, 1, 1, {"loss": 1.0})
    store.save_result(run_id, {"ok": True})
    store.add_artifact(run_id, "prompt", "p.json")
    store.delete_run(run_id)
    assert store.get_run(run_id) is None and store.metrics(run_id) == []
    with sqlite3.connect(store.path) as conn:
        for table in ("configs", "results", "metrics", "artifacts"):
            assert conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0] == 0


@pytest.mark.parametrize("shared", [True, False], ids=["one-store", "store-per-thread"])
def test_concurrent_writers_lose_nothing(tmp_path: Path, shared: bool) -> None:
    """4 threads write at once, through one shared store or through 4 connections to the same file."""
    path = tmp_path / "runs.db"
    main = RunStore(path)
    run_ids = [main.create_run(method="m", label=f"r{i}", config={}) for i in range(4)]
    n_steps, errors = 50, []
    start = threading.Barrier(4)

    def write(run_id: str) -> None:
        store = main if shared else RunStore(path)
        try:
            start.wait()
            for step in range(1, n_steps + 1):
                store.record_progress(run_id, step, n_steps, {"loss": 1.0 / step, "acc": 0.5})
            store.save_result(run_id, {"done": True})
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)
        finally:
            if not shared:
                store.close()

    threads = [threading.Thread(target=write, args=(run_id,)) for run_id in run_ids]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for run_id in run_ids:
        assert len(main.metrics(run_id)) == 2 * n_steps
        run = main.get_run(run_id)
        assert run["progress_step"] == n_steps and run["result"] == {"done": True}
    main.close()


def test_a_claim_taken_away_fences_every_write_of_its_worker(store: RunStore) -> None:
    """A worker written off as gone (its run interrupted, the epoch bumped) writes no progress, metric, result,
    artifact or outcome with its old claim, claims nothing more, and its heartbeat says so."""
    run_id = store.create_run(method="m", label="r", config={})
    store.set_device(run_id, "cpu")
    assert store.register_worker("w", "cpu", "host", 1)
    claim = store.claim("w", device="cpu")
    store.record_progress(run_id, 1, 10, {"loss": 1.0}, claim=claim)
    assert store.holds(claim) and not store.heartbeat("w", claim)
    assert store.reap(lambda w: True, stale_after=-1.0) == [run_id]  # paused past the limit, whatever its clock
    before = store.get_run(run_id)
    assert before["claim_epoch"] == claim.epoch + 1 and not store.holds(claim)
    writes = [
        lambda: store.record_progress(run_id, 2, 10, {"loss": 0.5}, claim=claim),
        lambda: store.save_result(run_id, {"accuracy": 1.0}, claim=claim),
        lambda: store.add_artifact(run_id, "prompt", "p.json", claim=claim),
        lambda: store.set_status(run_id, "succeeded", claim=claim),
        lambda: store.heartbeat("w", claim),
        lambda: store.heartbeat("w"),
    ]
    for write in writes:
        with pytest.raises(ClaimLost):
            write()
    after = store.get_run(run_id)
    assert after == before and [m["step"] for m in store.metrics(run_id)] == [1]
    queued = store.create_run(method="m", label="q", config={})
    store.set_device(queued, "cpu")
    assert store.claim("w", device="cpu") is None  # written off: it takes nothing more
    assert store.get_run(queued)["status"] == "queued"


def test_a_store_of_the_previous_schema_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "runs.db"
    with sqlite3.connect(path) as conn:
        for script in _MIGRATIONS[: SCHEMA_VERSION - 1]:
            for statement in filter(str.strip, script.split(";")):
                conn.execute(statement)
        conn.execute(
            "INSERT INTO runs (id, created, updated, method, label, status) VALUES ('old', 0, 0, 'm', 'l', 'running')"
        )
        conn.execute(
            "INSERT INTO workers (id, device, host, pid, started, heartbeat) VALUES ('w', 'cpu', 'h', 1, 0, 0)"
        )
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION - 1}")
    with RunStore(path) as store:
        run = store.get_run("old")
        assert run["status"] == "running" and run["claim_epoch"] == 0
        assert [(w["id"], w["kind"]) for w in store.workers()] == [("w", "worker")]


def test_a_damaged_store_names_its_file_and_the_copy_to_restore(tmp_path: Path) -> None:
    """Cut to 100 bytes while open: every call raises one line naming the file and the last good copy, and the
    copy is never replaced by the damaged store."""
    path = tmp_path / "runs.db"
    store = RunStore(path)
    run_id = store.create_run(method="m", label="kept", config={})
    copy = store.backup()
    good = copy.read_bytes()
    store.record_progress(run_id, 1, 1, {f"m{i}": float(i) for i in range(2000)})
    with sqlite3.connect(path) as other:  # what SQLite does on its own as the write-ahead log grows
        other.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with open(path, "r+b") as f:
        f.truncate(100)
    for call in (lambda: store.list_runs(), lambda: store.create_run(method="m", label="x", config={}), store.backup):
        with pytest.raises(StoreDamaged) as err:
            call()
        message = str(err.value)
        assert "\n" not in message and str(path) in message and str(copy) in message and "damaged" in message
    assert copy.read_bytes() == good  # the last good copy stays
    store.close()
    with pytest.raises(StoreDamaged, match="runs.db.bak"):
        RunStore(path)
    with RunStore(copy) as restored:
        assert [r["label"] for r in restored.list_runs()] == ["kept"]


def test_a_store_deleted_while_in_use_comes_back_from_its_copy(tmp_path: Path) -> None:
    """runs.db deleted while a server holds it open: the next backup saves what the open store holds, and the next
    start restores it instead of starting with no history."""
    path = tmp_path / "runs.db"
    store = RunStore(path)
    run_id = store.create_run(method="m", label="kept", config={})
    path.unlink()
    store.record_progress(run_id, 1, 1, {"loss": 1.0})  # the runs go on in the open (deleted) file
    assert store.backup() == backup_path(path)
    store.close()
    with RunStore(path) as reopened:
        assert reopened.restored
        assert [r["label"] for r in reopened.list_runs()] == ["kept"] and len(reopened.metrics(run_id)) == 1
    with RunStore(path) as again:
        assert not again.restored  # restored once; a store that exists is opened as it is


def test_a_heartbeat_after_the_runs_own_outcome_is_not_a_lost_claim(store: RunStore) -> None:
    """The worker records its run's outcome, then beats once more before it notices the run ended: that beat is
    not a lost claim (the worker would exit and leave the queue behind it unserved)."""
    run_id = store.create_run(method="m", label="r", config={})
    store.set_device(run_id, "cpu")
    assert store.register_worker("w", "cpu", "host", 1)
    claim = store.claim("w", device="cpu")
    store.set_status(run_id, "succeeded", claim=claim)
    assert store.heartbeat("w", claim) is False
    with pytest.raises(ClaimLost):  # but nothing more is written to the ended run
        store.record_progress(run_id, 9, 9, {"loss": 0.0}, claim=claim)


def test_a_write_off_between_a_checkpoints_check_and_its_rename_keeps_the_old_file(tmp_path: Path) -> None:
    """The race CI caught: a worker checks its claim, is paused while it serialises a checkpoint, is written off
    by another process, wakes and renames. The rename is fenced with the claim in one step, so it raises
    `ClaimLost`, the file another attempt reads is the one it was, and no temporary file is left beside it."""
    worker, server = RunStore(tmp_path / "runs.db"), RunStore(tmp_path / "runs.db")
    run_id = server.create_run(method="m", label="r", config={})
    server.set_device(run_id, "cpu")
    assert worker.register_worker("w", "cpu", "host", 1)
    claim = worker.claim("w", device="cpu")
    ckpt = write_atomic(tmp_path / "ckpt" / "checkpoint.safetensors", b"step 5")

    def check() -> None:
        if not worker.holds(claim):
            raise ClaimLost("lost")

    with claim_held(check, lambda: worker.holding(claim)):
        check_claim()  # still held: the writer goes on to serialise
        with pytest.raises(ClaimLost), replacing(ckpt) as tmp:
            tmp.write_bytes(b"step 10")
            assert server.reap(lambda w: True, stale_after=-1.0) == [run_id]  # written off meanwhile
    assert ckpt.read_bytes() == b"step 5" and [p.name for p in ckpt.parent.iterdir()] == [ckpt.name]
    assert server.get_run(run_id)["status"] == "interrupted"
    worker.close()
    server.close()
