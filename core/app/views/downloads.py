"""The Predict & download page's files: what each prompt file scored, how big a download is, and which files a
"download all" zip takes (built in memory) and which keep their own button.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def path_bytes(path: Path) -> int:
    """Bytes a download of `path` carries before zipping: the file, or every file under a folder (a PEFT export)."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size if path.is_file() else 0


ZIP_ALL_MAX_BYTES = 200 * 2**20  # a file above this (a full fine-tune: the whole backbone) downloads on its own


def zippable(paths: Sequence[Path], limit: int = ZIP_ALL_MAX_BYTES) -> tuple[list[Path], list[Path]]:
    """(paths a "download all" zip takes, paths it leaves to their own button): the zip is built in memory, and a
    fine-tuned backbone's file (540 MB on SmolLM2-135M, more on larger ones) per seed would not fit it."""
    small = [p for p in paths if path_bytes(p) <= limit]
    return small, [p for p in paths if p not in small]


def zip_paths(paths: Sequence[Path]) -> bytes:
    """Files and folders (PEFT exports) in one zip, each under its own name."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in paths:
            for item in sorted(path.rglob("*")) if path.is_dir() else [path]:
                if item.is_file():
                    zf.write(item, item.relative_to(path.parent))
    return buf.getvalue()


def zip_folder(folder: Path) -> bytes:
    """Every file under `folder` in one zip, under the folder's own name."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(folder.parent))
    return buf.getvalue()


def artifact_scores(summary: Mapping[str, Any] | None) -> dict[str, tuple[str, float]]:
    """Prompt file path -> (prompt name, its test accuracy at that file's seed), from the comparison summary."""
    out: dict[str, tuple[str, float]] = {}
    for m in (summary or {}).get("methods", []):
        for path, acc in zip(m.get("artifacts", []), m.get("per_seed", []), strict=False):
            out[path] = (m["name"], acc)
    return out
