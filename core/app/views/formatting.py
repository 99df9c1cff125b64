"""Durations and file sizes in words a person reads at a glance, for every page that shows them."""

from __future__ import annotations


def fmt_seconds(seconds: float | None) -> str:
    """Seconds in words a person reads at a glance: '42 s', '3 min 05 s', '1 h 02 min'."""
    if seconds is None:
        return "–"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def fmt_bytes(size: int) -> str:
    """A file size as a download list shows it: '812 B', '12 KB', '18.6 MB' (powers of 1000)."""
    if size < 1000:
        return f"{size} B"
    value, unit = size / 1000, "KB"
    for bigger in ("MB", "GB"):
        if value < 999.5:
            break
        value, unit = value / 1000, bigger
    digits = 0 if unit == "KB" or value >= 99.5 else 1
    return f"{value:.{digits}f} {unit}"
