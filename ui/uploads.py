"""The data a page works on: the CSV uploader within the upload limit, uploads parsed once per content digest,
the bundled samples' folder, and whether the K-shot sample of the chosen seed can be drawn.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from core.app.service import UPLOAD_LIMIT_MB, UPLOAD_LIMITS
from core.compare import parse_seeds
from core.data import DataError, LabeledDataset, Split, few_shot_split, load_dataset, read_table

SAMPLES_DIR = Path(__file__).resolve().parent.parent / "data" / "samples"


def csv_uploader(label: str, *, key: str) -> tuple[bytes, str] | None:
    """(bytes, file name) of an uploaded CSV, within the upload limit, or None before one is chosen."""
    upload = st.file_uploader(
        f"{label} (up to {UPLOAD_LIMIT_MB} MB)", type=["csv", "tsv", "txt"], max_upload_size=UPLOAD_LIMIT_MB, key=key
    )
    return (upload.getvalue(), upload.name) if upload is not None else None


def digest(data: bytes) -> str:
    """A short content digest of an upload: the key its parsed table and dataset are cached under."""
    return hashlib.sha256(data).hexdigest()[:16]


@st.cache_data(max_entries=8, show_spinner=False)
def table(key: str, _data: bytes) -> pd.DataFrame:
    """The raw table of an upload (cached by content digest, so reruns don't re-parse it)."""
    return read_table(_data, limits=UPLOAD_LIMITS)


@st.cache_data(max_entries=16, show_spinner=False)
def dataset(key: str, _data: bytes, text_col: str, label_col: str, text_b_col: str | None) -> LabeledDataset:
    """The labeled dataset of an upload with these columns (cached by content digest and columns)."""
    return load_dataset(_data, text_col=text_col, label_col=label_col, text_b_col=text_b_col, limits=UPLOAD_LIMITS)


def first_seed(state: dict[str, Any]) -> int:
    """The first of the seeds typed on the Train page (0 until some are): the seed whose K-shot dev a comparison's
    dev is, as the Data and Prompts pages show it."""
    try:
        return parse_seeds(state.get("seeds") or "0")[0]
    except ValueError:
        return 0


def k_shot_problem(split: Split, k: int | None, seed: int = 0) -> str | None:
    """Why a K-shot sample of K per label cannot be drawn from `split` with `seed` (None when it can, or without K)."""
    if k is None:
        return None
    try:
        few_shot_split(split, k, seed)
    except DataError as err:
        return str(err)
    return None
