"""P-tuning v1: soft tokens at [P] slots anywhere in the template, prompt encoders, learning, frozen backbone."""

from __future__ import annotations

import pytest
import torch

from core.engine.prompt_encoders import EncoderKind, PromptEncoder, init_vectors, nearest_tokens
from core.engine.scoring import build_plan
from core.engine.templates import Template, encode_batch
from core.methods import create
from core.methods.ptuning import PTuning, PTuningConfig, scaled_hidden
from core.progress import never_stop, no_progress
from tests.ptuning_helpers import (
    accuracy,
    keyword_data,
    learnable_backbone,
    same_weights,
    spec_for,
    weights,
)

TRAIN, DEV, TEST = keyword_data(32, 0), keyword_data(16, 1), keyword_data(64, 2)


def fit(backbone, method="ptuning", template=None, **options):
    m = create(method, spec_for(backbone, template), {"max_steps": 60, "eval_every": 20, **options})
    return m, m.fit(backbone, TRAIN, DEV, progress=no_progress, should_stop=never_stop)


# The LSTM encoder learns reliably on the tiny causal models; on the tiny random BERT only the free vectors do
# (with the encoders its success depends on the random weights' seed), so BERT is tested with encoder="none".
@pytest.mark.parametrize(
    ("family", "options"), [("llama", {"lr": 1e-2}), ("gpt2", {"lr": 1e-2}), ("bert", {"encoder": "none", "lr": 0.1})]
)
def test_learns_keyword_task_with_frozen_backbone(family, options):
    backbone = learnable_backbone(family)
    manual = create("manual", spec_for(backbone), {"calibrate": False})
    zero_shot = accuracy(
        manual.scores(backbone, manual.prompt_for(backbone, manual.spec.templates[0], ["text"]), TEST.records), TEST
    )
    before = weights(backbone)
    method, learned = fit(backbone, **options)
    acc = accuracy(method.scores(backbone, learned, TEST.records), TEST)
    assert zero_shot <= 0.7, f"the task should not be solvable zero-shot ({zero_shot})"
    assert acc >= 0.85, f"{family}: P-tuning reached only {acc} (zero-shot {zero_shot})"
    assert same_weights(backbone, before)
    assert all(p.grad is None for p in backbone.model.parameters())
    assert learned.template.count("[P") == 2  # anchors kept: "{text} [P*3] It was [P*2] [MASK]"
    assert learned.metrics["dev_accuracy"] is not None and len(learned.state["losses"]) == learned.metrics["steps"]


def lstm_params(n, dim, h):
    lstm = 2 * (4 * (h * dim + h * h + 2 * h)) + 2 * (4 * (h * 2 * h + h * h + 2 * h))  # 2 layers x 2 directions
    return n * dim + lstm + (2 * h * 2 * h + 2 * h) + (2 * h * dim + dim)


@pytest.mark.parametrize(
    ("encoder", "formula"),
    [
        ("lstm", lambda n, d, h: lstm_params(n, d, h)),
        ("mlp", lambda n, d, h: n * d + (d * h + h) + (h * h + h) + h * d + d),
        ("none", lambda n, d, h: n * d),
    ],
)
@pytest.mark.parametrize("hidden", [0, 8])
def test_trainable_parameter_count_matches_formula(encoder, formula, hidden):
    backbone = learnable_backbone("llama")
    _, learned = fit(backbone, encoder=encoder, max_steps=1, encoder_hidden=hidden, scale_encoder=True)
    n, dim = 5, backbone.hidden_size  # default template: 3 + 2 virtual tokens
    h = hidden or scaled_hidden(len(TRAIN), dim)  # 0: sized to the training set, and saved resolved
    assert learned.config["encoder_hidden"] == h
    _, fixed = fit(backbone, encoder=encoder, max_steps=1)  # the default: the fixed size (half/full model width)
    fixed_h = dim // 2 if encoder == "lstm" else dim
    assert fixed.config["encoder_hidden"] == 0 and fixed.trainable_params == formula(n, dim, fixed_h)
    assert learned.trainable_params == formula(n, dim, h)
    # the prompt file holds the encoder's output, the n virtual tokens, whatever the encoder trained
    assert {k: tuple(t.shape) for k, t in learned.tensors.items()} == {"prompt.encoder.embedding.weight": (n, dim)}


def test_encoder_size_scales_with_the_training_set():
    assert scaled_hidden(32, 576) == 32 < scaled_hidden(200, 576) == 200
    assert scaled_hidden(4, 576) == 16 and scaled_hidden(10_000, 576) == 288


def test_virtual_tokens_start_as_the_templates_anchor_and_label_words():
    backbone = learnable_backbone("llama")
    method = create("ptuning", spec_for(backbone), {"init_from_template": True})
    template = Template.parse("{text} [P*3] It was [P*2] [MASK]")
    words = method.init_words(template)
    assert words[:2] == ["It", "was"] and set(method.spec.verbalizer.words["positive"]) <= set(words)
    module = method.build(backbone, template, 2, for_training=True)
    expected = init_vectors(backbone, 5, words=words)
    assert torch.allclose(module.vectors().detach(), expected)  # residual encoder: starts exactly there
    off = create("ptuning", spec_for(backbone), {}).init_words(template)  # the default: sampled tokens
    assert off == []


def test_anchor_penalty_grows_as_the_tokens_drift_from_their_start():
    enc = PromptEncoder(3, 16, EncoderKind.NONE, init=torch.randn(3, 16), anchor=0.5)
    assert float(enc.penalty().detach()) == 0.0
    with torch.no_grad():
        enc.embedding.weight.add_(0.1)
    small = float(enc.penalty().detach())
    with torch.no_grad():
        enc.embedding.weight.add_(1.0)
    assert 0 < small < float(enc.penalty().detach())
    assert float(PromptEncoder(3, 16, EncoderKind.NONE, anchor=0.0).penalty()) == 0.0


def test_soft_tokens_land_at_every_p_slot_and_leading_ones_before_specials():
    backbone = learnable_backbone("bert")
    spec = spec_for(backbone, "[P*2] {text} [P] It was [MASK] .")
    method = PTuning(spec, PTuningConfig(encoder="none"))
    template = Template.parse(spec.templates[0])
    module = method.build(backbone, template, 2, for_training=True)
    plan = build_plan(backbone, template, spec.verbalizer, spec.label_names)
    enc = encode_batch(backbone, template, [{"text": "alpha the"}], plan.groups[0].fill, 1)
    embeds = module.embed(enc, backbone.embeddings(enc.input_ids))
    soft = module.vectors()
    assert torch.equal(embeds[0, 0], soft[0]) and torch.equal(embeds[0, 1], soft[1])  # before [CLS]
    assert torch.equal(embeds[0, 2], backbone.embeddings.weight[backbone.prefix_ids[0]])
    assert torch.equal(embeds[0, 5], soft[2])  # [CLS] P P alpha the P -> after the rotation: P P [CLS] alpha the P


def test_init_from_words_and_nearest_vocabulary_readout():
    backbone = learnable_backbone("llama")
    vecs = init_vectors(backbone, 3, words=["great", "movie"])
    ids = backbone.tokenizer("great movie great", add_special_tokens=False)["input_ids"]
    assert torch.equal(vecs, backbone.embeddings.weight[ids].detach())
    reading = nearest_tokens(backbone, vecs, k=2)
    assert [r[0][0] for r in reading] == ["great", "movie", "great"] and reading[0][0][1] == pytest.approx(1.0)
    _, learned = fit(backbone, encoder="none", init_words="good,bad", max_steps=1, lr=1e-6)
    assert [r[0][0] for r in learned.state["nearest_tokens"]] == ["good", "bad", "good", "bad", "good"]


def test_prompt_encoder_shapes():
    for kind in EncoderKind:
        enc = PromptEncoder(7, 16, kind, hidden=8)
        assert enc().shape == (7, 16)


def test_config_accepts_strings_and_rejects_bad_values():
    assert PTuningConfig(encoder="mlp", schedule="cosine").encoder is EncoderKind.MLP
    with pytest.raises(ValueError, match="encoder"):
        PTuningConfig(encoder="gru")
    with pytest.raises(ValueError, match="max_steps"):
        PTuningConfig(max_steps=0)


def test_tuned_backbone_is_stored_used_and_never_changes_the_shared_one():
    backbone = learnable_backbone("gpt2")
    before = weights(backbone)
    seen_during_training = []  # other sessions use the shared backbone while a run tunes its own copy

    def watch(step, total, metrics):
        seen_during_training.append(same_weights(backbone, before))

    method = create("ptuning", spec_for(backbone), {"max_steps": 5, "tune_backbone": True, "backbone_lr": 1e-2})
    learned = method.fit(backbone, TRAIN, DEV, progress=watch, should_stop=never_stop)
    assert seen_during_training and all(seen_during_training)
    assert same_weights(backbone, before)
    tuned = {k for k in learned.tensors if k.startswith("backbone.")}
    assert tuned and learned.trainable_params > backbone.num_parameters()
    frozen = method.module_for(backbone, learned)
    with_tuned = method.scores(backbone, learned, TEST.records[:8])
    without = PTuning(method.spec, method.config)._score(
        backbone,
        frozen,
        build_plan(backbone, Template.parse(learned.template), method.spec.verbalizer, method.spec.label_names),
        TEST.records[:8],
    )
    assert not torch.allclose(with_tuned, without)
    assert same_weights(backbone, before)
