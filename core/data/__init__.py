"""Load a labeled CSV into a validated dataset, then split it reproducibly (stratified, K-shot per seed).

The package's public names, re-exported so `from core.data import X` is the one way in.
"""

from core.data.reading import (
    DELIMITERS,
    LABEL_NAMES,
    MAX_LABELS_GUESS,
    TEXT_NAMES,
    DataError,
    LabeledDataset,
    Limits,
    Split,
    UnlabeledRows,
    clean_text,
    dataset_from_frame,
    detect_columns,
    few_shot_split,
    guess_text_column,
    k_shot,
    load_dataset,
    load_texts,
    read_table,
    split_dataset,
    texts_from_frame,
)

__all__ = [
    "DELIMITERS",
    "LABEL_NAMES",
    "MAX_LABELS_GUESS",
    "TEXT_NAMES",
    "DataError",
    "LabeledDataset",
    "Limits",
    "Split",
    "UnlabeledRows",
    "clean_text",
    "dataset_from_frame",
    "detect_columns",
    "few_shot_split",
    "guess_text_column",
    "k_shot",
    "load_dataset",
    "load_texts",
    "read_table",
    "split_dataset",
    "texts_from_frame",
]
