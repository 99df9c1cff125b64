"""Label scoring on tiny models of every family: exact against the full model, padding-invariant, multi-token."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from core.engine.scoring import (
    aggregate_labels,
    build_plan,
    calibrate,
    content_free_log_prior,
    score_records,
    target_logits,
)
from core.engine.templates import Template, Verbalizer, encode_batch

FAMILIES = ["bert", "roberta", "gpt2", "llama"]
RECORDS = [
    {"text": "a great movie"},
    {"text": "the plot was not good at all really boring and bad"},
    {"text": "fun"},
    {"text": "one two three four five six seven eight nine ten"},
]
LABELS = ["neg", "pos"]
VERB = Verbalizer.from_mapping({"pos": ["great", "very good"], "neg": ["bad"]}, LABELS)


def _full_logprobs(bb, ids: list[int]) -> torch.Tensor:
    with torch.inference_mode():
        return F.log_softmax(bb.model(input_ids=torch.tensor([ids])).logits[0].float(), -1)


@pytest.mark.parametrize("family", FAMILIES)
def test_target_logits_match_full_model(tiny, family):
    bb = tiny(family)
    t = Template.parse("{text} it was [MASK]")
    fill = [bb.mask_id] * 2 if bb.mask_id is not None else bb.tokenizer("very", add_special_tokens=False)["input_ids"]
    enc = encode_batch(bb, t, RECORDS, fill, 2)
    with torch.inference_mode():
        fast = target_logits(bb, enc)
        full = bb.model(input_ids=enc.input_ids, attention_mask=enc.attention_mask).logits
    rows = torch.arange(len(RECORDS)).unsqueeze(1)
    torch.testing.assert_close(fast, full[rows, enc.target_pos], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("family", FAMILIES)
def test_scores_do_not_depend_on_padding_or_batch_size(tiny, family):
    bb = tiny(family)
    plan = build_plan(bb, Template.parse("{text} it was [MASK]"), VERB, LABELS)
    together = score_records(bb, plan, RECORDS, batch_size=4)
    alone = torch.cat([score_records(bb, plan, [r], batch_size=1) for r in RECORDS])
    assert together.shape == (4, 2)
    torch.testing.assert_close(together, alone, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("family", ["bert", "llama"])
def test_multi_token_word_is_its_joint_log_probability(tiny, family):
    bb = tiny(family)
    tok = bb.tokenizer
    very, good = tok("very good", add_special_tokens=False)["input_ids"]
    verb = Verbalizer.from_mapping({"pos": ["very good"], "neg": ["bad"]}, LABELS)
    plan = build_plan(bb, Template.parse("{text} it was [MASK]"), verb, LABELS)
    got = score_records(bb, plan, [{"text": "fun"}])[0, 1].item()
    prompt = bb.prefix_ids + tok("fun it was", add_special_tokens=False)["input_ids"]
    if family == "bert":  # two masks, independent predictions at each
        lp = _full_logprobs(bb, prompt + [bb.mask_id, bb.mask_id] + bb.suffix_ids)
        want = lp[len(prompt), very] + lp[len(prompt) + 1, good]
    else:  # teacher forcing: p(very | prompt) * p(good | prompt very)
        lp = _full_logprobs(bb, prompt + [very])
        want = lp[len(prompt) - 1, very] + lp[len(prompt), good]
    assert got == pytest.approx(want.item(), abs=1e-4)


def test_mean_reduce_and_label_aggregation(tiny):
    bb = tiny("gpt2")
    t = Template.parse("{text} it was [MASK]")
    summed = score_records(bb, build_plan(bb, t, VERB, LABELS), RECORDS[:1])
    meaned = score_records(bb, build_plan(bb, t, VERB, LABELS, reduce="mean"), RECORDS[:1])
    assert summed[0, 0] == pytest.approx(meaned[0, 0].item())  # "bad" has one token: sum == mean
    assert not torch.isclose(summed[0, 1], meaned[0, 1])
    words = torch.log(torch.tensor([[0.2, 0.4, 0.1]]))
    agg = aggregate_labels(words, [1, 1, 0], 2)
    assert agg[0, 1].item() == pytest.approx(math.log(0.3)) and agg[0, 0].item() == pytest.approx(math.log(0.1))


def test_contextual_calibration_divides_by_content_free_prior(tiny):
    bb = tiny("llama")
    plan = build_plan(bb, Template.parse("{text} it was [MASK]"), VERB, LABELS)
    prior = content_free_log_prior(bb, plan, ["text"])
    raw_cf = score_records(bb, plan, [{"text": v} for v in ("N/A", "", "[MASK]")])
    assert prior.exp().tolist() == pytest.approx(F.softmax(raw_cf, -1).mean(0).tolist(), abs=1e-6)
    raw = score_records(bb, plan, RECORDS)
    cal = calibrate(raw, prior)
    torch.testing.assert_close(cal, F.log_softmax(raw, -1) - prior)
    # for a content-free input the calibrated label probabilities move toward uniform
    one = calibrate(raw_cf, prior).softmax(-1).mean(0)
    assert (one - 0.5).abs().max() <= (F.softmax(raw_cf, -1).mean(0) - 0.5).abs().max() + 1e-6


def test_scoring_is_gradient_free_when_only_scoring(tiny):
    bb = tiny("bert")
    plan = build_plan(bb, Template.parse("{text} it was [MASK]"), VERB, LABELS)
    out = score_records(bb, plan, RECORDS)
    assert not out.requires_grad
