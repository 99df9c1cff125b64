"""More than one machine: comparison units as Ray tasks on a Ray cluster (``ray`` from PyPI does the scheduling).

Why Ray and nothing home-made: placing work by free GPUs and CPUs across machines, queueing what does not fit and
retrying lost nodes is Ray's job. Each unit asks for ``num_gpus`` (1 where the cluster has GPUs) and ``num_cpus``,
so Ray runs one unit per GPU. Nodes must see the same PTune Studio code (the same image, or this repository at the
same path; its folder is put on the workers' PYTHONPATH) and the output folder (a shared filesystem). Imported
only when a Ray address is configured: without one, nothing of Ray is imported or started.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import urllib.parse
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from core.allocator import allocator_env
from core.errors import one_line
from core.settings import env_float

RAY_ADDRESS_ENV = "PTUNE_RAY_ADDRESS"
REPO_ROOT = Path(__file__).resolve().parents[2]
REACH_TIMEOUT_S = 5.0  # a cluster's head answers a TCP connect at once; past this, nothing is there
# Ray's own settings (RayConfig reads RAY_* variables) for joining a cluster: one attempt with short timeouts, so an
# address where something other than Ray answers fails in about 10 s (Ray's defaults: 20 attempts of up to 40 s)
CONNECT_BUDGET = {
    "RAY_gcs_server_port_wait_time_s": "1",
    "RAY_gcs_rpc_server_connect_timeout_s": "2",
    "RAY_py_gcs_connect_timeout_s": "5",
}
_ADDRESS_HINT = "give the address `ray start --head` printed on the head node, and check that its port is open here"
_backbones: dict[tuple, Any] = {}  # per Ray worker process: a backbone is loaded once and reused by its units


class ClusterError(ValueError):
    """The Ray cluster cannot be reached: a setting to fix, said in one line."""


def connect(address: str, *, reach_timeout_s: float = REACH_TIMEOUT_S) -> Any:
    """Join the Ray cluster at `address` (``auto``, ``ray://host:10001``, ``host:6379``; ``local`` starts one on
    this machine) with this repository importable on its workers; returns the ``ray`` module.

    Ray alone retried an address with no cluster behind it for 30 s to minutes, then said ``ConnectionError``. Here
    an address nothing answers at is refused within `reach_timeout_s`, and one where something else answers within
    about 10 s (`CONNECT_BUDGET`), with Ray's own message: both as ClusterError."""
    if _initialized():
        return sys.modules["ray"]
    check_reachable(address, timeout_s=reach_timeout_s)
    with _environment({} if address == "local" else CONNECT_BUDGET):  # set before Ray reads its config
        import ray

        paths = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
        tunables = allocator_env(os.environ)["GLIBC_TUNABLES"]  # Ray's workers start with them: huge pages
        env = {"env_vars": {"PYTHONPATH": paths, "GLIBC_TUNABLES": tunables}}
        try:
            ray.init(
                address=None if address == "local" else address,
                namespace="ptune",
                runtime_env=env,
                log_to_driver=False,
                logging_level=logging.WARNING,  # no INFO line on every connect
                include_dashboard=False if address == "local" else None,
            )
        except ConnectionError as err:
            raise ClusterError(
                f"the Ray cluster at {address!r} cannot be reached (Ray: {one_line(err)}); {_ADDRESS_HINT}"
            ) from None
    return ray


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """`values` in os.environ for the block (a variable the user set keeps the user's value), then as before."""
    added = {k: v for k, v in values.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


def _initialized() -> bool:
    """Whether this process already joined a cluster (without importing Ray when it never did)."""
    return "ray" in sys.modules and sys.modules["ray"].is_initialized()


def check_reachable(address: str, *, timeout_s: float = REACH_TIMEOUT_S) -> None:
    """Something answers on the address's host and port within `timeout_s` (``auto`` and ``local`` name no host:
    Ray finds or starts the cluster itself), else ClusterError naming the address and what to check."""
    if address in ("auto", "local"):
        return
    target = urllib.parse.urlsplit(address if "://" in address else f"ray://{address}")
    try:
        host, port = target.hostname, target.port or (10001 if address.startswith("ray://") else 6379)
    except ValueError:  # a port that is no number, or out of range
        host = port = None
    if not host or not port:
        raise ClusterError(
            f"the Ray address {address!r} is not HOST:PORT; give e.g. 10.0.0.5:6379, ray://10.0.0.5:10001, "
            "auto or local"
        )
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as err:
        why = "no answer" if isinstance(err, TimeoutError) else (err.strerror or type(err).__name__).lower()
        raise ClusterError(
            f"the Ray cluster at {address!r} cannot be reached ({why} within {timeout_s:g} s); {_ADDRESS_HINT}"
        ) from None


def resources(ray: Any) -> dict[str, float]:
    """What one unit asks of the cluster: a GPU where it has any (then one unit per GPU), and ``PTUNE_RAY_CPUS``
    CPUs (default 1)."""
    gpus = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
    return {"num_gpus": gpus, "num_cpus": env_float("PTUNE_RAY_CPUS", 1.0, at_least=0)}


def _unit_on_a_node(backbone_spec: str, trust_remote_code: bool, split, spec, unit, out_dir: str) -> dict:
    """One unit on whichever node Ray chose: the backbone on its GPU (else CPU), then `run_unit` as locally."""
    import torch

    from core.compare import run_unit
    from core.engine.backbone import load_backbone

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
