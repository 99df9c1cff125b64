"""Memory: the peak of a block of work (CUDA allocator peak on a GPU, sampled process RSS on the CPU), and what is
free on a device before work starts."""

from __future__ import annotations

import threading
from collections.abc import Iterator
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
