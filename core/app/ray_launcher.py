"""The app's runs on a Ray cluster: each queued run becomes a detached Ray actor that claims it from the store.

Why an actor per run, detached: Ray places it where its ``num_gpus``/``num_cpus`` fit (queueing it while the
cluster is full), and a detached actor is owned by the cluster, not by the web server, so a server restart leaves
the run going, as a local worker process does. The actor runs the same `Worker` code against the same store:
claim, heartbeat, cancel flag, progress. ``PTUNE_HOME`` must therefore be on a filesystem every node and the app
share (checkpoints and prompt files land there too).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from pathlib import Path

from core import cluster
from core.store import RunStore

log = logging.getLogger(__name__)


class _RunActor:
    """One run on a cluster node; its constructor starts the run (a detached actor's creation outlives the
    server that asked for it) and the actor ends itself once the run's outcome is in the store."""

    def __init__(self, home: str, run_id: str):
        threading.Thread(target=self._run, args=(Path(home), run_id), daemon=True).start()

    def _run(self, home: Path, run_id: str) -> None:
        import ray
        import torch

        from core.app.runner import RunExecutor
        from core.jobs import Worker

        device = "cuda:0" if torch.cuda.is_available() else "cpu"  # the GPU Ray gave this actor, if any
        try:
            with RunStore(home / "runs.db") as store:
                status = Worker(store, device, RunExecutor(home, store).job).run_one(run_id)
                log.info("run %s: %s", run_id, status)
        finally:
            ray.kill(ray.get_runtime_context().current_actor, no_restart=True)


class RayLauncher:
    """A `core.jobs.Launcher` that sends every queued run to the Ray cluster at `address`."""

    def __init__(self, address: str, home: Path):
        self.ray, self.address = cluster.connect(address), address
        self.home = Path(home).resolve()
        self._actor = self.ray.remote(_RunActor)

    def submit(self, run_id: str, device: str, store: RunStore) -> None:
        options = {**cluster.resources(self.ray), "lifetime": "detached", "name": f"ptune-run-{run_id}"}
        self._actor.options(**options).remote(str(self.home), run_id)
        log.info("run %s sent to the Ray cluster at %s", run_id, self.address)

    def check(self, store: RunStore, queued_devices: Sequence[str]) -> None:
        """Nothing to start: Ray keeps a queued run's actor pending until the cluster has room for it."""
