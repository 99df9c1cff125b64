"""Predict with a saved learned prompt on new (unlabeled) rows."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch

from core import artifacts, calibration
from core.backbone import Backbone
from core.data import Limits, texts_from_frame
from core.methods import LearnedPrompt, method_for
from core.templates import Template

DEFAULT_LIMITS = Limits()


def predict_records(backbone: Backbone, learned: LearnedPrompt, records: Sequence[dict[str, str]]) -> torch.Tensor:
    """[n, n_labels] label probabilities from the learned prompt (after checking it belongs to this backbone)."""
    artifacts.check_backbone(learned, backbone)
    if learned.template:
        Template.parse(learned.template).validate(list(records[0]) if records else ["text"], backbone.kind)
    return torch.softmax(calibration.scores(method_for(learned), backbone, learned, records).float(), dim=-1)


def predict_frame(
    backbone: Backbone,
    learned: LearnedPrompt,
    df: pd.DataFrame,
    *,
    text_col: str | None = None,
    text_b_col: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> pd.DataFrame:
    """The input rows with `predicted_label` and one `p_<label>` column per label.

    Rows are read like training data (`core.data.texts_from_frame`); a row left out there (empty text) keeps an
    empty prediction, and the reader's warnings are in `attrs["warnings"]`.
    """
    rows = texts_from_frame(df, text_col=text_col, text_b_col=text_b_col, limits=limits)
    probs = predict_records(backbone, learned, list(rows.records))
    out = df.iloc[: limits.max_rows].copy()
    kept = list(rows.kept)
    predicted = pd.Series("", index=out.index, dtype=object)
    predicted.iloc[kept] = [learned.label_names[i] for i in probs.argmax(1).tolist()]
    out["predicted_label"] = predicted
    for j, name in enumerate(learned.label_names):
        column = pd.Series(float("nan"), index=out.index)
        column.iloc[kept] = probs[:, j].round(decimals=4).tolist()
        out[f"p_{name}"] = column
    out.attrs["warnings"] = list(rows.warnings)
    return out
