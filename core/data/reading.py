"""Load a labeled CSV into a validated dataset, then split it reproducibly (stratified, K-shot per seed).

Everything that can go wrong with user data raises `DataError` whose message is one line naming the problem and
the fix, so the pages and the CLI show it as-is. Texts are normalised here, once, so every prompting method (and
prediction on new data) sees exactly the same strings.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import math
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

from core.data.lookalike import difference, lookalike_pairs, skeleton
from core.paths import not_a_file, path_kind

LABEL_NAMES = ("label", "labels", "class", "target", "y", "sentiment", "category")
TEXT_NAMES = ("text", "sentence", "review", "content", "document", "comment", "body", "message", "tweet", "utterance")
DELIMITERS = (",", ";", "\t", "|")
MAX_LABELS_GUESS = 50  # a column with more distinct values than this is not guessed to be the label
_MAGIC = {
    b"PK\x03\x04": "a ZIP archive (an Excel .xlsx file is one)",
    b"\xd0\xcf\x11\xe0": "an old Excel/Office file",
    b"%PDF": "a PDF",
    b"\x1f\x8b": "a gzip archive",
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
}
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SPACE = re.compile(r"\s+")
_INVISIBLE = re.compile("[\u00ad\u180e\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff]")  # zero-width, bidi marks
_FLOAT_INT = re.compile(r"([+-]?\d+)\.0*")
_INT = re.compile(r"[+-]?\d+")
_SNIFF_CHARS = 64 * 1024
_SNIFF_ROWS = 100


class DataError(ValueError):
    """Bad user data. str(err) is ONE line naming the problem and the fix (shown as-is in UI and CLI)."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))  # one line whatever a wrapped library said


@dataclass(frozen=True)
class Limits:
    """Caps that keep one upload from exhausting memory; rows and text length degrade with a warning, bytes fail."""

    max_bytes: int = 50 * 1024 * 1024
    max_rows: int = 200_000
    max_text_chars: int = 2_000


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


@dataclass(frozen=True)
class Split:
    """Train/dev/test parts of one dataset; `seed` is recorded so a result can be reproduced."""

    train: LabeledDataset
    dev: LabeledDataset
    test: LabeledDataset
    seed: int

    def summary(self) -> dict:
        return {"train": len(self.train), "dev": len(self.dev), "test": len(self.test), "seed": self.seed}


# ---------------------------------------------------------------------------------------------------- reading


def read_table(source: str | Path | bytes | IO[bytes], *, limits: Limits = Limits()) -> pd.DataFrame:
    """Read a CSV as all-str columns, guessing encoding and delimiter, refusing what is not a table.

    `source` is a path, the file's bytes, or a binary file object (e.g. a Streamlit upload). Warnings (non-UTF-8
    encoding, rows over the limit) travel in `df.attrs["warnings"]` so `dataset_from_frame` can report them.
    """
    text, encoding = _decode(_read_bytes(source, limits))
    delimiter = _sniff_delimiter(text)
    raw = _parse(text, delimiter, limits.max_rows + 2)  # header + max_rows + one to know there were more
    header = [str(v).strip() for v in raw.iloc[0]]
    body = raw.iloc[1:].reset_index(drop=True)
    if body.empty:
        raise DataError("the file has a header row but no data rows; add rows below the header")
    _check_header(header, body)
    body.columns = _unique_names(header)
    warnings = []
    if encoding not in ("utf-8", "utf-16"):
        warnings.append(
            f"read as {encoding} because the file is not valid UTF-8; if accents look wrong, save as UTF-8"
        )
    if len(body) > limits.max_rows:
        body = body.iloc[: limits.max_rows].copy()
        warnings.append(_row_limit_warning(limits))
    body.attrs["warnings"] = tuple(warnings)
    return body


def _row_limit_warning(limits: Limits) -> str:
    return f"kept the first {limits.max_rows} rows; the rest was ignored (the row limit)"


def _read_bytes(source: str | Path | bytes | IO[bytes], limits: Limits) -> bytes:
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
    elif isinstance(source, str | Path):
        data = _read_path(Path(source), limits)
    elif hasattr(source, "read"):
        data = source.read(limits.max_bytes + 1)
        data = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    else:
        raise TypeError(f"read_table needs a path, bytes or a binary file, not {type(source).__name__}")
    if len(data) > limits.max_bytes:
        raise DataError(f"the file is over the {_mib(limits.max_bytes)} limit; load a sample of its rows")
    return data


def _read_path(path: Path, limits: Limits) -> bytes:
    """The file's bytes, after refusing what is not a regular file (a device or pipe would be read forever) and,
    should it grow while read, never more than one byte over the limit."""
    kind = path_kind(path)
    if kind == "missing":
        raise DataError(f"file not found: {path}; check the path")
    if kind != "file":
        raise DataError(f"{not_a_file(path, kind)}; give the path of a CSV file")
    try:
        if path.stat().st_size > limits.max_bytes:
            raise DataError(
                f"{path.name} is {_mib(path.stat().st_size)}, over the {_mib(limits.max_bytes)} limit; "
                "load a sample of its rows"
            )
        with path.open("rb") as f:
            return f.read(limits.max_bytes + 1)
    except OSError as err:
        raise DataError(f"cannot read {path} ({err.strerror}); check the file's permissions") from None


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def _decode(data: bytes) -> tuple[str, str]:
    """UTF-8 (BOM or not), UTF-16 with a BOM, else Windows-1252/Latin-1; then refuse what isn't text."""
    refuse = "save it as CSV (UTF-8) and load that"
    if not data.strip():
        raise DataError("the file is empty; load a CSV with a header row and at least one data row")
    for magic, what in _MAGIC.items():
        if data.startswith(magic):
            raise DataError(f"this is {what}, not a CSV file; {refuse}")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        text, encoding = _try_decode(data, "utf-16"), "utf-16"
    elif b"\x00" in data:
        raise DataError(f"the file contains NUL bytes, so it is binary (or UTF-16 without a BOM), not a CSV; {refuse}")
    else:
        text, encoding = _decode_8bit(data)
    if not text.strip():
        raise DataError("the file is empty; load a CSV with a header row and at least one data row")
    if len(_CONTROL.findall(text[:_SNIFF_CHARS])) > 0.01 * min(len(text), _SNIFF_CHARS):
        raise DataError(f"the file is not readable text (it is full of control characters); {refuse}")
    return text, encoding


def _decode_8bit(data: bytes) -> tuple[str, str]:
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return data.decode(encoding), encoding.removesuffix("-sig")
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1"), "latin-1"


def _try_decode(data: bytes, encoding: str) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError:
        raise DataError(f"the file starts like {encoding} but cannot be decoded; save it as CSV (UTF-8)") from None


def _sniff_delimiter(text: str) -> str:
    """The delimiter whose first rows agree best on a field count of 2 or more; a comma when none splits anything."""
    best, best_score = ",", (0.0, 0)
    for delimiter in DELIMITERS:
        rows = _sample_rows(text, delimiter)
        if not rows or len(rows[0]) < 2:
            continue
        agree = sum(len(r) == len(rows[0]) for r in rows) / len(rows)
        if (agree, len(rows[0])) > best_score:
            best, best_score = delimiter, (agree, len(rows[0]))
    return best


def _sample_rows(text: str, delimiter: str) -> list[list[str]]:
    sample = text[:_SNIFF_CHARS]
    try:
        rows = [r for r in itertools.islice(csv.reader(io.StringIO(sample), delimiter=delimiter), _SNIFF_ROWS) if r]
    except csv.Error:
        return []
    cut = len(text) > len(sample) and len(rows) < _SNIFF_ROWS
    return rows[:-1] if cut and len(rows) > 1 else rows  # the last row may be cut mid-field


def _parse(text: str, delimiter: str, nrows: int) -> pd.DataFrame:
    """pandas' C parser with every cell as str; its errors become DataError."""
    try:
        raw = pd.read_csv(
            io.StringIO(text),
            sep=delimiter,
            header=None,
            dtype=str,
            na_filter=False,
            skipinitialspace=True,
            nrows=nrows,
            skip_blank_lines=True,
        )
    except pd.errors.EmptyDataError:
        raise DataError("the file has no rows; load a CSV with a header row and at least one data row") from None
    except pd.errors.ParserError as err:
        raise DataError(_parser_message(str(err), delimiter)) from None
    except (ValueError, csv.Error) as err:
        raise DataError(f"could not read the file as CSV ({err}); check it is a plain CSV file") from None
    return raw.fillna("")


def _parser_message(message: str, delimiter: str) -> str:
    name = {",": "comma", ";": "semicolon", "\t": "tab", "|": "pipe"}[delimiter]
    found = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", message)
    if found:
        expected, line, saw = found.groups()
        return (
            f"line {line} has {saw} fields but the header has {expected} ({name}-separated); "
            f"put double quotes around fields that contain a {name}"
        )
    return f"could not parse the file as {name}-separated CSV ({message}); check its quoting and delimiter"


def _check_header(header: list[str], body: pd.DataFrame) -> None:
    """Refuse a first row that is evidently data, since taking it as names would silently lose a row."""
    if any(h.lower() in LABEL_NAMES + TEXT_NAMES for h in header):
        return
    shown = ", ".join(repr(h[:30]) for h in header[:4])
    problem = f"the first row looks like data, not column names ({shown}); add a header row naming the columns"
    fix = ", e.g. text,label"
    filled = [h for h in header if h]
    if filled and all(_is_number(h) for h in filled):
        raise DataError(problem + fix)
    if any(len(h) > 100 for h in header):
        raise DataError(problem + fix)
    for i, name in enumerate(header):
        values = body.iloc[:, i].str.strip()
        if name and values.nunique() <= MAX_LABELS_GUESS and (values == name).any():
            raise DataError(problem + fix)


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _unique_names(header: list[str]) -> list[str]:
    """Empty names become column_N, repeats get _2, _3 ... so every field is addressable in a template."""
    names: list[str] = []
    for i, name in enumerate(header):
        base = name or f"column_{i + 1}"
        candidate, n = base, 2
        while candidate in names:
            candidate, n = f"{base}_{n}", n + 1
        names.append(candidate)
    return names


# ---------------------------------------------------------------------------------------------------- columns


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


def _guess_text(df: pd.DataFrame, free: list[str]) -> str:
    """A column named like text, else the one with the longest strings on average."""
    if not free:
        raise DataError(
            "no column is left for the text once the label is chosen; add a text column or choose another label column"
        )
    return _by_name(free, TEXT_NAMES) or max(free, key=lambda c: clean_text(df[c]).str.len().mean())


def _by_name(columns: list[str], names: tuple[str, ...]) -> str | None:
    lowered = {c.strip().lower(): c for c in reversed(columns)}  # first column wins on a case-only clash
    return next((lowered[n] for n in names if n in lowered), None)


def _require_columns(df: pd.DataFrame, **given: str | None) -> None:
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


# ---------------------------------------------------------------------------------------------------- normalising


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
    _require_columns(df, text_col=text_col, label_col=label_col, text_b_col=text_b_col)
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
    _require_columns(df, text_col=text_col, label_col=label_col, text_b_col=text_b_col)
    if len({text_col, label_col, text_b_col} - {None}) < 2 + (text_b_col is not None):
        raise DataError(
            f"the text, pair and label columns must differ (got text={text_col!r}, label={label_col!r}, "
            f"pair={text_b_col!r}); choose distinct columns"
        )
    if len(df) > limits.max_rows:
        df = df.iloc[: limits.max_rows]
        warnings.append(_row_limit_warning(limits))
    fields = {"text": clean_text(df[text_col])}
    if text_b_col:
        fields["text_b"] = clean_text(df[text_b_col])
    labels, label_warnings = _clean_labels(df[label_col])
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
    label_names = _label_names(labels[keep], label_col)
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


def guess_text_column(df: pd.DataFrame, *, exclude: Iterable[str] = ()) -> str:
    """A column named like text, else the one with the longest strings on average."""
    return _guess_text(df, [str(c) for c in df.columns if c not in set(exclude)])


def texts_from_frame(
    df: pd.DataFrame, *, text_col: str | None = None, text_b_col: str | None = None, limits: Limits = Limits()
) -> UnlabeledRows:
    """The same normalisation as `dataset_from_frame` (clean, drop empty, truncate), without labels."""
    if df.empty:
        raise DataError("the file has no rows to predict; give a CSV with at least one row")
    warnings = list(df.attrs.get("warnings", ()))
    df = df.rename(columns=str)
    _require_columns(df, text_col=text_col, text_b_col=text_b_col)
    text_col = text_col or guess_text_column(df, exclude=[text_b_col] if text_b_col else ())
    if len(df) > limits.max_rows:
        df = df.iloc[: limits.max_rows]
        warnings.append(_row_limit_warning(limits))
    fields = {"text": clean_text(df[text_col])}
    if text_b_col:
        fields["text_b"] = clean_text(df[text_b_col])
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


def clean_text(values: pd.Series) -> pd.Series:
    """Strip, drop control characters and collapse whitespace runs (so CSV line breaks don't change the prompt)."""
    s = values.fillna("").astype(str)
    return s.str.replace(_CONTROL, "", regex=True).str.replace(_SPACE, " ", regex=True).str.strip()


def _clean_labels(values: pd.Series) -> tuple[pd.Series, list[str]]:
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
    return _SPACE.sub(" ", _INVISIBLE.sub("", unicodedata.normalize("NFKC", value))).strip()


def _fold_number(value: str) -> str:
    found = _FLOAT_INT.fullmatch(value)
    return str(int(found.group(1))) if found else value


def _label_names(labels: pd.Series, label_col: str) -> tuple[str, ...]:
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


# ---------------------------------------------------------------------------------------------------- splitting


def split_dataset(
    ds: LabeledDataset,
    *,
    test_size: float | int = 0.5,
    dev_size: float | int = 0.1,
    seed: int = 0,
    min_per_label: int = 2,
) -> Split:
    """Stratified train/dev/test: each label's share in each part is its overall share, within one row.

    Sizes are fractions of all rows or row counts; dev_size=0 gives an empty dev. Every label must get at least
    `min_per_label` rows in every (non-empty) part, else DataError names the label and the fix.
    """
    if min_per_label < 1:
        raise ValueError("min_per_label must be at least 1 so every label appears in every part")
    n = len(ds)
    n_test = _part_size(test_size, n, "the test share", allow_zero=False)
    n_dev = _part_size(dev_size, n, "the dev share", allow_zero=True)
    if n_test + n_dev >= n:
        raise DataError(
            f"test ({n_test} rows) and dev ({n_dev} rows) leave no training rows out of {n}; "
            "lower the test share or add rows"
        )
    by_label = _indices_by_label(ds)
    counts = np.array([len(ix) for ix in by_label])
    test_k, dev_k = _apportion(counts, n_test), _apportion(counts, n_dev)
    rng = _rng(seed)
    parts: dict[str, list[int]] = {"train": [], "dev": [], "test": []}
    for name, idx, t, d in zip(ds.label_names, by_label, test_k, dev_k, strict=True):
        _check_label_fits(name, len(idx), {"train": len(idx) - t - d, "dev": d, "test": t}, n_dev > 0, min_per_label)
        perm = rng.permutation(idx)
        parts["test"] += perm[:t].tolist()
        parts["dev"] += perm[t : t + d].tolist()
        parts["train"] += perm[t + d :].tolist()
    return Split(**{k: ds.subset(sorted(v)) for k, v in parts.items()}, seed=seed)


def _part_size(value: float | int, n: int, name: str, *, allow_zero: bool) -> int:
    """A float is a fraction in (0, 1) of n rows (at least one); an int is a row count. A float of 1 or more is
    refused, not read as a count: 1.0 reads as "all the rows" (100 %), and a split of one test row helps no one."""
    bad = DataError(
        f"{name} must be a fraction between 0 and 1 or a whole row count below {n}, got {value!r}; "
        f"use e.g. 0.5 or {max(n // 2, 1)}"
    )
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise bad
    if value == 0 and allow_zero:
        return 0
    if 0 < value < 1:
        return max(1, math.floor(value * n + 0.5))
    if isinstance(value, float) and value >= 1:
        raise DataError(
            f"{name} must be a fraction below 1 such as 0.5, or a whole row count without a decimal point such as "
            f"{max(n // 2, 1)}; {value!r} would be {value:.0%} of the rows"
        )
    if 1 <= value < n:
        return int(value)
    raise bad


def _apportion(counts: np.ndarray, total: int) -> np.ndarray:
    """Split `total` across labels in proportion to `counts` (largest remainder), so each is within one row."""
    quotas = counts * total / counts.sum()
    base = np.floor(quotas).astype(int)
    order = np.argsort(-(quotas - base), kind="stable")
    base[order[: total - base.sum()]] += 1
    return base


def _check_label_fits(name: str, count: int, sizes: dict[str, int], with_dev: bool, min_per_label: int) -> None:
    parts = [p for p in ("train", "dev", "test") if with_dev or p != "dev"]
    short = [p for p in parts if sizes[p] < min_per_label]
    if not short:
        return
    got = ", ".join(f"{p} {max(int(sizes[p]), 0)}" for p in parts)
    fix = {"train": "lower the test share", "test": "raise the test share", "dev": "set the dev share to 0"}
    raise DataError(
        f"label {name!r} has only {count} rows, too few to put {min_per_label} in each of {'/'.join(parts)} "
        f"(it would get {got}); add rows of {name!r} or {fix[short[0]]}"
    )


def _indices_by_label(ds: LabeledDataset) -> list[np.ndarray]:
    labels = np.asarray(ds.labels, dtype=np.int64)
    return [np.flatnonzero(labels == i) for i in range(len(ds.label_names))]


def _rng(seed: int, stream: int = 0) -> np.random.Generator:
    """Independent reproducible streams per (seed, purpose), so the dev draw never mirrors the train draw."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise DataError(f"a seed must be a non-negative integer, got {seed!r}; e.g. seeds 0, 1, 2")
    return np.random.default_rng(int(seed) if stream == 0 else [int(seed), stream])


def k_shot(ds: LabeledDataset, k: int, seed: int) -> LabeledDataset:
    """k rows of every label, drawn with `seed` (same seed, same sample), in the dataset's original order."""
    return ds.subset(_draw_k(ds, k, _rng(seed)))


def _draw_k(ds: LabeledDataset, k: int, rng: np.random.Generator) -> list[int]:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise DataError(f"K (examples per label) must be a positive integer, got {k!r}; e.g. 16")
    chosen: list[int] = []
    for name, idx in zip(ds.label_names, _indices_by_label(ds), strict=True):
        if len(idx) < k:
            raise DataError(
                f"label {name!r} has only {len(idx)} rows to draw from, fewer than K={k}; "
                f"lower K (examples per label) to {len(idx)} or add rows of {name!r}"
            )
        chosen += rng.choice(idx, size=k, replace=False).tolist()
    return sorted(chosen)


def few_shot_split(split: Split, k: int | None, seed: int) -> tuple[LabeledDataset, LabeledDataset]:
    """(train, dev) for one seed; test stays `split.test` so every seed is scored on the same rows.

    k=None gives the full train/dev. Otherwise train is `k_shot(split.train, k, seed)` and dev is another K per
    label drawn from the non-test rows not in train; where a label has too few such rows the dev reuses train
    rows and says so in its warnings.
    """
    if k is None:
        return split.train, split.dev
    train_idx = _draw_k(split.train, k, _rng(seed))
    pool = _concat(split.train, split.dev)  # train rows keep their indices 0..len(train)-1
    rng, taken = _rng(seed, stream=1), set(train_idx)
    dev_idx, shared = [], []
    for name, idx in zip(pool.label_names, _indices_by_label(pool), strict=True):
        free = np.array([i for i in idx if i not in taken], dtype=np.int64)
        picked = rng.choice(free, size=min(k, len(free)), replace=False).tolist()
        if len(picked) < k:
            used = np.array([i for i in idx if i in taken], dtype=np.int64)
            picked += rng.choice(used, size=k - len(picked), replace=False).tolist()
            shared.append(f"{name!r} ({k - len(free)})")
        dev_idx += picked
    dev = pool.subset(sorted(dev_idx))
    if shared:
        note = f"K-shot dev shares rows with train for label {', '.join(shared)}: too few rows for a disjoint draw"
        dev = replace(dev, warnings=(*dev.warnings, note))
    return split.train.subset(train_idx), dev


def _concat(a: LabeledDataset, b: LabeledDataset) -> LabeledDataset:
    if a.label_names != b.label_names:
        raise ValueError("cannot join datasets with different label_names")
    return replace(a, records=a.records + b.records, labels=a.labels + b.labels)
