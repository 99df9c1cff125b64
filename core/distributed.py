"""Several processes on one comparison: joining the process group, exchanging results, averaging gradients.

`torchrun --nproc_per_node N -m core compare ...` (or `accelerate launch --multi_gpu --num_processes N -m core ...`)
starts N copies of the CLI. accelerate's `PartialState` joins them into one torch.distributed group (NCCL on GPUs,
gloo on CPUs) — but on a machine without a GPU only when built with `cpu=True`: a plain `PartialState()` there
reports a group of one, which is why every process used to run every unit.

Failures: a process whose work fails reports one line and exits; the launcher (torchrun, accelerate launch) then
stops the others, and a process waiting at a collective call for a peer that is gone or stuck gives up after
`dist_timeout` seconds, so a failure never leaves the run hanging. Results travel as JSON bytes in tensors:
nothing received from another process is unpickled.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

DEFAULT_TIMEOUT_S = 3600.0


class DistributedError(RuntimeError):
    """A collective call failed (a peer process stopped or timed out). The message is one line."""


@dataclass(frozen=True)
class Group:
    """This process's place among the processes of one run (a group of one without a launcher)."""

    rank: int = 0
    size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.size > 1


SOLO = Group()


def join(timeout_s: float = DEFAULT_TIMEOUT_S) -> Group:
    """Join the group a launcher started (gloo on CPU, NCCL on GPUs) with `timeout_s` on every collective call."""
    if not timeout_s > 0:
        raise ValueError(f"dist_timeout must be a positive number of seconds, not {timeout_s!r}")
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available(), timeout=datetime.timedelta(seconds=timeout_s))
    device = torch.device("cpu") if state.device.type == "cpu" else state.device
    return Group(state.process_index, state.num_processes, device, timeout_s)


@contextlib.contextmanager
def _collective(group: Group, what: str) -> Iterator[None]:
    """Turn a failed collective call (a peer gone, a timeout) into one line that names the setting to change."""
    try:
        yield
    except RuntimeError as err:  # gloo/NCCL errors and timeouts (DistBackendError is one)
        timed_out = "timeout" in str(err).lower() or "timed out" in str(err).lower()
        why = (
            f"waited longer than dist_timeout={group.timeout_s:g} s"
            if timed_out
            else "another process stopped (see its error)"
        )
        raise DistributedError(f"process {group.rank} stopped while {what}: {why}") from None


def exchange(group: Group, payload: Any) -> list[Any]:
    """Every process's JSON-able `payload`, in rank order, on every process (one all-gather of JSON bytes)."""
    if not group.is_distributed:
        return [payload]
    data = torch.frombuffer(bytearray(json.dumps(payload, allow_nan=False).encode()), dtype=torch.uint8)
    with _collective(group, "exchanging results"):
        size = torch.tensor([data.numel()], dtype=torch.long, device=group.device)
        sizes = [torch.zeros_like(size) for _ in range(group.size)]
        dist.all_gather(sizes, size)
        longest = max(int(s) for s in sizes)
        padded = torch.zeros(longest, dtype=torch.uint8, device=group.device)
        padded[: data.numel()] = data.to(group.device)
        chunks = [torch.zeros_like(padded) for _ in range(group.size)]
        dist.all_gather(chunks, padded)
    return [json.loads(c[: int(n)].cpu().numpy().tobytes()) for c, n in zip(chunks, sizes, strict=True)]


def leave(group: Group) -> None:
    """Leave the group together: wait for every process, then tear the group down.

    Without this a helper process that is done exits while the main process still holds its connections, and
    gloo may abort (SIGABRT) on the connection closing under it instead of exiting cleanly.
    """
    if not group.is_distributed or not dist.is_initialized():
        return
    with _collective(group, "finishing"):
        dist.barrier()
    dist.destroy_process_group()


# data parallelism: one unit trained by every process, each on its share of every batch --------------------------

_data_parallel: contextvars.ContextVar[Group] = contextvars.ContextVar("ptune_data_parallel", default=SOLO)


@contextlib.contextmanager
def data_parallel(group: Group) -> Iterator[None]:
    """Within this block, `core.engine.training.train` splits each batch across `group` and averages the gradients."""
    token = _data_parallel.set(group)
    try:
        yield
    finally:
        _data_parallel.reset(token)


def data_parallel_group() -> Group:
    """The group training is split across (a group of one outside `data_parallel`)."""
    return _data_parallel.get()


def my_share(indices: Sequence[int], group: Group) -> list[int]:
    """This process's examples of one batch: every `size`-th, starting at its rank."""
    return list(indices[group.rank :: group.size])


def broadcast_parameters(params: Sequence[nn.Parameter], group: Group) -> None:
    """Give every process the main process's values (they start equal when seeded alike; this makes it certain)."""
    if not group.is_distributed:
        return
    with _collective(group, "starting data-parallel training"), torch.no_grad():
        for p in params:
            dist.broadcast(p.data, src=0)


def sum_gradients(params: Sequence[nn.Parameter], loss: float, group: Group) -> float:
    """Sum the processes' gradients (and losses) in place, in one all-reduce per dtype.

    Each process weights its loss by its share of the batch, so the sums are the whole batch's mean loss and
    gradient: the same step a single process takes, up to floating-point summation order.
    """
    if not group.is_distributed:
        return loss
    total = torch.tensor([loss], dtype=torch.float64, device=group.device)
    buckets: dict[torch.dtype, list[nn.Parameter]] = {}
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        buckets.setdefault(p.grad.dtype, []).append(p)
    with _collective(group, "averaging gradients"):
        dist.all_reduce(total)
        for bucket in buckets.values():
            flat = torch.cat([p.grad.reshape(-1) for p in bucket])
            dist.all_reduce(flat)
            offset = 0
            for p in bucket:
                n = p.grad.numel()
                p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
                offset += n
    return float(total)
