"""No wasted work in the loop: prompts tokenised once per run, training batches of similar length (still seeded)."""

from __future__ import annotations

import statistics

from core.engine.scoring import batch_scores, build_plan
from core.engine.templates import Template, Verbalizer
from core.engine.training import BatchOrder
from tests.tiny_models import tiny_backbone

LABELS = ("pos", "neg")


def test_a_plan_tokenises_each_prompt_once():
    bb = tiny_backbone("gpt2")
    verbalizer = Verbalizer.from_mapping({"pos": ["great", "very good"], "neg": ["bad"]}, LABELS)
    plan = build_plan(bb, Template.parse("{text} It was [MASK]"), verbalizer, LABELS)
    records = [{"text": "the movie was fun"}, {"text": "a bad plot"}, {"text": "good"}]
    first = batch_scores(bb, plan, records).detach()
    assert len(plan._rows) == len(records) * len(plan.groups)  # two word groups: "great"/"bad" and "very good"
    again = batch_scores(bb, plan, records[::-1]).detach()  # the next step: nothing new to render
    assert len(plan._rows) == len(records) * len(plan.groups)
    assert (again.flip(0) - first).abs().max() < 1e-6


def test_length_buckets_keep_epochs_complete_and_seeded_with_less_padding():
    lengths = [(i * 37) % 101 for i in range(64)]
    bucketed = BatchOrder(64, 8, seed=1, lengths=lengths)
    plain = BatchOrder(64, 8, seed=1)
    for epoch in range(3):
        batches = [bucketed.batch(epoch * 8 + m) for m in range(8)]
        assert sorted(i for b in batches for i in b) == list(range(64))  # every example once per epoch
    spread = statistics.mean(
        max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in (bucketed.batch(m) for m in range(8))
    )
    plain_spread = statistics.mean(
        max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in (plain.batch(m) for m in range(8))
    )
    assert spread < plain_spread / 3
    same = BatchOrder(64, 8, seed=1, lengths=lengths)
    other = BatchOrder(64, 8, seed=2, lengths=lengths)
    assert [same.batch(m) for m in range(20)] == [bucketed.batch(m) for m in range(20)]
    assert [other.batch(m) for m in range(8)] != [bucketed.batch(m) for m in range(8)]
