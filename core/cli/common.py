"""What every command of the CLI shares: a line said on stderr (results go to stdout), and an output refused
before any work when it cannot be written.

Why its own module: the commands (`compare_command`, `predict_command`, `models_command`), the unit runner and the
error handling in `main` all report the same way.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def writable_target(path: Path, *, folder: bool) -> Path:
    """Refuse an output that cannot be written before any work: a file where a folder goes (or the reverse), or a
    place the process may not write to. Creates nothing that stays."""
    if folder and path.exists() and not path.is_dir():
        raise ValueError(f"--out {str(path)!r} is a file; give a folder for the results")
    if not folder and path.is_dir():
        raise ValueError(f"--out {str(path)!r} is a folder; give a file name such as predictions.csv")
    parent = path if folder else path.parent
    existing = next(p for p in (parent, *parent.parents) if p.exists())
    if not existing.is_dir():
        raise ValueError(f"--out {str(path)!r} cannot be created: {str(existing)!r} is a file, not a folder")
    try:
        tempfile.TemporaryFile(dir=existing).close()
    except OSError as err:
        raise ValueError(f"--out {str(path)!r} is not writable ({err.strerror}); choose another place") from None
    return path
