"""P-tuning v1 ("GPT Understands, Too", Liu et al. 2021): trainable virtual tokens at the template's [P] slots.

The [P] slots may sit anywhere in the template, between real anchor words that stay ordinary tokens
(``{text} [P*3] It was [P*2] [MASK]``). The virtual tokens are produced by a prompt encoder — a 2-layer
bidirectional LSTM then Linear-ReLU-Linear as in the paper, an MLP, or none — and fed at the embedding layer. The
label is read at [MASK] for masked LMs and as the continuation for causal LMs (the shared scoring path). The
backbone is frozen unless `tune_backbone`, which trains it too with its own, much smaller, learning rate.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import torch

from core.config import choice
from core.data import LabeledDataset
from core.engine.backbone import Backbone
from core.engine.prompt_encoders import EncoderKind, PromptEncoder, init_vectors, word_list
from core.engine.templates import SlotKind, Template, with_soft_slots
from core.methods.base import Dimension, LearnedPrompt
from core.methods.continuous import (
    PROMPT_PREFIX,
    ContinuousConfig,
    ContinuousMethod,
    PromptModule,
    SoftTokens,
    fixed_tokens,
)


@dataclass
class PTuningConfig(ContinuousConfig):
    lr: float = field(
        default=3e-3,
        metadata={
            "help": "Learning rate of the prompt encoder (AdamW). Prompts take far larger rates than a tuned backbone."
        },
    )
    max_steps: int = field(default=150, metadata={"help": "Optimizer steps."})
    encoder: EncoderKind = field(
        default=EncoderKind.LSTM,
        metadata={
            "help": "Prompt encoder: 'lstm' (2-layer BiLSTM + MLP, as in the paper), 'mlp', or 'none' (free vectors)."
        },
    )
    encoder_hidden: int = field(
        default=0,
        metadata={
            "help": "Encoder hidden size (0: scale_encoder's size, else half the model width per LSTM direction, "
            "the model width for the MLP)."
        },
    )
    scale_encoder: bool = field(
        default=False,
        metadata={
            "help": "With encoder_hidden 0: size the encoder to the training set (one unit per example, 16 to half "
            "the model width) instead of the fixed size."
        },
    )
    encoder_dropout: float = field(
        default=0.0, metadata={"help": "Dropout on the encoder's output (and between the LSTM layers)."}
    )
    encoder_anchor: float = field(
        default=0.0,
        metadata={
            "help": "Weight of a penalty keeping the virtual tokens near their initial (real-word) embeddings "
            "(0: none)."
        },
    )
    init_from_template: bool = field(
        default=False,
        metadata={
            "help": "Initialise the virtual tokens from the template's anchor words and the label words (when "
            "init_words is empty); off: sampled vocabulary tokens."
        },
    )
    encoder_residual: bool = field(
        default=True,
        metadata={
            "help": "Start from the initial vectors: output = embedding + encoder(embedding), the encoder's last "
            "layer zero-initialised. Off: the paper's plain encoder output (a random start)."
        },
    )
    init_words: str = field(
        default="",
        metadata={
            "help": "Comma-separated words whose embeddings initialise the virtual tokens (cycled); empty: sampled "
            "vocabulary tokens."
        },
    )
    tokens_after_text: int = field(
        default=3, metadata={"help": "Default template only: virtual tokens right after the last text field."}
    )
    tokens_before_mask: int = field(
        default=2,
        metadata={"help": "Default template only: virtual tokens right before [MASK] (after the anchor words)."},
    )

    def __post_init__(self):
        super().__post_init__()
        self.encoder = choice(EncoderKind, self.encoder, "encoder")
        if self.tokens_after_text < 0 or self.tokens_before_mask < 0 or self.encoder_hidden < 0:
            raise ValueError("tokens_after_text, tokens_before_mask and encoder_hidden cannot be negative")
        if not 0 <= self.encoder_dropout < 1:
            raise ValueError(f"encoder_dropout must be in [0, 1), not {self.encoder_dropout!r}")


def scaled_hidden(n_train: int, width: int) -> int:
    """Encoder hidden size for `n_train` examples: one unit per example, at least 16, at most half the width."""
    return int(max(16, min(n_train, width // 2)))


def anchor_words(template: Template) -> list[str]:
    """The template's anchor text as words ("{text} [P*3] It was [P*2] [MASK]" -> ["It", "was"])."""
    return [
        w for p in template.pieces if p.kind is SlotKind.TEXT for w in p.value.split() if any(c.isalnum() for c in w)
    ]


class PTuning(ContinuousMethod):
    name: ClassVar[str] = "ptuning"
    label: ClassVar[str] = "P-tuning"
    config_cls: ClassVar[type] = PTuningConfig
    peft_type: ClassVar[str | None] = "P_TUNING"

    def default_template(self, backbone: Backbone, base: Template) -> str:
        cfg = self.config
        if cfg.tokens_after_text + cfg.tokens_before_mask == 0:
            raise ValueError("the P-tuning template has no [P] slot; raise tokens_after_text or tokens_before_mask")
        return with_soft_slots(base, after_fields=cfg.tokens_after_text, before_mask=cfg.tokens_before_mask)

    def search_space(self, fixed: Collection[str]) -> list[Dimension]:
        """The learning rate, then the encoder (the configured one first), each unless the user set it."""
        dims = super().search_space(fixed)
        if "encoder" not in fixed:
            kinds = [self.config.encoder, *(k for k in EncoderKind if k is not self.config.encoder)]
            dims.append(Dimension("encoder", tuple({"encoder": k.value} for k in kinds)))
        return dims

    def fit(self, backbone: Backbone, train: LabeledDataset, dev: LabeledDataset, **kw: Any) -> LearnedPrompt:
        """Fix the encoder size for this training set first, so the saved config rebuilds the same encoder."""
        if not self.config.encoder_hidden and self.config.scale_encoder:
            self.config = replace(self.config, encoder_hidden=scaled_hidden(len(train), backbone.hidden_size))
        return super().fit(backbone, train, dev, **kw)

    def init_words(self, template: Template) -> list[str]:
        """The words the virtual tokens start as: `init_words`, else the template's anchors and label words."""
        if self.config.init_words or not self.config.init_from_template:
            return word_list(self.config.init_words)
        return anchor_words(template) + [w for words in self.spec.verbalizer.words.values() for w in words]

    def encoder(self, n_tokens: int, dim: int, init: torch.Tensor | None = None) -> PromptEncoder:
        """The prompt encoder this config trains, for `n_tokens` virtual tokens of width `dim`."""
        cfg = self.config
        # 0: the fixed size (fit has already replaced 0 by the scaled size where scale_encoder is on)
        hidden = cfg.encoder_hidden or (dim // 2 if cfg.encoder is EncoderKind.LSTM else dim)
        return PromptEncoder(
            n_tokens,
            dim,
            cfg.encoder,
            hidden=hidden,
            dropout=cfg.encoder_dropout,
            residual=cfg.encoder_residual,
            init=init,
            anchor=cfg.encoder_anchor,
        )

    def build(self, backbone: Backbone, template: Template, n_labels: int, *, for_training: bool) -> PromptModule:
        if not template.n_soft:
            raise ValueError(f"the P-tuning template {template.source!r} has no [P] slot; add e.g. [P*3]")
        if not for_training:
            return fixed_tokens(backbone, template)  # the encoder's output is all scoring needs
        gen = torch.Generator().manual_seed(self.config.seed)
        init = init_vectors(backbone, template.n_soft, words=self.init_words(template), generator=gen)
        return SoftTokens(
            self.encoder(template.n_soft, backbone.hidden_size, init), template, len(backbone.prefix_ids)
        )

    def legacy_module(self, learned: LearnedPrompt) -> PromptModule | None:
        """Format 1 saved the encoder itself; its embedding's shape gives the virtual tokens and the width."""
        weight = learned.tensors.get(PROMPT_PREFIX + "encoder.embedding.weight")
        if self.config.encoder is EncoderKind.NONE or weight is None or weight.dim() != 2:
            return None  # the same layout as today's (or a broken file, which `check_fits` names)
        n_tokens, dim = weight.shape
        return SoftTokens(self.encoder(n_tokens, dim), Template.parse(learned.template), n_special=0)

    def peft_config(self, backbone: Backbone, learned: LearnedPrompt, common: dict[str, Any]) -> Any:
        from peft import PromptEncoderConfig

        lstm = learned.config.get("encoder", EncoderKind.LSTM.value) == EncoderKind.LSTM.value
        return PromptEncoderConfig(**common, encoder_reparameterization_type="LSTM" if lstm else "MLP")
