"""`LabeledDataset`, the rows every method trains and scores on, and the one normalisation that makes it.

Owns the step from a table to rows: pick the columns, clean the texts, fold the labels, drop empty rows, cap text
length, index the labels; the same steps without labels give the rows prediction runs on (`texts_from_frame`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

from core.data.columns import detect_columns, guess_text_column, require_columns
from core.data.labels import clean_labels, label_names_of
from core.data.reading import MAX_LABELS_GUESS, DataError, Limits, clean_text, read_table, row_limit_warning


@dataclass(frozen=True)
class LabeledDataset:
    """Normalised rows of a classification task; `labels` index `label_names`, whose order every method shares."""

    records: tuple[dict[str, str], ...]
    labels: tuple[int, ...]
    label_names: tuple[str, ...]
    text_col: str
    label_col: str
    text_b_col: str | None = None
    warnings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if len(self.records) != len(self.labels):
            raise ValueError(f"{len(self.records)} records but {len(self.labels)} labels")
        if any(not 0 <= y < len(self.label_names) for y in self.labels):
            raise ValueError(f"a label index is outside 0..{len(self.label_names) - 1}")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def texts(self) -> list[str]:
        return [r["text"] for r in self.records]

    @property
    def columns(self) -> list[str]:
        """Field names a template may use: "text", "text_b" for pairs, then the original columns (not the label)."""
        if self.records:
            return list(self.records[0])
        return ["text", "text_b"] if self.text_b_col else ["text"]

    def subset(self, indices: Sequence[int]) -> LabeledDataset:
        """Rows at `indices`; keeps label_names so label ids mean the same in every part."""
        idx = [int(i) for i in indices]
        return replace(self, records=tuple(self.records[i] for i in idx), labels=tuple(self.labels[i] for i in idx))

    def label_counts(self) -> dict[str, int]:
        counts = np.bincount(np.asarray(self.labels, dtype=np.int64), minlength=len(self.label_names))
        return {name: int(c) for name, c in zip(self.label_names, counts, strict=True)}

    def summary(self) -> dict:
        return {
            "rows": len(self),
            "labels": list(self.label_names),
            "label_counts": self.label_counts(),
            "text_col": self.text_col,
            "label_col": self.label_col,
            "text_b_col": self.text_b_col,
            "warnings": list(self.warnings),
        }


def load_dataset(
    source: str | Path | bytes | IO[bytes],
    *,
    text_col: str | None = None,
    label_col: str | None = None,
    text_b_col: str | None = None,
    limits: Limits = Limits(),
) -> LabeledDataset:
    """Read, pick columns (guessing the ones not given), normalise and validate a labeled CSV."""
    df = read_table(source, limits=limits)
    require_columns(df, text_col=text_col, label_col=label_col, text_b_col=text_b_col)
    if text_col is None or label_col is None:
        exclude = [text_b_col] if text_b_col else []
        text_col, label_col = detect_columns(df, text_col=text_col, label_col=label_col, exclude=exclude)
    return dataset_from_frame(df, text_col=text_col, label_col=label_col, text_b_col=text_b_col, limits=limits)


def dataset_from_frame(
    df: pd.DataFrame, *, text_col: str, label_col: str, text_b_col: str | None = None, limits: Limits = Limits()
) -> LabeledDataset:
    """The one normalisation every source goes through: clean strings, drop empty rows, truncate, index labels."""
    warnings = list(df.attrs.get("warnings", ()))
    df = df.rename(columns=str)
    require_columns(df, text_col=text_col, label_col=label_col, text_b_col=text_b_col)
    if len({text_col, label_col, text_b_col} - {None}) < 2 + (text_b_col is not None):
        raise DataError(
            f"the text, pair and label columns must differ (got text={text_col!r}, label={label_col!r}, "
            f"pair={text_b_col!r}); choose distinct columns"
        )
    df, fields = _text_fields(df, text_col, text_b_col, limits, warnings)
    labels, label_warnings = clean_labels(df[label_col])
    warnings.extend(label_warnings)
    keep = ((fields["text"] != "") & (labels != "")).to_numpy()
    if not keep.all():
        warnings.append(f"dropped {int((~keep).sum())} rows with empty text or label")
    if not keep.any():
        raise DataError(
            f"no rows have both a text ({text_col!r}) and a label ({label_col!r}); check the column choice"
        )
    fields = {k: v[keep] for k, v in fields.items()}
    n_cut = _truncate(fields, limits.max_text_chars)
    if n_cut:
        warnings.append(f"truncated {n_cut} texts to {limits.max_text_chars} characters")
    label_names = label_names_of(labels[keep], label_col)
    if len(label_names) > MAX_LABELS_GUESS:
        warnings.append(f"column {label_col!r} has {len(label_names)} distinct labels; check it is the label column")
    ids = {name: i for i, name in enumerate(label_names)}
    return LabeledDataset(
        records=_records(df[keep], fields, exclude={label_col}),
        labels=tuple(ids[v] for v in labels[keep]),
        label_names=label_names,
        text_col=text_col,
        label_col=label_col,
        text_b_col=text_b_col,
        warnings=tuple(warnings),
    )


@dataclass(frozen=True)
class UnlabeledRows:
    """Rows to predict on, normalised like training data; `kept` are their positions in the input table (rows
    with empty text are left out, so a prediction can be put back on the row it belongs to)."""

    records: tuple[dict[str, str], ...]
    kept: tuple[int, ...]
    text_col: str
    warnings: tuple[str, ...] = ()


def texts_from_frame(
    df: pd.DataFrame, *, text_col: str | None = None, text_b_col: str | None = None, limits: Limits = Limits()
) -> UnlabeledRows:
    """The same normalisation as `dataset_from_frame` (clean, drop empty, truncate), without labels."""
    if df.empty:
        raise DataError("the file has no rows to predict; give a CSV with at least one row")
    warnings = list(df.attrs.get("warnings", ()))
    df = df.rename(columns=str)
    require_columns(df, text_col=text_col, text_b_col=text_b_col)
    text_col = text_col or guess_text_column(df, exclude=[text_b_col] if text_b_col else ())
    df, fields = _text_fields(df, text_col, text_b_col, limits, warnings)
    keep = (fields["text"] != "").to_numpy()
    if not keep.all():
        warnings.append(f"dropped {int((~keep).sum())} rows with empty text")
    if not keep.any():
        raise DataError(f"column {text_col!r} has no text in any row; choose the text column")
    fields = {k: v[keep] for k, v in fields.items()}
    n_cut = _truncate(fields, limits.max_text_chars)
    if n_cut:
        warnings.append(f"truncated {n_cut} texts to {limits.max_text_chars} characters")
    records = _records(df[keep], fields, exclude=set())
    return UnlabeledRows(records, tuple(np.flatnonzero(keep).tolist()), text_col, tuple(warnings))


def load_texts(
    source: str | Path | bytes | IO[bytes],
    *,
    text_col: str | None = None,
    text_b_col: str | None = None,
    limits: Limits = Limits(),
) -> tuple[tuple[dict[str, str], ...], tuple[str, ...]]:
    """(records, warnings) of an unlabeled CSV, normalised exactly like training data, for prediction."""
    rows = texts_from_frame(read_table(source, limits=limits), text_col=text_col, text_b_col=text_b_col, limits=limits)
    return rows.records, rows.warnings


def _truncate(fields: dict[str, pd.Series], max_chars: int) -> int:
    n_cut = 0
    for key, values in fields.items():
        long = values.str.len() > max_chars
        n_cut += int(long.sum())
        fields[key] = values.where(~long, values.str.slice(0, max_chars).str.rstrip())
    return n_cut


def _records(df: pd.DataFrame, fields: dict[str, pd.Series], exclude: set[str]) -> tuple[dict[str, str], ...]:
    """One dict per row: the cleaned fields first, then every other column by name (the label is left out so a
    template cannot leak the answer); a column named like a field keeps the cleaned value."""
    table = pd.DataFrame({key: values.to_numpy() for key, values in fields.items()})
    for col in df.columns:
        if col not in exclude and col not in fields:
            table[col] = df[col].fillna("").astype(str).str.strip().to_numpy()
    return tuple(table.to_dict("records"))


def _text_fields(
    df: pd.DataFrame, text_col: str, text_b_col: str | None, limits: Limits, warnings: list[str]
) -> tuple[pd.DataFrame, dict[str, pd.Series]]:
    """The rows within `limits.max_rows` (a warning added when some are cut) and their cleaned text fields: the
    one normalisation both labeled and unlabeled rows get."""
    if len(df) > limits.max_rows:
        df = df.iloc[: limits.max_rows]
        warnings.append(row_limit_warning(limits))
    fields = {"text": clean_text(df[text_col])}
    if text_b_col:
        fields["text_b"] = clean_text(df[text_b_col])
    return df, fields
