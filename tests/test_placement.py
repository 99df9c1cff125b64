"""Where a new run goes: the pure `place` on fake device lists, and the job queue using it with real workers."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from core.runs.jobs import ProgressFn, StopFn, current_device, place, visible_devices
from core.runs.store import RunStore
from tests.test_jobs import Jobs

TIMEOUT = 5.0
SERVER = ("cuda:0", "cuda:1", "cuda:2", "cpu")


def test_place_picks_the_least_busy_accelerator_with_stable_ties():
    assert place(SERVER, {}) == "cuda:0"  # all idle: the first listed
    assert place(SERVER, {"cuda:0": 1}) == "cuda:1"
    assert place(SERVER, {"cuda:0": 1, "cuda:1": 1}) == "cuda:2"
    assert place(SERVER, {"cuda:0": 2, "cuda:1": 1, "cuda:2": 1}) == "cuda:1"  # tie between 1 and 2: first listed
    assert place(SERVER, {"cuda:0": 3, "cuda:1": 3, "cuda:2": 3}) == "cuda:0"  # busy GPUs still beat the idle CPU
    assert place(["cuda:1", "cuda:0"], {}) == "cuda:1"  # order given, not name order


def test_place_uses_the_cpu_only_without_accelerators():
    assert place(["cpu"], {"cpu": 7}) == "cpu"
    assert place(["cpu", "mps"], {"mps": 1}) == "mps"
    with pytest.raises(ValueError, match="no devices"):
        place([], {})


def test_visible_devices_lists_every_gpu_then_the_cpu():
    devices = visible_devices()
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    assert devices == [f"cuda:{i}" for i in range(gpus)] + ["cpu"]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RunStore]:
    with RunStore(tmp_path / "runs.db") as s:
        yield s


def test_manager_places_runs_and_keeps_one_at_a_time_per_device(store: RunStore):
    """Five runs on a fake 2-GPU server: spread 3/2 over the GPUs, never the CPU, never two at once on one GPU."""
    jobs = Jobs(store.path, devices=("cuda:0", "cuda:1", "cpu"))
    release = threading.Event()
    lock = threading.Lock()
    running: dict[str, int] = {}
    most: dict[str, int] = {}

    def job(progress: ProgressFn, should_stop: StopFn) -> dict:
        device = current_device()
        with lock:
            running[device] = running.get(device, 0) + 1
            most[device] = max(most.get(device, 0), running[device])
        assert release.wait(TIMEOUT)
        with lock:
            running[device] -= 1
        return {"device": device}

    runs = [store.create_run(method="test", label=str(i), config={}) for i in range(5)]
    for run_id in runs:
        jobs.submit(run_id, job)  # no device: placed
    assert [store.get_run(r)["device"] for r in runs] == ["cuda:0", "cuda:1", "cuda:0", "cuda:1", "cuda:0"]
    release.set()
    assert [jobs.queue.wait(r, TIMEOUT) for r in runs] == ["succeeded"] * 5
    assert [store.get_run(r)["result"]["device"] for r in runs] == [store.get_run(r)["device"] for r in runs]
    assert most == {"cuda:0": 1, "cuda:1": 1}  # one run at a time per device
    jobs.submit(cpu_run := store.create_run(method="test", label="cpu", config={}), job, device="cpu")
    assert jobs.queue.wait(cpu_run, TIMEOUT) == "succeeded" and store.get_run(cpu_run)["device"] == "cpu"
    jobs.close()


def test_workspace_serves_every_visible_device_and_runs_on_the_placed_one(tmp_path: Path):
    """End to end on this CPU box: the app's Workspace queues on visible_devices(), the run lands on the CPU and
    its backbone is loaded there."""
    from core.app.service import Workspace
    from tests.test_workspace import ALICE, request, wait_all
    from tests.tiny_models import save_tiny

    model = save_tiny("gpt2", tmp_path / "gpt2")
    ws = Workspace(tmp_path / "home")
    try:
        assert ws.jobs.devices == tuple(visible_devices())
        group = ws.user(ALICE).launch(request(model, seeds=[0], methods={"manual": {}}))
        (run,) = wait_all(ws, group)
        assert run["status"] == "succeeded" and run["device"] == place(visible_devices(), {})
        assert ws.store.get_run(run["id"])["result"]["backbone"]["device"] == run["device"]  # loaded there
    finally:
        ws.close()
