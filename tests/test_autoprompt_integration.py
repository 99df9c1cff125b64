"""AutoPrompt on the real embedded backbone (SmolLM2-135M): prefix-cached scoring is exact, the found prompt
round-trips through its JSON artifact and predicts the same."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from core.data import LabeledDataset, load_dataset
from core.engine.scoring import batch_scores, build_plan
from core.engine.templates import Template, Verbalizer
from core.methods import create
from core.methods.autoprompt.trigger_search import TriggerScorer, candidate_filter
from core.methods.base import PromptSpec
from core.prompts import artifacts
from core.prompts.predict import predict_records

pytestmark = pytest.mark.integration
SAMPLES = Path(__file__).resolve().parent.parent / "data" / "samples"


def test_autoprompt_on_the_default_backbone(default_backbone, tmp_path):
    ds = load_dataset(SAMPLES / "movie_reviews.csv")
    rows = [i for lab in (0, 1) for i in [j for j, y in enumerate(ds.labels) if y == lab][:4]]
    small = ds.subset(rows)
    train: LabeledDataset = small.subset(list(range(0, 8, 2)))
    dev: LabeledDataset = small.subset(list(range(1, 8, 2)))
    verbalizer = Verbalizer.from_mapping({"positive": ["great"], "negative": ["terrible", "not good"]}, ds.label_names)
    spec = PromptSpec(templates=("{text} It was [MASK]",), verbalizer=verbalizer, label_names=tuple(ds.label_names))
    method = create(
        "autoprompt",
        spec,
        {"max_steps": 2, "num_candidates": 3, "batch_size": 2, "n_triggers": 2, "accumulation_steps": 1},
    )
    learned = method.fit(default_backbone, train, dev, progress=lambda *_: None, should_stop=lambda: False)
    assert learned.template == "{text} [T*2] [MASK]" and len(learned.state["trigger_ids"]) == 2
    assert all(w.isalpha() for w in learned.state["trigger_words"])

    # batched, prefix-cached candidate scores = the engine's plain scoring, on the real model (BPE, multi-token word)
    plan = build_plan(default_backbone, Template.parse(learned.template), verbalizer, list(ds.label_names))
    banned = candidate_filter(default_backbone, plan)
    tok = default_backbone.tokenizer
    assert banned[tok.convert_tokens_to_ids("ĠĊĠĠĠĠĠĠĠ")] and banned[tok.convert_tokens_to_ids("Ġgreat")]
    assert not banned[tok.convert_tokens_to_ids("Ġmovie")] and banned[tok.convert_tokens_to_ids("movie")]
    scorer = TriggerScorer(default_backbone, plan, dev.records[:2])
    cands = torch.tensor([learned.state["trigger_ids"], learned.state["trigger_ids"][::-1]])
    fast = scorer.scores(range(2), cands)
    with torch.inference_mode():
        slow = torch.stack(
            [batch_scores(default_backbone, plan, dev.records[:2], trigger_ids=c.tolist()) for c in cands]
        )
    torch.testing.assert_close(fast, slow, atol=2e-4, rtol=1e-4)

    loaded = artifacts.load(artifacts.save(learned, tmp_path, "ap"))
    before = torch.softmax(method.scores(default_backbone, learned, dev.records), -1)
    torch.testing.assert_close(predict_records(default_backbone, loaded, list(dev.records)), before)
