"""Automatic per-method tuning on dev (core/compare/tuning.py): declared search spaces, choice by dev only, user options kept."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from core.app.views import settings_note, small_dev_warning, tuning_trials
from core.compare import Unit, run_unit, summarize, tuning
from core.data import LabeledDataset, Split
from core.engine.scoring import CONTENT_FREE_INPUTS
from core.methods import REGISTRY, create
from core.methods.base import lr_grid
from core.progress import CONTINUED_METRIC, TRIAL_METRIC, TUNING, Cancelled, never_stop, no_progress
from tests.ptuning_helpers import LABELS, VERBALIZER, keyword_data, learnable_backbone, spec_for

TRAIN, DEV = keyword_data(16, 0), keyword_data(16, 1)
SHORT = {"max_steps": 4, "eval_every": 2, "batch_size": 8}


@pytest.fixture(scope="module")
def backbone():
    return learnable_backbone("llama")


class Phases:
    """A progress callback that records the phases it is told about, as the job runner's does, and the tuning
    tags its metrics carry (trial number, continued)."""

    def __init__(self):
        self.phases: list[str] = []
        self.tags: list[tuple[int, int]] = []

    def __call__(self, step, total, metrics):
        if metrics:
            self.tags.append((metrics.get(TRIAL_METRIC), metrics.get(CONTINUED_METRIC, 0)))

    def phase(self, name: str) -> None:
        self.phases.append(name)


def test_ptuning_searches_lr_then_encoder_and_keeps_the_best_trial_on_dev(backbone):
    method = create("ptuning", spec_for(backbone), SHORT)
    progress = Phases()
    tuned = tuning.fit(method, backbone, TRAIN, DEV, fixed=set(SHORT), progress=progress, should_stop=never_stop)
    trials, report = tuned.trials, tuned.report
    lrs = [t for t in trials if t.options["encoder"] == "lstm"]  # the lr dimension, then 2 encoders at its best
    assert len(trials) == len(lrs) + 2 and 3 <= len(lrs) <= 5
    assert [t.options["lr"] for t in lrs[:3]] == [3e-3, 1e-3, 9e-3]  # log grid, the default first
    assert_extended_only_past_a_winning_edge(lrs, ratio=3.0, extend=2)
    assert {t.options["encoder"] for t in trials[len(lrs) :]} == {"mlp", "none"}
    best = max(trials, key=tuning.Trial.key)
    assert report["chosen"] == best.options  # coordinate search ends on the best configuration it tried
    assert (
        tuned.method.config.lr == best.options["lr"] and tuned.method.config.encoder.value == best.options["encoder"]
    )
    assert tuned.learned.config["lr"] == best.options["lr"]  # the winner's trial continued: nothing retrained
    # trials ran to their rung (a third of 4 steps, rounded up to the evaluation at step 2); the winner went on
    assert [t.rung for t in trials] == [2] * len(trials) and report["rung_fraction"] == tuning.RUNG_FRACTION
    assert [t.continued for t in trials] == [t is best for t in trials]
    assert [t.steps for t in trials] == [4 if t is best else 2 for t in trials]
    assert tuned.learned.metrics["steps"] == 4 and tuned.learned.metrics["continued_from_step"] == 2
    assert tuned.learned.metrics["resumed_from_step"] == 0  # tuning went on; nothing was interrupted
    assert tuned.learned.metrics["dev_accuracy"] >= best.dev_accuracy  # the best up to step 2 is still a candidate
    assert report["summary"] == tuning.describe(best.options) and report["summary"].startswith("lr ")
    assert report["n_dev"] == len(DEV) and report["dev_too_small"] is False
    # each trial starts in its training phase, so a run card counts the trial's steps from its first one
    starts = [p for p in progress.phases if p.startswith(f"{TUNING}, trial ") and p.endswith(" · training")]
    assert len(starts) >= len(trials) and starts[0] == f"{TUNING}, trial 1 of 5: lr 0.003, encoder lstm · training"
    extra = len(trials) - 5  # extensions counted apart: the planned 5 never changes under the user's eyes
    assert starts[-1].startswith(f"{TUNING}, {tuning.trial_words(len(trials), 5, extra)}: ")
    assert all(" of 5" in p for p in starts)
    summary, number = report["summary"], trials.index(best) + 1
    assert (
        progress.phases[-1]
        == f"{TUNING}: continuing its best trial (trial {number}: {summary}) from step 2 · training"
    )
    assert not any("resumed" in p for p in progress.phases)
    # every measurement names its trial (a chart draws one line per trial), then the winner's go on, tagged continued
    tried = [t for t, c in progress.tags if not c]
    assert tried == sorted(tried) and set(tried) == set(range(1, len(trials) + 1))
    assert progress.tags[len(tried) :] == [(number, 1)] * (len(progress.tags) - len(tried)) != []


def assert_extended_only_past_a_winning_edge(trials: list[tuning.Trial], ratio: float, extend: int) -> None:
    """Each learning rate past the grid is one step beyond the edge that was winning; the search stops once the
    best is inside what it tried or the extensions are used up."""
    grid = 3
    for i in range(grid, len(trials) + 1):
        so_far = trials[:i]
        best = max(so_far, key=tuning.Trial.key).options["lr"]
        lrs = [t.options["lr"] for t in so_far]
        at_edge = best in (max(lrs), min(lrs))
        if i == len(trials):  # no further point: inside the bracket, or out of extensions
            assert not at_edge or i - grid == extend
        else:
            assert at_edge
            step = ratio if best == max(lrs) else 1 / ratio
            assert trials[i].options["lr"] == pytest.approx(best * step, rel=1e-2)


def test_a_log_grid_extends_one_step_past_a_winning_edge_and_no_further_than_allowed():
    dim = lr_grid(1e-2, (1.0, 1 / 3, 3.0), extend=2)
    assert dim.ratio == pytest.approx(3.0) and [c["lr"] for c in dim.choices] == [1e-2, 3.33e-3, 3e-2]
    grid = list(dim.choices)
    assert dim.beyond(grid, {"lr": 1e-2}) is None  # the default won: bracketed
    assert dim.beyond(grid, {"lr": 3e-2}) == {"lr": 9e-2}
    assert dim.beyond(grid, {"lr": 3.33e-3}) == {"lr": 1.11e-3}
    twice = [*grid, {"lr": 9e-2}, {"lr": 0.27}]
    assert dim.beyond(twice, {"lr": 0.27}) is None  # extensions used up
    assert dim.beyond([*grid, {"lr": 9e-2}], {"lr": 3e-2}) is None  # the old edge won against the new point
    assert lr_grid(1e-2, (1.0, 3.0), extend=0).beyond(grid, {"lr": 3e-2}) is None


class StepCount:
    """A progress callback counting the steps it is told were run (a resume's first report carries no metrics)."""

    def __init__(self):
        self.steps = 0

    def __call__(self, step, total, metrics):
        self.steps += bool(metrics)


class DevScores:
    """A progress callback that records the steps at which dev was scored."""

    def __init__(self):
        self.steps: list[int] = []

    def __call__(self, step, total, metrics):
        if "dev_accuracy" in metrics:
            self.steps.append(step)


@pytest.mark.parametrize(
    ("name", "options", "fixed", "state_key"),
    [
        ("prompt_tuning", {**SHORT, "max_steps": 6}, set(SHORT), None),
        (  # candidates x iterations at equal budget: 4 x 6, 2 x 12, 8 x 3, each paused at a third of its own
            "autoprompt",
            {"num_candidates": 4, "max_steps": 6, "eval_every": 1, "batch_size": 8},
            {"eval_every", "batch_size"},
            "trigger_ids",
        ),
    ],
)
def test_the_continued_winner_is_exactly_an_untuned_fit_of_its_configuration(
    backbone, tmp_path, name, options, fixed, state_key
):
    """Trials pause at their rung and only the winner is continued, from its checkpoint, to its full budget: its
    prompt is the one a plain fit of the chosen settings makes, and the trials ran far fewer steps than full fits."""
    spec = spec_for(backbone)
    folder = tmp_path / "checkpoints"
    method = create(name, spec, {**options, "checkpoint_dir": str(folder)})
    count = StepCount()
    tuned = tuning.fit(method, backbone, TRAIN, DEV, fixed=fixed, progress=count, should_stop=never_stop)
    chosen = tuned.report["chosen"]
    won = next(t for t in tuned.trials if t.options == chosen)
    assert won.continued and won.rung < won.steps and all(t.rung < options["max_steps"] for t in tuned.trials)
    plain = create(name, spec, {**options, **chosen}).fit(
        backbone, TRAIN, DEV, progress=no_progress, should_stop=never_stop
    )
    got = tuned.learned
    assert got.metrics["dev_accuracy"] == plain.metrics["dev_accuracy"]
    assert got.metrics["dev_loss"] == plain.metrics["dev_loss"]
    assert got.tensors.keys() == plain.tensors.keys()
    assert all(torch.equal(got.tensors[k], plain.tensors[k]) for k in plain.tensors)
    if state_key:
        assert got.state[state_key] == plain.state[state_key] and got.state["history"] == plain.state["history"]
    else:
        assert got.state["losses"] == plain.state["losses"] and got.state["evals"] == plain.state["evals"]
    assert got.metrics["continued_from_step"] == won.rung and got.metrics["resumed_from_step"] == 0
    # the saving is real: every trial's rung plus the winner's rest, less than a full fit per trial
    full = sum(create(name, spec, {**options, **t.options}).config.max_steps for t in tuned.trials)
    assert count.steps == sum(t.rung for t in tuned.trials) + won.steps - won.rung < full
    # every trial's folder is gone (and the method's, left empty); the prompt names the method's folder, not a trial's
    assert not folder.exists()
    assert got.config["checkpoint_dir"] == str(folder) == tuned.method.config.checkpoint_dir


def test_trials_are_scored_at_their_look_and_a_third_of_their_budget_and_the_winner_trains_as_a_plain_fit(
    backbone, tmp_path
):
    """Off the evaluation grid (9 steps, dev every 2): each trial is scored on dev at its look, step 2 (on the plain
    fit's grid, near half its rung), and at step 3 (a third), not again at 4; the continued winner takes the very
    steps of a plain fit (the same losses) and evaluates from its rung on, on the plain fit's schedule after it."""
    spec = spec_for(backbone)
    options = {**SHORT, "max_steps": 9, "checkpoint_dir": str(tmp_path / "checkpoints")}
    evals = DevScores()
    tuned = tuning.fit(
        create("prompt_tuning", spec, options),
        backbone,
        TRAIN,
        DEV,
        fixed=set(SHORT),
        progress=evals,
        should_stop=never_stop,
    )
    won = next(t for t in tuned.trials if t.continued)
    assert (
        [t.rung for t in tuned.trials]
        == [3] * len(tuned.trials)
        == [tuning.rung(create("prompt_tuning", spec, options).config)] * len(tuned.trials)
    )
    got = tuned.learned
    assert [t.look[0] for t in tuned.trials] == [2] * len(tuned.trials)
    assert [e["step"] for e in got.state["evals"]] == [2, 3, 4, 6, 8, 9]  # look, rung, then the usual schedule
    per_trial = [[2] if t.pruned else [2, 3] for t in tuned.trials]  # a trial stopped at its look is not scored again
    assert evals.steps == sum(per_trial, []) + [4, 6, 8, 9]
    plain = create("prompt_tuning", spec, {**SHORT, "max_steps": 9, **won.options}).fit(
        backbone, TRAIN, DEV, progress=no_progress, should_stop=never_stop
    )
    assert [e["step"] for e in plain.state["evals"]] == [2, 4, 6, 8, 9]
    assert got.state["losses"] == plain.state["losses"]  # step for step the same training
    assert got.config["eval_from"] == 0 == tuned.method.config.eval_from  # the prompt reads as a plain fit's


def test_a_cancel_mid_tuning_is_the_users_and_keeps_the_paused_trials(backbone, tmp_path):
    method = create("prompt_tuning", spec_for(backbone), {**SHORT, "checkpoint_dir": str(tmp_path)})
    seen = StepCount()
    with pytest.raises(Cancelled):  # stopped in the second trial: not mistaken for its pause
        tuning.fit(method, backbone, TRAIN, DEV, fixed=set(SHORT), progress=seen, should_stop=lambda: seen.steps >= 3)
    kept = sorted(p.name for p in Path(tmp_path).iterdir())
    assert len(kept) == 2 and all(k.startswith("tuning-") for k in kept)  # trial 1 paused at its rung, trial 2 mid-way
    assert all(any(p.iterdir()) for p in Path(tmp_path).iterdir())


def test_a_rerun_after_a_cancel_reuses_the_paused_trials_scores_and_ends_as_an_uninterrupted_run(backbone, tmp_path):
    """The paused trial is not re-trained to be re-scored: its rung score waits beside its checkpoint. The rerun
    then makes the choice, and the prompt, that tuning without the cancel makes."""
    spec, options = spec_for(backbone), {**SHORT, "max_steps": 6}
    first = StepCount()
    method = create("prompt_tuning", spec, {**options, "checkpoint_dir": str(tmp_path / "a")})
    with pytest.raises(Cancelled):
        tuning.fit(
            method, backbone, TRAIN, DEV, fixed=set(SHORT), progress=first, should_stop=lambda: first.steps >= 3
        )
    rerun = StepCount()
    resumed = tuning.fit(method, backbone, TRAIN, DEV, fixed=set(SHORT), progress=rerun, should_stop=never_stop)
    whole = StepCount()
    fresh = create("prompt_tuning", spec, {**options, "checkpoint_dir": str(tmp_path / "b")})
    plain = tuning.fit(fresh, backbone, TRAIN, DEV, fixed=set(SHORT), progress=whole, should_stop=never_stop)
    assert resumed.report["chosen"] == plain.report["chosen"]
    scores = [[(t.options, t.dev_accuracy, t.dev_loss, t.rung) for t in r.trials] for r in (resumed, plain)]
    assert scores[0] == scores[1]
    assert all(torch.equal(resumed.learned.tensors[k], v) for k, v in plain.learned.tensors.items())
    assert first.steps + rerun.steps == whole.steps  # no step run twice: trial 1's rung was not trained again
    assert not (tmp_path / "a").exists()


def test_a_stop_while_the_winner_continues_is_a_real_resume_and_said_apart_from_the_continuation(backbone, tmp_path):
    """Continuing the best trial from its rung is tuning going on, not a resume; stopped during that continuation
    and started again, the run did resume, past the rung, and says both."""
    spec, options = spec_for(backbone), {**SHORT, "max_steps": 6, "checkpoint_dir": str(tmp_path)}
    first = Phases()
    with pytest.raises(Cancelled):
        tuning.fit(
            create("prompt_tuning", spec, options),
            backbone,
            TRAIN,
            DEV,
            fixed=set(SHORT),
            progress=first,
            should_stop=lambda: any(c for _, c in first.tags),  # after the continuation's first step
        )
    again = Phases()
    tuned = tuning.fit(
        create("prompt_tuning", spec, options),
        backbone,
        TRAIN,
        DEV,
        fixed=set(SHORT),
        progress=again,
        should_stop=never_stop,
    )
    won = next(t for t in tuned.trials if t.continued)
    assert tuned.learned.metrics["continued_from_step"] == won.rung == 2
    assert tuned.learned.metrics["resumed_from_step"] == won.rung + 1  # where the stop left it
    assert again.phases[-1].endswith("from step 2 · training, resumed from step 3")


def test_options_the_user_set_are_never_tuned(backbone):
    fixed_lr = create("ptuning", spec_for(backbone), {**SHORT, "lr": 0.02})
    tuned = tuning.fit(fixed_lr, backbone, TRAIN, DEV, fixed={"lr"}, progress=no_progress, should_stop=never_stop)
    assert [t.options for t in tuned.trials] == [{"encoder": "lstm"}, {"encoder": "mlp"}, {"encoder": "none"}]
    assert tuned.method.config.lr == 0.02
    both = create("ptuning", spec_for(backbone), {**SHORT, "lr": 0.02, "encoder": "mlp"})
    plain = tuning.fit(
        both, backbone, TRAIN, DEV, fixed={"lr", "encoder"}, progress=no_progress, should_stop=never_stop
    )
    assert plain.report is None and plain.trials == [] and plain.method is both
    off = tuning.fit(
        create("prompt_tuning", spec_for(backbone), SHORT),
        backbone,
        TRAIN,
        DEV,
        enabled=False,
        progress=no_progress,
        should_stop=never_stop,
    )
    assert off.report is None


def test_every_trained_method_declares_what_it_tunes_and_untrained_ones_nothing(backbone):
    spec = spec_for(backbone)
    for name, cls in REGISTRY.items():
        dims = create(name, spec, {}).search_space(set())
        names = {k for d in dims for c in d.choices for k in c}
        assert (cls.trains and name != "linear_probe") == bool(dims), name  # the probe's L-BFGS has nothing to tune
        for d in dims:  # the method's current setting comes first, so ties keep the defaults
            config = create(name, spec, {}).config
            assert all(getattr(getattr(config, k), "value", getattr(config, k)) == v for k, v in d.choices[0].items())
        assert not cls.trains or name == "linear_probe" or names


def test_autoprompt_trades_candidates_for_iterations_within_its_budget(backbone):
    method = create("autoprompt", spec_for(backbone), {"num_candidates": 10, "max_steps": 40})
    (dim,) = method.search_space({"max_steps"})  # the global step budget does not pin the trade-off
    assert [c["num_candidates"] for c in dim.choices] == [10, 5, 20]
    assert all(c["num_candidates"] * c["max_steps"] == 400 for c in dim.choices)
    assert method.search_space({"num_candidates"}) == []


def test_the_choice_never_depends_on_the_test_split(backbone):
    """Tuning sees train and dev only: two runs that differ only in their test rows choose and score alike on dev."""
    test_a, test_b = keyword_data(8, 2), keyword_data(8, 3)
    flipped = LabeledDataset(test_b.records, tuple(1 - y for y in test_b.labels), test_b.label_names, "text", "label")
    spec = spec_for(backbone)
    unit = Unit("prompt_tuning", 0, dict(SHORT), tune=True)
    reports = []
    for test in (test_a, flipped):
        result = run_unit(backbone, Split(TRAIN, DEV, test, 0), spec, unit)
        reports.append(result["rows"][0]["tuning"])
    strip = [[{k: v for k, v in t.items() if k != "seconds"} for t in r["trials"]] for r in reports]
    assert strip[0] == strip[1] and reports[0]["chosen"] == reports[1]["chosen"]


def test_run_unit_stores_the_tuning_and_counts_it_as_training_time(backbone):
    small_dev = keyword_data(6, 1)
    split = Split(TRAIN, small_dev, keyword_data(8, 2), 0)
    unit = Unit("ptuning", 0, {**SHORT, "encoder": "none"}, tune=True)  # the encoder set: learning rates only
    result = run_unit(backbone, split, spec_for(backbone), unit)
    row = result["rows"][0]
    n_trials = len(row["tuning"]["trials"])
    assert 3 <= n_trials <= 5 and row["tuning"]["dev_too_small"] is True  # the grid, maybe extended past an edge
    assert row["train_seconds"] >= sum(t["seconds"] for t in row["tuning"]["trials"])
    # trials share each text's cached key/values; calibration adds the content-free inputs ("N/A", "", the mask)
    n_rows = len(TRAIN) + len(small_dev) + len(split.test) + len(CONTENT_FREE_INPUTS)
    assert row["prefix_cache_misses"] <= n_rows < row["prefix_cache_hits"]
    summary = summarize([result], dataset={}, split=split, backbone={})
    (m,) = summary["methods"]
    note = settings_note(m)
    assert note.startswith(f"tuned on dev: {row['tuning']['summary']}") and "only 6 rows" in note
    table = tuning_trials(m)
    assert len(table) == n_trials and table["chosen"].sum() == 1
    assert (table["compared at step"] < table["steps"]).tolist() == table["chosen"].tolist()  # the winner continued
    untuned = run_unit(backbone, split, spec_for(backbone), Unit("ptuning", 0, {**SHORT, "encoder": "none"}))
    assert untuned["rows"][0]["tuning"] is None


def test_cli_tunes_by_default_and_not_with_no_tune_or_a_set_lr(tmp_path):
    from core.cli import main
    from tests.tiny_models import save_tiny

    folder = save_tiny("gpt2", tmp_path / "gpt2")
    rows = [{"text": r["text"], "label": LABELS[y]} for r, y in zip(TRAIN.records, TRAIN.labels, strict=True)]
    pd.DataFrame(rows * 3).to_csv(tmp_path / "d.csv", index=False)
    common = ["compare", "--data", str(tmp_path / "d.csv"), "--backbone", str(folder), "--methods", "prompt_tuning"]
    common += ["--k-shot", "4", "--max-steps", "2", "--test-size", "8", "--verbalizer", json.dumps(VERBALIZER)]
    runs = {
        "default": [],
        "no-tune": ["--no-tune"],
        "lr set": ["--option", "prompt_tuning.lr=0.01"],
    }
    tuning_of = {}
    for name, extra in runs.items():
        assert main([*common, *extra, "--out", str(tmp_path / name)]) == 0
        (row,) = json.loads((tmp_path / name / "results.json").read_text())["methods"]
        tuning_of[name] = row["tuning"][0]
    assert 3 <= len(tuning_of["default"]["trials"]) <= 5 and tuning_of["default"]["n_dev"] == 8  # grid + extensions
    assert tuning_of["no-tune"] is None and tuning_of["lr set"] is None


def test_train_page_warns_before_launch_when_dev_is_too_small():
    assert small_dev_warning(15).startswith("Dev has only 15 rows") and small_dev_warning(16) is None


def test_a_trial_trailing_the_leader_at_its_look_stops_there_and_the_choice_stays(backbone, tmp_path):
    """A learning rate too small to learn trails the earlier trial's look (step 8 of a rung at 12) by more than two
    standard errors: it stops there, ranked below that trial, and the same grid tried in the other order (the small
    rate first, so nothing came before it to trail) chooses the same rate: the look saves steps, not choices."""
    options = {"max_steps": 36, "eval_every": 4, "batch_size": 8, "encoder": "lstm"}
    spec, dev = spec_for(backbone), keyword_data(32, 1)

    def tune(lr: float, factors: tuple[float, ...], folder: str) -> tuple[tuning.Tuned, int]:
        method = create("ptuning", spec, {**options, "lr": lr, "checkpoint_dir": str(tmp_path / folder)})
        method.lr_factors = factors
        count = StepCount()
        tuned = tuning.fit(method, backbone, TRAIN, dev, fixed=set(options), progress=count, should_stop=never_stop)
        return tuned, count.steps

    good = 0.03
    pruning, steps = tune(good, (1.0, 1e-6), "default-first")
    leader, small = pruning.trials[:2]
    assert tuning.look(create("ptuning", spec, options).config) == 8 and leader.look[0] == small.look[0] == 8
    assert small.pruned and small.steps == small.rung == 8 and not leader.pruned
    assert small.look[1] < leader.look[1] - tuning.look_margin(len(dev))
    assert small.key() < leader.key()
    won = next(t for t in pruning.trials if t.continued)
    assert steps == sum(t.steps for t in pruning.trials if not t.continued) + won.steps  # each stopped where it did
    plain, _ = tune(good * 1e-6, (1.0, 1e6), "small-first")
    assert not plain.trials[0].pruned  # the small rate ran first: nothing to trail
    assert pruning.report["chosen"]["lr"] == pytest.approx(plain.report["chosen"]["lr"])
