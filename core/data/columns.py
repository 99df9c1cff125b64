"""Which column holds the text and which the label: guessed by name, else by shape, or checked when given.

Owns the column choice, so the Data page, the CLI and prediction guess alike and refuse a missing or look-alike
column name in the same one line.
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd

from core.data.lookalike import difference, skeleton
from core.data.reading import LABEL_NAMES, MAX_LABELS_GUESS, TEXT_NAMES, DataError, clean_text


def detect_columns(
    df: pd.DataFrame, *, text_col: str | None = None, label_col: str | None = None, exclude: Iterable[str] = ()
) -> tuple[str, str]:
    """Guess (text_col, label_col); a given one is kept and the other guessed among the remaining columns."""
    columns = [str(c) for c in df.columns]
    if len(columns) < 2:
        raise DataError(
            f"found only one column ({', '.join(columns) or 'none'}); the data needs a text column and a "
            "label column, e.g. text,label (check the delimiter if you have both)"
        )
    taken = {c for c in (*exclude, text_col, label_col) if c}
    label = label_col or _guess_label(df, [c for c in columns if c not in taken])
    text = text_col or _guess_text(df, [c for c in columns if c not in taken | {label}])
    return text, label


def _guess_label(df: pd.DataFrame, free: list[str]) -> str:
    """A column named like a label, else the one with the fewest distinct values relative to its rows."""
    named = _by_name(free, LABEL_NAMES)
    if named:
        return named
    candidates = []
    for col in free:
        values = clean_text(df[col])
        values = values[values != ""]
        distinct = values.nunique()
        if 2 <= distinct <= MAX_LABELS_GUESS and 2 * distinct <= len(values):
            candidates.append((distinct / len(values), values.str.len().mean(), col))
    if not candidates:
        raise DataError(
            f"could not tell which column holds the labels (columns: {', '.join(free)}); "
            "choose the label column, or name it 'label'"
        )
    return min(candidates)[2]


def guess_text_column(df: pd.DataFrame, *, exclude: Iterable[str] = ()) -> str:
    """A column named like text, else the one with the longest strings on average."""
    return _guess_text(df, [str(c) for c in df.columns if c not in set(exclude)])


def _guess_text(df: pd.DataFrame, free: list[str]) -> str:
    """Among the `free` columns, one named like text, else the longest on average; refused when none is free."""
    if not free:
        raise DataError(
            "no column is left for the text once the label is chosen; add a text column or choose another label column"
        )
    return _by_name(free, TEXT_NAMES) or max(free, key=lambda c: clean_text(df[c]).str.len().mean())


def _by_name(columns: list[str], names: tuple[str, ...]) -> str | None:
    lowered = {c.strip().lower(): c for c in reversed(columns)}  # first column wins on a case-only clash
    return next((lowered[n] for n in names if n in lowered), None)


def require_columns(df: pd.DataFrame, **given: str | None) -> None:
    """Refuse a given column the table lacks, naming a look-alike of it or else the columns there are."""
    columns = [str(c) for c in df.columns]
    for role, col in given.items():
        if col is not None and col not in columns:
            what = role.removesuffix("_col").replace("_", " ")
            twin = next((c for c in columns if skeleton(c) == skeleton(col)), None)
            if twin is not None:
                raise DataError(
                    f"no column {col!r} for the {what}; the file's column {twin!r} looks the same but "
                    f"{difference(twin, col)} — choose that column or rename it in the file"
                )
            raise DataError(
                f"no column {col!r} for the {what}; the columns are: {', '.join(columns)} — choose one of them"
            )
