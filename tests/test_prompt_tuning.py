"""Prompt tuning (Lester et al.): soft tokens prepended to the whole input, no encoder, frozen backbone."""

from __future__ import annotations

import pytest
import torch

from core.methods import create
from core.methods.prompt_tuning import PromptTuningConfig
from core.progress import never_stop, no_progress
from tests.ptuning_helpers import accuracy, keyword_data, learnable_backbone, same_weights, spec_for, weights

TRAIN, DEV, TEST = keyword_data(32, 0), keyword_data(16, 1), keyword_data(64, 2)


@pytest.mark.parametrize(("family", "lr"), [("llama", 0.03), ("bert", 0.1), ("roberta", 0.03)])
def test_learns_keyword_task_with_frozen_backbone(family, lr):
    backbone = learnable_backbone(family)
    before = weights(backbone)
    method = create("prompt_tuning", spec_for(backbone), {"max_steps": 60, "eval_every": 20, "lr": lr, "n_tokens": 8})
    train_set, dev, test = (keyword_data(n, seed, n_filler=2) for n, seed in ((32, 0), (16, 1), (64, 2)))
    learned = method.fit(backbone, train_set, dev, progress=no_progress, should_stop=never_stop)
    acc = accuracy(method.scores(backbone, learned, test.records), test)
    assert acc >= 0.85, f"{family}: {acc}"
    assert same_weights(backbone, before)
    assert learned.template.startswith("[P*8] ")
    assert learned.trainable_params == 8 * backbone.hidden_size  # n x H, nothing else
    assert list(learned.tensors) == ["prompt.encoder.embedding.weight"]
    assert len(learned.state["nearest_tokens"]) == 8


def test_soft_tokens_come_before_the_start_token():
    backbone = learnable_backbone("llama")  # the tokenizer starts every input with <s>
    method = create("prompt_tuning", spec_for(backbone), {"n_tokens": 3})
    from core.engine.scoring import build_plan
    from core.engine.templates import Template, encode_batch

    template = Template.parse(method.template_for(backbone))
    module = method.build(backbone, template, 2, for_training=True)
    plan = build_plan(backbone, template, method.spec.verbalizer, method.spec.label_names)
    enc = encode_batch(backbone, template, [{"text": "alpha"}], plan.groups[0].fill, 1)
    embeds = module.embed(enc, backbone.embeddings(enc.input_ids))
    assert torch.equal(embeds[0, :3], module.vectors())
    assert torch.equal(embeds[0, 3], backbone.embeddings.weight[backbone.prefix_ids[0]])


def test_config_bounds():
    with pytest.raises(ValueError, match="n_tokens"):
        PromptTuningConfig(n_tokens=0)
