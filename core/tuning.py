"""Automatic per-method tuning on dev: a small search over each trained method's most sensitive settings.

A method declares what is worth searching (`search_space`: a few dimensions, each a list of alternative option
sets); it knows its own sensitive settings, so nothing here names a method. The search runs one trial per distinct
configuration, one dimension after another (coordinate search: a dimension's best choice is kept while the next
one is searched, the method's defaults tried first), and picks by dev accuracy, ties by dev loss, then by the
order tried. Only train and dev rows ever reach it: the test split is scored after it returns. Each trial is a
complete fit with the method's own early stopping, so the winner's trial is the final fit (nothing retrained),
and trials of a frozen causal LM share the text's key/values through the process-wide prefix cache. Options the
user set are never searched over.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from core.backbone import Backbone
from core.data import LabeledDataset
from core.methods.base import Dimension, LearnedPrompt, PromptMethod
from core.progress import TRAINING, TUNING, ProgressFn, StopFn, enter_phase

SMALL_DEV = 16  # dev rows below which a choice among configurations is mostly noise


@dataclass
class Trial:
    """One tried configuration and how it did on dev."""

    options: dict[str, Any]
    dev_accuracy: float | None
    dev_loss: float | None
    steps: int | None
    seconds: float

    def key(self) -> tuple[float, float]:
        """Larger is better: dev accuracy, then lower dev loss (a missing score ranks last)."""
        acc = -1.0 if self.dev_accuracy is None else self.dev_accuracy
        loss = float("inf") if self.dev_loss is None else self.dev_loss
        return acc, -loss


@dataclass
class Tuned:
    """What `fit` returns: the method instance configured as chosen, its learned prompt, and the report."""

    method: PromptMethod
    learned: LearnedPrompt
    report: dict[str, Any] | None = None
    trials: list[Trial] = field(default_factory=list)


def fit(
    method: PromptMethod,
    backbone: Backbone,
    train: LabeledDataset,
    dev: LabeledDataset,
    *,
    fixed: Collection[str] = (),
    enabled: bool = True,
    progress: ProgressFn,
    should_stop: StopFn,
) -> Tuned:
    """Fit `method`, first searching its declared settings on dev when `enabled` (report None when nothing was).

    `fixed`: the options the user set, which the method leaves out of its search space.
    """
    dims = method.search_space(fixed) if enabled and len(dev) else []
    if not dims:
        return Tuned(method, method.fit(backbone, train, dev, progress=progress, should_stop=should_stop))
    keys = list(dict.fromkeys(k for d in dims for c in d.choices for k in c))
    tried: dict[str, tuple[Trial, PromptMethod, LearnedPrompt]] = {}  # by the configuration a trial ran with
    best: dict[str, Any] = {}
    total = 1 + sum(len(d.choices) - 1 for d in dims)  # at most: each dimension adds its non-current choices
    for dim in dims:
        for choice in dim.choices:
            options = _settings(method, {**best, **choice}, keys)
            sig = _signature(options)
            if sig not in tried:
                label = f"{TUNING}, trial {len(tried) + 1}/{total}: {describe(options)}"
                tried[sig] = _trial(method, options, backbone, train, dev, label, progress, should_stop)
        ranked = [tried[_signature(_settings(method, {**best, **c}, keys))][0] for c in dim.choices]
        best = max(ranked, key=Trial.key).options  # max keeps the first of equals: the current setting first
    trial, chosen, learned = tried[_signature(best)]
    trials = [t for t, _, _ in tried.values()]
    return Tuned(chosen, learned, report(trial, trials, len(dev)), trials)


def _settings(method: PromptMethod, options: Mapping[str, Any], keys: list[str]) -> dict[str, Any]:
    """The values of every searched setting in the configuration `options` gives (the method's config otherwise)."""
    config = dataclasses.replace(method.config, **options)
    return {k: getattr(getattr(config, k), "value", getattr(config, k)) for k in keys}


def _trial(
    method: PromptMethod,
    options: Mapping[str, Any],
    backbone: Backbone,
    train: LabeledDataset,
    dev: LabeledDataset,
    label: str,
    progress: ProgressFn,
    should_stop: StopFn,
) -> tuple[Trial, PromptMethod, LearnedPrompt]:
    variant = type(method)(method.spec, dataclasses.replace(method.config, **options))
    enter_phase(progress, f"{label} · {TRAINING}")  # the card's bar counts the trial's steps from the start
    start = time.perf_counter()
    learned = variant.fit(backbone, train, dev, progress=_InTrial(progress, label), should_stop=should_stop)
    m = learned.metrics
    steps = m.get("steps", m.get("iterations"))
    trial = Trial(dict(options), m.get("dev_accuracy"), m.get("dev_loss"), steps, time.perf_counter() - start)
    return trial, variant, learned


class _InTrial:
    """A progress callback whose phases read as parts of the trial ("tuning on dev, trial 2/5: lr 0.01 · training")."""

    def __init__(self, progress: ProgressFn, label: str):
        self.progress, self.label = progress, label

    def __call__(self, step: int, total: int, metrics: Mapping[str, float]) -> None:
        self.progress(step, total, metrics)

    def phase(self, name: str) -> None:
        enter_phase(self.progress, f"{self.label} · {name}")


def report(chosen: Trial, trials: list[Trial], n_dev: int) -> dict[str, Any]:
    """The JSON stored with the run: what was chosen, every trial's dev scores, and whether dev was big enough."""
    return {
        "chosen": dict(chosen.options),
        "summary": describe(chosen.options),
        "trials": [dataclasses.asdict(t) for t in trials],
        "n_dev": n_dev,
        "dev_too_small": n_dev < SMALL_DEV,
    }


def describe(options: Mapping[str, Any]) -> str:
    """ "lr 0.003, encoder mlp": settings as a person reads them."""
    return ", ".join(f"{k.replace('_', ' ')} {_value(v)}" for k, v in options.items())


def _value(v: Any) -> str:
    v = getattr(v, "value", v)
    return format(v, ".2g") if isinstance(v, float) else str(v)


def _signature(options: Mapping[str, Any]) -> str:
    return repr(sorted((k, getattr(v, "value", v)) for k, v in options.items()))


__all__ = ["SMALL_DEV", "Dimension", "Trial", "Tuned", "describe", "fit", "report"]
