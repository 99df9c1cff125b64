"""Strings that look the same but are not: `positive` and `positіve` (Cyrillic і) read alike and compare different.

A label, column or verbalizer key typed in another script silently becomes another class or "not found". This is
a compact version of Unicode's confusables skeleton (UTS #39): NFKC, then the common Cyrillic and Greek letters
that look like Latin ones mapped to them. The full table (confusables.txt, ~6,000 entries) is in PyPI packages
that this project does not ship; these cover the look-alikes that a keyboard layout or a copy-paste produces.
Callers warn or explain with `difference`; nothing is ever merged by it.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable

_LATIN_LOOKALIKES = {
    # Cyrillic lowercase
    "а": "a", "с": "c", "ԁ": "d", "е": "e", "ё": "ë", "һ": "h", "і": "i", "ї": "ï", "ј": "j", "ӏ": "l", "о": "o",
    "р": "p", "ԛ": "q", "ѕ": "s", "у": "y", "ԝ": "w", "х": "x",
    # Cyrillic uppercase
    "А": "A", "В": "B", "С": "C", "Е": "E", "Ё": "Ë", "Н": "H", "І": "I", "Ї": "Ï", "Ј": "J", "К": "K", "М": "M",
    "О": "O", "Р": "P", "Ԛ": "Q", "Ѕ": "S", "Т": "T", "У": "Y", "Ү": "Y", "Ԝ": "W", "Х": "X", "Ӏ": "I",
    # Greek
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M", "Ν": "N", "Ο": "O", "Ρ": "P",
    "Τ": "T", "Υ": "Y", "Χ": "X", "α": "a", "ι": "i", "ν": "v", "ο": "o", "ρ": "p", "υ": "u", "γ": "y",
    # Latin letters that pass for plain ones
    "ı": "i", "ɑ": "a", "ɡ": "g", "ǀ": "l",
}  # fmt: skip
_TABLE = str.maketrans(_LATIN_LOOKALIKES)


def skeleton(text: str) -> str:
    """What `text` looks like: equal skeletons read the same to a person (case is kept: that is visible)."""
    return unicodedata.normalize("NFKC", text).translate(_TABLE)


def lookalike_pairs(values: Iterable[str]) -> list[tuple[str, str]]:
    """Pairs of distinct values that look the same, in first-seen order."""
    seen: dict[str, str] = {}
    pairs = []
    for value in values:
        key = skeleton(value)
        if key in seen and seen[key] != value:
            pairs.append((seen[key], value))
        else:
            seen.setdefault(key, value)
    return pairs


def difference(a: str, b: str) -> str:
    """Where two look-alike strings differ, in words: "one has 'і' (Cyrillic, U+0456) where the other has 'i'"."""
    for x, y in zip(a, b, strict=False):
        if x != y:
            odd, plain = (y, x) if x.isascii() else (x, y)
            return f"one has {_describe(odd)} where the other has {plain!r}"
    return "they differ in length"


def _describe(char: str) -> str:
    script = unicodedata.name(char, "UNKNOWN").split()[0].title()
    return f"{char!r} ({script}, U+{ord(char):04X})"
