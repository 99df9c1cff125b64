"""Label-word search: the logistic probe on the label slot proposes the words the model predicts per class."""

from __future__ import annotations

import torch

from core.engine.scoring import build_plan
from core.engine.templates import Template, Verbalizer
from core.methods.autoprompt.label_search import propose_label_words, slot_features
from tests.tiny_models import tiny_backbone


def test_slot_features_on_a_masked_lm_are_the_head_input_at_the_mask():
    backbone = tiny_backbone("bert")
    template = Template.parse("{text} It was [MASK] .")
    records = [{"text": "a good movie"}, {"text": "the plot was bad and boring"}]
    feats = slot_features(backbone, template, records)
    assert feats.shape == (2, backbone.hidden_size)
    # the LM head applied to the features gives the logits at [MASK]
    ids = backbone.tokenizer([r["text"] + " It was [MASK] ." for r in records], padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = backbone.model(**ids).logits
    mask_at = (ids["input_ids"] == backbone.mask_id).nonzero()[:, 1]
    decoder = backbone.model.get_output_embeddings()
    torch.testing.assert_close(decoder(feats), logits[torch.arange(2), mask_at], atol=1e-4, rtol=1e-4)
    plan = build_plan(
        backbone, template, Verbalizer.from_mapping({"p": ["good"], "n": ["bad"]}, ["p", "n"]), ["p", "n"]
    )
    proposals = propose_label_words(backbone, plan, records, [0, 1], per_class=2)
    assert {len(v) for v in proposals.values()} == {2}
