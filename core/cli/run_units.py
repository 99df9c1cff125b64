"""Where a comparison's units run for the CLI: this process's share of them (under `torchrun` / `accelerate launch`
each process takes every N-th unit on its own device, or all train a data-parallel unit together, and process 0
gathers the results), with the GPU claimed in the app's store meanwhile; or every unit sent to a Ray cluster.

Why its own module: the process group, the device claim and the failure of one process's unit are the parts of the
CLI that a plain run on one device never sees; `compare_command` only asks for the results in the units' order.
"""

from __future__ import annotations

import argparse
import contextlib
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from core import distributed
from core.cli.common import say
from core.data import DataError, Split
from core.engine.backbone import BackboneError, load_backbone
from core.errors import one_line
from core.methods.base import PromptSpec
from core.progress import ClaimLost, never_stop
from core.runs import cluster
from core.runs.device_claim import DeviceClaim
from core.runs.store import RunStore, ptune_home

BAD_INPUT = (ValueError, DataError, BackboneError, OSError)  # a unit failing on these is the user's to fix


def _progress_printer(label: str):
    last = [0.0]

    def progress(step: int, total: int, metrics) -> None:
        now = time.monotonic()
        if now - last[0] < 2.0 and step < total:
            return
        last[0] = now
        shown = " ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, int | float))
        say(f"[{label}] {step}/{total} {shown}")

    return progress


def _check_backbone(units: list, spec, backbone) -> None:
    """What each method needs of the loaded backbone and its device (LoRA's layers, a full fine-tune's memory),
    checked for every method before the first unit trains, so a late unit cannot fail after hours of work."""
    from core.methods import create

    for unit in {u.method: u for u in units}.values():
        create(unit.method, spec, unit.options).check_backbone(backbone)


def run_my_units(
    args: argparse.Namespace, group: distributed.Group, split: Split, spec: PromptSpec, units: list, out: Path
) -> tuple[list[dict], dict, list[dict]] | None:
    """Run this process's share of the (method, seed) units and gather everyone's results on the main process.

    Under a launcher each process takes every N-th unit on its own device; with `--data-parallel` the continuous
    methods' units are trained by all processes together instead. Returns (unit results in `units` order, backbone
    description, who ran what) on the main process, None on the others.
    """
    with _device_claim(str(group.device)) as claim:
        return _run_claimed_units(args, group, split, spec, units, out, claim)


def gpu_name(device: str) -> str | None:
    """The app's name for `device` when it is a GPU (``cuda`` alone is ``cuda:0``); None for anything else."""
    if not device.startswith("cuda"):
        return None
    return device if ":" in device else "cuda:0"


@contextlib.contextmanager
def _device_claim(device: str) -> Iterator[DeviceClaim | None]:
    """On a GPU, hold it in the app's store ($PTUNE_HOME/runs.db) for the whole comparison, as the app's worker
    would: refused (`DeviceBusy`, one line naming the run there) while the app trains on it; the app's runs wait
    meanwhile. The CPU is shared as before. A store that cannot be opened is said, and the run goes on unclaimed."""
    gpu = gpu_name(device)
    if gpu is None:
        yield None
        return
    path = ptune_home() / "runs.db"
    try:
        store = RunStore(path)
    except (OSError, sqlite3.Error, RuntimeError) as err:
        say(f"warning: {gpu} not claimed in {path} ({one_line(err)}); the app may train on it at the same time")
        yield None
        return
    try:
        with DeviceClaim(store, gpu) as claim:
            yield claim
    finally:
        store.close()


def _run_claimed_units(
    args: argparse.Namespace, group: distributed.Group, split, spec, units: list, out: Path, claim
) -> tuple[list[dict], dict, list[dict]] | None:
    from core.compare import assign, run_unit

    tag = f"[process {group.rank}/{group.size}] " if group.is_distributed else ""
    should_stop = (lambda: claim.check() or False) if claim is not None else never_stop
    backbone = load_backbone(
        args.backbone,
        trust_remote_code=args.trust_remote_code,
        progress=lambda msg: say(tag + msg),
        device=None if args.device_map else str(group.device),
        device_map=args.device_map,
    )
    _check_backbone(units, spec, backbone)
    results, ran = [], []
    for unit, shared in assign(units, group.rank, group.size, data_parallel=args.data_parallel):
        who = "all processes" if shared else f"process {group.rank}"
        at_k = f", K={unit.k_shot}" if unit.k_shot is not None else ""
        say(f"{tag}running {unit.method} (seed {unit.seed}{at_k}) on {backbone.device}, {who}")
        label = f"{unit.method} seed {unit.seed}{at_k}" + (f", process {group.rank}" if group.is_distributed else "")
        try:
            with distributed.data_parallel(group) if shared else contextlib.nullcontext():
                result = run_unit(
                    backbone,
                    split,
                    spec,
                    unit,
                    out_dir=out,
                    progress=_progress_printer(label),
                    should_stop=should_stop,
                    score_test=group.is_main or not shared,
                )
        except Exception as err:  # in a group: one line naming the process, then exit (the launcher stops the rest)
            if not group.is_distributed or isinstance(err, ClaimLost):
                raise
            raise _unit_failed(err, group, unit) from err
        if group.is_main or not shared:
            results.append(result)
            ran.append(
                {
                    "method": unit.method,
                    "seed": unit.seed,
                    "k_shot": unit.k_shot,
                    "process": "all" if shared else group.rank,
                }
            )
    gathered = distributed.exchange(group, {"results": results, "ran": ran})
    distributed.leave(group)
    if not group.is_main:
        return None
    order = {(u.method, u.seed, u.k_shot): i for i, u in enumerate(units)}
    merged = sorted(
        (r for g in gathered for r in g["results"]), key=lambda r: order[(r["method"], r["seed"], r["k_shot"])]
    )
    who_ran = sorted(
        (r for g in gathered for r in g["ran"]), key=lambda r: order[(r["method"], r["seed"], r["k_shot"])]
    )
    return merged, backbone.describe(), who_ran


def run_units_on_ray(
    args: argparse.Namespace, split: Split, spec: PromptSpec, units: list, out: Path
) -> tuple[list, dict, list]:
    """Every unit as a Ray task (`core/runs/cluster.py`); results in `units` order, the backbone as the first unit
    describes it, and where each unit ran."""
    if args.data_parallel or args.device_map:
        raise ValueError("--ray-address runs whole units on cluster nodes; leave out --data-parallel and --device-map")
    say(f"sending {len(units)} unit(s) to the Ray cluster at {args.ray_address}")
    results = cluster.run_units(
        args.ray_address, args.backbone, split, spec, units, out, trust_remote_code=args.trust_remote_code
    )
    ran = [{"method": u.method, "seed": u.seed, "k_shot": u.k_shot, "process": "ray"} for u in units]
    backbones = [r.pop("backbone") for r in results]
    return results, backbones[0] if backbones else {}, ran


class UnitFailed(ValueError):
    """A unit failed in one process of a group; every process reports its own (errors before it, only process 0)."""

    def __init__(self, message: str, *, bad_input: bool):
        super().__init__(message)
        self.bad_input = bad_input


def _unit_failed(err: Exception, group: distributed.Group, unit) -> UnitFailed:
    """One line naming the process and unit that failed: bad input stays bad input (exit 2), the rest exit 1."""
    first = one_line(err)
    where = f"process {group.rank} of {group.size}, {unit.method} seed {unit.seed}"
    if isinstance(err, BAD_INPUT):
        return UnitFailed(f"{where}: {first}", bad_input=True)
    return UnitFailed(f"{where}: {type(err).__name__}: {first}", bad_input=False)
