"""Memory: the peak of a block of work (CUDA allocator peak on a GPU, sampled process RSS on the CPU), what is
free on a device before work starts, and the allocator settings a computing process starts with."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import psutil
import torch


class PeakMemory:
    """Holds the measured peak in MiB once the `measure_peak` block has exited."""

    mb: float = 0.0


@contextmanager
def measure_peak(device: torch.device, interval_s: float = 0.02) -> Iterator[PeakMemory]:
    """On CUDA: torch's own peak counter. On CPU there is none, so a thread samples the process RSS."""
    result = PeakMemory()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        try:
            yield result
        finally:
            result.mb = torch.cuda.max_memory_allocated(device) / 2**20
        return
    proc = psutil.Process()
    done = threading.Event()
    peak = [proc.memory_info().rss]

    def sample() -> None:
        while not done.wait(interval_s):
            peak[0] = max(peak[0], proc.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield result
    finally:
        done.set()
        sampler.join()
        result.mb = max(peak[0], proc.memory_info().rss) / 2**20


def free_memory(device: torch.device) -> int:
    """Bytes free on `device`: the CUDA allocator's view of a GPU, else the memory the OS can give this process."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    return int(psutil.virtual_memory().available)


HUGE_PAGES_TUNABLE = "glibc.malloc.hugetlb=1"


def allocator_env(env: Mapping[str, str]) -> dict[str, str]:
    """`env` for a process that trains or scores on the CPU: glibc's malloc asks for transparent huge pages.

    Why: torch takes CPU tensors from malloc, and a fresh block is faulted in 4 KB at a time. `core` already puts
    blocks of 2 MB and more in huge pages (`THP_MEM_ALLOC_ENABLE`, set on import); glibc's own switch covers the
    smaller blocks and the heap too, but is read only when a process starts, so it goes into a child's environment.
    AutoPrompt on 400 rows: 5.1 M page faults and 51.3 s with neither, 2.4 M and 49.6 s with torch's, 23 k and
    46.7 s with glibc's (`benchmarks/bench_autoprompt_after.py`). A tunable the user set already is kept.
    """
    out = dict(env)
    tunables = [t for t in out.get("GLIBC_TUNABLES", "").split(":") if t]
    if not any(t.startswith("glibc.malloc.hugetlb=") for t in tunables):
        out["GLIBC_TUNABLES"] = ":".join([*tunables, HUGE_PAGES_TUNABLE])
    return out
