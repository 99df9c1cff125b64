"""What tuning is expected to run, for the estimate (`core.runs.estimate`): the trials it plans, the ones a grid is
expected to add past an edge that wins, which trial wins (any, as likely), and where early stopping is expected to
end the winner's continuation; and the work of one step. Why its own module: this is the model of the tuner's
behaviour (`core.compare.tuning`), apart from the model of a unit's tokens and the device's speed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from core.compare import tuning
from core.methods.base import Dimension, PromptMethod
from core.runs.estimate_progress import CONTINUE, TRIAL
from core.runs.estimate_result import Stage
from core.runs.estimate_tokens import TokenStats, row_tokens

# Where a continued winner is expected to end, from the first step early stopping may end it (0) to its budget (1):
# halfway, as nothing says when dev will plateau. Measured on the 36 continued winners of two `bench_estimate.py`
# jobs: P-tuning 0.52, P-tuning v2 0.43, prompt tuning 0.80 (0.58 in all), each with a spread of 0 to 1.
PLATEAU = 0.5


def step_work(config: Any) -> float:
    """Forward-equivalent rows of one step of `config`: a trained row is a forward and a backward pass (~3 forwards);
    an AutoPrompt iteration takes gradients over its batches and re-scores `num_candidates` candidates on a batch."""
    batch = int(getattr(config, "batch_size", 8))
    if hasattr(config, "num_candidates"):
        return batch * (3 * int(getattr(config, "accumulation_steps", 1)) + int(config.num_candidates))
    return 3 * batch * int(getattr(config, "grad_accum", 1))


def _eval_interval(config: Any) -> int:
    return max(1, int(getattr(config, "eval_interval", 0) or getattr(config, "eval_every", 0) or 1))


def evals(config: Any, steps: int, start: int = 0) -> int:
    """Dev evaluations after steps start+1 .. `steps`: the training loop's own schedule (`evaluates_at`), else every
    `eval_every` iterations plus the last."""
    if hasattr(config, "evaluates_at"):
        return sum(config.evaluates_at(s) for s in range(start + 1, steps + 1))
    every = _eval_interval(config)
    return steps // every + (1 if steps % every else 0) - (start // every)


def trial_tokens(config: Any, steps: int, n_dev: int, tokens: TokenStats, cached: bool) -> tuple[float, float]:
    """(work, scored) tokens of `steps` steps of `config` and of the dev evaluations among them, a row counted as
    `row_tokens` counts it: what a finished trial ran, for its measured rates."""
    suffix = row_tokens(config, tokens, cached)[1]
    return steps * step_work(config) * suffix, evals(config, steps) * n_dev * suffix


def as_trial(config: Any, at: int) -> Any:
    """`config` as tuning runs it to its rung `at`: dev scored at its look and rung (none assumed stopped early)."""
    if at < config.max_steps and hasattr(config, "eval_from"):
        return dataclasses.replace(config, eval_from=at, eval_look=tuning.look(config))
    return config


def trial_configs(method: PromptMethod, options: Mapping[str, Any], tune: bool, n_dev: int) -> list[Any]:
    """The configurations tuning will run, as `core.compare.tuning.fit` counts them: the method's settings first,
    then each dimension's other choices on top (the defaults' in the other dimensions, since which wins is not known
    beforehand). A grid's extensions past its edge are not listed: expected, not planned (`expected_extensions`)."""
    configs = [method.config]
    for dim in dimensions(method, options, tune, n_dev):
        configs += [dataclasses.replace(method.config, **choice) for choice in dim.choices[1:]]
    return configs


def dimensions(method: PromptMethod, options: Mapping[str, Any], tune: bool, n_dev: int) -> list[Dimension]:
    """The settings tuning searches (none when tuning is off or there is no dev set to score them on)."""
    return method.search_space(options) if tune and n_dev else []


def expected_extensions(dims: Sequence[Dimension]) -> float:
    """Trials tuning is expected to add past its grids' edges, each point of a grid as likely to win: an edge wins
    (2 of its n points) and the grid extends; the new point wins against the old edge half the time and it extends
    again, up to its `extend` points. A 3-point grid of two extensions: 2/3 x (1 + 1/2) = 1 trial."""
    total = 0.0
    for d in dims:
        if d.extends and d.choices:
            edge = min(1.0, 2 / len(d.choices))
            total += edge * sum(0.5**j for j in range(d.extend))
    return total


def expected_end(config: Any, start: int) -> float:
    """The step a run continued from `start` is expected to end at: its budget without early stopping, else halfway
    (`PLATEAU`) from the first step early stopping may end it at (`min_steps_fraction` of the budget) to the budget,
    since when dev stops improving is not known beforehand."""
    end = int(config.max_steps)
    if not int(getattr(config, "patience", 0) or 0):
        return float(end)
    floor = max(float(start), float(getattr(config, "min_steps_fraction", 0.0)) * end)
    return floor + PLATEAU * (end - floor)


def tuned_stages(
    configs: Sequence[Any],
    dims: Sequence[Dimension],
    texts: float,
    train: Callable[[Any, float, int], float],
) -> list[Stage]:
    """Tuning's stages, as expected: every planned trial (`configs`, from `dims`) to its rung (the first also
    computes the texts' key/values), the expected extensions at the first configuration's cost, then the winner
    continued, which could be any trial (each as likely: their continuations are averaged) and may stop early
    (`expected_end`). `train(config, steps, evaluations)`: the seconds of that much training."""
    stages = []
    for i, c in enumerate(configs):
        at = tuning.rung(c)
        stages.append(Stage(TRIAL, (texts if i == 0 else 0.0) + train(c, at, evals(as_trial(c, at), at)), 0, at))
    extensions = expected_extensions(dims)
    if extensions:  # one stage for them all, its steps those of as many as there can be
        most = sum(d.extend for d in dims if d.extends)
        stages.append(Stage(TRIAL, extensions * (stages[0].seconds - texts), 0, stages[0].end * most))
    more = []
    for c in configs:
        at = tuning.rung(c)
        end = expected_end(c, at)
        more.append(train(c, end - at, evals(as_trial(c, at), round(end), at)))
    cfg = configs[0]
    at = tuning.rung(cfg)
    return [*stages, Stage(CONTINUE, sum(more) / len(more), at, cfg.max_steps)]
