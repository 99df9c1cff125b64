"""One rule for turning an exception into what a person reads: its first non-empty line.

The CLI prints it after ``error:``, the app shows it in an error box and the job runner stores it with a failed
run; all three go through ``one_line`` so a message reads the same everywhere.
"""

from __future__ import annotations


def one_line(err: BaseException) -> str:
    """The first line of the error's message, or its type name when it has none."""
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__
