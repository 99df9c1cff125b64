"""Prompts against fine-tuning, the papers' question: each row's share of the best fine-tuning row's accuracy,
parameters and training time, the table and the cost/accuracy scatter's points, and the verdict's line on which
prompt methods are as good and cheaper.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from core.app.views._shared import fine_tunes
from core.app.views.comparison import repeated_rows, spread_text
from core.methods import REGISTRY


def _is_prompt(row: Mapping[str, Any]) -> bool:
    """A prompt method's row, as the fine-tuning verdict reads it: not a fine-tuning reference, and a method whose
    scores depend on the input (the majority class's do not: it is not calibratable, and no prompt)."""
    cls = REGISTRY.get(row["method"])
    return bool(cls and not cls.fine_tunes and cls.calibratable)


def percent_text(share: float | None) -> str:
    """A share as a person reads it: '97 %', '0.6 %', '< 0.01 %'; '–' where there is none."""
    if share is None:
        return "–"
    value = share * 100
    if value == 0:
        return "0 %"
    if value < 0.01:
        return "< 0.01 %"
    return f"{value:.0f} %" if value >= 10 else f"{value:.2g} %"


def times_text(ratio: float | None) -> str:
    """A ratio of training times: '0.4×', '12×', '< 0.01×'; '–' where there is none."""
    if ratio is None:
        return "–"
    if 0 < ratio < 0.01:
        return "< 0.01×"
    return f"{ratio:.0f}×" if ratio >= 10 else f"{ratio:.2g}×"


def _diff_text(diff: float) -> str:
    return f"{diff:+.3f}".replace("-", "−")


def significance_words(row: Mapping[str, Any]) -> str:
    """'not significant', 'significantly worse' or 'significantly better' (McNemar p < 0.05)."""
    if row["mcnemar"]["p_value"] >= 0.05:
        return "not significant"
    return "significantly worse" if row["bootstrap"]["diff"] < 0 else "significantly better"


def finetuning_phrase(row: Mapping[str, Any]) -> str:
    """One row against the best fine-tuning row, in words: "P-tuning v2: 97 % of fine-tuning's accuracy with
    0.6 % of its trainable parameters, 0.4× its training time; −0.012, not significant (p = 0.41)"."""
    return (
        f"{row['name']}: {percent_text(row['accuracy_share'])} of fine-tuning's accuracy with {_cost_words(row)}; "
        f"{_diff_text(row['bootstrap']['diff'])}, {significance_words(row)} ({_p_text(row)})"
    )


def _cost_words(row: Mapping[str, Any]) -> str:
    """ "0.6 % of its trainable parameters, 0.4× its training time": a row's cost against the fine-tuning row's."""
    params, time = percent_text(row["params_share"]), times_text(row["time_ratio"])
    return f"{params} of its trainable parameters, {time} its training time"


def _p_text(row: Mapping[str, Any]) -> str:
    return f"p = {row['mcnemar']['p_value']:.2g}"


def finetuning_table(summary: Mapping[str, Any]) -> pd.DataFrame:
    """Compare's "Prompts against fine-tuning" table: each row against the best fine-tuning row (chosen on dev),
    prompt methods' primary rows first; every cell filled (shares and ratios as text, '–' where undefined)."""
    against = summary.get("versus_finetuning")
    if not against:
        return pd.DataFrame()
    repeated = repeated_rows(summary)
    chosen = set(repeated.values())
    rows = [r for r in against["rows"] if r["name"] not in repeated]  # shown once, as the template it chose
    rows.sort(key=lambda r: (r["fine_tunes"], not (r["primary"] or r["name"] in chosen)))
    return pd.DataFrame(
        [
            {
                "prompt": r["name"]
                + (" (fine-tuning)" if r["fine_tunes"] else "")
                + (" (chosen on dev)" if r["name"] in chosen else ""),
                "accuracy": r["accuracy"],
                "accuracy_share": percent_text(r["accuracy_share"]),
                "params_share": percent_text(r["params_share"]),
                "time_ratio": times_text(r["time_ratio"]),
                "difference": _diff_text(r["bootstrap"]["diff"]),
                "mcnemar_p": r["mcnemar"]["p_value"],
                "significance": significance_words(r),
            }
            for r in rows
        ]
    )


def cost_points(summary: Mapping[str, Any]) -> pd.DataFrame:
    """The cost/accuracy scatter's points: each method's primary row with its accuracy (± std where there are
    seeds), trainable parameters and training seconds, fine-tuning rows marked. A log axis has no 0: a row that
    trains nothing is drawn at 1 parameter and at 0.01 s, its true cost in the tooltip."""
    out = []
    for m in summary["methods"]:
        if not m["primary"]:
            continue
        cls = REGISTRY.get(m["method"])
        several = m["n_seeds"] > 1
        out.append(
            {
                "prompt": m["name"],
                "method": cls.label if cls else m["method"],
                "kind": "fine-tuning" if fine_tunes(m["method"]) else "prompt",
                "accuracy": m["accuracy"],
                "low": m["accuracy"] - m["accuracy_std"] if several else None,
                "high": m["accuracy"] + m["accuracy_std"] if several else None,
                "spread": spread_text(m["accuracy_std"], m["n_seeds"]),
                "trainable_params": m["trainable_params"],
                "train_seconds": m["train_seconds"],
                "params_x": max(m["trainable_params"], 1),
                "seconds_x": max(m["train_seconds"], 0.01),
            }
        )
    return pd.DataFrame(out)


def finetuning_verdict(summary: Mapping[str, Any]) -> str | None:
    """The verdict's line on the papers' question: which prompt methods (each one's row chosen on dev) are as good
    as the best fine-tuning row — not significantly worse (McNemar p >= 0.05 or ahead) — and cheaper (fewer
    trainable parameters and less training time); or that all fall significantly short. None without fine-tuning
    or without a prompt method."""
    against = summary.get("versus_finetuning")
    candidates = [r for r in (against or {}).get("rows", []) if r["primary"] and _is_prompt(r)]
    if not candidates:
        return None
    ref = against["reference"]
    lead = f"Against fine-tuning ({ref['name']}, chosen on dev; test {ref['accuracy']:.3f}): "
    worse = [r for r in candidates if significance_words(r) == "significantly worse"]
    if len(worse) == len(candidates):
        close = max(candidates, key=lambda r: r["accuracy"])
        return lead + (
            f"every prompt method falls significantly short; the closest, {close['name']}, by "
            f"{-close['bootstrap']['diff']:.3f} ({_p_text(close)})."
        )
    as_good = [r for r in candidates if r not in worse]
    cheaper = [r for r in as_good if _cheaper(r)]
    if cheaper:
        said = [
            f"{r['name']} is as good ({_diff_text(r['bootstrap']['diff'])}, not significantly worse, {_p_text(r)}) "
            f"and cheaper ({_cost_words(r)})"
            for r in cheaper
        ]
        return lead + "; ".join(said) + "."
    said = [f"{r['name']} is not significantly worse ({_p_text(r)}) but takes {_cost_words(r)}" for r in as_good]
    return lead + "no prompt method is both as good and cheaper; " + "; ".join(said) + "."


def _cheaper(row: Mapping[str, Any]) -> bool:
    """Fewer trainable parameters and less training time than the fine-tuning row."""
    params, time = row["params_share"], row["time_ratio"]
    return params is not None and time is not None and params < 1 and time < 1
