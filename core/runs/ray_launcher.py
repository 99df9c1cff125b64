"""The app's runs on a Ray cluster: each queued run becomes a detached Ray actor that claims it from the store.

Why an actor per run, detached: Ray places it where its ``num_gpus``/``num_cpus`` fit (queueing it while the
cluster is full), and a detached actor is owned by the cluster, not by the web server, so a server restart leaves
the run going, as a local worker process does. The actor runs the same `Worker` code against the same store:
claim, heartbeat, cancel flag, progress. ``PTUNE_HOME`` must therefore be on a filesystem every node and the app
share (checkpoints and prompt files land there too). A queued run whose actor is gone before it started (the
cluster lost or restarted, the actor killed) is found by `check` and interrupted, so it says so and can be resumed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from core.runs import cluster
from core.runs.store import RunStore

log = logging.getLogger(__name__)


class _RunActor:
    """One run on a cluster node; its constructor starts the run (a detached actor's creation outlives the
    server that asked for it) and the actor ends itself once the run's outcome is in the store."""

    def __init__(self, home: str, run_id: str):
        threading.Thread(target=self._run, args=(Path(home), run_id), daemon=True).start()

    def _run(self, home: Path, run_id: str) -> None:
        import ray
        import torch

        from core.runs.jobs import Worker
        from core.runs.runner import RunExecutor

        device = "cuda:0" if torch.cuda.is_available() else "cpu"  # the GPU Ray gave this actor, if any
        try:
            with RunStore(home / "runs.db") as store:
                status = Worker(store, device, RunExecutor(home, store).job).run_one(run_id)
                log.info("run %s: %s", run_id, status)
        finally:
            ray.kill(ray.get_runtime_context().current_actor, no_restart=True)


DEVICE = "ray"  # the device name of every run sent to the cluster
NAMESPACE = "ptune"  # where core.runs.cluster.connect puts this app's named actors


def actor_name(run_id: str) -> str:
    return f"ptune-run-{run_id}"


class RayLauncher:
    """A `core.runs.jobs.Launcher` that sends every queued run to the Ray cluster at `address`."""

    def __init__(self, address: str, home: Path, *, grace_s: float = 30.0):
        self.ray, self.address = cluster.connect(address), address
        self.home = Path(home).resolve()
        self.grace_s = grace_s  # a run queued this recently may not have its actor yet (it is being sent)
        self._actor = self.ray.remote(_RunActor)

    def submit(self, run_id: str, device: str, store: RunStore) -> None:
        options = {**cluster.resources(self.ray), "lifetime": "detached", "name": actor_name(run_id)}
        self._actor.options(**options).remote(str(self.home), run_id)
        log.info("run %s sent to the Ray cluster at %s", run_id, self.address)

    def check(self, store: RunStore, queued_devices: Sequence[str]) -> None:
        """Nothing to start (Ray keeps a queued run's actor pending until the cluster has room for it), but a
        queued run whose actor is gone never starts: it becomes interrupted, saying why, and can be resumed."""
        if DEVICE not in queued_devices:
            return
        now = time.time()
        for run in store.list_runs(status="queued", limit=100_000):
            if run["device"] != DEVICE or now - run["updated"] < self.grace_s:
                continue
            gone = self._actor_gone(run["id"])
            if gone and store.interrupt_queued(run["id"], f"{gone}; resume it to send it to the cluster again"):
                log.warning("run %s: %s; marked interrupted", run["id"], gone)

    def _actor_gone(self, run_id: str) -> str | None:
        """Why the run's actor cannot start it any more, or None while it exists (pending or running)."""
        try:
            self.ray.get_actor(actor_name(run_id), namespace=NAMESPACE)
        except ValueError:
            return f"its Ray actor is gone before it started (the cluster at {self.address} was lost or restarted)"
        except Exception as err:  # the cluster itself is unreachable: nothing there will start the run
            return f"the Ray cluster at {self.address} cannot be reached ({type(err).__name__})"
        return None
