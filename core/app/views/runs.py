"""The Runs page's cards and chart: each card's phase and progress bar, a stopped or finished run's line, the
cards' fixed order, and the metric series thinned and named by run, attempt and tuning trial.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from core.app.views.formatting import fmt_seconds
from core.progress import CONTINUED_METRIC, TAG_METRICS, TRIAL_METRIC, TUNING
from core.runs.estimate import progress_fraction

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
    """Seconds from a run's start to its finish; None until it has both."""
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
