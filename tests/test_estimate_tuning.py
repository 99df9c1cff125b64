"""The estimate of a tuned unit is what tuning is expected to do, not what it plans: grids extended past an edge
that wins, a winner that may be any trial, a continuation that early stopping may end (issue 31); the texts a
cached method finds that manual left; what a manual row costs beyond its tokens; each unit's own K-shot rows."""

from __future__ import annotations

import dataclasses

import pytest

from core.compare import Unit, method_options, tuning
from core.methods import create
from core.methods.base import Dimension, lr_grid
from core.runs import estimate, estimate_tokens
from core.runs.estimate_tokens import TokenStats, row_tokens
from tests.test_estimate import tiny_split

TOKENS = TokenStats(40.0, (4.0, 5.0), measured=True, causal=True, anchors=(2.0, 1.0))


@pytest.fixture(scope="module")
def data():
    return tiny_split()


def unit(method: str, **options) -> Unit:
    return Unit(method, 0, {**method_options(method, {}, max_steps=30), **options}, 4, True)


def stages(split, spec, *plan: Unit) -> list[list[estimate.Stage]]:
    rates = estimate.rates_for([u.method for u in plan])
    return [u.stages for u in estimate.estimate_comparison(list(plan), spec, split, rates, TOKENS).units]


def test_a_grid_is_expected_to_extend_past_an_edge_that_wins(data) -> None:
    """Each point of a grid as likely to win: a 3-point lr grid of two extensions adds 2/3 x (1 + 1/2) = 1 trial, at
    the cost of one of its trials; a 5-point grid less; a grid that cannot extend none."""
    split, spec = data
    assert estimate.expected_extensions([lr_grid(0.01, (1, 1 / 3, 3), extend=2)]) == pytest.approx(1.0)
    assert estimate.expected_extensions([lr_grid(0.01, (1, 1 / 9, 1 / 3, 3, 9), extend=1)]) == pytest.approx(0.4)
    assert estimate.expected_extensions([Dimension("encoder", ({"encoder": "lstm"}, {"encoder": "mlp"}))]) == 0.0
    (ptuning,) = stages(split, spec, unit("ptuning_v2"))
    trials = [s for s in ptuning if s.kind == estimate.TRIAL]
    assert len(trials) == 3 + 1  # the grid's three points, then the expected extensions
    assert trials[-1].seconds == pytest.approx(trials[1].seconds)  # an lr trial costs what the others do
    (fixed,) = stages(split, spec, unit("ptuning_v2", lr=0.01))  # the user set the lr: nothing tuned or extended
    assert not [s for s in fixed if s.kind == estimate.TRIAL]


def test_a_continued_winner_is_expected_to_stop_halfway_from_early_stoppings_floor(data) -> None:
    """Early stopping may end a continuation from half the budget on, and when dev plateaus is not known: halfway
    from there to the budget is expected; a run that cannot stop early runs to its budget."""
    split, spec = data
    v2 = create("ptuning_v2", spec, unit("ptuning_v2").options).config
    at = tuning.rung(v2)
    floor = v2.min_steps_fraction * v2.max_steps
    assert at < floor and estimate.expected_end(v2, at) == pytest.approx((floor + v2.max_steps) / 2)
    assert estimate.expected_end(dataclasses.replace(v2, patience=0), at) == v2.max_steps

    def continued(**options) -> float:
        (got,) = stages(split, spec, unit("ptuning_v2", **options))
        return next(s.seconds for s in got if s.kind == estimate.CONTINUE)

    share = (estimate.expected_end(v2, at) - at) / (v2.max_steps - at)
    assert continued() == pytest.approx(share * continued(patience=0), rel=0.15)  # dev scored at its own interval


def test_autoprompts_winner_may_be_any_trial_so_its_continuation_is_their_mean(data) -> None:
    """AutoPrompt trades candidates for iterations at one budget, so its trials continue for different lengths from
    different rungs: the estimate continues each as likely (counted here in steps)."""
    split, spec = data
    method = create("autoprompt", spec, unit("autoprompt").options)
    configs = estimate.trial_configs(method, unit("autoprompt").options, True, 8)
    left = [c.max_steps - tuning.rung(c) for c in configs]
    assert len(set(left)) == len(left) == 3  # the default's continuation is not the mean
    dims = method.search_space(unit("autoprompt").options)
    got = estimate.tuned_stages(configs, dims, 0.0, lambda c, steps, evals: steps)
    assert got[-1].kind == estimate.CONTINUE and got[-1].seconds == pytest.approx(sum(left) / len(left))


def test_a_cached_method_after_manual_pays_for_its_training_texts_only(data) -> None:
    """Manual's templates start with the text, whose key/values are the frozen prefix P-tuning reads too: after manual,
    P-tuning's dev and test texts cost nothing, its training texts what they did."""
    split, spec = data
    p = unit("ptuning")
    alone = estimate.estimate_comparison([p], spec, split, estimate.rates_for(["ptuning"]), TOKENS).units[0]
    both = estimate.estimate_comparison(
        [unit("manual"), p], spec, split, estimate.rates_for(["manual", "ptuning"]), TOKENS
    ).units[1]
    _, n_dev, n_test = estimate.unit_sizes(split, p)
    config = create("ptuning", spec, p.options).config
    fresh, _ = row_tokens(config, TOKENS, cached=True)
    rate = estimate.rates_for(["ptuning"])["ptuning"].example_seconds
    assert alone.seconds - both.seconds == pytest.approx((n_dev + n_test) * fresh * rate)


def test_a_manual_row_costs_more_than_its_tokens_and_its_measured_rate_says_the_same(data) -> None:
    """Manual's rows cost `row` tokens beyond their own, so 10-token rows cost more than a tenth of 100-token ones;
    a finished manual run's measured rate, counted the same way, reproduces its own seconds."""
    split, spec = data
    rates = estimate.rates_for(["manual"])
    short, long = (dataclasses.replace(TOKENS, text=n) for n in (10.0, 100.0))
    cost = [estimate.estimate_comparison([unit("manual")], spec, split, rates, t).total for t in (short, long)]
    row = estimate.PRIORS["manual"].row
    assert row > 0
    assert (cost[0] - estimate.UNIT_OVERHEAD_S) / (cost[1] - estimate.UNIT_OVERHEAD_S) == pytest.approx(
        (short.prompt(0) + short.prompt(1) + 2 * row) / (long.prompt(0) + long.prompt(1) + 2 * row), rel=0.05
    )
    _, n_dev, n_test = estimate.unit_sizes(split, unit("manual"))
    rows = [{"n_test": n_test, "test_seconds": 1.0}]  # a result as `run_unit` returns it: 2 s on dev, 1 s on test
    result = {"method": "manual", "n_dev": n_dev, "rows": rows, "train_seconds": 2.0, "test_seconds": 1.0}
    got = estimate.measured(result, {}, tokens=short)["example_seconds"]
    remembered = {"manual": {"example_seconds": got, "work_seconds": None, "runs": 50}}
    again = estimate.estimate_comparison(
        [unit("manual")], spec, split, estimate.rates_for(["manual"], remembered=remembered), short
    ).total
    assert again - estimate.UNIT_OVERHEAD_S == pytest.approx(3.0, rel=0.1)  # its own 3 s, drawn a little to the probe


def test_progress_moves_on_through_the_trials_past_a_grids_edge(data) -> None:
    """Trials 6 and 7 of "5 + 2 extra" share the expected extensions' stage, each counting its steps from 1: the bar
    moves on through both, never back, and on into the continued winner."""
    split, spec = data
    (stages_,) = stages(split, spec, unit("ptuning"))
    plan = [dataclasses.asdict(s) for s in stages_]
    at = tuning.rung(create("ptuning", spec, unit("ptuning").options).config)
    seen = []
    for trial, extra in [(t, 0) for t in range(1, 6)] + [(6, 1), (7, 2)]:
        label = f"tuning on dev, {tuning.trial_words(trial, 5, extra)}: lr 0.003 · training"
        seen += [(label, s, 30) for s in range(1, at + 1)]
    seen += [(f"tuning on dev: {tuning.continuing_words(7, at, 'lr 0.003')} · training", s, 30) for s in (at + 1, 30)]
    shares = [estimate.progress_fraction(plan, *row) for row in seen]
    assert shares == sorted(shares) and len(set(shares)) == len(shares)  # always on, never back or stuck


def test_each_unit_is_estimated_on_its_own_k_shot_rows(data, tmp_path) -> None:
    """A unit trains and evaluates on its K-shot sample, whose rows may be much longer than the split's on average:
    its steps and dev are counted on that sample's measured length, its test pass on the split's; a finished unit's
    measured rate divides by the same."""
    from tests.tiny_models import tiny_backbone  # noqa: PLC0415

    split, spec = data
    tokenizer = tiny_backbone("gpt2").tokenizer
    plan = [unit("prompt_tuning"), dataclasses.replace(unit("prompt_tuning"), seed=1)]
    long_rows = [{**r, "text": r["text"] + " and so on" * 20} for r in split.train.records[:8]]
    tokens = estimate.measure_tokens(
        tokenizer, split.train.records, spec.templates, samples={(0, 4): split.train.records, (1, 4): long_rows}
    )
    assert tokens.for_sample(1, 4).text > 3 * tokens.for_sample(0, 4).text
    assert tokens.for_sample(2, 4) == tokens and tokens.for_sample(1, 4).samples == ()
    rates = estimate.rates_for(["prompt_tuning"])
    got = estimate.estimate_comparison(plan, spec, split, rates, tokens).units
    train = [sum(s.seconds for s in u.stages if s.kind != estimate.TEST) for u in got]
    test = [next(s.seconds for s in u.stages if s.kind == estimate.TEST) for u in got]
    assert train[1] > 2.5 * train[0] and test[1] == pytest.approx(test[0])
    keys = estimate.samples_of(split, plan)
    assert set(keys) == {(0, 4), (1, 4)} and len(keys[(0, 4)]) == sum(estimate.unit_sizes(split, plan[0])[:2])


def test_a_p_tuning_pass_reads_a_share_of_its_cached_text() -> None:
    """P-tuning runs only the tokens after the text, but they attend over its key/values: a pass costs
    `CACHED_READ` of a token per text token more, so long texts cost its steps more than their suffix says."""
    config = create("ptuning", tiny_split()[1], {}).config
    short, long = (dataclasses.replace(TOKENS, text=n) for n in (10.0, 110.0))
    (_, a), (_, b) = (row_tokens(config, t, cached=True) for t in (short, long))
    assert b - a == pytest.approx(estimate_tokens.CACHED_READ * 100) and estimate_tokens.CACHED_READ > 0
