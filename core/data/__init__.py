"""Load a labeled CSV into a validated dataset, then split it reproducibly (stratified, K-shot per seed).

The package's public names, re-exported so `from core.data import X` is the one way in. Its rooms, lowest first:
`reading` (bytes to an all-str table, `DataError`, `Limits`, `clean_text`), `columns` (which column is the text,
which the label), `labels` (label cells folded to classes), `dataset` (`LabeledDataset` and the normalisation
that makes it; unlabeled rows for prediction), `splits` (stratified split, K-shot per seed), `lookalike`
(names that read alike).

May import: the foundations at `core/`'s top only; every other package reads data through here.
"""

from core.data.columns import detect_columns, guess_text_column
from core.data.dataset import (
    LabeledDataset,
    UnlabeledRows,
    dataset_from_frame,
    load_dataset,
    load_texts,
    texts_from_frame,
)
from core.data.reading import (
    DELIMITERS,
    LABEL_NAMES,
    MAX_LABELS_GUESS,
    TEXT_NAMES,
    DataError,
    Limits,
    clean_text,
    read_table,
)
from core.data.splits import Split, few_shot_split, k_shot, split_dataset

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
