"""A label column's values folded to the classes a reader sees, and the order of those classes.

Owns what makes two label cells one class (Unicode look-alikes under NFKC, zero-width characters, "1.0" = "1")
and what keeps them apart with a warning (case, look-alike letters), so every method indexes the same classes.
"""

from __future__ import annotations

import re
import unicodedata

import pandas as pd

from core.data.lookalike import difference, lookalike_pairs
from core.data.reading import WHITESPACE, DataError, clean_text

_INVISIBLE = re.compile("[\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")  # zero-width, bidi marks
_FLOAT_INT = re.compile(r"([+-]?\d+)\.0*")
_INT = re.compile(r"[+-]?\d+")


def clean_labels(values: pd.Series) -> tuple[pd.Series, list[str]]:
    """Clean like text, then fold what a reader cannot see: Unicode look-alikes (NFKC), zero-width characters, and
    "1.0" -> "1" (a column that went through a spreadsheet). Labels only these separate are merged, labels that
    differ only by case are kept apart; each of the two is reported in one warning."""
    s = clean_text(values)
    mapping = {v: _fold_number(_fold_unicode(v)) for v in s.unique()}
    groups: dict[str, list[str]] = {}
    for raw, label in mapping.items():
        groups.setdefault(label, []).append(raw)
    warnings = []
    merged = [sorted(raws) for raws in groups.values() if len({_fold_number(r) for r in raws}) > 1]
    if merged:
        shown = "; ".join(" = ".join(repr(r) for r in raws[:3]) for raws in merged[:3])
        warnings.append(f"merged labels that differ only by invisible characters or Unicode look-alikes: {shown}")
    pairs = lookalike_pairs(sorted(groups))
    if pairs:
        shown = "; ".join(f"{a!r} / {b!r}: {difference(a, b)}" for a, b in pairs[:3])
        warnings.append(
            f"labels that look alike are kept apart as different classes ({shown}); if they are one class, fix the file"
        )
    by_case: dict[str, list[str]] = {}
    for label in groups:
        by_case.setdefault(label.casefold(), []).append(label)
    clashes = [sorted(names) for names in by_case.values() if len(names) > 1]
    if clashes:
        shown = "; ".join(" / ".join(repr(n) for n in names[:3]) for names in clashes[:3])
        warnings.append(
            f"labels that differ only by case are kept apart ({shown}); if they are one class, fix the file"
        )
    return s.map(mapping), warnings


def _fold_unicode(value: str) -> str:
    return WHITESPACE.sub(" ", _INVISIBLE.sub("", unicodedata.normalize("NFKC", value))).strip()


def _fold_number(value: str) -> str:
    found = _FLOAT_INT.fullmatch(value)
    return str(int(found.group(1))) if found else value


def label_names_of(labels: pd.Series, label_col: str) -> tuple[str, ...]:
    """Sorted distinct labels (numerically when all are integers); at least two, or it's not a classification."""
    names = list(labels.unique())
    if len(names) < 2:
        raise DataError(
            f"column {label_col!r} has only one label ({names[0]!r}); a classifier needs at least two — "
            "add rows of another label or choose another label column"
        )
    if all(_INT.fullmatch(n) for n in names):
        return tuple(sorted(names, key=int))
    return tuple(sorted(names))
