"""Prompt tuning (Lester et al. 2021, "The Power of Scale for Parameter-Efficient Prompt Tuning").

`n_tokens` soft tokens are prepended to the whole input — before the tokenizer's start tokens, as in the paper and
PEFT — and learned directly, with no encoder, while the backbone stays frozen. Initialised from the embeddings of
given words (e.g. the label words, as the paper suggests) or of sampled vocabulary tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from core.engine.backbone import Backbone
from core.engine.prompt_encoders import EncoderKind, PromptEncoder, init_vectors, word_list
from core.engine.templates import Template, with_soft_slots
from core.methods.base import LearnedPrompt
from core.methods.continuous import ContinuousConfig, ContinuousMethod, PromptModule, SoftTokens


@dataclass
class PromptTuningConfig(ContinuousConfig):
    lr: float = field(
        default=3e-2,
        metadata={
            "help": "Learning rate of the soft tokens (AdamW). Lester et al. use very large rates (0.3 with Adafactor)."
        },
    )
    max_steps: int = field(default=150, metadata={"help": "Optimizer steps."})
    n_tokens: int = field(default=20, metadata={"help": "Soft tokens prepended to the input."})
    init_words: str = field(
        default="",
        metadata={
            "help": "Comma-separated words whose embeddings initialise the soft tokens (cycled); empty: sampled "
            "vocabulary tokens."
        },
    )

    def __post_init__(self):
        super().__post_init__()
        if not 1 <= self.n_tokens <= 64:
            raise ValueError(f"n_tokens must be between 1 and 64, not {self.n_tokens}")


class PromptTuning(ContinuousMethod):
    name: ClassVar[str] = "prompt_tuning"
    label: ClassVar[str] = "Prompt tuning"
    config_cls: ClassVar[type] = PromptTuningConfig
    peft_type: ClassVar[str | None] = "PROMPT_TUNING"

    def default_template(self, backbone: Backbone, base: Template) -> str:
        return with_soft_slots(base, at_start=self.config.n_tokens)

    def build(self, backbone: Backbone, template: Template, n_labels: int, *, for_training: bool) -> PromptModule:
        cfg = self.config
        if not template.n_soft:
            raise ValueError(f"the prompt-tuning template {template.source!r} has no [P] slot; start it with [P*20]")
        init = None
        if for_training:
            gen = torch.Generator().manual_seed(cfg.seed)
            init = init_vectors(backbone, template.n_soft, words=word_list(cfg.init_words), generator=gen)
        encoder = PromptEncoder(template.n_soft, backbone.hidden_size, EncoderKind.NONE, init=init)
        return SoftTokens(encoder, template, len(backbone.prefix_ids))

    def peft_config(self, backbone: Backbone, learned: LearnedPrompt, common: dict[str, Any]) -> Any:
        from peft import PromptTuningConfig

        return PromptTuningConfig(**common)
