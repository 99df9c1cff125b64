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
import threading
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from core.compare import tuning
from core.data import Split, few_shot_split
from core.engine.backbone import Backbone
from core.engine.templates import Template, Verbalizer
from core.methods import REGISTRY, create, method_order
from core.methods.base import PromptMethod, PromptSpec
from core.progress import CHOOSING, SCORING, TRAINING, TUNING

MEASURED, DERIVED, PROBED, PRIOR = "measured", "measured (other methods)", "probe", "prior"
SOURCE_RANK = {MEASURED: 0, DERIVED: 1, PROBED: 2, PRIOR: 3}  # how much an estimate is to be trusted, best first


@dataclass(frozen=True)
class MethodPrior:
    """A method's speed relative to the probe's: `work` scales the probe's seconds per unit of training work (a
    row through forward + backward counts 3), `example` its seconds per scored row (manual templates, batch 16)."""

    work: float
    example: float


# Per-method ratios to the probe's two rates, calibrated on this 2-core CPU, quiet (benchmarks/RESULTS.md, issue 24):
# `bench_comparison.py` (SmolLM2-135M, K = 32, tuning on, 500 test rows) estimated every method from the probe with
# the first, unit ratios, and each method's ratio is that first ratio times its actual / estimated seconds (manual
# and the probe in the order the queue runs them: manual first, paying for the test texts' key/values, the probe
# after it reusing them). The probe's rates carry its own bias (a cold backward pass, the full vocabulary at every
# position), which these ratios absorb: they hold for this probe, measured this way. AutoPrompt re-scores
# candidates on cached texts, P-tuning trains on cached texts, prompt tuning and P-tuning v2 carry their extra tokens
# through every layer. Where no probe ran, `CPU_SECONDS_PER_GPARAM` gives the probe's two rates from the parameter
# count (the probe measured 0.054 s a row and 0.055 s per work unit for 0.135e9 parameters), and an accelerator is
# assumed `GPU_SPEEDUP` times faster: a rough prior, and said to be one. Measured runs replace all of it.
PRIORS: dict[str, MethodPrior] = {
    "manual": MethodPrior(work=0.53, example=0.53),
    "baseline": MethodPrior(work=0.0, example=0.0),
    "linear_probe": MethodPrior(work=0.85, example=0.21),
    "autoprompt": MethodPrior(work=0.12, example=0.08),
    "ptuning": MethodPrior(work=0.27, example=0.125),
    "ptuning_v2": MethodPrior(work=0.60, example=0.19),
    "prompt_tuning": MethodPrior(work=0.80, example=0.27),
    # The fine-tuning rows (issue 30) train every weight (or LoRA's adapters) of a private copy with the prefix cache
    # off: a step is a full forward and backward with weight gradients plus AdamW over every trained weight, and
    # scoring runs the whole prompt. From `bench_versus_finetuning.py` on this 2-core CPU (benchmarks/RESULTS.md).
    "finetune": MethodPrior(work=3.0, example=0.6),
    "prompt_finetune": MethodPrior(work=3.0, example=0.6),
    "lora": MethodPrior(work=1.6, example=0.6),
}
DEFAULT_PRIOR = MethodPrior(work=0.8, example=0.3)  # a method added later, until it is measured
CPU_SECONDS_PER_GPARAM = {"work": 0.41, "example": 0.40}  # per 1e9 parameters, per work unit / scored row
GPU_SPEEDUP = 25.0
CHOOSE, TRIAL, CONTINUE, TRAIN, TEST = "choose", "trial", "continue", "train", "test"  # a unit's stages
PROBE_FIT_S = 0.2  # the linear probe's L-BFGS on the features: small and independent of the backbone's speed
UNIT_OVERHEAD_S = 1.5  # claiming, reading the group's data, saving prompt files: measured ~1-2 s per run
CONTENT_FREE_ROWS = 3  # a calibrated prompt's prior scores a few content-free inputs ("N/A", "", "[MASK]")
REMEMBER_WEIGHT = 0.5  # a new measurement's weight against the remembered one (a loaded machine does not stick)


@dataclass(frozen=True)
class Throughput:
    """A method's two rates on one backbone and device, and where they came from (`MEASURED` ... `PRIOR`)."""

    work_seconds: float  # per unit of training work (one forward-equivalent row of a training step)
    example_seconds: float  # per scored row
    source: str


@dataclass(frozen=True)
class Probe:
    """The probe's two rates: seconds per scored row (manual template) and per unit of training work."""

    example_seconds: float
    work_seconds: float
    seconds: float  # what the probe itself took


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


# -- rates -----------------------------------------------------------------------------------------------------


def rates_for(
    methods: Sequence[str],
    *,
    remembered: Mapping[str, Mapping[str, float]] | None = None,
    probed: Probe | None = None,
    parameters: int | None = None,
    device: str = "cpu",
) -> dict[str, Throughput]:
    """Each method's rates, from the best source there is (see the module docstring).

    `remembered`: method -> {"work_seconds", "example_seconds"} measured on this backbone and device (the store's
    `throughput`); `probed`: the probe's rates; `parameters`: the backbone's size, for the last resort."""
    remembered = remembered or {}
    base = _base_from(remembered)
    out = {}
    for m in methods:
        if m in remembered:
            r = remembered[m]
            prior = PRIORS.get(m, DEFAULT_PRIOR)
            work = r.get("work_seconds")
            if work is None:  # a method measured only scoring (manual): its training rate from the others'
                work = prior.work * (base or _probe_or_prior(probed, parameters, device))[0]
            out[m] = Throughput(float(work), float(r["example_seconds"]), MEASURED)
            continue
        if base is not None:
            rates, source = base, DERIVED
        elif probed is not None:
            rates, source = (probed.work_seconds, probed.example_seconds), PROBED
        else:
            rates, source = _probe_or_prior(None, parameters, device), PRIOR
        prior = PRIORS.get(m, DEFAULT_PRIOR)
        out[m] = Throughput(prior.work * rates[0], prior.example * rates[1], source)
    return out


def _base_from(remembered: Mapping[str, Mapping[str, float]]) -> tuple[float, float] | None:
    """The probe-equivalent rates implied by the measured methods (each divided by its ratio), averaged."""
    works, examples = [], []
    for m, r in remembered.items():
        prior = PRIORS.get(m, DEFAULT_PRIOR)
        if r.get("work_seconds") and prior.work:
            works.append(r["work_seconds"] / prior.work)
        if r.get("example_seconds") and prior.example:
            examples.append(r["example_seconds"] / prior.example)
    if not examples:
        return None
    example = sum(examples) / len(examples)
    work = (
        sum(works) / len(works)
        if works
        else example * CPU_SECONDS_PER_GPARAM["work"] / CPU_SECONDS_PER_GPARAM["example"]
    )
    return work, example


def _probe_or_prior(probed: Probe | None, parameters: int | None, device: str) -> tuple[float, float]:
    if probed is not None:
        return probed.work_seconds, probed.example_seconds
    size = (parameters or 135e6) / 1e9
    speed = 1.0 if device == "cpu" else GPU_SPEEDUP
    return CPU_SECONDS_PER_GPARAM["work"] * size / speed, CPU_SECONDS_PER_GPARAM["example"] * size / speed


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


# -- the probe -------------------------------------------------------------------------------------------------

_probes: dict[tuple[str, str], Probe] = {}
_probe_lock = threading.Lock()


def probe(backbone: Backbone, records: Sequence[Mapping[str, str]], template: str) -> Probe:
    """Time one scoring batch (16 rows, a manual template) and one training step (8 rows, forward and backward to
    the input embeddings, as a prompt method's step is) on `backbone`; about a second on a CPU for a 135M model.
    Cached per backbone fingerprint and device for the life of the process: the page calls it on every rerun."""
    key = (backbone.fingerprint or backbone.name, str(backbone.device))
    with _probe_lock:
        if key in _probes:
            return _probes[key]
    from core.methods.manual import discrete_scores

    rows = list(records[:16]) or [{"text": "probe"}]
    rows = (rows * (16 // len(rows) + 1))[:16]
    start = time.perf_counter()
    spec = PromptSpec((template,), Verbalizer.from_mapping({"a": ["good"], "b": ["bad"]}, ["a", "b"]), ("a", "b"))
    method = create("manual", spec, {"calibrate": False})
    prompt = method.learned(backbone, template, metrics={"trainable_params": 0})
    discrete_scores(backbone, prompt, rows[:2], calibrated=False)  # warm-up: first-call costs are not throughput
    t0 = time.perf_counter()
    discrete_scores(backbone, prompt, rows, calibrated=False)
    example = (time.perf_counter() - t0) / len(rows)
    texts = [Template.parse(template).fill(r).replace("[MASK]", "") for r in rows[:8]]
    batch = backbone.tokenizer(texts, return_tensors="pt", padding=True, truncation=True, max_length=256)
    ids = batch["input_ids"].to(backbone.device)
    mask = batch["attention_mask"].to(backbone.device)
    t0 = time.perf_counter()
    embeds = backbone.embeddings(ids).detach().requires_grad_(True)
    logits = backbone.model(inputs_embeds=embeds, attention_mask=mask).logits
    (grad,) = torch.autograd.grad(logits[:, -1].float().logsumexp(-1).sum(), embeds)
    del grad, logits
    work = (time.perf_counter() - t0) / (3 * len(texts))
    result = Probe(example_seconds=example, work_seconds=work, seconds=time.perf_counter() - start)
    with _probe_lock:
        _probes[key] = result
    return result


def cached_probe(backbone: Backbone) -> Probe | None:
    """The probe already taken of this backbone on its device in this process, if any."""
    with _probe_lock:
        return _probes.get((backbone.fingerprint or backbone.name, str(backbone.device)))


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
