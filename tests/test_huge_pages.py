"""Big CPU tensors come in huge pages once `core` is imported: far fewer page faults for each fresh block."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.allocator import allocator_env
from core.runs.jobs import ProcessLauncher
from core.runs.store import RunStore

ROOT = Path(__file__).resolve().parent.parent
THP = Path("/sys/kernel/mm/transparent_hugepage/enabled")

ALLOCATE = """
import resource
import core  # first: it switches huge pages on before torch allocates anything
import torch

faults = 0
for _ in range(5):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    x = torch.ones(16 * 2**20)  # 64 MB, as a batch's key/value copy: a fresh block each time
    faults += resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    del x
print(faults)
"""


def faults(thp: str | None) -> int:
    """Page faults of the allocations in a fresh process, with THP_MEM_ALLOC_ENABLE as given (None: unset)."""
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    env["OMP_NUM_THREADS"] = "1"
    if thp is not None:
        env["THP_MEM_ALLOC_ENABLE"] = thp
    run = subprocess.run(
        [sys.executable, "-c", ALLOCATE], capture_output=True, text=True, check=True, timeout=120, cwd=ROOT, env=env
    )
    return int(run.stdout.split()[-1])


@pytest.mark.skipif(
    not THP.is_file() or "[never]" in THP.read_text(), reason="the kernel has transparent huge pages off"
)
def test_importing_core_puts_big_tensors_in_huge_pages() -> None:
    pages = 5 * 64 * 2**20 // 4096
    opted_out = faults("0")  # the user's opt-out: glibc's 4 KB pages, every one faulted in afresh
    assert opted_out > pages // 2, opted_out
    huge = faults(None)  # nothing set: importing core switches huge pages on
    assert huge < opted_out // 10, (huge, opted_out)


def test_a_worker_starts_with_glibcs_huge_pages_and_keeps_the_users_tunables(tmp_path: Path) -> None:
    """glibc reads its tunables once, at a process's start: the launcher puts them in a worker's environment."""
    seen = tmp_path / "tunables"
    child = f"import os; open({str(seen)!r}, 'w').write(os.environ.get('GLIBC_TUNABLES', ''))"
    launcher = ProcessLauncher([sys.executable, "-c", child], log_dir=tmp_path / "logs")
    with RunStore(tmp_path / "runs.db") as store:
        launcher.ensure("cpu", store)
        launcher._started["cpu"].wait(timeout=60)
    assert "glibc.malloc.hugetlb=1" in seen.read_text().split(":")
    assert allocator_env({})["GLIBC_TUNABLES"] == "glibc.malloc.hugetlb=1"
    kept = allocator_env({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2", "PATH": "/bin"})
    assert kept == {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1", "PATH": "/bin"}
    assert allocator_env({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"})["GLIBC_TUNABLES"] == "glibc.malloc.hugetlb=0"
