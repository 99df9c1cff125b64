"""Calibration for every method, chosen on dev; and no method reads the test split before the final scoring.

Real runs on tiny random models (no mocks): the test split is a `LabeledDataset` whose rows raise on access until
the unit enters its test-scoring phase, and every registered method goes through `run_unit` with it.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from core.compare import Unit, method_options, prompt_spec, run_unit
from core.data import LabeledDataset, Split, load_dataset, split_dataset
from core.engine import calibration
from core.methods import create, method_class, method_names
from core.progress import SCORING
from core.prompts import artifacts
from core.prompts.predict import predict_records

VERB = {"positive": ["great"], "negative": ["terrible"]}
TEMPLATES = ("{text} it was [MASK]", "review : {text} sentiment : [MASK]")
FAST = {"autoprompt": {"num_candidates": 4, "n_triggers": 2}}  # a search that ends in seconds on a tiny model


class EarlyTestRead(AssertionError):
    """The test split was read before the final scoring phase."""


@dataclass(frozen=True)
class GuardedRows(LabeledDataset):
    """Rows that raise when read while `gate["open"]` is False (the gate opens when test scoring starts)."""

    gate: dict | None = None

    def __getattribute__(self, name: str):
        gate = object.__getattribute__(self, "gate")
        if name in ("records", "labels") and gate is not None and not gate["open"]:
            raise EarlyTestRead(f"test rows read ({name}) before the final scoring phase")
        return object.__getattribute__(self, name)


class PhaseWatch:
    """A phase-aware progress callback (as the job runner's) that opens the gate at the test-scoring phase."""

    def __init__(self, gate: dict):
        self.gate = gate

    def __call__(self, step: int, total: int, metrics) -> None:
        pass

    def phase(self, name: str) -> None:
        if name == SCORING:
            self.gate["open"] = True


@pytest.fixture
def split_spec(keyword_csv):
    ds = load_dataset(keyword_csv)
    split = split_dataset(ds, test_size=0.5, dev_size=0.25, seed=0)
    return split, prompt_spec(ds, TEMPLATES, VERB)


def guarded(split: Split) -> tuple[Split, dict]:
    gate = {"open": True}
    test = GuardedRows(
        records=split.test.records,
        labels=split.test.labels,
        label_names=split.test.label_names,
        text_col=split.test.text_col,
        label_col=split.test.label_col,
        gate=gate,
    )
    gate["open"] = False
    return Split(split.train, split.dev, test, split.seed), gate


@pytest.mark.parametrize("method", method_names())
def test_no_method_reads_the_test_split_before_final_scoring(tiny, split_spec, method):
    split, spec = split_spec
    safe, gate = guarded(split)
    with pytest.raises(EarlyTestRead):
        len(safe.test)  # the guard works
    options = {**method_options(method, None, max_steps=2), **FAST.get(method, {})}
    result = run_unit(tiny("gpt2"), safe, spec, Unit(method, 0, options, k_shot=4), progress=PhaseWatch(gate))
    assert gate["open"] and result["rows"][0]["n_test"] == len(split.test)  # scored, after the gate opened


@pytest.mark.parametrize("method", ["prompt_tuning", "linear_probe", "manual"])
def test_each_prompt_is_reported_the_way_that_wins_on_dev(tiny, split_spec, method, tmp_path):
    split, spec = split_spec
    bb = tiny("gpt2")
    options = method_options(method, None, max_steps=3)
    rows = run_unit(bb, split, spec, Unit(method, 0, options), out_dir=tmp_path)["rows"]
    for row in rows:
        cal = row["calibration"]
        dev, test = cal["dev_accuracy"], cal["test_accuracy"]
        assert cal["by"] == "dev" and set(dev) == set(test) == {"calibrated", "uncalibrated"}
        other = "uncalibrated" if cal["chosen"] == "calibrated" else "calibrated"
        assert dev[cal["chosen"]] >= dev[other]  # chosen on dev, whatever test says
        assert row["accuracy"] == test[cal["chosen"]] and row["dev_accuracy"] == dev[cal["chosen"]]
        saved = artifacts.load(row["artifact"])  # the file carries the choice: predictions reproduce the row's
        assert ("log_prior" in saved.state) == (cal["chosen"] == "calibrated")
        probs = predict_records(bb, saved, list(split.test.records))
        assert probs.argmax(1).tolist() == row["predictions"]


def test_a_learned_prompt_is_calibrated_through_its_own_soft_tokens(tiny, split_spec):
    split, spec = split_spec
    bb = tiny("gpt2")
    method = create("prompt_tuning", spec, method_options("prompt_tuning", None, max_steps=3))
    learned = method.fit(bb, split.train, split.dev, progress=lambda *a: None, should_stop=lambda: False)
    prior = calibration.log_prior(method, bb, learned, ["text"])
    assert prior.shape == (2,) and torch.isclose(prior.exp().sum(), torch.tensor(1.0))
    raw = method.scores(bb, learned, calibration.content_free_records(["text"]))
    assert torch.allclose(prior, torch.log_softmax(raw, -1).exp().mean(0).log(), atol=1e-5)
    calibrated = calibration.scores(method, bb, calibration.with_prior(learned, prior), split.dev.records)
    expected = torch.log_softmax(method.scores(bb, learned, split.dev.records), -1) - prior
    assert torch.allclose(calibrated, expected, atol=1e-5)


def test_the_majority_baseline_is_not_calibrated(tiny, split_spec):
    split, spec = split_spec
    assert not method_class("baseline").calibratable
    row = run_unit(tiny("gpt2"), split, spec, Unit("baseline", 0))["rows"][0]
    assert row["calibration"]["chosen"] == "uncalibrated" and row["calibration"]["by"] == "not calibratable"


@pytest.mark.parametrize("method", ["manual", "ptuning", "prompt_tuning"])
def test_dev_is_scored_once_the_fit_hands_its_dev_scores_on(tiny, split_spec, method):
    """The calibration choice reuses the dev scores the fit computed at its kept state: they are the raw scores a
    fresh scoring of dev gives (so reusing them changes nothing), for every prompt the unit reports."""
    split, spec = split_spec
    bb = tiny("gpt2")
    m = create(method, spec, method_options(method, None, max_steps=4))
    learned = m.fit(bb, split.train, split.dev, progress=lambda *a: None, should_stop=lambda: False)
    for prompt in [learned, *learned.variants]:
        assert prompt.dev_scores is not None and prompt.dev_scores.shape == (len(split.dev), 2)
        fresh = m.scores(bb, calibration.uncalibrated(prompt), split.dev.records)
        assert torch.allclose(prompt.dev_scores, fresh, atol=1e-5)
    assert "dev_scores" not in artifacts.manifest(learned)  # in memory only, never in a prompt file
