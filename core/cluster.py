"""More than one machine: comparison units as Ray tasks on a Ray cluster (``ray`` from PyPI does the scheduling).

Why Ray and nothing home-made: placing work by free GPUs and CPUs across machines, queueing what does not fit and
retrying lost nodes is Ray's job. Each unit asks for ``num_gpus`` (1 where the cluster has GPUs) and ``num_cpus``,
so Ray runs one unit per GPU. Nodes must see the same PTune Studio code (the same image, or this repository at the
same path; its folder is put on the workers' PYTHONPATH) and the output folder (a shared filesystem). Imported
only when a Ray address is configured: without one, nothing of Ray is imported or started.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.settings import env_float

RAY_ADDRESS_ENV = "PTUNE_RAY_ADDRESS"
REPO_ROOT = Path(__file__).resolve().parent.parent
_backbones: dict[tuple, Any] = {}  # per Ray worker process: a backbone is loaded once and reused by its units


class ClusterError(ValueError):
    """The Ray cluster cannot be reached: a setting to fix, said in one line."""


def connect(address: str) -> Any:
    """Join the Ray cluster at `address` (``auto``, ``ray://host:10001``, ``host:6379``; ``local`` starts one on
    this machine) with this repository importable on its workers; returns the ``ray`` module."""
    import ray

    if not ray.is_initialized():
        env = {
            "env_vars": {"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
        }
        ray.init(
            address=None if address == "local" else address,
            namespace="ptune",
            runtime_env=env,
            log_to_driver=False,
            include_dashboard=False if address == "local" else None,
        )
    return ray


def resources(ray: Any) -> dict[str, float]:
    """What one unit asks of the cluster: a GPU where it has any (then one unit per GPU), and ``PTUNE_RAY_CPUS``
    CPUs (default 1)."""
    gpus = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
    return {"num_gpus": gpus, "num_cpus": env_float("PTUNE_RAY_CPUS", 1.0, at_least=0)}


def _unit_on_a_node(backbone_spec: str, trust_remote_code: bool, split, spec, unit, out_dir: str) -> dict:
    """One unit on whichever node Ray chose: the backbone on its GPU (else CPU), then `run_unit` as locally."""
    import torch

    from core.backbone import load_backbone
    from core.compare import run_unit

    device = "cuda:0" if torch.cuda.is_available() else "cpu"  # Ray sets CUDA_VISIBLE_DEVICES to the GPU it gave
    key = (backbone_spec, trust_remote_code, device)
    if key not in _backbones:
        _backbones[key] = load_backbone(backbone_spec, trust_remote_code=trust_remote_code, device=device)
    backbone = _backbones[key]
    result = run_unit(backbone, split, spec, unit, out_dir=Path(out_dir))
    result["backbone"] = backbone.describe()
    return result


def run_units(
    address: str, backbone_spec: str, split, spec, units: Sequence, out_dir: Path, *, trust_remote_code: bool = False
) -> list[dict]:
    """Every unit as a Ray task, all submitted at once (Ray runs as many as the cluster has room for); the results
    in `units` order, each carrying the description of the backbone it ran on."""
    ray = connect(address)
    task = ray.remote(_unit_on_a_node).options(**resources(ray))
    split_ref, spec_ref = ray.put(split), ray.put(spec)  # sent to the cluster once, not once per unit
    refs = [
        task.remote(backbone_spec, trust_remote_code, split_ref, spec_ref, unit, str(out_dir.resolve()))
        for unit in units
    ]
    return ray.get(refs)
