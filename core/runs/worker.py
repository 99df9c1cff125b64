"""The worker process: ``python -m core.runs.worker --home PTUNE_HOME --device cpu`` serves one device's queue.

Started on demand by the app (detached, so it outlives the server) and exits once nothing has been queued for
its device for a while. Runs at lower CPU priority than the server and leaves it a core where there are several,
so pages stay quick while a run trains.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from pathlib import Path

from core.engine import prefix_cache
from core.runs.jobs import Worker, worker_idle_s
from core.runs.runner import RunExecutor
from core.runs.store import RunStore
from core.settings import SettingError

NICE = 10  # below the server's priority: a page switch never waits for a training step


def yield_to_server(device: str) -> None:
    """Lower this process's CPU priority and, on a CPU run, use all cores but one (the server's)."""
    with contextlib.suppress(OSError):  # not permitted here: run at normal priority
        os.nice(NICE)
    if device == "cpu":
        import torch

        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        torch.set_num_threads(max(1, min(torch.get_num_threads(), cores - 1)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.runs.worker", description=__doc__.splitlines()[0])
    parser.add_argument("--home", required=True, help="the PTUNE_HOME whose runs.db this worker serves")
    parser.add_argument("--device", default="cpu", help="cpu or cuda:N")
    parser.add_argument("--idle-exit", type=float, help="seconds idle before exiting (default: $PTUNE_WORKER_IDLE_S)")
    args = parser.parse_args(argv)
    try:  # every setting a run reads, before any run is claimed: a typo is one line here, not a failed run later
        idle_exit = worker_idle_s() if args.idle_exit is None else args.idle_exit
        prefix_cache.check_settings()
    except SettingError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s worker {os.getpid()} %(levelname)s %(message)s")
    yield_to_server(args.device)
    home = Path(args.home)
    with RunStore(home / "runs.db") as store:
        executor = RunExecutor(home, store)
        worker = Worker(store, args.device, executor.job, idle_exit_s=idle_exit)
        ran = worker.serve()
    logging.info("worker for %s exits after %d run(s)", args.device, ran)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
