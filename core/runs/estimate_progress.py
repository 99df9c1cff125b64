"""How far a running unit is along its estimated plan: the share of its estimated seconds done, from the phase,
step and total its row reports. Split from `core.runs.estimate` (which re-exports it) to keep that module to the
model itself; the Runs page's bars and ETA (`core.app.views`) read it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from core.progress import CHOOSING, SCORING, TRAINING, TUNING

CHOOSE, TRIAL, CONTINUE, TRAIN, TEST = "choose", "trial", "continue", "train", "test"  # a unit's stages


def progress_fraction(stages: Sequence[Mapping[str, Any]], phase: str, step: int, total: int) -> float | None:
    """The share of a unit's estimated seconds done, from its stored stages and the phase, step and total its row
    reports (None before it reports anything it can be placed by). Monotone within a run that follows its plan."""
    if not stages or not phase:
        return None
    whole = sum(s["seconds"] for s in stages) or 1.0
    kinds = [s["kind"] for s in stages]
    index, within = _locate(kinds, phase, step)
    if index is None:
        return None
    stage = stages[index]
    step += _extra_trials_done(stages, phase)
    span = max(stage["end"] - stage["start"], 1)
    inside = min(max((step - stage["start"]) / span, 0.0), 1.0) if within else 0.0
    done = sum(s["seconds"] for s in stages[:index]) + inside * stage["seconds"]
    return min(done / whole, 1.0)


def _trial_numbers(phase: str) -> tuple[int, int] | None:
    """(number, planned) of "tuning on dev, trial 6 of 5 + 1 extra: lr 0.09 · training"; None for other phases."""
    outer = phase.rpartition(" · ")[0] or phase
    if ", trial " not in outer:
        return None
    words = outer.split(", trial ", 1)[1].split()
    try:
        return int(words[0]), int(words[2].rstrip(":"))
    except (IndexError, ValueError):
        return None


def _extra_trials_done(stages: Sequence[Mapping[str, Any]], phase: str) -> int:
    """Steps of the trials past a grid's edge already run, when `phase` is one of them: they share one stage (the
    expected extensions, after the planned trials; `end` = the most there can be x a trial's steps), each
    counting its steps from 1 again."""
    numbers = _trial_numbers(phase)
    trials = [s for s in stages if s["kind"] == TRIAL]
    if numbers is None or numbers[0] <= numbers[1] or len(trials) <= numbers[1]:
        return 0
    return (numbers[0] - numbers[1] - 1) * max(trials[0]["end"] - trials[0]["start"], 1)


def _locate(kinds: Sequence[str], phase: str, step: int) -> tuple[int | None, bool]:
    """Which stage a phase string names (and whether its step counts within it)."""
    outer, _, inner = phase.rpartition(" · ")
    outer = outer or phase
    if phase.startswith(TUNING):
        trials = [i for i, k in enumerate(kinds) if k == TRIAL]
        if ", trial " in outer:
            numbers = _trial_numbers(phase)  # "trial 2 of 5: lr 0.01", "trial 6 of 5 + 1 extra: lr 0.09"
            if numbers is None:
                return None, False
            if trials:  # a trial past the planned ones: the expected extensions' stage (else the last trial's)
                return trials[min(numbers[0], numbers[1] + 1, len(trials)) - 1], True
        if CONTINUE in kinds and "continuing" in outer:
            return kinds.index(CONTINUE), True
        return (trials[0], True) if trials else (None, False)
    if phase.startswith(SCORING) and TEST in kinds:
        return kinds.index(TEST), True
    if phase.startswith(CHOOSING) and CHOOSE in kinds:
        return kinds.index(CHOOSE), True
    if phase.startswith((TRAINING, "evaluating on dev")):
        for kind in (TRAIN, CONTINUE):
            if kind in kinds:
                return kinds.index(kind), True
    if phase.startswith("saving"):  # the test split is scored: its stage is complete
        return (kinds.index(TEST) if TEST in kinds else len(kinds) - 1), True
    return None, False
