"""Automatic per-method tuning on dev: a small search over each trained method's most sensitive settings.

A method declares what is worth searching (`search_space`: a few dimensions, each a list of alternative option
sets); it knows its own sensitive settings, so nothing here names a method. The search tries one configuration per
distinct setting, one dimension after another (coordinate search: a dimension's best choice is kept while the next
one is searched, the method's defaults tried first), and picks by dev accuracy, ties by dev loss, then by the
order tried. Only train and dev rows ever reach it: the test split is scored after it returns. Options the user
set are never searched over. A log grid whose edge wins is extended one step past it (`Dimension.beyond`, at most
twice for a learning rate), so a short budget's preference for a larger rate is followed, not cut off at the grid.

An early look stops a losing trial before its rung: every trial is also scored on dev at its *look*, about half
way to its rung on the loop's own evaluation grid, and a trial whose look score trails the best look score of the
trials before it by more than two standard errors of a dev accuracy (`look_margin`) stops there. Trials compared
this way have the same budget (a learning-rate grid: the same steps; AutoPrompt's candidates x iterations: the
same product), so their looks are at the same share of it. A stopped trial's best score is its look's, below that
best look and so below that trial's best: it cannot be chosen, and it would have had to catch up by more than the
margin in the second half of its rung to have been (`benchmarks/bench_comparison.py` checks the predictions). On
the default comparison a learning-rate grid point at 0.5 by its look while another reached 0.78 stops there; one
that trailed by 0.14 at the look and won at the rung (P-tuning, lr 0.009) is inside the margin and runs on.

Successive halving, one rung: a trial runs only to its *rung*, `RUNG_FRACTION` of its own step budget, and
pauses there; only the winner is continued to its full budget. A trial of the training loop is scored on dev once,
at its rung (`TrainConfig.eval_from`), not at every interval before it: the trials of a dimension are compared on
dev scores measured at the same step, and a trial pays for one dev pass instead of four (issue 24: a fifth of
prompt tuning's tuned run was dev scoring). A search with its own evaluation schedule (AutoPrompt's `eval_every`)
is compared at its first evaluation at or past the rung. Complete trials cost the search
as many fits as trials (3-5x one fit); paused ones cost about 1.5-3x. The pause is exact because it is the
loops' own cancel: the training loop and AutoPrompt's search poll `should_stop()` before every step, write a
checkpoint and raise `Cancelled`, and a fit given the same config and checkpoint folder resumes where it stopped.
So each trial gets a checkpoint folder of its own (under the method's `checkpoint_dir` when it has one, else a
temporary folder), and the winner's continued run is step for step the fit an untuned run of its configuration
would have made. A trial that ends before its rung (early stopping, a short budget) is simply complete. A paused
trial's rung score is written beside its checkpoint (`PAUSED_FILE`), so a run cancelled mid-tuning and started
again re-trains nothing: its choice and prompt are those of the uninterrupted run. Trials
of a frozen causal LM share the text's key/values through the process-wide prefix cache.

Why not Optuna: the grids here are 3 points a dimension and our loops already pause and continue exactly from
their own checkpoints; a study object, storage and pruner callbacks would add more than they save, and Optuna's
pruners still run the first trial to completion (nothing to compare it with), which is most of the cost here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import shutil
import tempfile
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core import distributed
from core.atomic import write_atomic
from core.data import LabeledDataset
from core.engine.backbone import Backbone
from core.methods.base import Dimension, LearnedPrompt, PromptMethod, data_hash
from core.progress import (
    CONTINUED_METRIC,
    TRAINING,
    TRIAL_METRIC,
    TUNING,
    Cancelled,
    ProgressFn,
    StopFn,
    enter_phase,
    resumed_phase,
    under_claim,
)

SMALL_DEV = 16  # dev rows below which a choice among configurations is mostly noise
RUNG_FRACTION = 1 / 3  # of a trial's step budget it runs before the trials are compared (then rounded up)
PAUSED_FILE = "paused.json"  # a paused trial's rung score, beside its checkpoint: a rerun after a cancel reuses it


@dataclass
class Trial:
    """One tried configuration and how it did on dev.

    `dev_accuracy`/`dev_loss`: the scores it was compared on (the best dev evaluation up to its rung, or of its
    complete run when it ended first); `rung`: the step where it was compared; `steps`: every step it ran
    (the continuation included); `continued`: whether it was the winner continued from its rung to its full budget;
    `look`/`pruned`: its early look's step and score, and whether it stopped there (it trailed the best earlier
    look).
    """

    options: dict[str, Any]
    dev_accuracy: float | None
    dev_loss: float | None
    steps: int | None
    seconds: float
    rung: int | None = None
    continued: bool = False
    look: list[float] | None = None  # [step, dev accuracy] at its early look
    pruned: bool = False  # stopped at its look: it trailed the best earlier look by more than `look_margin`

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


@dataclass
class _Run:
    """A trial and where it stands: `learned` is None while it is paused at its rung (its state in `folder`);
    `number` is its place in the order tried, from 1, as the Runs page names it ("trial 2")."""

    trial: Trial
    method: PromptMethod
    learned: LearnedPrompt | None
    folder: Path | None
    number: int = 0


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

    `fixed`: the options the user set, which the method leaves out of its search space. A cancel leaves the
    paused trials' checkpoints under the method's `checkpoint_dir` (when set), so a rerun continues them.
    """
    dims = method.search_space(fixed) if enabled and len(dev) else []
    if not dims:
        return Tuned(method, method.fit(backbone, train, dev, progress=progress, should_stop=should_stop))
    keys = list(dict.fromkeys(k for d in dims for c in d.choices for k in c))
    tried: dict[str, _Run] = {}  # by the configuration a trial ran with
    best: dict[str, Any] = {}
    planned = 1 + sum(len(d.choices) - 1 for d in dims)  # each dimension adds its non-current choices
    extra = 0  # trials past a grid's edge (`Dimension.beyond`), counted apart so "trial 2 of 5" never becomes "/6"
    with tempfile.TemporaryDirectory(prefix="ptune-tuning-") as scratch:
        root = _trial_root(method, Path(scratch))

        def trial_of(choice: Mapping[str, Any]) -> Trial:
            """`choice` on top of the best so far, run to its rung unless an earlier dimension already ran it."""
            options = _settings(method, {**best, **choice}, keys)
            sig = _signature(options)
            if sig not in tried:
                number = len(tried) + 1
                label = f"{TUNING}, {trial_words(number, planned, extra)}: {describe(options)}"
                folder = root / f"tuning-{hashlib.sha256(sig.encode()).hexdigest()[:10]}" if root else None
                looks = [r.trial.look[1] for r in tried.values() if r.trial.look is not None]
                tried[sig] = _trial(
                    method, options, folder, backbone, train, dev, (number, label), progress, should_stop, looks
                )
            return tried[sig].trial

        for dim in dims:
            choices: list[dict[str, Any]] = list(dim.choices)
            while True:
                ranked = [trial_of(c) for c in choices]
                won_at = max(range(len(ranked)), key=lambda i: ranked[i].key())  # first of equals: current first
                further = dim.beyond(choices, choices[won_at])
                if further is None:
                    break
                choices.append(further)
                extra += 1
            best = ranked[won_at].options
        won = tried[_signature(best)]
        if won.learned is None:
            distributed.exchange(distributed.data_parallel_group(), None)  # its checkpoint is written (main's)
            _continue(won, backbone, train, dev, progress, should_stop)
        with under_claim():  # the trials' checkpoints are another attempt's to use once this one lost the run
            for run in tried.values():
                if run.folder is not None and run is not won:
                    shutil.rmtree(run.folder, ignore_errors=True)
        left = [won.folder, root if root != Path(scratch) else None]  # the loop removed the winner's checkpoint
        for folder in filter(None, left):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if empty: a folder holding anything else stays
    chosen, learned = won.method, won.learned
    assert learned is not None
    if root is not None:  # the prompt and the method read as a plain fit's: the method's own checkpoint folder
        plain = {"checkpoint_dir": method.config.checkpoint_dir}
        if _scores_at_rung(method.config):  # and its own evaluation schedule
            plain.update(eval_from=method.config.eval_from, eval_look=method.config.eval_look)
        chosen.config = dataclasses.replace(chosen.config, **plain)
        learned.config.update(plain)
    trials = [r.trial for r in tried.values()]
    return Tuned(chosen, learned, report(won.trial, trials, len(dev)), trials)


def _trial_root(method: PromptMethod, scratch: Path) -> Path | None:
    """Where trials keep their checkpoints: the method's checkpoint folder when set, else `scratch`; None when the
    method has no checkpoints (its trials then run complete: nothing to pause them with), or when processes
    training together would each have a scratch folder of their own (only the main one writes checkpoints)."""
    if "checkpoint_dir" not in {f.name for f in dataclasses.fields(method.config)}:
        return None
    if method.config.checkpoint_dir:
        return Path(method.config.checkpoint_dir)
    return None if distributed.data_parallel_group().is_distributed else scratch


def rung(config: Any) -> int:
    """The step a trial of `config` is compared at: `RUNG_FRACTION` of its budget (`max_steps`), where the training
    loop scores dev once (`eval_from`); for a search with its own schedule, rounded up to its next evaluation
    (every `eval_every` iterations); `max_steps` when that is no earlier than the end."""
    at = math.ceil(config.max_steps * RUNG_FRACTION - 1e-9)
    if not _scores_at_rung(config):
        interval = max(1, int(getattr(config, "eval_every", 0) or 1))
        at = math.ceil(at / interval) * interval
    return min(config.max_steps, at)


def look(config: Any) -> int:
    """The step of a trial's early look (0: none): the step of the loop's own evaluation grid nearest half its rung,
    before the rung. The training loop is told to score dev there (`eval_look`); a search with its own schedule
    already scores every `eval_every` iterations, so its look is the last of those before half the rung."""
    at = rung(config)
    if _scores_at_rung(config):
        interval = max(1, int(config.eval_interval))
        step = max(1, round(at / 2 / interval)) * interval
    else:
        interval = max(1, int(getattr(config, "eval_every", 0) or 1))
        step = (at // 2) // interval * interval
    return step if 0 < step < at else 0


def look_margin(n_dev: int) -> float:
    """How far a trial's dev accuracy may trail the best earlier look before it stops: two standard errors of the
    difference of two accuracies on `n_dev` rows at their most uncertain (p = 0.5), sqrt(2 / n_dev)."""
    return math.sqrt(2 / max(1, n_dev))


def _scores_at_rung(config: Any) -> bool:
    """Whether the method's loop can be told to score dev at the rung itself (the training loop's `eval_from`)."""
    return "eval_from" in {f.name for f in dataclasses.fields(config)}


def _settings(method: PromptMethod, options: Mapping[str, Any], keys: list[str]) -> dict[str, Any]:
    """The values of every searched setting in the configuration `options` gives (the method's config otherwise)."""
    config = dataclasses.replace(method.config, **options)
    return {k: getattr(getattr(config, k), "value", getattr(config, k)) for k in keys}


def _trial(
    method: PromptMethod,
    options: Mapping[str, Any],
    folder: Path | None,
    backbone: Backbone,
    train: LabeledDataset,
    dev: LabeledDataset,
    named: tuple[int, str],
    progress: ProgressFn,
    should_stop: StopFn,
    looks: Sequence[float] = (),
) -> _Run:
    """Run one configuration to its rung (paused there, its checkpoint in `folder`) or, if it ends first, to the end;
    stopped at its look instead when it trails the best of the earlier trials' `looks` (their dev accuracy at their
    own look) there. `named`: the trial's number and its phase label."""
    number, label = named
    config = dataclasses.replace(method.config, **options)
    at = rung(config) if folder is not None else config.max_steps
    early = look(config) if at < config.max_steps else 0
    if folder is not None:
        config = dataclasses.replace(config, checkpoint_dir=str(folder))
    if at < config.max_steps and _scores_at_rung(config):  # dev scored at the look and the rung (the winner goes on)
        config = dataclasses.replace(config, eval_from=at, eval_look=early)
    variant = type(method)(method.spec, config)
    key = _trial_key(variant, backbone, train, dev, at)
    paused = _load_paused(folder, key, options)
    if paused is not None:  # scored at its rung before a cancel: its checkpoint waits there, nothing to re-train
        return _Run(paused, variant, None, folder, number)
    below = max(looks) - look_margin(len(dev)) if early and looks else -math.inf
    tags = {TRIAL_METRIC: number}
    paused_at = at if at < config.max_steps else None
    watch = _InTrial(progress, label, tags, paused_at, should_stop, look_step=early, prune_below=below)
    enter_phase(progress, f"{label} · {TRAINING}")  # the card's bar counts the trial's steps from the start
    start = time.perf_counter()
    try:
        learned = variant.fit(backbone, train, dev, progress=watch, should_stop=watch.should_stop)
    except Cancelled:
        if not (watch.reached or watch.pruned) or watch.user_stopped or should_stop():
            raise  # the user's cancel, not a pause at the rung or look: the checkpoints stay for a rerun
        acc, loss = watch.best or (None, None)
        seconds = time.perf_counter() - start
        trial = Trial(
            dict(options), acc, loss, watch.step, seconds, rung=watch.step, look=watch.look, pruned=watch.pruned
        )
        _save_paused(folder, key, trial)
        return _Run(trial, variant, None, folder, number)
    m = learned.metrics
    steps = m.get("steps", m.get("iterations"))
    trial = Trial(dict(options), m.get("dev_accuracy"), m.get("dev_loss"), steps, time.perf_counter() - start)
    trial.rung, trial.look = steps, watch.look  # complete before its rung: compared on its whole run
    return _Run(trial, variant, learned, folder, number)


def _continue(
    run: _Run,
    backbone: Backbone,
    train: LabeledDataset,
    dev: LabeledDataset,
    progress: ProgressFn,
    should_stop: StopFn,
) -> None:
    """Continue the paused winner from its rung to its full budget (the fit resumes from its checkpoint).

    Its loop reads the checkpoint as a resume; this is tuning going on, not a restart, so the phase says
    "continuing its best trial" and the result `continued_from_step`, keeping `resumed_from_step` for a real resume
    (a run stopped during the continuation and started again, past the rung)."""
    at = run.trial.rung or 0
    label = f"{TUNING}: {continuing_words(run.number, at, describe(run.trial.options))}"
    enter_phase(progress, f"{label} · {TRAINING}")
    start = time.perf_counter()
    tags = {TRIAL_METRIC: run.number, CONTINUED_METRIC: 1}
    watch = _InTrial(progress, label, tags, continued_from=at)
    run.learned = run.method.fit(backbone, train, dev, progress=watch, should_stop=should_stop)
    m = run.learned.metrics
    m["continued_from_step"] = at
    if m.get("resumed_from_step") == at:
        m["resumed_from_step"] = 0
    run.trial.steps = m.get("steps", m.get("iterations"))
    run.trial.seconds += time.perf_counter() - start
    run.trial.continued = True
    if run.folder is not None:
        (run.folder / PAUSED_FILE).unlink(missing_ok=True)  # complete now: its folder can go


def _trial_key(
    method: PromptMethod, backbone: Backbone, train: LabeledDataset, dev: LabeledDataset, rung_step: int
) -> str:
    """What a saved rung score must match to be reused: the run its checkpoint must match, plus dev and the rung."""
    run = method.run_key(backbone, "\n".join(method.spec.templates), train)
    return hashlib.sha256(json.dumps([run, data_hash(dev), rung_step]).encode()).hexdigest()


def _save_paused(folder: Path, key: str, trial: Trial) -> None:
    """Write the paused trial's score beside its checkpoint (main process only: it alone writes checkpoints)."""
    if distributed.data_parallel_group().is_main:
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(folder / PAUSED_FILE, json.dumps({"key": key, "trial": dataclasses.asdict(trial)}))


def _load_paused(folder: Path | None, key: str, options: Mapping[str, Any]) -> Trial | None:
    """The rung score a cancelled run left for this very trial, or None (none there, unreadable, another run's)."""
    path = folder / PAUSED_FILE if folder is not None else None
    if path is None or not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text())
        if saved.get("key") != key:
            return None
        trial = Trial(**saved["trial"])
    except (OSError, ValueError, TypeError, KeyError):
        return None
    trial.options = dict(options)  # as this run spells them
    trial.seconds = 0.0  # this run spent nothing on it
    return trial


class _InTrial:
    """A progress callback whose phases read as parts of the trial ("tuning on dev, trial 2 of 5: lr 0.01 ·
    training") and whose metrics carry `tags` (the trial's number: a chart draws one line per trial).

    With a `look_step`, it records the dev score there (`look`) and stops the trial (`pruned`) when that score is
    below `prune_below`. With a `rung`, it also watches the trial: the best dev score reported so far (accuracy,
    then lower loss, as the training loop keeps its best), and `should_stop` turns true once a dev score at or past
    the rung is in (so a trial resumed from an earlier pause is scored at its next evaluation), or when the user's
    `stop` is.
    `continued_from`: the winner's rung, where its loop picks up its checkpoint; that is no resume, so the loop's
    "resumed from step N" at that step reads as plain training.
    """

    def __init__(
        self,
        progress: ProgressFn,
        label: str,
        tags: Mapping[str, int],
        rung: int | None = None,
        stop: StopFn | None = None,
        *,
        continued_from: int | None = None,
        look_step: int = 0,
        prune_below: float = -math.inf,
    ):
        self.progress, self.label, self.tags, self.rung, self.stop = progress, label, dict(tags), rung, stop
        self.continued = {resumed_phase(continued_from, u) for u in ("step", "iteration")} if continued_from else set()
        self.look_step, self.prune_below = look_step, prune_below
        self.step = 0
        self.best: tuple[float, float | None] | None = None
        self.reached = self.user_stopped = self.pruned = False
        self.look: list[float] | None = None

    def __call__(self, step: int, total: int, metrics: Mapping[str, float]) -> None:
        self.step = step
        acc = metrics.get("dev_accuracy")
        if acc is not None:
            loss = metrics.get("dev_loss")
            if self.best is None or _key(acc, loss) > _key(*self.best):
                self.best = (acc, loss)
            self.reached = self.reached or (self.rung is not None and step >= self.rung)
            if self.look_step and step == self.look_step:
                self.look = [step, acc]
                self.pruned = acc < self.prune_below
        self.progress(step, total, {**metrics, **self.tags} if metrics else metrics)  # tags go with measurements

    def should_stop(self) -> bool:
        if self.stop is not None and self.stop():
            self.user_stopped = True
            return True
        return self.reached or self.pruned

    def phase(self, name: str) -> None:
        enter_phase(self.progress, f"{self.label} · {TRAINING if name in self.continued else name}")


def _key(acc: float, loss: float | None) -> tuple[float, float]:
    return acc, -(math.inf if loss is None else loss)


def report(chosen: Trial, trials: list[Trial], n_dev: int) -> dict[str, Any]:
    """The JSON stored with the run: what was chosen, every trial's dev scores, and whether dev was big enough."""
    return {
        "chosen": dict(chosen.options),
        "summary": describe(chosen.options),
        "trials": [dataclasses.asdict(t) for t in trials],
        "n_dev": n_dev,
        "dev_too_small": n_dev < SMALL_DEV,
        "rung_fraction": RUNG_FRACTION,
    }


def trial_words(number: int, planned: int, extra: int = 0) -> str:
    """ "trial 2 of 5", or "trial 6 of 5 + 1 extra" once a grid's edge won and was extended: the planned count
    never changes under the user's eyes; the Runs page's chart names the same trial "trial 2"."""
    return f"trial {number} of {planned}" + (f" + {extra} extra" if extra else "")


def continuing_words(number: int, step: int, settings: str) -> str:
    """ "continuing its best trial (trial 3: lr 0.01) from step 17": the winner going on to its full budget."""
    return f"continuing its best trial (trial {number}: {settings}) from step {step}"


def describe(options: Mapping[str, Any]) -> str:
    """ "lr 0.003, encoder mlp": settings as a person reads them."""
    return ", ".join(f"{k.replace('_', ' ')} {_value(v)}" for k, v in options.items())


def _value(v: Any) -> str:
    v = getattr(v, "value", v)
    return format(v, ".2g") if isinstance(v, float) else str(v)


def _signature(options: Mapping[str, Any]) -> str:
    return repr(sorted((k, getattr(v, "value", v)) for k, v in options.items()))


__all__ = [
    "RUNG_FRACTION",
    "SMALL_DEV",
    "Dimension",
    "Trial",
    "Tuned",
    "describe",
    "fit",
    "look",
    "look_margin",
    "report",
    "rung",
]
