"""CSV export that is safe to open in a spreadsheet (no formula injection, OWASP's recommendation)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from core.atomic import write_atomic

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> object:
    """Prefix a quote to text a spreadsheet would run as a formula; numbers stay numbers."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def safe_frame(df: pd.DataFrame) -> pd.DataFrame:
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col]):
            out[col] = out[col].map(safe_cell)
    out.columns = [safe_cell(str(c)) for c in out.columns]
    return out


def to_safe_csv(df: pd.DataFrame) -> bytes:
    return safe_frame(df).to_csv(index=False).encode("utf-8")


def write_safe_csv(df: pd.DataFrame, path: Path) -> Path:
    return write_atomic(path, to_safe_csv(df))
