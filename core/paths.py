"""What a path a person typed points at, asked before anything opens it.

Opening a device or a pipe as if it were a CSV or a prompt file never ends (`/dev/zero` reads forever, a FIFO
waits for a writer), so every path the user gives is checked here first and anything but a regular file (or a
folder, where one is wanted) gets its own one-line answer from the caller.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

_KINDS = ((stat.S_ISREG, "file"), (stat.S_ISDIR, "folder"), (stat.S_ISFIFO, "pipe"), (stat.S_ISSOCK, "socket"))


def path_kind(path: str | Path) -> str:
    """ "file", "folder", "device", "pipe", "socket", "missing", "broken link" or "unreadable" (links followed)."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "broken link" if path.is_symlink() else "missing"
    except NotADirectoryError:
        return "missing"
    except OSError:
        return "unreadable"
    return next((kind for test, kind in _KINDS if test(mode)), "device")


def not_a_file(path: str | Path, kind: str) -> str:
    """How to say that `path` (of `kind`, not "file") is not a readable file, without the fix (the caller's). The
    path is quoted as Python writes it, so one holding a newline or a tab still reads as one line."""
    link = " (a link)" if Path(path).is_symlink() else ""
    path = repr(str(path))
    return {
        "missing": f"{path} does not exist",
        "broken link": f"{path} is a link to something that does not exist",
        "folder": f"{path}{link} is a folder, not a file",
        "unreadable": f"{path} cannot be opened (permission denied or a bad path)",
    }.get(kind, f"{path}{link} is a {kind}, not a regular file")
