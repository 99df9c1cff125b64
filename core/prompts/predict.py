"""Predict with a saved learned prompt on new (unlabeled) rows."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch

from core.data import Limits, texts_from_frame
from core.engine import calibration
from core.engine.backbone import Backbone
from core.engine.templates import Template
from core.methods import LearnedPrompt, method_for
from core.prompts import artifacts

DEFAULT_LIMITS = Limits()
ROW_COLUMN = "input_row"


def predict_records(backbone: Backbone, learned: LearnedPrompt, records: Sequence[dict[str, str]]) -> torch.Tensor:
    """[n, n_labels] label probabilities from the learned prompt (after checking it belongs to this backbone)."""
    artifacts.check_backbone(learned, backbone)
    if learned.template:
        Template.parse(learned.template).validate(list(records[0]) if records else ["text"], backbone.kind)
    probs = torch.softmax(calibration.scores(method_for(learned), backbone, learned, records).float(), dim=-1)
    if not torch.isfinite(probs).all():  # finite tensors can still overflow on the way: never label rows from NaN
        raise artifacts.ArtifactError(
            "the prompt gives NaN or infinite scores on this backbone (its values overflow), so it cannot label "
            "rows; train it again"
        )
    return probs


def predict_frame(
    backbone: Backbone,
    learned: LearnedPrompt,
    df: pd.DataFrame,
    *,
    text_col: str | None = None,
    text_b_col: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> pd.DataFrame:
    """The input rows, first `input_row` (1 = the first row below the header), then `predicted_label` and one
    `p_<label>` column per label.

    `input_row` is the one column nothing alters: exported text cells may be guarded against formula injection
    (core/prompts/export.py), so joining back to the input goes by row number, never by text. Rows are read like training
    data (`core.data.texts_from_frame`); a row left out there (empty text) keeps an empty prediction, and the
    reader's warnings are in `attrs["warnings"]`.
    """
    rows = texts_from_frame(df, text_col=text_col, text_b_col=text_b_col, limits=limits)
    probs = predict_records(backbone, learned, list(rows.records))
    out = df.iloc[: limits.max_rows].copy()
    out.insert(0, _free_name(ROW_COLUMN, out.columns), range(1, len(out) + 1))
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


def _free_name(base: str, taken) -> str:
    """`base`, or `base_2`, `base_3`... when the input already has a column of that name."""
    names, n, name = {str(c) for c in taken}, 2, base
    while name in names:
        name, n = f"{base}_{n}", n + 1
    return name
