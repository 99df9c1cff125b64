"""Shared fixtures of the continuous-prompt tests: a keyword task and tiny backbones that can learn it.

The tiny models of `tests.tiny_models` are initialised with std 0.02, at which a 2-layer, 32-wide random network
passes almost no information from the input to the label scores (differences of ~1e-3), so nothing can be learned
through it. Re-drawing the weight matrices with std 0.2 keeps the model random — it still cannot solve the task
zero-shot — but lets a prompt steer it, which is what the tests need to see.
"""

from __future__ import annotations

import random

import torch

from core.data import LabeledDataset
from core.engine.backbone import Backbone, wrap
from core.engine.templates import Verbalizer
from core.methods.base import PromptSpec
from tests.tiny_models import build_model, build_tokenizer

torch.set_num_threads(1)  # tiny models: threads only contend on the shared CI machine

LABELS = ("negative", "positive")
VERBALIZER = {"negative": ["bad"], "positive": ["good"]}
FILLER = [
    "the",
    "a",
    "movie",
    "film",
    "story",
    "plot",
    "it",
    "was",
    "this",
    "that",
    "and",
    "of",
    "to",
    "in",
    "on",
    "with",
]


def learnable_backbone(family: str, *, seed: int = 0, std: float = 0.2) -> Backbone:
    tokenizer = build_tokenizer(family)
    model = build_model(family, len(tokenizer), seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=gen) * std)
    return wrap(model, tokenizer, f"tiny-{family}-learnable-{seed}")


def keyword_data(n: int, seed: int, *, n_filler: int = 5) -> LabeledDataset:
    """The label is decided by one keyword ('alpha' positive, 'omega' negative) at the start of filler text."""
    rng = random.Random(seed)
    records, labels = [], []
    for i in range(n):
        y = i % 2
        words = ["alpha" if y else "omega", *(rng.choice(FILLER) for _ in range(n_filler))]
        records.append({"text": " ".join(words)})
        labels.append(y)
    return LabeledDataset(tuple(records), tuple(labels), LABELS, "text", "label")


def template_for(backbone: Backbone) -> str:
    return "{text} It was [MASK]" if backbone.kind.value == "causal" else "{text} It was [MASK] ."


def spec_for(backbone: Backbone, template: str | None = None) -> PromptSpec:
    return PromptSpec((template or template_for(backbone),), Verbalizer.from_mapping(VERBALIZER, LABELS), LABELS)


def accuracy(scores: torch.Tensor, data: LabeledDataset) -> float:
    return float((scores.argmax(1) == torch.tensor(data.labels)).float().mean())


def weights(backbone: Backbone) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in backbone.model.state_dict().items()}


def same_weights(backbone: Backbone, before: dict[str, torch.Tensor]) -> bool:
    after = backbone.model.state_dict()
    return set(after) == set(before) and all(torch.equal(before[k], after[k]) for k in before)
