"""The Compare page's tables: one row per prompt (mean ± std over seeds, the steps each seed used, calibration),
the learning curve's points, the significance table, the confusion matrices, the rows the prompts disagree on, and
what each learned soft prompt reads as in the vocabulary.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from core.app.views.tuning import settings_note
from core.data import LabeledDataset
from core.methods import REGISTRY
from core.prompts import artifacts


def comparison_table(summary: Mapping[str, Any]) -> pd.DataFrame:
    """One row per prompt: accuracy mean ± std over seeds, macro-F1, cost; best/worst among a method's variants.

    A method's answer that is one of its own variants on every seed (manual's "best on dev" is the template #k it
    picked) is not a row of its own: that variant's row is marked "chosen on dev" (results.json keeps both)."""
    rows = []
    chosen = chosen_variants(summary["methods"])
    for i, m in enumerate(summary["methods"]):
        if i in chosen:
            continue
        cls = REGISTRY.get(m["method"])
        rows.append(
            {
                "prompt": m["name"],
                "method": cls.label if cls else m["method"],
                "method_id": m["method"],
                "accuracy": m["accuracy"],
                "accuracy_std": m["accuracy_std"],
                "spread": spread_text(m["accuracy_std"], m["n_seeds"]),
                "macro_f1": m["macro_f1"],
                "seeds": m["n_seeds"],
                "steps": steps_text(m),
                "trainable_params": m["trainable_params"],
                "train_seconds": m["train_seconds"],
                "test_seconds": m.get("test_seconds"),
                "dev_accuracy": m.get("dev_accuracy"),
                "peak_memory_mb": m["peak_memory_mb"],
                "primary": m["primary"] or i in chosen.values(),
                "role": _role(summary, m, i in chosen.values()),
                "settings": settings_note(m),
                **calibration_columns(m.get("calibration")),
            }
        )
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    variant = pd.Series([not m["primary"] for i, m in enumerate(summary["methods"]) if i not in chosen])
    for _, part in df[variant].groupby("method_id"):
        if len(part) > 1 and part["accuracy"].max() > part["accuracy"].min():  # a tie has no best or worst
            for index, words in (
                (part["accuracy"].idxmax(), "best on test"),
                (part["accuracy"].idxmin(), "worst on test"),
            ):
                role = df.loc[index, "role"]
                df.loc[index, "role"] = f"{role}, {words}" if role else words
    return df


MISSING = "—"  # what a cell with no value says: never "None" or "nan"


def shown_cells(table: pd.DataFrame, formats: Mapping[str, str] | None = None) -> pd.DataFrame:
    """The table as text a reader sees: a column named in `formats` in its format ("{:.3f}"), a missing value
    (None, NaN, an empty text) as an em dash."""
    formats = formats or {}

    def cell(value: Any, fmt: str | None) -> str:
        if value is None or value == "" or (isinstance(value, float) and math.isnan(value)):
            return MISSING
        return fmt.format(value) if fmt else str(value)

    return pd.DataFrame({c: [cell(v, formats.get(c)) for v in table[c]] for c in table.columns})


def chosen_variants(methods: Sequence[Mapping[str, Any]]) -> dict[int, int]:
    """{index of a method's answer: index of the variant it is}, for each answer that is one of its method's
    variants on every seed (the same prompt, the same predictions); an answer that picked different variants on
    different seeds is none of them."""
    out = {}
    for i, m in enumerate(methods):
        if not m["primary"]:
            continue
        for j, v in enumerate(methods):
            if (
                not v["primary"]
                and v["method"] == m["method"]
                and v.get("prompt") == m.get("prompt")
                and v.get("predictions") == m.get("predictions")
                and v.get("per_seed") == m.get("per_seed")
            ):
                out[i] = j
                break
    return out


def repeated_rows(summary: Mapping[str, Any]) -> dict[str, str]:
    """{name of a method's answer that is one of its own variants on every seed: that variant's name}. Every table
    shows the variant's row (marked chosen on dev) and leaves the repeat out; results.json keeps both."""
    methods = summary["methods"]
    return {methods[i]["name"]: methods[j]["name"] for i, j in chosen_variants(methods).items()}


def shown_reference(summary: Mapping[str, Any]) -> str:
    """The significance reference under the name its row is shown by ("Manual #3: ... (chosen on dev)" rather than
    the answer that repeats it)."""
    reference = summary.get("reference") or ""
    repeated = repeated_rows(summary)
    return f"{repeated[reference]} (chosen on dev)" if reference in repeated else reference


def _role(summary: Mapping[str, Any], m: Mapping[str, Any], is_chosen: bool) -> str:
    """ "chosen on dev" for the prompt a method picked on dev among candidates of its own (manual's templates,
    AutoPrompt's template selection); the majority class chooses nothing, so its role is empty."""
    if is_chosen:
        return "chosen on dev"
    if m["primary"] and _has_variants(summary, m["method"]):
        return "chosen on dev per seed"  # a different variant on some seeds: none of the variants' rows is it
    return ""


def _has_variants(summary: Mapping[str, Any], method: str) -> bool:
    """Whether `method`'s primary row was picked on dev among candidates of its own (manual's templates, AutoPrompt's
    template selection): only then is it "chosen on dev" (the majority class chooses nothing)."""
    return any(m["method"] == method and not m["primary"] for m in summary["methods"])


def spread_text(std: float | None, n_seeds: int) -> str:
    """The ± cell: the standard deviation of accuracy over seeds, or why there is none (one seed has no spread,
    and "± 0.000" would claim a measured stability)."""
    if n_seeds < 2 or std is None:
        return f"n/a ({n_seeds} seed)" if n_seeds == 1 else "n/a"
    return f"± {std:.3f}"


def steps_text(row: Mapping[str, Any]) -> str:
    """The steps (or search iterations) each seed's run actually used, as early stopping left them: '60', or per
    seed '48, 60, 60' (with the mean beyond 5 seeds); '–' for a method that takes no steps."""
    per_seed = row.get("steps_per_seed")
    if per_seed is None:  # a summary stored before per-seed steps: the first seed's only
        first = row.get("steps")
        return "–" if first is None else str(first) if row.get("n_seeds", 1) == 1 else f"{first} (first seed)"
    steps = [s for s in per_seed if s is not None]
    if not steps:
        return "–"
    if len(steps) == 1:
        return str(steps[0])
    if len(steps) > 5:
        return f"mean {sum(steps) / len(steps):.0f} ({min(steps)}–{max(steps)})"
    return ", ".join(map(str, steps))


def calibration_columns(cal: Mapping[str, Any] | None) -> dict[str, Any]:
    """The table's calibration cells: which way was chosen on dev (over how many seeds), and both test accuracies."""
    if not cal:
        return {"calibration": "not recorded", "acc_calibrated": None, "acc_uncalibrated": None}
    chosen = cal["chosen"]
    n = sum(chosen.values())
    if "not calibratable" in cal["by"]:
        how = "none: no prompt to calibrate"
    elif "dev" not in cal["by"]:
        how = f"{next(iter(chosen))} ({', '.join(cal['by'])})"
    elif len(chosen) == 1:
        how = f"{next(iter(chosen))} (all {n} seeds)" if n > 1 else next(iter(chosen))
    else:
        how = ", ".join(f"{way} {count}/{n} seeds" for way, count in chosen.items())
    test = cal["test_accuracy"]
    return {"calibration": how, "acc_calibrated": test.get("calibrated"), "acc_uncalibrated": test.get("uncalibrated")}


def learning_curve_frames(summary: Mapping[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(points, references) of the learning curve for altair: one row per method and K with mean ± std over seeds,
    and one row per zero-shot reference line. Both empty without a curve."""
    curve = summary.get("learning_curve") or {}
    cols = ["method", "method_id", "k_shot", "accuracy", "accuracy_std", "low", "high", "n_seeds"]

    def frame(rows: Sequence[Mapping[str, Any]], suffix: str = "") -> pd.DataFrame:
        out = []
        for p in rows:
            cls = REGISTRY.get(p["method"])
            label = (cls.label if cls else p["method"]) + suffix
            low, high = p["accuracy"] - p["accuracy_std"], p["accuracy"] + p["accuracy_std"]
            out.append({**{k: p[k] for k in cols if k in p}, "method": label, "method_id": p["method"], "low": low})
            out[-1]["high"] = high
        return pd.DataFrame(out, columns=cols)

    return frame(curve.get("points", [])), frame(curve.get("references", []), " (zero-shot)")


def significance_table(summary: Mapping[str, Any]) -> pd.DataFrame:
    """One row per significance test of a prompt against the reference (named once, in the heading above it:
    `shown_reference`): the bootstrap difference, its interval and p-value, and McNemar's p-value."""
    repeated, rows = repeated_rows(summary), []
    for s in summary.get("significance", []):
        if repeated.get(s["versus"]) == s["method"] or s["method"] in repeated:
            continue  # the chosen template against its own repeat: the same predictions, nothing to test
        boot, mc = s["bootstrap"], s["mcnemar"]
        rows.append(
            {
                "prompt": s["method"],
                "accuracy_diff": boot["diff"],
                "ci_low": boot["ci_low"],
                "ci_high": boot["ci_high"],
                "bootstrap_p": boot["p_value"],
                "mcnemar_p": mc["p_value"],
                "significant (p<0.05)": mc["p_value"] < 0.05,
            }
        )
    return pd.DataFrame(rows)


def confusion_frame(summary: Mapping[str, Any]) -> pd.DataFrame:
    """Long format (prompt, gold, predicted, count) of each prompt's first-seed confusion matrix."""
    labels, repeated = summary["dataset"]["labels"], repeated_rows(summary)
    rows = []
    for m in summary["methods"]:
        if m["name"] in repeated:
            continue  # its chosen template's matrix is there under that template's name
        for gi, row in enumerate(m["confusion"]):
            for pi, count in enumerate(row):
                rows.append({"prompt": m["name"], "gold": labels[gi], "predicted": labels[pi], "count": count})
    return pd.DataFrame(rows)


def disagreements(
    summary: Mapping[str, Any], test: LabeledDataset, *, limit: int = 200, every_prompt: bool = False
) -> pd.DataFrame:
    """Test rows where the prompts' (first-seed) predictions differ: text, gold label and each prompt's answer.

    One column per method (the prompt it is ranked by) unless `every_prompt`: a column per manual template and
    variant makes the table wider than the page."""
    labels, repeated = summary["dataset"]["labels"], repeated_rows(summary)
    rows = [m for m in summary["methods"] if every_prompt or m.get("primary", True)]
    if every_prompt:
        rows = [m for m in rows if m["name"] not in repeated]  # its chosen template has its own column
    preds = {repeated.get(m["name"], m["name"]): m["predictions"][0] for m in rows}
    if not preds:
        return pd.DataFrame()
    df = pd.DataFrame({"text": test.texts, "gold": [labels[y] for y in test.labels]})
    for name, p in preds.items():
        df[name] = [labels[i] for i in p]
    names = list(preds)
    differ = df[names].nunique(axis=1) > 1
    out = df[differ].head(limit).copy()
    out.insert(2, "prompts right", [int(sum(r[n] == r["gold"] for n in names)) for _, r in out.iterrows()])
    return out


def _piece(token: object) -> str:
    """A vocabulary piece for display: BPE/SentencePiece word-start markers shown as '·', newlines as '↵'."""
    return str(token).replace("Ġ", "·").replace("▁", "·").replace("Ċ", "↵")


def soft_prompt_readings(summary: Mapping[str, Any]) -> dict[str, list[str]]:
    """Nearest-vocabulary reading of each learned soft prompt, as its method recorded it in the prompt file's
    manifest (`state["nearest_tokens"]`: per soft token, the nearest vocabulary tokens and their cosine)."""
    out: dict[str, list[str]] = {}
    for m in summary["methods"]:
        path = m.get("artifact")
        if not path or not Path(path).exists():
            continue
        try:
            learned = artifacts.load(path)
        except artifacts.ArtifactError:
            continue
        readout = learned.state.get("nearest_tokens")
        if not readout:
            continue
        lines = []
        for i, neighbours in enumerate(readout):
            words = [
                f"{_piece(w[0])} ({w[1]:.2f})" if isinstance(w, list | tuple) and len(w) == 2 else _piece(w)
                for w in neighbours
            ]
            lines.append(f"[P{i}] " + " | ".join(words))
        out[m["name"]] = lines
    return out
