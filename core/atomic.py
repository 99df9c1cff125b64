"""Files replaced whole: written to a temporary file beside the target, then renamed over it.

Why: a write that stops midway (a full disk, a file-size limit, a kill) must leave the previous file as it was,
never a truncated one; a rename within one folder is atomic. Every file the engine writes for a person or for a
later resume (results, prompt files, checkpoints, predictions, drafts) goes through here.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from core.progress import under_claim


@contextlib.contextmanager
def replacing(path: str | Path, *, suffix: str | None = None) -> Iterator[Path]:
    """A temporary path beside `path` for the block to write; renamed onto `path` when the block succeeds, removed
    when it fails. An error about the temporary file is raised as one about `path`, the name the reader knows."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix if suffix is None else suffix)
    os.close(fd)
    try:
        yield Path(tmp)
        with under_claim():  # in a run's worker: only while the run is still its own (another attempt may read it)
            os.replace(tmp, path)
    except OSError as err:
        if err.filename not in (None, tmp):
            raise
        raise OSError(err.errno, err.strerror, str(path)) from err
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_atomic(path: str | Path, content: bytes | str) -> Path:
    """Replace `path` with `content` (text as UTF-8) in one step; returns the path."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    with replacing(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)
