"""Text the pages show: user text escaped for a Markdown element, sizes and counts in words, how many training
rows a comparison used, and the icon of each run status.
"""

from __future__ import annotations

import re

STATUS_ICONS = {
    "queued": ":material/schedule:",
    "running": ":material/autorenew:",
    "succeeded": ":material/check_circle:",
    "failed": ":material/error:",
    "cancelled": ":material/stop_circle:",
    "interrupted": ":material/warning:",
}


_MARKDOWN = re.compile(r"([\\`*_\[\]<>$:~|#])")
_LIST_START = re.compile(r"^(\s*)([-+]|\d+[.)])(\s)")


def plain(value: object) -> str:
    """User text (file names, labels, messages quoting data) for a Markdown element, shown as typed: Markdown,
    LaTeX ($) and icon-shortcode (:) characters escaped, and a leading list marker too."""
    text = _MARKDOWN.sub(r"\\\1", " ".join(str(value).split()))
    return _LIST_START.sub(r"\1\\\2\3", text)


def fmt_bytes(n: int | None) -> str:
    """A size in bytes as the Train page shows it: '512 B', '1.5 MB' (powers of 1024); '–' where there is none."""
    if n is None:
        return "–"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def fmt_count(n: int | None) -> str:
    """A count as a person reads it: '950', '12.3 k', '134.5 M', '1.35 B'; '–' where there is none."""
    if n is None:
        return "–"
    if n >= 1e9:
        return f"{n / 1e9:.2f} B"
    if n >= 1e6:
        return f"{n / 1e6:.1f} M"
    if n >= 1e3:
        return f"{n / 1e3:.1f} k"
    return str(n)


def k_words(dataset: dict) -> str:
    """How many training rows a comparison used, in words: one K, a learning curve's Ks, or all."""
    if dataset.get("k_shots"):
        return f"learning curve K={','.join(map(str, dataset['k_shots']))} per label"
    return f"K={dataset['k_shot']} per label" if dataset.get("k_shot") else "all training rows"
