"""The tables and previews the pages show, computed from summaries, datasets and tokenizers (pandas in, out).

Comparison views (`comparison_table`, significance, confusion, disagreements, soft-prompt readings) and prompt
views (the token preview, label-word tokenisation, a quick zero-shot check). No Streamlit here, so every view is
unit-tested on plain inputs.
"""

from __future__ import annotations

import io
import math
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from core.compare.tuning import SMALL_DEV
from core.data import LabeledDataset, Split, few_shot_split
from core.engine.backbone import Backbone, LMKind
from core.engine.templates import SlotKind, Template, mask_has_space, render_ids, tokenize_word
from core.methods import REGISTRY, create
from core.methods.base import PromptSpec
from core.progress import CONTINUED_METRIC, TAG_METRICS, TRIAL_METRIC, TUNING
from core.prompts import artifacts
from core.runs.estimate import progress_fraction
from core.runs.store import ACTIVE_STATUSES


def comparison_table(summary: Mapping[str, Any]) -> pd.DataFrame:
    """One row per prompt: accuracy mean ± std over seeds, macro-F1, cost; best/worst among a method's variants."""
    rows = []
    for m in summary["methods"]:
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
                "primary": m["primary"],
                "role": "chosen on dev" if m["primary"] and _has_variants(summary, m["method"]) else "",
                "settings": settings_note(m),
                **calibration_columns(m.get("calibration")),
            }
        )
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    for _, part in df[~df["primary"]].groupby("method_id"):
        if len(part) > 1:
            df.loc[part["accuracy"].idxmax(), "role"] = "best on test"
            df.loc[part["accuracy"].idxmin(), "role"] = "worst on test"
    return df


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
    rung; runs stored before successive halving have none) and the steps it ran (the chosen one marked)."""
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
                    "steps": trial["steps"],
                    "seconds": round(trial["seconds"], 1),
                    "chosen": trial["options"] == tuned["chosen"],
                }
            )
    return pd.DataFrame(out)


def calibration_columns(cal: Mapping[str, Any] | None) -> dict[str, Any]:
    """The table's calibration cells: which way was chosen on dev (over how many seeds), and both test accuracies."""
    if not cal:
        return {"calibration": "", "acc_calibrated": None, "acc_uncalibrated": None}
    chosen = cal["chosen"]
    n = sum(chosen.values())
    if "dev" not in cal["by"]:
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


def _prompt_words(row: Mapping[str, Any], templates: Sequence[str]) -> str:
    """A prompt named as a person recognises it: the manual template by its number and words, else its method."""
    cls = REGISTRY.get(row["method"])
    if row["method"] == "manual":
        number = templates.index(row["template"]) + 1 if row["template"] in templates else None
        return f"your template #{number} “{row['template']}”" if number else f"the template “{row['template']}”"
    return cls.label if cls else row["name"]


def verdict(summary: Mapping[str, Any]) -> dict[str, str]:
    """The comparison in words: ``headline`` (the winner chosen on dev and whether it beats the reference
    significantly, with the McNemar p-value of the significance table) and ``test_best`` (the best on test, labelled
    as such: picking by test accuracy is not a fair choice)."""
    winner, how, score = _winner(summary)
    who = _prompt_words(winner, list(summary.get("templates") or []))
    headline = f"{who[0].upper()}{who[1:]} is best ({how}: {score})" + _against_reference(summary, winner)
    top = max(summary["methods"], key=lambda m: m["accuracy"])
    test_best = f"Best on test: {top['name']} ({top['accuracy']:.3f}), picked after seeing the test split"
    out = {"headline": headline + ".", "test_best": test_best + "."}
    if against := finetuning_verdict(summary):
        out["finetuning"] = against
    return out


def _winner(summary: Mapping[str, Any]) -> tuple[Mapping[str, Any], str, str]:
    """(the row a user would pick: best on dev among each method's primary prompt, how it was picked, its scores).

    Fine-tuning rows are the references prompts are read against, not candidates (unless nothing else ran)."""
    primary = [m for m in summary["methods"] if m["primary"]]
    rows = [m for m in primary if not _fine_tunes(m["method"])] or primary
    on_dev = [m for m in rows if m.get("dev_accuracy") is not None]
    if on_dev:
        winner = max(on_dev, key=lambda m: (m["dev_accuracy"], m["accuracy"]))
        return winner, "chosen on dev", f"dev {winner['dev_accuracy']:.3f}, test {winner['accuracy']:.3f}"
    winner = max(rows, key=lambda m: m["accuracy"])
    return winner, "best on test (no dev scores to choose with)", f"test {winner['accuracy']:.3f}"


def _against_reference(summary: Mapping[str, Any], winner: Mapping[str, Any]) -> str:
    """The headline's clause on significance against the manual prompt chosen on dev ('' without that reference)."""
    templates = list(summary.get("templates") or [])
    sig = {s["method"]: s for s in summary.get("significance", [])}
    reference = next((m for m in summary["methods"] if m["name"] == summary.get("reference")), None)
    if reference is None:
        return ""
    ref_words = f"the manual prompt chosen on dev ({_prompt_words(reference, templates)})"
    if winner["name"] == reference["name"]:
        better = [s for s in sig.values() if s["bootstrap"]["diff"] > 0]
        best = min(better, key=lambda s: s["mcnemar"]["p_value"], default=None)
        if best is None:
            return f"; no other method beats {ref_words} on test"
        if best["mcnemar"]["p_value"] < 0.05:
            return f"; but {best['method']} beats it on test (p = {best['mcnemar']['p_value']:.3f})"
        return (
            f"; no method is significantly better than {ref_words} "
            f"(smallest p = {best['mcnemar']['p_value']:.3f}, {best['method']})"
        )
    if winner["name"] in sig:
        s = sig[winner["name"]]
        p, diff = s["mcnemar"]["p_value"], s["bootstrap"]["diff"]
        word = "significantly" if p < 0.05 else "not significantly"
        return f"; {diff:+.3f} on test against {ref_words}, {word} (p = {p:.3f})"
    return ""


def provisional_verdict(
    summary: Mapping[str, Any] | None, runs: Sequence[Mapping[str, Any]], now: float
) -> str | None:
    """While any run of the comparison is queued or running, what its finished runs say so far, marked provisional,
    with what is still to come and about how long it takes (`queue_eta`); None once the last run has ended (the
    normal verdict then). `summary` is built from succeeded runs only, so its significance is among those alone."""
    waiting = [r for r in runs if r["status"] in ACTIVE_STATUSES]
    if not waiting:
        return None
    current = [r for r in runs if not r.get("superseded")]
    to_come = f"{_waiting_words(waiting)}, {_time_left_words(*queue_eta(runs, now))}"
    if not summary or not summary.get("methods"):
        return f"Provisional — nothing scored yet; {to_come}."
    winner, _, _ = _winner(summary)
    who = _prompt_words(winner, list(summary.get("templates") or []))
    dev = winner.get("dev_accuracy")
    how = f"dev-chosen, dev {dev:.3f}" if dev is not None else "best on test: no dev scores to choose with"
    done = sum(r["status"] == "succeeded" for r in current)
    among = _against_reference(summary, winner)
    if summary.get("reference") is None and any(
        r["method"] == "manual" for r in current
    ):  # the reference is part of it, not scored yet
        among = "; no significance test until the manual reference is scored"
    return (
        f"Provisional — so far ({done} of {len(current)} runs scored): {who} {winner['accuracy']:.3f} on test "
        f"({how}){among}; {to_come}."
    )


def _waiting_words(waiting: Sequence[Mapping[str, Any]]) -> str:
    """'P-tuning still training; Prompt tuning (2 runs), P-tuning v2 queued': the methods still to come."""

    def names(rows: Sequence[Mapping[str, Any]]) -> str:
        count: dict[str, int] = {}
        for r in rows:
            cls = REGISTRY.get(r["method"])
            label = cls.label if cls else r["method"]
            count[label] = count.get(label, 0) + 1
        return ", ".join(f"{label} ({n} runs)" if n > 1 else label for label, n in count.items())

    running = [r for r in waiting if r["status"] == "running"]
    queued = [r for r in waiting if r["status"] == "queued"]
    parts = []
    training = [r for r in running if r["method"] in REGISTRY and REGISTRY[r["method"]].trains]
    scoring = [r for r in running if r not in training]
    tuning = [r for r in training if tuning_stage(r.get("phase") or "")]
    training = [r for r in training if r not in tuning]
    for r in tuning:  # named as its card names it
        parts.append(f"{names([r])} still {TUNING} ({tuning_stage(r['phase'])})")
    if training:
        parts.append(f"{names(training)} still training")
    if scoring:
        parts.append(f"{names(scoring)} still scoring")
    if queued:
        parts.append(f"{names(queued)} queued")
    return "; ".join(parts)


def _time_left_words(eta: float | None, unknown: int) -> str:
    """'about 6 min' (rounded up), 'under a minute', or that there is no estimate yet (never a made-up number)."""
    if eta is None:
        return "time left not known yet (no finished run to estimate it from)"
    words = "under a minute" if eta < 60 else f"about {math.ceil(eta / 60)} min"
    return words + (f" (and {unknown} run{'s' if unknown > 1 else ''} not estimated yet)" if unknown else "")


def _fine_tunes(method: str) -> bool:
    cls = REGISTRY.get(method)
    return bool(cls and cls.fine_tunes)


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
    rows = sorted(against["rows"], key=lambda r: (r["fine_tunes"], not r["primary"]))
    return pd.DataFrame(
        [
            {
                "prompt": r["name"] + (" (fine-tuning)" if r["fine_tunes"] else ""),
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
                "kind": "fine-tuning" if _fine_tunes(m["method"]) else "prompt",
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


def significance_table(summary: Mapping[str, Any]) -> pd.DataFrame:
    rows = []
    for s in summary.get("significance", []):
        boot, mc = s["bootstrap"], s["mcnemar"]
        rows.append(
            {
                "prompt": s["method"],
                "versus": s["versus"],
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
    labels = summary["dataset"]["labels"]
    rows = []
    for m in summary["methods"]:
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
    labels = summary["dataset"]["labels"]
    rows = [m for m in summary["methods"] if every_prompt or m.get("primary", True)]
    preds = {m["name"]: m["predictions"][0] for m in rows}
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


def zip_folder(folder: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(folder.parent))
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------------- runs page

PHASE_UNITS = {"training": "step", "choosing on dev": "prompt", "scoring the test split": "rows"}


def phase_progress(run: Mapping[str, Any]) -> tuple[float | None, str]:
    """What a run card's bar shows: (fraction done or None for no bar, the words): its phase with its own count."""
    status, phase = run["status"], run.get("phase") or ""
    step, total = run["progress_step"], run["progress_total"]
    if status == "queued":
        return None, "waiting for a worker"
    if status != "running":
        return (min(step / total, 1.0) if total else None), ""
    if run.get("stopping"):
        return (min(step / total, 1.0) if total else None), "stopping after this step…"
    if not phase or not total:
        return None, phase or "starting (loading the backbone)"
    inner = phase.rsplit(" · ", 1)[-1]  # a tuning trial's phase: "tuning on dev, trial 2 of 5: lr 0.01 · training"
    unit = next((u for p, u in PHASE_UNITS.items() if inner.startswith(p)), None)
    if inner == "evaluating on dev":
        return _bar(run, phase, step, total), f"{phase} after step {step}/{total}"
    if unit is None:
        return None, phase
    eta = f" · ETA {fmt_seconds(run['eta_seconds'])}" if run.get("eta_seconds") else ""
    return _bar(run, phase, step, total), f"{phase} · {unit} {step:,}/{total:,}{eta}"


def _bar(run: Mapping[str, Any], phase: str, step: int, total: int) -> float:
    """The bar's fill: the phase's own share, except while tuning, where each trial counts its steps from 1 again:
    there the share of the whole unit's plan (the estimate's stages), so the bar moves on across trials."""
    stages = (run.get("estimate") or {}).get("stages")
    if phase.startswith(TUNING) and stages:
        share = progress_fraction(stages, phase, step, total)
        if share is not None:
            return share
    return min(step / total, 1.0)


def tuning_stage(phase: str) -> str | None:
    """Where a tuning run is, in the card's words: "trial 2 of 5" or "continuing its best trial"; None when the
    phase is not tuning's."""
    head = phase.split(" · ", 1)[0]
    if not head.startswith(TUNING):
        return None
    rest = head.removeprefix(TUNING).lstrip(",: ")
    return rest.split(":", 1)[0] if rest.startswith("trial") else rest.split(" (", 1)[0]


def wall_seconds(run: Mapping[str, Any]) -> float | None:
    started, finished = run.get("started"), run.get("finished")
    return finished - started if started is not None and finished is not None else None


def stopped_text(run: Mapping[str, Any]) -> str:
    """A stopped (failed, cancelled, interrupted) card's line: where it got to and for how long it ran, saying
    only what the row knows (a run interrupted before it started has no start time, one found dead no finish)."""
    text = run["status"]
    step, total = run.get("progress_step") or 0, run.get("progress_total") or 0
    if total:
        text += f" at step {step:,}/{total:,}" + (f" ({run['phase']})" if run.get("phase") else "")
    if (wall := wall_seconds(run)) is not None:
        text += f" after {fmt_seconds(wall)}"
    return text


def finished_text(run: Mapping[str, Any]) -> str:
    """A finished card's honest times: wall time, and training and test scoring apart."""
    parts = []
    if (wall := wall_seconds(run)) is not None:
        parts.append(f"took {fmt_seconds(wall)}")
    if run.get("train_seconds") is not None:
        parts.append(f"training {fmt_seconds(run['train_seconds'])}")
    if run.get("test_seconds") is not None:
        parts.append(f"scoring the test split {fmt_seconds(run['test_seconds'])}")
    if run.get("continued_from_step"):  # tuning going on, not a restart
        parts.append(f"continued from its best trial at step {run['continued_from_step']}")
    if run.get("resumed_from_step"):
        parts.append(f"resumed after an interruption, from step {run['resumed_from_step']}")
    return " · ".join(parts)


SPEED_FACTOR_RANGE = (0.5, 2.0)  # how far finished runs may rescale the others' estimates (no jump beyond 2x)
OWN_RATE_AFTER = 0.1  # share of a run's work after which its own measured rate alone projects its end
TAIL = 0.05  # a run past its projected end: this share of its estimate, shrinking as it runs on (never "0 s")


def queue_eta(runs: Sequence[Mapping[str, Any]], now: float) -> tuple[float | None, int]:
    """(seconds until every unfinished run is done, how many of them have no estimate yet), one worker assumed.

    A run launched with an estimate (`estimate`: core.runs.estimate's seconds and stages, the Train page's number) is
    expected to take that, times how much slower or faster the comparison's finished runs were than theirs
    (`speed_factor`). A running one projects its end from its own measured rate as its progress comes in
    (`run_remaining`), so the total moves down while time passes and never jumps by more than 2x once the run has
    measured its speed. Runs without an estimate (launched before estimates) fall back to the mean wall time of
    finished runs of the same method (else of any method)."""
    done: dict[str, list[float]] = {}
    for r in runs:
        if r["status"] == "succeeded" and (w := wall_seconds(r)) is not None:
            done.setdefault(r["method"], []).append(w)
    every = [w for ws in done.values() for w in ws]
    factor = speed_factor(runs)
    total, unknown = 0.0, 0
    for r in runs:
        if r["status"] not in ("queued", "running"):
            continue
        if (r.get("estimate") or {}).get("seconds") is not None:
            total += run_remaining(r, now, factor)
            continue
        same = done.get(r["method"]) or every
        estimate = sum(same) / len(same) if same else None
        if r["status"] == "running":
            started = r.get("started")
            left = estimate - (now - started) if estimate is not None and started is not None else None
            known = [x for x in (left, r.get("eta_seconds")) if x is not None and x > 0]
            if known:
                total += max(known)
            else:  # no estimate, or one it has outrun with no phase ETA: unknown, never "about 0 s"
                unknown += 1
        elif estimate is None:
            unknown += 1
        else:
            total += estimate
    return (total if unknown < sum(r["status"] in ("queued", "running") for r in runs) else None), unknown


def speed_factor(runs: Sequence[Mapping[str, Any]]) -> float:
    """Finished runs' wall time over their estimates (1 with none), within `SPEED_FACTOR_RANGE`: a loaded machine
    or a mis-estimated device rescales every estimate still waiting."""
    actual = expected = 0.0
    for r in runs:
        est = (r.get("estimate") or {}).get("seconds")
        if r["status"] == "succeeded" and est and (w := wall_seconds(r)) is not None:
            actual, expected = actual + w, expected + est
    if not expected:
        return 1.0
    low, high = SPEED_FACTOR_RANGE
    return min(max(actual / expected, low), high)


def run_remaining(run: Mapping[str, Any], now: float, factor: float = 1.0) -> float:
    """Seconds left of one run with an estimate: a queued run, its estimate (times `factor`); a running one, its
    projected total less its elapsed time. The projection blends the estimate with the run's own rate — elapsed
    time at its last progress report over the share of its work done then (core.runs.estimate.progress_fraction) —
    the own rate taking over entirely once `OWN_RATE_AFTER` of the work is done. Past its projected end, a small
    tail that shrinks as time passes: the number always moves, and never reads "0 s" for a run still going."""
    expected = run["estimate"]["seconds"] * factor
    started = run.get("started")
    if run["status"] != "running" or started is None:
        return expected
    elapsed = max(now - started, 0.0)
    projected = expected
    share = progress_fraction(
        run["estimate"].get("stages") or [], run.get("phase") or "", run["progress_step"], run["progress_total"]
    )
    if share:
        measured_at = min(max((run.get("updated") or now) - started, 0.0), elapsed)
        weight = min(share / OWN_RATE_AFTER, 1.0)
        projected = weight * measured_at / share + (1 - weight) * expected
    return max(projected - elapsed, TAIL * expected * expected / (expected + elapsed))


def card_order(runs: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Cards in a fixed order: by when their (method, seed) was first launched, a resumed attempt right after the
    one it resumes; so a resume or a finished run never moves another card (or its Cancel button)."""
    first: dict[tuple, float] = {}
    for r in sorted(runs, key=lambda r: r["created"]):
        first.setdefault(unit_key(r), r["created"])
    return sorted(runs, key=lambda r: (first[unit_key(r)], r["created"]))


def unit_key(run: Mapping[str, Any]) -> tuple:
    """What makes runs attempts of the same unit: method, seed and K (a learning curve runs several K)."""
    return run["method"], run["seed"], run.get("k_shot")


CURVE_POINTS = 300  # per run and metric: enough for a curve's shape, little to send and draw every refresh


def curve_frame(
    metrics: pd.DataFrame, runs: Mapping[str, Mapping[str, Any]], *, max_points: int = CURVE_POINTS
) -> pd.DataFrame:
    """The Runs page's chart data: each series (run, metric, tuning trial) thinned to about `max_points` evenly
    spaced steps (its last step kept), labelled with its run's label, method and attempt (current or superseded),
    its trial (`part`, see `trial_parts`) and whether it is a dev evaluation (`point`: drawn as points)."""
    frame = metrics[metrics["value"].notna() & metrics["run"].isin(list(runs))]
    if frame.empty:
        return frame.assign(method=[], attempt=[], part=[], point=[])
    frame = trial_parts(frame)
    groups = frame.groupby(["run", "name", "part"], sort=False)["step"]
    size, rank = groups.transform("size"), groups.cumcount()
    stride = -(-size // max_points)  # ceil: 1 until a series is longer than max_points
    frame = frame[(rank % stride == 0) | (rank == size - 1)]
    labels = {rid: r["label"] for rid, r in runs.items()}
    attempts = {rid: "superseded" if r.get("superseded") else "current" for rid, r in runs.items()}
    return frame.assign(
        run=frame["run"].map(labels),
        method=frame["run"].map(labels).str.split(" · ").str[0],
        attempt=frame["run"].map(attempts),
        point=frame["name"].str.startswith("dev_"),
    )


def trial_parts(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` (run, step, t, name, value) without the tuning tags, each row named by the trial that reported it
    (`part`: "trial 2", the continued winner's whole line "trial 3, continued"; "" outside tuning). A tuning
    trial's tags are reported with its metrics (`core.compare.tuning`), so they share the row's run, step and time."""
    is_tag = frame["name"].isin(TAG_METRICS)
    rows, tags = frame[~is_tag], frame[is_tag]
    if tags.empty:
        return rows.assign(part="")
    keys = ["run", "step", "t"]
    wide = tags.pivot_table(index=keys, columns="name", values="value", aggfunc="last").reset_index()
    wide = wide.reindex(columns=[*keys, *TAG_METRICS])
    number = wide[TRIAL_METRIC].astype(int)
    won = set(zip(wide["run"][wide[CONTINUED_METRIC] == 1], number[wide[CONTINUED_METRIC] == 1], strict=True))
    wide["part"] = [
        f"trial {n}, continued" if (r, n) in won else f"trial {n}" for r, n in zip(wide["run"], number, strict=True)
    ]
    out = rows.merge(wide[[*keys, "part"]], on=keys, how="left")
    return out.assign(part=out["part"].fillna(""))


def fmt_seconds(seconds: float | None) -> str:
    """Seconds in words a person reads at a glance: '42 s', '3 min 05 s', '1 h 02 min'."""
    if seconds is None:
        return "–"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def fmt_bytes(size: int) -> str:
    """A file size as a download list shows it: '812 B', '12 KB', '18.6 MB' (powers of 1000)."""
    if size < 1000:
        return f"{size} B"
    value, unit = size / 1000, "KB"
    for bigger in ("MB", "GB"):
        if value < 999.5:
            break
        value, unit = value / 1000, bigger
    digits = 0 if unit == "KB" or value >= 99.5 else 1
    return f"{value:.{digits}f} {unit}"


def path_bytes(path: Path) -> int:
    """Bytes a download of `path` carries before zipping: the file, or every file under a folder (a PEFT export)."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size if path.is_file() else 0


ZIP_ALL_MAX_BYTES = 200 * 2**20  # a file above this (a full fine-tune: the whole backbone) downloads on its own


def zippable(paths: Sequence[Path], limit: int = ZIP_ALL_MAX_BYTES) -> tuple[list[Path], list[Path]]:
    """(paths a "download all" zip takes, paths it leaves to their own button): the zip is built in memory, and a
    fine-tuned backbone's file (540 MB on SmolLM2-135M, more on larger ones) per seed would not fit it."""
    small = [p for p in paths if path_bytes(p) <= limit]
    return small, [p for p in paths if p not in small]


def zip_paths(paths: Sequence[Path]) -> bytes:
    """Files and folders (PEFT exports) in one zip, each under its own name."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in paths:
            for item in sorted(path.rglob("*")) if path.is_dir() else [path]:
                if item.is_file():
                    zf.write(item, item.relative_to(path.parent))
    return buf.getvalue()


def artifact_scores(summary: Mapping[str, Any] | None) -> dict[str, tuple[str, float]]:
    """Prompt file path -> (prompt name, its test accuracy at that file's seed), from the comparison summary."""
    out: dict[str, tuple[str, float]] = {}
    for m in (summary or {}).get("methods", []):
        for path, acc in zip(m.get("artifacts", []), m.get("per_seed", []), strict=False):
            out[path] = (m["name"], acc)
    return out


# ---------------------------------------------------------------------------------------------------- prompts page


def readable_tokens(tokenizer, ids: Sequence[int]) -> list[str]:
    """Each token as text a person can read: byte-level BPE pieces decoded (no 'Ġ'), a leading space as '·'."""
    out = []
    for tok in tokenizer.convert_ids_to_tokens(list(ids)):
        try:
            text = tokenizer.convert_tokens_to_string([tok])
        except (KeyError, ValueError, TypeError):
            text = tok
        if text and not text.strip():  # a token that is only whitespace
            text = text.replace(" ", "·").replace("\n", "↵").replace("\t", "⇥")
        elif text.startswith(" "):
            text = "·" + text[1:]
        out.append(text or tok)
    return out


def token_preview(backbone: Backbone, template: str, record: Mapping[str, str]) -> pd.DataFrame:
    """The prompt as the model sees it: one row per token with its kind (special, text, field, soft, trigger, mask)."""
    parsed = Template.parse(template)
    mask_fill = [backbone.mask_id] if backbone.kind is LMKind.MASKED and backbone.mask_id is not None else []
    row = render_ids(backbone, parsed, record, mask_fill, 1)
    soft, trig, target = set(row.soft), set(row.trigger), set(row.target)
    n_prefix = len(backbone.prefix_ids)
    n_suffix = len(backbone.suffix_ids) if backbone.kind is LMKind.MASKED else 0
    tokens = readable_tokens(backbone.tokenizer, row.ids)
    out = []
    for i, (tid, tok) in enumerate(zip(row.ids, tokens, strict=True)):
        if i < n_prefix or i >= len(row.ids) - n_suffix:
            kind = "special"
        elif i in soft:
            kind, tok = "soft [P]", "[P]"
        elif i in trig:
            kind, tok = "trigger [T]", "[T]"
        elif backbone.kind is LMKind.MASKED and i in target:
            kind = "[MASK]"
        else:
            kind = "text"
        out.append({"position": i, "token": tok, "id": int(tid), "kind": kind})
    if backbone.kind is LMKind.CAUSAL:
        out.append({"position": len(row.ids), "token": "[MASK] → label word", "id": -1, "kind": "[MASK]"})
    return pd.DataFrame(out)


def label_word_tokens(backbone: Backbone, template: str, verbalizer: Mapping[str, Sequence[str]]) -> pd.DataFrame:
    """How each verbalizer word is tokenised in the [MASK] slot (multi-token words are scored as a whole)."""
    space = mask_has_space(Template.parse(template))
    rows = []
    for label, words in verbalizer.items():
        for word in words:
            ids = tokenize_word(backbone, word, space_before=space)
            rows.append(
                {
                    "label": label,
                    "word": word,
                    "tokens": " ".join(readable_tokens(backbone.tokenizer, ids)),
                    "n_tokens": len(ids),
                }
            )
    return pd.DataFrame(rows)


def slot_summary(template: str) -> dict[str, int]:
    parsed = Template.parse(template)
    return {
        "fields": len(parsed.fields),
        "soft [P]": parsed.n_soft,
        "trigger [T]": parsed.n_trigger,
        "[MASK]": sum(p.kind is SlotKind.MASK for p in parsed.pieces),
    }


QUICK_CHECK_ROWS = 200  # dev rows the Prompts page's zero-shot check scores at most: enough to rank templates


def comparison_dev(split: Split, k_shot: int | None, seed: int) -> tuple[LabeledDataset, str]:
    """The dev rows a comparison launched with these settings chooses templates, calibrates and tunes on (its first
    seed's, `few_shot_split`), and their name as the Data and Prompts pages say it. With K that is not the dev
    share: K per label drawn from it and the training rows the K-shot sample leaves, so a check scored on the dev
    share would disagree with what Compare reports."""
    _, dev = few_shot_split(split, k_shot, seed)
    if k_shot is None:
        return dev, "the comparison's dev (the dev share)"
    return dev, f"the comparison's dev (K={k_shot} per label, seed {seed})"


def quick_zero_shot(
    backbone: Backbone,
    spec: PromptSpec,
    rows: LabeledDataset,
    *,
    progress: Callable[[int, int], None] | None = None,
    chunk: int = 32,
) -> pd.DataFrame:
    """Each manual template scored zero-shot (calibrated) on `rows` (dev, up to `QUICK_CHECK_ROWS`): its accuracy
    on them, how many were scored, and the first answers. `progress(done, total)` after every chunk of rows, over
    all templates, so the page can show a bar while a few hundred rows are scored."""
    method = create("manual", spec, {"calibrate": True})
    total, done = len(spec.templates) * len(rows), 0
    out = []
    for template in spec.templates:
        Template.parse(template).validate(rows.columns, backbone.kind)
        prompt = method.prompt_for(backbone, template, rows.columns)
        pred: list[int] = []
        for lo in range(0, len(rows), chunk):
            pred += method.scores(backbone, prompt, rows.records[lo : lo + chunk]).argmax(1).tolist()
            done += min(chunk, len(rows) - lo)
            if progress is not None:
                progress(done, total)
        right = sum(int(p == y) for p, y in zip(pred, rows.labels, strict=True))
        out.append(
            {
                "template": template,
                "accuracy": right / max(len(rows), 1),
                "rows": len(rows),
                "answers": ", ".join(spec.label_names[p] for p in pred[:8]) + (" …" if len(pred) > 8 else ""),
            }
        )
    return pd.DataFrame(out)
