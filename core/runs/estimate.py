"""What a comparison will cost before it runs: seconds per unit from this device's measured speed.

Why: a user on a laptop decides whether to wait from the Train page's estimate, the queue runs the cheapest units
first so a provisional verdict lands early, and the Runs page's ETA must be true from the first second. All three
use the model here, so they agree.

The model. A unit (one method at one seed) costs what its phases do, counted in two kinds of work:
- *training work*: optimizer steps (AutoPrompt: search iterations) times the work of one step, in forward-equivalent
  rows (`step_work`: a forward and backward pass over a row is about 3 forward rows; AutoPrompt also re-scores its
  candidates); with tuning on, every trial runs to its rung (`core.compare.tuning.rung`, a third of its budget) and the
  winner is continued, so the steps are `trials x rung + (max_steps - rung)` — the trials counted from the method's
  own `search_space`, as the tuner counts them;
- *scoring work*: rows scored — dev at every evaluation, each manual template on dev and test, the test split once
  per distinct prompt.
Each method has two rates on a backbone and device (`Throughput`): seconds per unit of training work and seconds
per scored row. They come, best first, from (a) remembered measurements of earlier runs of that method on that
backbone and device (`measured`, kept in the run store by the worker), (b) other methods' measurements on it,
scaled by the `PRIORS` table of per-method ratios, (c) a short probe of the loaded backbone (`probe`: one scoring
batch and one training step, about a second), scaled the same way, or (d) a rough prior from the parameter count.
The rates live in `core.runs.estimate_rates` (re-exported here); this module models the work they multiply.
Early stopping can only end a unit sooner, so an estimate errs long, never short, on it.

Public API (the Train page, the service's launch order, the Runs page's ETA and `benchmarks/` call these):

    estimate_comparison(units, spec, split, rates) -> ComparisonEstimate   # .units[i].seconds, .total, .source
    rates_for(methods, remembered=..., probed=..., parameters=..., device=...) -> dict[method, Throughput]
    probe(backbone, records, template) -> Probe                            # cached per backbone and device
    measured(result, options, resumed=False) -> dict | None                # a finished unit's own rates
    cheapest_first(units, estimate) -> list[Unit]
    progress_fraction(stages, phase, step, total) -> float | None          # how far a running unit is
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.compare import tuning
from core.data import Split, few_shot_split
from core.methods import REGISTRY, create, method_order
from core.methods.base import PromptMethod, PromptSpec
from core.progress import CHOOSING, SCORING, TRAINING, TUNING
from core.runs.estimate_rates import (
    CPU_SECONDS_PER_GPARAM,
    DEFAULT_PRIOR,
    DERIVED,
    GPU_SPEEDUP,
    MEASURED,
    PRIOR,
    PRIORS,
    PROBED,
    REMEMBER_WEIGHT,
    SOURCE_RANK,
    MethodPrior,
    Probe,
    Throughput,
    cached_probe,
    probe,
    rates_for,
)

__all__ = [  # the rates (`core.runs.estimate_rates`) too: callers import them from here
    "CHOOSE",
    "CONTENT_FREE_ROWS",
    "CONTINUE",
    "CPU_SECONDS_PER_GPARAM",
    "DEFAULT_PRIOR",
    "DERIVED",
    "GPU_SPEEDUP",
    "MEASURED",
    "PRIOR",
    "PRIORS",
    "PROBED",
    "PROBE_FIT_S",
    "REMEMBER_WEIGHT",
    "SOURCE_RANK",
    "TEST",
    "TRAIN",
    "TRIAL",
    "UNIT_OVERHEAD_S",
    "ComparisonEstimate",
    "MethodPrior",
    "Probe",
    "Stage",
    "Throughput",
    "UnitEstimate",
    "cached_probe",
    "cheapest_first",
    "estimate_comparison",
    "estimate_unit",
    "fmt_minutes",
    "measured",
    "probe",
    "progress_fraction",
    "rates_for",
    "step_work",
    "trial_configs",
    "unit_sizes",
]


CHOOSE, TRIAL, CONTINUE, TRAIN, TEST = "choose", "trial", "continue", "train", "test"  # a unit's stages
PROBE_FIT_S = 0.2  # the linear probe's L-BFGS on the features: small and independent of the backbone's speed
UNIT_OVERHEAD_S = 1.5  # claiming, reading the group's data, saving prompt files: measured ~1-2 s per run
CONTENT_FREE_ROWS = 3  # a calibrated prompt's prior scores a few content-free inputs ("N/A", "", "[MASK]")


@dataclass
class Stage:
    """One phase of a unit as its progress reports it: `kind` (choose, trial, continue, train, test), the estimated
    seconds, and the step counts its progress reports from `start` to `end`."""

    kind: str
    seconds: float
    start: int = 0
    end: int = 1


@dataclass
class UnitEstimate:
    """A unit's expected wall seconds, its phases, and the least trusted source its rates came from."""

    method: str
    seed: int
    k_shot: int | None
    seconds: float
    stages: list[Stage] = field(default_factory=list)
    source: str = PRIOR

    def to_json(self) -> dict[str, Any]:
        """What a run's stored config keeps, so the Runs page's ETA uses the very estimate the Train page showed."""
        return {
            "seconds": self.seconds,
            "source": self.source,
            "stages": [dataclasses.asdict(s) for s in self.stages],
        }


@dataclass
class ComparisonEstimate:
    units: list[UnitEstimate]
    total: float
    source: str  # the least trusted source among the units

    @classmethod
    def of(cls, units: Sequence[UnitEstimate]) -> ComparisonEstimate:
        """Units run one after another: their total, and the least trusted source among them."""
        source = max((u.source for u in units), key=SOURCE_RANK.__getitem__, default=MEASURED)
        return cls(list(units), sum(u.seconds for u in units), source)

    def only(self, methods: Collection[str]) -> ComparisonEstimate:
        """The part of this estimate spent on `methods`' units: what choosing them adds (the Train page's line on
        the fine-tuning references)."""
        return ComparisonEstimate.of([u for u in self.units if u.method in methods])

    def words(self, device: str) -> str:
        """ "about 14 min on this CPU, from measured speed": the Train page's line."""
        where = "this CPU" if device == "cpu" else device
        how = {
            MEASURED: "from measured speed",
            DERIVED: "from measured speed of other methods",
            PROBED: "from a short probe of the backbone",
            PRIOR: "a rough guess from the backbone's size (no measured speed yet)",
        }[self.source]
        return f"about {fmt_minutes(self.total)} on {where}, {how}"

    def added_words(self) -> str:
        """ "Manual prompt about 40 s, AutoPrompt about 3 min, P-tuning about 5 min": what each method adds to the
        total (all its seeds and K together), in the order the queue runs them, so a user sees what a method costs
        before choosing it."""
        seconds: dict[str, float] = {}
        for unit in sorted(self.units, key=lambda u: (REGISTRY[u.method].trains, u.seconds)):
            seconds[unit.method] = seconds.get(unit.method, 0.0) + unit.seconds
        return ", ".join(f"{REGISTRY[m].label} about {fmt_minutes(s)}" for m, s in seconds.items())


def fmt_minutes(seconds: float) -> str:
    """Rounded as an estimate deserves: '40 s', '3 min', '1 h 10 min'."""
    if seconds < 60:
        return f"{max(5, round(seconds / 5) * 5)} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


# -- work per step ---------------------------------------------------------------------------------------------


def step_work(config: Any) -> float:
    """Forward-equivalent rows of one step of `config`: a trained row is a forward and a backward pass (~3 forwards);
    an AutoPrompt iteration takes gradients over its batches and re-scores `num_candidates` candidates on a batch."""
    batch = int(getattr(config, "batch_size", 8))
    if hasattr(config, "num_candidates"):
        return batch * (3 * int(getattr(config, "accumulation_steps", 1)) + int(config.num_candidates))
    return 3 * batch * int(getattr(config, "grad_accum", 1))


def _eval_interval(config: Any) -> int:
    return max(1, int(getattr(config, "eval_interval", 0) or getattr(config, "eval_every", 0) or 1))


def _evals(config: Any, steps: int, start: int = 0) -> int:
    """Dev evaluations after steps start+1 .. `steps`: the training loop's own schedule (`evaluates_at`), else every
    `eval_every` iterations plus the last."""
    if hasattr(config, "evaluates_at"):
        return sum(config.evaluates_at(s) for s in range(start + 1, steps + 1))
    every = _eval_interval(config)
    return steps // every + (1 if steps % every else 0) - (start // every)


def _as_trial(config: Any, at: int) -> Any:
    """`config` as tuning runs it to its rung `at`: scored on dev once, there (`core.compare.tuning`)."""
    if at < config.max_steps and hasattr(config, "eval_from"):
        return dataclasses.replace(config, eval_from=at)
    return config


def trial_configs(method: PromptMethod, options: Mapping[str, Any], tune: bool, n_dev: int) -> list[Any]:
    """The configurations tuning will run, as `core.compare.tuning.fit` counts them: the method's settings first, then each
    dimension's other choices on top (the defaults assumed to win, since which will is not known beforehand)."""
    dims = method.search_space(options) if tune and n_dev else []
    configs = [method.config]
    for dim in dims:
        configs += [dataclasses.replace(method.config, **choice) for choice in dim.choices[1:]]
    return configs


# -- one unit --------------------------------------------------------------------------------------------------


def estimate_unit(
    unit: Any, spec: PromptSpec, n_train: int, n_dev: int, n_test: int, rate: Throughput
) -> UnitEstimate:
    """The expected seconds of `unit` (a `core.compare.Unit`) on `n_train`/`n_dev` rows and `n_test` test rows."""
    e, w = rate.example_seconds, rate.work_seconds
    cls = REGISTRY[unit.method]
    stages: list[Stage] = []
    if not cls.trains:  # manual (every template on dev, then each on test), baseline (nothing worth timing)
        n = len(spec.templates) if cls.calibratable else 1
        per_row = e if cls.calibratable else 0.0
        stages.append(Stage(CHOOSE, n * (n_dev + CONTENT_FREE_ROWS) * per_row, 0, n))
        stages.append(Stage(TEST, n * n_test * per_row, 0, n * max(n_test, 1)))
    elif "max_steps" not in _fields(cls):
        stages.append(Stage(TRAIN, (n_train + n_dev) * e + PROBE_FIT_S, 0, 2))  # features, then a fast L-BFGS
        stages.append(Stage(TEST, n_test * e, 0, max(n_test, 1)))
    else:
        method = create(unit.method, spec, unit.options)
        configs = trial_configs(method, unit.options, unit.tune, n_dev)
        cfg = method.config
        if len(configs) == 1:
            steps = cfg.max_steps
            stages.append(Stage(TRAIN, steps * step_work(cfg) * w + _evals(cfg, steps) * n_dev * e, 0, steps))
        else:
            for c in configs:
                at = tuning.rung(c)
                stages.append(Stage(TRIAL, at * step_work(c) * w + _evals(_as_trial(c, at), at) * n_dev * e, 0, at))
            at = tuning.rung(cfg)
            rest = cfg.max_steps - at
            more = _evals(_as_trial(cfg, at), cfg.max_steps, at)
            stages.append(Stage(CONTINUE, rest * step_work(cfg) * w + more * n_dev * e, at, cfg.max_steps))
        calibration = CONTENT_FREE_ROWS * e if cls.calibratable else 0.0
        stages.append(Stage(TEST, n_test * e + calibration, 0, max(n_test, 1)))
    seconds = UNIT_OVERHEAD_S + sum(s.seconds for s in stages)
    return UnitEstimate(unit.method, unit.seed, unit.k_shot, seconds, stages, rate.source)


def _fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls.config_cls)}


def unit_sizes(split: Split, unit: Any) -> tuple[int, int, int]:
    """(train, dev, test) rows the unit works on: its K-shot sample of train and dev, and the shared test split."""
    train, dev = few_shot_split(split, unit.k_shot, unit.seed)
    return len(train), len(dev), len(split.test)


def estimate_comparison(
    units: Sequence[Any], spec: PromptSpec, split: Split, rates: Mapping[str, Throughput]
) -> ComparisonEstimate:
    """Every unit's expected seconds (in `units` order) and the total, one worker running them one after another.

    `units`: `core.compare.Unit`s (method, seed, options with `max_steps`, k_shot, tune) as `plan_units` makes them;
    `rates`: per method, from `rates_for`."""
    return ComparisonEstimate.of([estimate_unit(u, spec, *unit_sizes(split, u), rates[u.method]) for u in units])


def cheapest_first(units: Sequence[Any], estimate: ComparisonEstimate) -> list[Any]:
    """The order to run the units in, so a provisional verdict lands early: methods that train nothing first
    (majority, the manual templates: the reference every verdict is read against), then the rest by expected cost
    (the probe, then the learned methods), ties in the methods' usual order, then as given; the fine-tuning
    references last of all, whatever their estimate: prompts are the question and fine-tuning the yardstick, so a
    mis-estimated fine-tune never holds back the provisional verdict (they are the slowest units anyway).

    Why manual before the cheaper-looking probe: whichever runs first pays for the test texts' key/values, which
    the other then reuses (`core.engine.prefix_cache`); run first, the probe took 35 s and manual 37 s after it, while
    manual first took 50 s and the probe 9 s after it: the manual row landed 22 s sooner (benchmarks/RESULTS.md)."""
    order = {name: i for i, name in enumerate(method_order(REGISTRY))}
    ranked = sorted(
        range(len(units)),
        key=lambda i: (
            REGISTRY[units[i].method].trains,
            REGISTRY[units[i].method].fine_tunes,
            estimate.units[i].seconds,
            order.get(units[i].method, len(order)),
            i,
        ),
    )
    return [units[i] for i in ranked]


# -- a finished unit's own rates -------------------------------------------------------------------------------


def measured(result: Mapping[str, Any], options: Mapping[str, Any], *, resumed: bool = False) -> dict | None:
    """A finished unit's own rates (`work_seconds` None for methods that train nothing), from its result: test
    seconds per test row of its first prompt, and training seconds less its dev evaluations per unit of work.
    None when the result cannot say: no rows or nothing scored, or `resumed` (a run started again after a stop,
    whose time covers only part of its steps; a tuned winner continued from its rung is not that)."""
    rows = result.get("rows") or []
    if not rows or resumed:
        return None
    first = rows[0]
    n_test, test_s = first.get("n_test") or 0, first.get("test_seconds")
    if not n_test or not test_s or test_s <= 0:
        return None
    example = test_s / n_test
    cls = REGISTRY.get(result["method"])
    if cls is None or not cls.trains:
        return {"work_seconds": None, "example_seconds": example}
    fields = _fields(cls)
    if "max_steps" not in fields:
        return {"work_seconds": None, "example_seconds": example}
    known = {k: v for k, v in options.items() if k in fields and k != "checkpoint_dir"}
    base = cls.config_cls(**{k: v for k, v in known.items()})
    trials = (first.get("tuning") or {}).get("trials") or []
    runs = [
        (_as_trial(dataclasses.replace(base, **t["options"]), t.get("rung") or 0), t.get("steps") or 0) for t in trials
    ] or [(base, first.get("steps") or 0)]
    work = sum(steps * step_work(c) for c, steps in runs)
    evals = sum(_evals(c, steps) for c, steps in runs)
    train = result.get("train_seconds") or 0.0
    left = train - evals * (result.get("n_dev") or 0) * example
    if work <= 0 or train <= 0:
        return {"work_seconds": None, "example_seconds": example}
    return {"work_seconds": max(left, 0.25 * train) / work, "example_seconds": example}


# -- how far a running unit is ---------------------------------------------------------------------------------


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
    span = max(stage["end"] - stage["start"], 1)
    inside = min(max((step - stage["start"]) / span, 0.0), 1.0) if within else 0.0
    done = sum(s["seconds"] for s in stages[:index]) + inside * stage["seconds"]
    return min(done / whole, 1.0)


def _locate(kinds: Sequence[str], phase: str, step: int) -> tuple[int | None, bool]:
    """Which stage a phase string names (and whether its step counts within it)."""
    outer, _, inner = phase.rpartition(" · ")
    outer = outer or phase
    if phase.startswith(TUNING):
        trials = [i for i, k in enumerate(kinds) if k == TRIAL]
        if ", trial " in outer:
            try:
                number = int(outer.split(", trial ", 1)[1].split()[0])  # "trial 2 of 5: lr 0.01"
            except ValueError:
                return None, False
            if trials:
                return trials[min(number, len(trials)) - 1], True
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
