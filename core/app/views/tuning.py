"""What tuning on dev chose and tried: the table's settings note, every trial a row's tuning ran, and the Train
page's warning when dev has too few rows for the choice to mean much.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from core.compare.tuning import SMALL_DEV


def settings_note(row: Mapping[str, Any]) -> str:
    """What a row's run chose by itself: "tuned on dev: lr 0.003, encoder mlp" (per seed where seeds differ), a
    warning when dev was too small for the choice to mean much, and label words a search put to use."""
    parts = []
    tuned = [t for t in row.get("tuning") or [] if t]
    if tuned:
        chosen = list(dict.fromkeys(t["summary"] for t in tuned))
        seeds = row.get("seeds") or []
        if len(chosen) == 1:
            parts.append(f"tuned on dev: {chosen[0]}")
        else:
            per_seed = [f"{t['summary']} (seed {s})" for t, s in zip(tuned, seeds, strict=False)]
            parts.append("tuned on dev: " + "; ".join(per_seed))
        small = min(t["n_dev"] for t in tuned)
        if any(t["dev_too_small"] for t in tuned):
            parts.append(f"dev has only {small} rows, too few for the choice to mean much")
    words = next((w for w in row.get("label_words") or [] if w), None)
    if words:
        parts.append("label words: " + "; ".join(f"{k}: {', '.join(v)}" for k, v in words.items()))
    return " · ".join(parts)


def small_dev_warning(n_dev: int) -> str | None:
    """What the Train page says before launch when the dev rows tuning chooses on are too few to trust."""
    if n_dev >= SMALL_DEV:
        return None
    return (
        f"Dev has only {n_dev} rows per seed: tuning on dev will pick among settings on very little evidence. Raise "
        "K (or the dev share), or turn tuning off."
    )


def tuning_trials(row: Mapping[str, Any]) -> pd.DataFrame:
    """Every configuration a row's tuning tried, per seed, with its dev scores at the step it was compared at (its
    rung; runs stored before successive halving have none), whether it stopped at its early look, and the steps it
    ran (the chosen one marked)."""
    out = []
    for seed, tuned in zip(row.get("seeds") or [], row.get("tuning") or [], strict=False):
        for trial in (tuned or {}).get("trials", []):
            settings = ", ".join(f"{k} {v}" for k, v in trial["options"].items())
            out.append(
                {
                    "seed": seed,
                    "settings": settings,
                    "dev accuracy": trial["dev_accuracy"],
                    "dev loss": trial["dev_loss"],
                    "compared at step": trial.get("rung"),
                    "stopped at its look": bool(trial.get("pruned")),  # trailed the best earlier look there
                    "steps": trial["steps"],
                    "seconds": round(trial["seconds"], 1),
                    "chosen": trial["options"] == tuned["chosen"],
                }
            )
    return pd.DataFrame(out)
