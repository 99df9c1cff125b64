"""Read a CSV file into an all-str table, refusing what is not one; the one cleaning of a cell's text.

Owns what happens before columns mean anything: the bytes (size limit, what a file that is not text is), the
encoding and delimiter guesses, pandas' parse, a header row that is evidently data. Everything that can go wrong
with user data raises `DataError`, whose message is one line naming the problem and the fix, so the pages and the
CLI show it as-is. `clean_text` lives here because every later step (column guesses, labels, records) reads cells
through it: texts are normalised once, so every prompting method and prediction sees the same strings.
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pandas as pd

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
WHITESPACE = re.compile(r"\s+")
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
        warnings.append(row_limit_warning(limits))
    body.attrs["warnings"] = tuple(warnings)
    return body


def row_limit_warning(limits: Limits) -> str:
    """The warning a table cut at `limits.max_rows` carries."""
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


def clean_text(values: pd.Series) -> pd.Series:
    """Strip, drop control characters and collapse whitespace runs (so CSV line breaks don't change the prompt)."""
    s = values.fillna("").astype(str)
    return s.str.replace(_CONTROL, "", regex=True).str.replace(WHITESPACE, " ", regex=True).str.strip()
