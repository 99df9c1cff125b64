"""Predict with a saved learned prompt on new (unlabeled) rows."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch

from core import artifacts
from core.backbone import Backbone
from core.data import DataError, clean_text
from core.methods import create
from core.methods.base import LearnedPrompt, PromptSpec
from core.templates import Template


def records_from_frame(df: pd.DataFrame, text_col: str, text_b_col: str | None = None) -> list[dict[str, str]]:
    """Rows as template records: every column by name, plus `text` (and `text_b`) from the chosen columns."""
    for col in (text_col, text_b_col):
        if col is not None and col not in df.columns:
            raise DataError(f"column {col!r} is not in the file; columns are: {', '.join(map(str, df.columns))}")
    records = df.fillna("").astype(str).to_dict("records")
    text = clean_text(df[text_col]).tolist()  # the same normalisation as the training data
    text_b = clean_text(df[text_b_col]).tolist() if text_b_col else None
    for i, rec in enumerate(records):
        rec["text"] = text[i]
        if text_b is not None:
            rec["text_b"] = text_b[i]
    return records


def guess_text_column(df: pd.DataFrame) -> str:
    """`text` when present, else the column with the longest strings on average."""
    if "text" in df.columns:
        return "text"
    lengths = {c: df[c].astype(str).str.len().mean() for c in df.columns}
    if not lengths:
        raise DataError("the file has no columns; give a CSV with a header row and a text column")
    return max(lengths, key=lengths.get)


def method_for(learned: LearnedPrompt):
    spec = PromptSpec(
        templates=(learned.template,) if learned.template else (),
        verbalizer=learned.verbalizer_obj(),
        label_names=tuple(learned.label_names),
    )
    return create(learned.method, spec, learned.config)


def predict_records(backbone: Backbone, learned: LearnedPrompt, records: Sequence[dict[str, str]]) -> torch.Tensor:
    """[n, n_labels] label probabilities from the learned prompt (after checking it belongs to this backbone)."""
    artifacts.check_backbone(learned, backbone)
    if learned.template:
        Template.parse(learned.template).validate(list(records[0]) if records else ["text"], backbone.kind)
    return torch.softmax(method_for(learned).scores(backbone, learned, records).float(), dim=-1)


def predict_frame(
    backbone: Backbone,
    learned: LearnedPrompt,
    df: pd.DataFrame,
    *,
    text_col: str | None = None,
    text_b_col: str | None = None,
) -> pd.DataFrame:
    """The input rows with `predicted_label` and one `p_<label>` column per label."""
    if df.empty:
        raise DataError("the file has no rows to predict; give a CSV with at least one row")
    records = records_from_frame(df, text_col or guess_text_column(df), text_b_col)
    probs = predict_records(backbone, learned, records)
    out = df.copy()
    out["predicted_label"] = [learned.label_names[i] for i in probs.argmax(1).tolist()]
    for j, name in enumerate(learned.label_names):
        out[f"p_{name}"] = probs[:, j].round(decimals=4).tolist()
    return out
