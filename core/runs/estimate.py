"""What a comparison will cost before it runs: seconds per unit from the tokens it runs and this device's speed.

Why: a user on a laptop decides whether to wait from the Train page's estimate, the queue runs the cheapest units
first so a provisional verdict lands early, and the Runs page's ETA must be true from the first second. All three
use the model here (one number: the Runs page keeps the estimate the Train page showed), so they agree.

The model (issue 31). A unit (one method at one seed) costs what its phases do, counted in tokens through the
backbone: the user's rows measured with the backbone's tokenizer (`core.runs.estimate_tokens`: mean tokens of the
text and of each template; each unit's own K-shot rows for its steps and dev, `samples_of`), and per method the
tokens a row runs (`row_tokens`: the whole prompt, or the text once and then what follows it for a method that
reuses its key/values; AutoPrompt: its triggers and a tenth of the text).
- *training work*: optimizer steps (AutoPrompt: search iterations) x forward-equivalent rows of a step
  (`step_work`: a forward and backward pass over a row is about 3 forward rows; AutoPrompt also re-scores its
  candidates) x tokens a row; with tuning on, what tuning is expected to run (`core.runs.estimate_tuning`): every
  trial of the method's own `search_space` to its rung (`core.compare.tuning.rung`, a third of its budget), the
  trials a log grid is expected to add past an edge that wins (`expected_extensions`), then the winner, which could
  be any trial (their continuations averaged), continued to where early stopping is expected to end it
  (`expected_end`): what tuning is expected to do, not the least it may do;
- *scoring work*: rows scored x tokens — dev at every evaluation, each manual template on dev and test, the test
  split once per distinct prompt, less what an earlier unit left in the prefix cache (`cache_keys`: the order
  `cheapest_first` runs them in, in one process).
Each method has two per-token rates on a backbone and device (`Throughput`): seconds per token of training work
and per scored token. They come, best first, from (a) this method's finished runs on that backbone and device
(`measured`, kept in the run store by the worker, per token so they transfer between datasets; drawn toward the
probe while they are few), (b) other methods' runs scaled by the `PRIORS` ratios, (c) a short probe of the loaded
backbone (`probe`: scoring and a training step on fixed-length rows, about two seconds, remembered in the store),
scaled the same way, or (d) a rough prior from the parameter count. An estimate
carries a range (`low`..`high`, `SPREAD` by source) and says what it rests on (`ComparisonEstimate.words`).
The priors' ratios are speeds: `benchmarks/fit_estimate.py` fits them to each trial, continuation and test pass of
the benchmark's runs, apart from what tuning did, which the model above carries.

Public API (the Train page, the service's launch order, the Runs page's ETA and `benchmarks/` call these):

    estimate_comparison(units, spec, split, rates, tokens=None) -> ComparisonEstimate  # .units[i].seconds, .total,
                                                                   # .low, .high, .source, .words(device)
    measure_tokens(tokenizer, records, templates, samples=samples_of(split, units)) -> TokenStats  # the rows' tokens
    rates_for(methods, remembered=..., probed=..., parameters=..., device=...) -> dict[method, Throughput]
    probe(backbone, records, template) -> Probe                    # cached per backbone and device
    measured(result, options, resumed=False, tokens=None) -> dict | None  # a finished unit's own per-token rates
    cheapest_first(units, estimate) -> list[Unit]
    as_chosen(stored, template) -> stored            # AutoPrompt's estimate once manual has picked its template
    progress_fraction(stages, phase, step, total) -> float | None  # how far a running unit is
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from core.data import Split, few_shot_split
from core.methods import REGISTRY, create, method_order
from core.methods.base import PromptSpec
from core.runs.estimate_progress import CHOOSE, CONTINUE, TEST, TRAIN, TRIAL, progress_fraction
from core.runs.estimate_rates import (
    CPU_SECONDS_PER_GPARAM,
    DEFAULT_PRIOR,
    DERIVED,
    GPU_SPEEDUP,
    MEASURED,
    PRIOR,
    PRIORS,
    PROBE_KEY,
    PROBE_RUNS,
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
from core.runs.estimate_result import ComparisonEstimate, Stage, UnitEstimate, as_chosen, fmt_minutes
from core.runs.estimate_tokens import (
    TokenStats,
    guess_tokens,
    measure_tokens,
    row_tokens,
    scoring_rate,
    starts_from_chosen,
)
from core.runs.estimate_tuning import (
    PLATEAU,
    as_trial,
    dimensions,
    evals,
    expected_end,
    expected_extensions,
    step_work,
    trial_configs,
    trial_tokens,
    tuned_stages,
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
    "PLATEAU",
    "PRIORS",
    "PROBED",
    "PROBE_FIT_S",
    "PROBE_KEY",
    "PROBE_RUNS",
    "SPREAD",
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
    "TokenStats",
    "UnitEstimate",
    "as_chosen",
    "cached_probe",
    "cheapest_first",
    "estimate_comparison",
    "estimate_unit",
    "expected_end",
    "expected_extensions",
    "fmt_minutes",
    "guess_tokens",
    "measured",
    "measure_tokens",
    "probe",
    "progress_fraction",
    "rates_for",
    "row_tokens",
    "samples_of",
    "spread",
    "step_work",
    "trial_configs",
    "trial_tokens",
    "tuned_stages",
    "unit_sizes",
]


PROBE_FIT_S = 0.2  # the linear probe's L-BFGS on the features: small and independent of the backbone's speed
UNIT_OVERHEAD_S = 1.5  # claiming, reading the group's data, saving prompt files: measured ~1-2 s per run
CONTENT_FREE_ROWS = 3  # a calibrated prompt's prior scores a few content-free inputs ("N/A", "", "[MASK]")
# How far the truth may lie from an estimate, as factors of it, by where its rates came from: a prior from the
# parameter count knows nothing of this machine; a probe measures it but not each method; a method's own finished
# runs (per token, so on other data too) leave its load and noise, narrowing as they add up (`spread`).
SPREAD = {PRIOR: (0.4, 2.5), PROBED: (0.65, 1.5), DERIVED: (0.7, 1.4), MEASURED: (0.75, 1.3)}


def _row(result: Mapping[str, Any]) -> float:
    return PRIORS.get(result.get("method", ""), DEFAULT_PRIOR).row


# -- one unit --------------------------------------------------------------------------------------------------


def estimate_unit(
    unit: Any,
    spec: PromptSpec,
    n_train: int,
    n_dev: int,
    n_test: int,
    rate: Throughput,
    tokens: TokenStats | None = None,
    cached: Collection[Any] = (),
) -> UnitEstimate:
    """The expected seconds of `unit` (a `core.compare.Unit`) on `n_train`/`n_dev` rows and `n_test` test rows whose
    rows are `tokens` long (None: a guess of 26 tokens; its K-shot rows by `TokenStats.for_sample`, the test rows by
    the split's), at `rate` seconds per token. `cached`: the prefix-cache keys (`cache_keys`) units before it in the
    same process computed, which this one reads for free."""
    tokens = tokens or TokenStats(26.0)
    sample = tokens.for_sample(unit.seed, unit.k_shot)  # the rows it trains and evaluates on
    e, w = rate.example_seconds, rate.work_seconds
    cls = REGISTRY[unit.method]
    keys = cache_keys(unit, spec)

    def fresh(key: Any, rows: int, per_row: float) -> float:
        return 0.0 if key in cached else rows * per_row

    stages: list[Stage] = []
    if not cls.trains:  # manual (every template on dev, then each on test), baseline (nothing worth timing)
        n = len(spec.templates) if cls.calibratable else 1
        row = PRIORS.get(unit.method, DEFAULT_PRIOR).row
        per_token = e if cls.calibratable else 0.0  # the majority class scores nothing
        dev = [(sample.prompt(i) + row) * per_token for i in range(n)]
        choose = sum(fresh(keys[f"dev{i}"], n_dev, p) + CONTENT_FREE_ROWS * p for i, p in enumerate(dev))
        stages.append(Stage(CHOOSE, choose, 0, n))
        test = sum(fresh(keys[f"test{i}"], n_test, (tokens.prompt(i) + row) * per_token) for i in range(n))
        stages.append(Stage(TEST, test, 0, n * max(n_test, 1)))
    elif "max_steps" not in _fields(cls):  # the linear probe: features of the first template's rows, then L-BFGS
        p = sample.prompt(0) * e
        stages.append(Stage(TRAIN, n_train * p + fresh(keys["dev0"], n_dev, p) + PROBE_FIT_S, 0, 2))
        stages.append(Stage(TEST, fresh(keys["test0"], n_test, tokens.prompt(0) * e), 0, max(n_test, 1)))
    else:
        method = create(unit.method, spec, unit.options)
        configs = trial_configs(method, unit.options, unit.tune, n_dev)
        dims = dimensions(method, unit.options, unit.tune, n_dev)
        cfg = method.config
        cached_texts = PRIORS.get(unit.method, DEFAULT_PRIOR).cached
        first, suffix = row_tokens(cfg, sample, cached_texts)
        texts = (n_train * first + fresh(keys["dev"], n_dev, first)) * e  # the texts' key/values, once

        def train(c: Any, steps: float, n_evals: int) -> float:
            return steps * step_work(c) * row_tokens(c, sample, bool(first))[1] * w + n_evals * n_dev * suffix * e

        if len(configs) == 1:
            steps = cfg.max_steps
            stages.append(Stage(TRAIN, texts + train(cfg, steps, evals(cfg, steps)), 0, steps))
        else:
            stages += tuned_stages(configs, dims, texts, train)
        test_first, test_suffix = row_tokens(cfg, tokens, cached_texts)  # the test split's rows
        calibration = CONTENT_FREE_ROWS * (test_first + test_suffix) * e if cls.calibratable else 0.0
        test = (n_test * test_suffix + fresh(keys["test"], n_test, test_first)) * e
        stages.append(Stage(TEST, test + calibration, 0, max(n_test, 1)))
    seconds = UNIT_OVERHEAD_S + sum(s.seconds for s in stages)
    low, high = spread(rate)
    return UnitEstimate(
        unit.method, unit.seed, unit.k_shot, seconds, stages, rate.source, seconds * low, seconds * high, rate.runs
    )


def cache_keys(unit: Any, spec: PromptSpec) -> dict[str, Any]:
    """What of the prefix cache a unit fills and reads (`core.engine.prefix_cache`), named so a later unit in the
    same process can tell it is there: the manual templates' rendered rows (and the linear probe's, the first
    template's), and the bare texts the cached methods put before their soft tokens or triggers. Dev rows depend on
    the seed and K; the test split is shared by every unit."""
    sample = (unit.seed, unit.k_shot)
    keys: dict[str, Any] = {"dev": ("text", "dev", sample), "test": ("text", "test")}
    for i, template in enumerate(spec.templates):
        keys[f"dev{i}"] = (template, "dev", sample)
        keys[f"test{i}"] = (template, "test")
    keys.setdefault("dev0", ("", "dev", sample))
    keys.setdefault("test0", ("", "test"))
    return keys


def _fills(unit: Any, spec: PromptSpec) -> set[Any]:
    """The cache keys `unit` leaves behind for the units after it."""
    cls = REGISTRY[unit.method]
    keys = cache_keys(unit, spec)
    if not cls.trains:  # each template's rows, and their text alone: the frozen prefix the cached methods read too
        n = len(spec.templates) if cls.calibratable else 0
        rows = {keys[f"{s}{i}"] for s in ("dev", "test") for i in range(n)}
        return rows | ({keys["dev"], keys["test"]} if n else set())
    if "max_steps" not in _fields(cls):
        return {keys["dev0"], keys["test0"]}
    if PRIORS.get(unit.method, DEFAULT_PRIOR).cached:
        return {keys["dev"], keys["test"]}
    return set()


def spread(rate: Throughput) -> tuple[float, float]:
    """How far the truth may lie from an estimate at `rate`, as factors (low, high): wide on a prior, narrower on
    a probe of this machine, narrowest on this method's own finished runs, the more the narrower."""
    low, high = SPREAD[rate.source]
    if rate.source == MEASURED and rate.runs > 1:
        shrink = min(rate.runs, 4) ** 0.5
        low, high = 1 - (1 - low) / shrink, 1 + (high - 1) / shrink
    return low, high


def _fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls.config_cls)}


def unit_sizes(split: Split, unit: Any) -> tuple[int, int, int]:
    """(train, dev, test) rows the unit works on: its K-shot sample of train and dev, and the shared test split."""
    train, dev = few_shot_split(split, unit.k_shot, unit.seed)
    return len(train), len(dev), len(split.test)


def samples_of(split: Split, units: Sequence[Any]) -> dict[tuple[int, int | None], list[Mapping[str, str]]]:
    """Each unit's K-shot train and dev rows by (seed, K), for `measure_tokens(samples=...)`: the rows its steps and
    dev evaluations run (a unit on the full training set runs the split's rows, measured anyway)."""
    out: dict[tuple[int, int | None], list[Mapping[str, str]]] = {}
    for unit in units:
        if unit.k_shot is not None and (unit.seed, unit.k_shot) not in out:
            train, dev = few_shot_split(split, unit.k_shot, unit.seed)
            out[(unit.seed, unit.k_shot)] = [*train.records, *dev.records]
    return out


def estimate_comparison(
    units: Sequence[Any],
    spec: PromptSpec,
    split: Split,
    rates: Mapping[str, Throughput],
    tokens: TokenStats | None = None,
) -> ComparisonEstimate:
    """Every unit's expected seconds (in `units` order) and the total, one worker running them one after another
    in the order `cheapest_first` gives (so what an earlier unit leaves in the prefix cache is not paid again).

    `units`: `core.compare.Unit`s (method, seed, options with `max_steps`, k_shot, tune) as `plan_units` makes them;
    `rates`: per method, per token, from `rates_for`; `tokens`: the rows' tokens (`measure_tokens`; None: guessed
    from the characters of the training rows)."""
    if tokens is None:
        tokens = guess_tokens(split.train.records or split.dev.records, spec.templates)
    sizes = [unit_sizes(split, u) for u in units]
    alone = ComparisonEstimate.of(
        [estimate_unit(u, spec, *n, rates[u.method], tokens) for u, n in zip(units, sizes, strict=True)]
    )
    done: set[Any] = set()
    out: list[UnitEstimate | None] = [None] * len(units)
    for i in _order(units, alone):
        unit, rate = units[i], rates[units[i].method]
        out[i] = estimate_unit(unit, spec, *sizes[i], rate, tokens, done).with_alternatives(
            {
                t: estimate_unit(unit, spec, *sizes[i], rate, per, done)
                for t, per in _if_chosen(unit, spec, tokens).items()
            }
        )
        done |= _fills(units[i], spec)
    return ComparisonEstimate.of([u for u in out if u is not None], tokens)


def _if_chosen(unit: Any, spec: PromptSpec, tokens: TokenStats) -> dict[str, TokenStats]:
    """For a unit whose cost depends on the manual template dev picks (AutoPrompt starting from it: its words
    become the triggers), the rows' tokens as if dev picks each template; empty for every other unit."""
    anchors = tokens.anchors
    if len(set(anchors)) < 2 or "max_steps" not in _fields(REGISTRY[unit.method]):
        return {}
    if not starts_from_chosen(create(unit.method, spec, unit.options).config):
        return {}
    return {t: dataclasses.replace(tokens, anchors=(a,)) for t, a in zip(spec.templates, anchors, strict=False)}


def cheapest_first(units: Sequence[Any], estimate: ComparisonEstimate) -> list[Any]:
    """The order to run the units in, so a provisional verdict lands early: methods that train nothing first
    (majority, the manual templates: the reference every verdict is read against), then the rest by expected cost
    (the probe, then the learned methods), ties in the methods' usual order, then as given; the fine-tuning
    references last of all, whatever their estimate: prompts are the question and fine-tuning the yardstick, so a
    mis-estimated fine-tune never holds back the provisional verdict (they are the slowest units anyway).

    Why manual before the cheaper-looking probe: whichever runs first pays for the test texts' key/values, which
    the other then reuses (`core.engine.prefix_cache`); run first, the probe took 35 s and manual 37 s after it, while
    manual first took 50 s and the probe 9 s after it: the manual row landed 22 s sooner (benchmarks/RESULTS.md)."""
    return [units[i] for i in _order(units, estimate)]


def _order(units: Sequence[Any], estimate: ComparisonEstimate) -> list[int]:
    """A method's units stay together, in the order given (seeds, K): they are ranked by their method's costliest
    unit, because a later seed's estimate is cheaper only for the cache the earlier one fills (ranking it first
    would undo the very order its estimate assumed)."""
    order = {name: i for i, name in enumerate(method_order(REGISTRY))}
    cost: dict[str, float] = {}
    for unit, est in zip(units, estimate.units, strict=True):
        cost[unit.method] = max(cost.get(unit.method, 0.0), est.seconds)
    return sorted(
        range(len(units)),
        key=lambda i: (
            REGISTRY[units[i].method].trains,
            REGISTRY[units[i].method].fine_tunes,
            cost[units[i].method],
            order.get(units[i].method, len(order)),
            i,
        ),
    )


# -- a finished unit's own rates -------------------------------------------------------------------------------


def measured(
    result: Mapping[str, Any], options: Mapping[str, Any], *, resumed: bool = False, tokens: TokenStats | None = None
) -> dict | None:
    """A finished unit's own per-token rates (`work_seconds` None for methods that train nothing), from its result
    and its rows' tokens (`tokens`: `measure_tokens` of its data, its own K-shot rows among its `samples`; None: a
    26-token guess): scoring seconds per
    scored token, and training seconds less its dev evaluations per token of training work. A method that reuses
    the texts' key/values may have found its test rows cached by an earlier unit, so its two rates are fitted to its
    training time alone, in the ratio its prior gives them. None when the result cannot say: no rows or nothing
    scored, or `resumed` (a run started again after a stop, whose time covers only part of its steps; a tuned winner
    continued from its rung is not that)."""
    rows = result.get("rows") or []
    if not rows or resumed:
        return None
    tokens = tokens or TokenStats(26.0)
    sample = tokens.for_sample(result.get("seed", 0), result.get("k_shot"))  # the rows it trained on
    first = rows[0]
    n_test, test_s = first.get("n_test") or 0, first.get("test_seconds")
    if not n_test or not test_s or test_s <= 0:
        return None
    example = test_s / (n_test * tokens.prompt(0))
    cls = REGISTRY.get(result["method"])
    if cls is None or not cls.trains:
        return {
            "work_seconds": None,
            "example_seconds": scoring_rate(result, sample, tokens, CONTENT_FREE_ROWS, _row(result)) or example,
        }
    fields = _fields(cls)
    n_train, n_dev = result.get("n_train") or 0, result.get("n_dev") or 0
    train = result.get("train_seconds") or 0.0
    if "max_steps" not in fields:  # the linear probe: its training rows' features (dev ones may have been cached)
        if n_train and train > PROBE_FIT_S:
            example = (train - PROBE_FIT_S) / (n_train * sample.prompt(0))
        return {"work_seconds": None, "example_seconds": example}
    prior = PRIORS.get(result["method"], DEFAULT_PRIOR)
    known = {k: v for k, v in options.items() if k in fields and k != "checkpoint_dir"}
    if "num_candidates" in fields and first.get("template"):
        known["template"] = first["template"]  # AutoPrompt: counted at the triggers it searched
    base = cls.config_cls(**{k: v for k, v in known.items()})
    trials = (first.get("tuning") or {}).get("trials") or []
    runs = [
        (as_trial(dataclasses.replace(base, **t["options"]), t.get("rung") or 0), t.get("steps") or 0) for t in trials
    ] or [(base, first.get("steps") or 0)]
    fresh, _ = row_tokens(base, sample, prior.cached)
    counted = [trial_tokens(c, steps, n_dev, sample, prior.cached) for c, steps in runs]
    work = sum(w for w, _ in counted)
    scored = sum(s for _, s in counted) + (n_train + n_dev) * fresh
    if work <= 0 or train <= 0:
        return {"work_seconds": None, "example_seconds": example}
    if prior.cached and prior.work and prior.example:
        ratio = prior.example / prior.work
        rate = train / (work + ratio * scored)
        return {"work_seconds": rate, "example_seconds": ratio * rate}
    left = train - scored * example
    return {"work_seconds": max(left, 0.25 * train) / work, "example_seconds": example}
