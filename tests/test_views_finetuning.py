"""Compare's words on the papers' question: each prompt against the best fine-tuning row (shares, ratios,
significance), the verdict's line on it, and the cost/accuracy scatter's points."""

from __future__ import annotations

import math

import pytest

from core.app.views import (
    cost_points,
    finetuning_phrase,
    finetuning_table,
    finetuning_verdict,
    percent_text,
    provisional_verdict,
    times_text,
    verdict,
)


def against(name: str, method: str, acc: float, params: float, time: float, diff: float, p: float, **kw) -> dict:
    """A `versus_finetuning` row as core.compare.summarize writes it."""
    return {
        "name": name,
        "method": method,
        "primary": kw.get("primary", True),
        "fine_tunes": kw.get("fine_tunes", False),
        "accuracy": acc,
        "accuracy_share": acc / 0.85,
        "params_share": params,
        "time_ratio": time,
        "mcnemar": {"p_value": p},
        "bootstrap": {"diff": diff},
    }


def summary(*rows: dict) -> dict:
    """A finished comparison whose best fine-tuning row (on dev) is LoRA at 0.850 on test."""
    methods = [
        {"name": "Manual (best on dev)", "method": "manual", "template": "{text} It was [MASK]", "primary": True},
        {"name": "LoRA", "method": "lora", "template": "{text} It was [MASK]", "primary": True},
    ]
    for m in methods:
        m.update(accuracy=0.7, accuracy_std=0.0, dev_accuracy=0.7, n_seeds=1, trainable_params=0, train_seconds=1.0)
    return {
        "templates": ["{text} It was [MASK]"],
        "methods": methods,
        "reference": "Manual (best on dev)",
        "significance": [],
        "versus_finetuning": {
            "reference": {"name": "LoRA", "method": "lora", "accuracy": 0.85, "trainable_params": 50_000},
            "rows": list(rows),
        },
    }


def test_a_prompt_reads_as_a_share_of_fine_tunings_accuracy_and_cost() -> None:
    row = against("P-tuning v2", "ptuning_v2", 0.8245, 0.006, 0.4, -0.012, 0.41)
    assert finetuning_phrase(row) == (
        "P-tuning v2: 97 % of fine-tuning's accuracy with 0.6 % of its trainable parameters, 0.4× its training "
        "time; −0.012, not significant (p = 0.41)"
    )
    assert [percent_text(x) for x in (None, 0.0, 1e-7, 0.0123, 1.5)] == ["–", "0 %", "< 0.01 %", "1.2 %", "150 %"]
    assert [times_text(x) for x in (None, 0.001, 0.42, 2.0, 31.6)] == ["–", "< 0.01×", "0.42×", "2×", "32×"]


def test_the_table_has_every_cell_filled_prompts_first() -> None:
    table = finetuning_table(
        summary(
            against("Full fine-tune", "finetune", 0.84, 2.0, 1.1, -0.01, 0.8, fine_tunes=True),
            against("Majority class", "baseline", 0.5, 0.0, 0.0, -0.35, 1e-9),
            against("P-tuning v2", "ptuning_v2", 0.83, 0.006, 0.4, -0.02, 0.41),
            {**against("Manual #1: {text} It was [MASK]", "manual", 0.7, 0.0, 0.1, -0.15, 1e-4), "primary": False},
            {**against("Manual (best on dev)", "manual", 0.0, 0.0, 0.1, -0.85, 1e-9), "accuracy_share": None},
        )
    )
    assert list(table["prompt"]) == [
        "Majority class",
        "P-tuning v2",
        "Manual (best on dev)",
        "Manual #1: {text} It was [MASK]",
        "Full fine-tune (fine-tuning)",
    ]
    assert not table.isna().any().any()
    assert not table.astype(str).isin(["None", "nan", "NaN"]).any().any()
    assert list(table["significance"]) == [
        "significantly worse",
        "not significant",
        "significantly worse",
        "significantly worse",
        "not significant",
    ]
    assert table["accuracy_share"].iloc[2] == "–"  # a share of nothing is not a number
    assert finetuning_table({"methods": []}).empty


def test_the_verdict_says_which_prompt_is_as_good_and_cheaper() -> None:
    cheap = against("P-tuning v2", "ptuning_v2", 0.83, 0.006, 0.4, -0.012, 0.41)
    dearer = against("Prompt tuning", "prompt_tuning", 0.84, 0.004, 1.3, -0.01, 0.7)
    words = verdict(summary(cheap, dearer))
    assert words["finetuning"] == (
        "Against fine-tuning (LoRA, chosen on dev; test 0.850): P-tuning v2 is as good (−0.012, not significantly "
        "worse, p = 0.41) and cheaper (0.6 % of its trainable parameters, 0.4× its training time)."
    )
    assert words["headline"].startswith("Your template #1")  # the headline's winner is a prompt, not LoRA
    only_dearer = finetuning_verdict(summary(dearer))
    assert only_dearer == (
        "Against fine-tuning (LoRA, chosen on dev; test 0.850): no prompt method is both as good and cheaper; Prompt "
        "tuning is not significantly worse (p = 0.7) but takes 0.4 % of its trainable parameters, 1.3× its training "
        "time."
    )


def test_the_verdict_says_when_every_prompt_falls_significantly_short() -> None:
    majority = against("Majority class", "baseline", 0.5, 0.0, 0.0, 0.02, 0.9)  # not a prompt: never the answer
    other_tune = against("Full fine-tune", "finetune", 0.84, 2.0, 1.1, -0.01, 0.8, fine_tunes=True)
    short = [
        against("P-tuning v2", "ptuning_v2", 0.78, 0.006, 0.4, -0.07, 0.003),
        against("Manual (best on dev)", "manual", 0.7, 0.0, 0.1, -0.15, 1e-4),
        {**against("Manual #1", "manual", 0.86, 0.0, 0.1, 0.01, 0.8), "primary": False},  # chosen on test: not it
    ]
    assert finetuning_verdict(summary(majority, other_tune, *short)) == (
        "Against fine-tuning (LoRA, chosen on dev; test 0.850): every prompt method falls significantly short; the "
        "closest, P-tuning v2, by 0.070 (p = 0.003)."
    )
    assert finetuning_verdict(summary(majority, other_tune)) is None  # no prompt method to judge
    plain = summary()
    del plain["versus_finetuning"]
    assert finetuning_verdict(plain) is None and "finetuning" not in verdict(plain)


@pytest.mark.parametrize("n_seeds", [1, 3])
def test_the_scatter_has_a_point_per_method_on_a_log_axis(n_seeds: int) -> None:
    s = summary()
    for m in s["methods"]:
        m.update(n_seeds=n_seeds, accuracy_std=0.02)
    s["methods"][1].update(trainable_params=50_000, train_seconds=30.0)
    s["methods"].append({**s["methods"][0], "name": "Manual #1", "primary": False})
    points = cost_points(s)
    assert list(points["kind"]) == ["prompt", "fine-tuning"]  # one point per method: its row chosen on dev
    assert list(points["params_x"]) == [1, 50_000] and list(points["trainable_params"]) == [0, 50_000]
    assert min(points["seconds_x"]) > 0  # a log axis has no 0
    if n_seeds == 1:
        assert points["low"].isna().all() and set(points["spread"]) == {"n/a (1 seed)"}
    else:
        assert math.isclose(points["high"][0] - points["low"][0], 0.04)


def test_the_provisional_verdict_reads_the_prompts_while_fine_tuning_is_queued() -> None:
    """Fine-tuning runs last: until it lands the provisional verdict is about the prompts, says the references are
    still to come, and has no line on fine-tuning; a landed fine-tune is a reference, never the winner."""
    landed = summary()
    landed["methods"][1].update(dev_accuracy=0.9, accuracy=0.9)  # LoRA is better on dev and test: still no winner
    prompts_only = {**landed, "methods": landed["methods"][:1]}
    del prompts_only["versus_finetuning"]
    runs = [
        {"status": "succeeded", "method": "manual", "seed": 0, "started": 0.0, "finished": 10.0},
        {"status": "queued", "method": "lora", "seed": 0, "estimate": {"seconds": 600.0, "stages": []}},
    ]
    words = provisional_verdict(prompts_only, runs, now=20.0)
    assert words.startswith("Provisional — so far (1 of 2 runs scored): your template #1")
    assert words.endswith("LoRA queued, about 10 min.")
    assert "finetuning" not in verdict(prompts_only)
    assert verdict(landed)["headline"].startswith("Your template #1")
