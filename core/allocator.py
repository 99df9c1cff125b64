"""How a process that computes on the CPU takes memory: big tensors in transparent huge pages.

Why: torch takes CPU tensors from glibc's malloc, which maps every big block afresh, and the kernel faults it in
4 KB at a time. AutoPrompt on 400 rows (`benchmarks/bench_autoprompt_after.py`): 5.1 M page faults and 51.3 s with
neither switch below, 2.4 M and 49.6 s with torch's, 23 k and 46.7 s with glibc's. Two switches, read at different
moments:
- torch's `THP_MEM_ALLOC_ENABLE` (blocks of 2 MB and more), read at torch's first tensor allocation, so
  `huge_pages_for_torch` runs when `core` is imported, before any; `THP_MEM_ALLOC_ENABLE=0` keeps the default;
- glibc's `glibc.malloc.hugetlb=1` (every block, and the heap), read only when a process starts, so it goes into
  the environment of the workers this process starts (`allocator_env`).
Nothing changes where the kernel has huge pages off. Standard library only: the run queue imports it without torch.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

TORCH_SWITCH = "THP_MEM_ALLOC_ENABLE"
HUGE_PAGES_TUNABLE = "glibc.malloc.hugetlb=1"


def huge_pages_for_torch() -> None:
    """Switch torch's huge pages on for this process, unless the user set the switch either way."""
    os.environ.setdefault(TORCH_SWITCH, "1")


def allocator_env(env: Mapping[str, str]) -> dict[str, str]:
    """`env` for a process that trains or scores on the CPU, with glibc's huge pages asked for; a tunable the user
    set already is kept."""
    out = dict(env)
    tunables = [t for t in out.get("GLIBC_TUNABLES", "").split(":") if t]
    if not any(t.startswith("glibc.malloc.hugetlb=") for t in tunables):
        out["GLIBC_TUNABLES"] = ":".join([*tunables, HUGE_PAGES_TUNABLE])
    return out
