"""Manual prompts, the majority baseline and the comparison runner on a tiny model and a small CSV."""

from __future__ import annotations

import pytest
import torch

from core.compare import Unit, prompt_spec, run_unit, summarize
from core.data import load_dataset, split_dataset
from core.engine import calibration
from core.engine.evaluate import mcnemar_test, paired_bootstrap
from core.engine.templates import TemplateError
from core.methods import UnknownMethodError, create, method_names
from core.progress import Cancelled, never_stop
from core.prompts import artifacts

TEMPLATES = ("{text} it was [MASK]", "{text} overall the movie was [MASK]", "review : {text} sentiment : [MASK]")
VERB = {"positive": ["great"], "negative": ["terrible"]}


@pytest.fixture
def setup(keyword_csv):
    ds = load_dataset(keyword_csv)
    split = split_dataset(ds, test_size=0.5, dev_size=0.25, seed=0)
    return ds, split, prompt_spec(ds, TEMPLATES, VERB)


def test_registry_holds_manual_and_baseline():
    assert {"manual", "baseline"} <= set(method_names())
    with pytest.raises(UnknownMethodError, match="choose from"):
        create("nope", None)


def test_manual_reports_each_template_and_best_on_dev(tiny, setup):
    ds, split, spec = setup
    events = []

    class Recorder:  # a phase-aware progress callback, like the job runner's
        def __call__(self, *event):
            events.append(event)

        def phase(self, name):
            events.append(name)

    result = run_unit(tiny("gpt2"), split, spec, Unit("manual", 0), progress=Recorder())
    rows = result["rows"]
    assert len(rows) == 1 + len(TEMPLATES) and rows[0]["primary"]
    variants = rows[1:]
    assert [r["template"] for r in variants] == list(TEMPLATES)
    dev_accs = [r["calibration"]["dev_accuracy"]["calibrated"] for r in variants]  # templates are chosen calibrated
    assert rows[0]["template"] == TEMPLATES[dev_accs.index(max(dev_accs))]
    assert all(r["n_test"] == len(split.test) and 0 <= r["accuracy"] <= 1 for r in rows)
    # Choosing on dev counts templates; scoring the test split counts rows over the distinct prompts (the best on
    # dev is one of the templates, scored once), and ends at its total; then the files are saved.
    n_rows = len(TEMPLATES) * len(split.test)
    assert events[0] == "choosing on dev" and events[-1] == "saving the prompt files"
    assert [e[:2] for e in events[1:4]] == [(i + 1, len(TEMPLATES)) for i in range(len(TEMPLATES))]
    assert events[4] == "scoring the test split" and events[5][:2] == (0, n_rows)
    scoring = [e[0] for e in events[6:-1]]
    assert scoring == sorted(scoring) and scoring[-1] == n_rows and len(scoring) >= len(TEMPLATES)
    assert result["test_seconds"] > 0 and result["train_seconds"] > 0


def test_majority_baseline_predicts_the_train_majority(tiny, setup):
    _, split, spec = setup
    row = run_unit(tiny("bert"), split, spec, Unit("baseline", 0))["rows"][0]
    assert set(row["predictions"]) == {row["predictions"][0]}
    assert row["accuracy"] == pytest.approx(0.5) and row["trainable_params"] == 0


def test_summary_has_contract_fields_and_significance(tiny, setup, tmp_path):
    ds, split, spec = setup
    bb = tiny("gpt2")
    units = [run_unit(bb, split, spec, Unit(m, s), out_dir=tmp_path) for m in ("manual", "baseline") for s in (0, 1)]
    summary = summarize(units, dataset=ds.summary(), split=split, backbone=bb.describe())
    assert summary["dataset"]["seeds"] == [0, 1] and summary["reference"] == "Manual (best on dev)"
    names = [m["name"] for m in summary["methods"]]
    assert "Majority class" in names and len(names) == 2 + len(TEMPLATES)
    for row in summary["methods"]:
        for key in (
            "name",
            "template",
            "accuracy",
            "accuracy_std",
            "macro_f1",
            "n_test",
            "trainable_params",
            "train_seconds",
            "peak_memory_mb",
            "artifact",
        ):
            assert key in row
        assert row["n_seeds"] == 2 and row["peak_memory_mb"] > 0
    assert {s["method"] for s in summary["significance"]} == set(names) - {summary["reference"]}
    assert "versus_finetuning" not in summary  # no fine-tuning row ran: nothing to read the prompts against
    for s in summary["significance"]:
        assert 0 <= s["mcnemar"]["p_value"] <= 1
    saved = artifacts.load(summary["methods"][0]["artifact"])
    assert saved.method == "manual" and saved.template in TEMPLATES


def test_cancel_before_scoring_stops_manual(tiny, setup):
    _, split, spec = setup
    with pytest.raises(Cancelled):
        run_unit(tiny("gpt2"), split, spec, Unit("manual", 0), should_stop=lambda: True)
    assert never_stop() is False


def test_prompt_spec_checks_templates_against_columns(setup):
    ds, _, _ = setup
    with pytest.raises(TemplateError, match=r"\{title\}"):
        prompt_spec(ds, ["{title} [MASK]"], None)
    assert prompt_spec(ds, None, None).verbalizer.words == {"negative": ("negative",), "positive": ("positive",)}


@pytest.mark.parametrize("family", ["bert", "gpt2"])
def test_linear_probe_reads_the_label_from_frozen_features(tiny, setup, family, tmp_path):
    _, split, spec = setup
    bb = tiny(family)
    before = {k: v.clone() for k, v in bb.model.state_dict().items()}
    row = run_unit(bb, split, spec, Unit("linear_probe", 0), out_dir=tmp_path)["rows"][0]
    assert row["trainable_params"] == bb.hidden_size * 2 + 2
    assert row["accuracy"] >= 0.7  # chance is 0.5: the keyword that decides the label is linearly readable
    assert all(torch.equal(v, bb.model.state_dict()[k]) for k, v in before.items())  # backbone untouched
    loaded = artifacts.load(row["artifact"])
    method = create("linear_probe", spec, loaded.config)
    again = calibration.scores(method, bb, loaded, split.test.records)  # the file carries the calibration chosen
    assert again.argmax(1).tolist() == row["predictions"]


FEW_STEPS = {"max_steps": 4, "eval_every": 2}  # a tiny model, a few steps: the shape of the answer, not its quality


def test_prompts_are_read_against_the_fine_tuning_row_chosen_on_dev(tiny, setup):
    """`versus_finetuning` on real units: the fine-tuning row best on dev (ties: shorter training) is the reference,
    every other row its shares, ratio and paired significance — never picked by test accuracy."""
    ds, split, spec = setup
    bb = tiny("gpt2")
    units = [
        run_unit(bb, split, spec, Unit(m, s, FEW_STEPS if m != "manual" else {}))
        for m in ("manual", "prompt_tuning", "finetune", "lora")
        for s in (0, 1)
    ]
    summary = summarize(units, dataset=ds.summary(), split=split, backbone=bb.describe())
    against = summary["versus_finetuning"]
    tuned = {m["name"]: m for m in summary["methods"] if m["method"] in ("finetune", "lora")}
    best = max(tuned.values(), key=lambda m: (m["dev_accuracy"], -m["train_seconds"]))
    ref = against["reference"]
    assert ref["name"] == best["name"] and ref["accuracy"] == best["accuracy"]
    rows = {r["name"]: r for r in against["rows"]}
    assert set(rows) == {m["name"] for m in summary["methods"]} - {best["name"]}
    other = next(n for n in tuned if n != best["name"])
    assert rows[other]["fine_tunes"] and not rows["Prompt tuning"]["fine_tunes"]
    for m in summary["methods"]:
        if m["name"] in rows:
            row = rows[m["name"]]
            assert row["accuracy_share"] == pytest.approx(m["accuracy"] / best["accuracy"])
            assert row["params_share"] == pytest.approx(m["trainable_params"] / best["trainable_params"])
            assert row["time_ratio"] == pytest.approx(m["train_seconds"] / best["train_seconds"])
    # paired by seed and test row: both seeds' predictions against the reference's at the same seed
    pt = next(m for m in summary["methods"] if m["name"] == "Prompt tuning")
    pairs = {s: p for s, p in zip(best["seeds"], best["predictions"], strict=True)}
    mine = [p for s, preds in zip(pt["seeds"], pt["predictions"], strict=True) for p in preds]
    theirs = [p for s in pt["seeds"] for p in pairs[s]]
    gold = list(split.test.labels) * 2
    assert rows["Prompt tuning"]["mcnemar"] == mcnemar_test(mine, theirs, gold)
    assert rows["Prompt tuning"]["bootstrap"] == paired_bootstrap(mine, theirs, gold)
    assert summary["significance"] and summary["reference"] == "Manual (best on dev)"  # unchanged beside it

    def reference_when(dev: dict[str, float], seconds: dict[str, float]) -> str:
        """The reference after setting each fine-tuning unit's dev accuracy and training time."""
        for unit in units:
            for row in unit["rows"]:
                if row["method"] in dev:
                    row.update(dev_accuracy=dev[row["method"]], train_seconds=seconds[row["method"]])
        again = summarize(units, dataset=ds.summary(), split=split, backbone=bb.describe())
        return again["versus_finetuning"]["reference"]["method"]

    worse_on_test = min(tuned.values(), key=lambda m: m["accuracy"])["method"]
    better_on_test = "lora" if worse_on_test == "finetune" else "finetune"
    assert reference_when({worse_on_test: 0.9, better_on_test: 0.5}, {"finetune": 1.0, "lora": 1.0}) == worse_on_test
    assert reference_when({"finetune": 0.7, "lora": 0.7}, {"finetune": 9.0, "lora": 3.0}) == "lora"  # tie: faster
    assert reference_when({"finetune": 0.7, "lora": 0.7}, {"finetune": 2.0, "lora": 3.0}) == "finetune"
