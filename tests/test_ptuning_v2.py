"""P-tuning v2: per-layer prefixes through the model's cache API on BERT, GPT-2 and Llama; verbalizer or head."""

from __future__ import annotations

import pytest
import torch

from core.engine.prompt_encoders import PrefixEncoder, attention_shape
from core.methods import create
from core.methods.ptuning_v2 import PTuningV2Config, prefix_cache
from core.progress import never_stop, no_progress
from tests.ptuning_helpers import accuracy, keyword_data, learnable_backbone, same_weights, spec_for, weights

TRAIN, DEV, TEST = keyword_data(32, 0), keyword_data(16, 1), keyword_data(64, 2)
FAMILIES = ["bert", "gpt2", "llama"]


def hidden(backbone, ids, attn, pairs):
    n_prefix = pairs[0][0].shape[2]
    full = torch.cat([attn.new_ones(attn.shape[0], n_prefix), attn], dim=1)
    cache = prefix_cache(backbone.model.config, pairs)
    return backbone.model.base_model(
        inputs_embeds=backbone.embeddings(ids), attention_mask=full, past_key_values=cache, use_cache=False
    )[0]


@pytest.mark.parametrize("family", FAMILIES)
def test_prefix_reaches_every_layer_and_padding_stays_masked(family):
    backbone = learnable_backbone(family)
    layers, kv_heads, head_dim = attention_shape(backbone.model.config)
    torch.manual_seed(0)
    ids = torch.randint(10, 60, (2, 6))
    attn = torch.ones(2, 6, dtype=torch.long)
    attn[1, 3:] = 0
    pairs = [(torch.randn(2, kv_heads, 3, head_dim), torch.randn(2, kv_heads, 3, head_dim)) for _ in range(layers)]
    with torch.no_grad():
        base = hidden(backbone, ids, attn, pairs)
        other_pad = ids.clone()
        other_pad[1, 4] = 7
        assert torch.allclose(base[1, :3], hidden(backbone, other_pad, attn, pairs)[1, :3], atol=1e-5)
        for layer in range(layers):
            for slot in range(3):  # every prefix slot of every layer is attended
                changed = [(k.clone(), v.clone()) for k, v in pairs]
                changed[layer][1][:, :, slot] += 1.0
                assert not torch.allclose(base, hidden(backbone, ids, attn, changed))


def test_causal_prefix_equals_the_keys_and_values_of_real_tokens():
    """For a causal LM, a prefix holding the cached keys/values of tokens A gives the same output as A + B."""
    backbone = learnable_backbone("llama")
    ids = torch.randint(10, 60, (1, 7))
    with torch.no_grad():
        full = backbone.model.base_model(input_ids=ids, use_cache=False)[0]
        cache = backbone.model.base_model(input_ids=ids[:, :3], use_cache=True).past_key_values
        pairs = [(layer.keys, layer.values) for layer in cache.layers]
        tail = hidden(backbone, ids[:, 3:], torch.ones(1, 4, dtype=torch.long), pairs)
    assert torch.allclose(full[:, 3:], tail, atol=1e-5)


# On the tiny random causal models the prefixes learn the keyword task; on the tiny random BERT they do not reach
# it within a CI budget (its saturated attention dilutes the keyword once prefixes are attended), so BERT is
# checked for mechanics above and for a falling training loss below.
@pytest.mark.parametrize(
    ("family", "options"),
    [
        ("llama", {"lr": 0.02}),
        ("gpt2", {"lr": 0.02, "prefix_dropout": 0.0}),
        ("llama", {"lr": 0.02, "head": "linear"}),
    ],
)
def test_learns_keyword_task_with_frozen_backbone(family, options):
    backbone = learnable_backbone(family)
    train_set, dev, test = (keyword_data(n, seed, n_filler=2) for n, seed in ((32, 0), (16, 1), (64, 2)))
    before = weights(backbone)
    method = create("ptuning_v2", spec_for(backbone), {"max_steps": 60, "eval_every": 20, **options})
    learned = method.fit(backbone, train_set, dev, progress=no_progress, should_stop=never_stop)
    acc = accuracy(method.scores(backbone, learned, test.records), test)
    assert acc >= 0.8, f"{family} {options}: {acc}"
    assert same_weights(backbone, before)


@pytest.mark.parametrize("options", [{}, {"head": "linear", "projection": True, "projection_hidden": 32}])
def test_bert_prefix_training_lowers_the_loss(options):
    backbone = learnable_backbone("bert")
    method = create(
        "ptuning_v2",
        spec_for(backbone),
        {"max_steps": 30, "eval_every": 30, "lr": 0.02, "prefix_dropout": 0.0, "warmup_ratio": 0.0, **options},
    )
    learned = method.fit(backbone, TRAIN, DEV, progress=no_progress, should_stop=never_stop)
    losses = learned.state["losses"]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5


@pytest.mark.parametrize(
    ("options", "formula"),
    [
        ({}, lambda p, f, h, n: p * f),
        ({"head": "linear"}, lambda p, f, h, n: p * f + h * n + n),
        ({"projection": True, "projection_hidden": 24}, lambda p, f, h, n: p * h + (h * 24 + 24) + (24 * f + f)),
    ],
)
def test_trainable_parameter_count_matches_formula(options, formula):
    backbone = learnable_backbone("llama")  # grouped-query attention: 2 key/value heads of 4
    method = create("ptuning_v2", spec_for(backbone), {"max_steps": 1, "n_prefix": 5, **options})
    learned = method.fit(backbone, TRAIN, DEV, progress=no_progress, should_stop=never_stop)
    layers, kv_heads, head_dim = attention_shape(backbone.model.config)
    assert (layers, kv_heads, head_dim) == (2, 2, 8)
    assert learned.trainable_params == formula(5, layers * 2 * kv_heads * head_dim, backbone.hidden_size, 2)


def test_prefix_layout_matches_peft():
    enc = PrefixEncoder(3, 16, layers=2, kv_heads=2, head_dim=4)
    pairs = enc(batch_size=2)
    flat = enc.flat().view(3, 4, 2, 4)  # PEFT: view(P, 2L, heads, d) then layer i = rows 2i (keys), 2i+1 (values)
    assert pairs[1][0].shape == (2, 2, 3, 4)
    assert torch.equal(pairs[1][0][0], flat[:, 2].permute(1, 0, 2)) and torch.equal(
        pairs[1][1][1], flat[:, 3].permute(1, 0, 2)
    )


def test_config_rejects_bad_values_and_p_slots():
    with pytest.raises(ValueError, match="head must be one of"):
        PTuningV2Config(head="mlp")
    backbone = learnable_backbone("gpt2")
    method = create("ptuning_v2", spec_for(backbone), {"template": "{text} [P] It was [MASK]"})
    with pytest.raises(ValueError, match="remove them"):
        method.fit(backbone, TRAIN, DEV, progress=no_progress, should_stop=never_stop)
    assert create("ptuning_v2", spec_for(backbone, "{text} [P*2] It was [MASK]"), {}).template_for(backbone) == (
        "{text}  It was [MASK]"
    )
