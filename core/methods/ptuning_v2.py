"""P-tuning v2 (Liu et al. 2022, "P-Tuning v2: Prompt Tuning Can Be Comparable to Fine-tuning Universally…").

Deep prompt tuning: trainable prefixes at *every* layer, seen by attention as extra keys/values. They reach the
model through its own cache API — a `transformers.DynamicCache` pre-filled with one (key, value) pair per layer and
passed as `past_key_values` — for BERT/RoBERTa (encoders), GPT-2 and Llama alike. Checked on transformers 5.x: the
BERT self-attention concatenates a given cache's keys/values even when `is_decoder` is False, and the 2-D attention
mask of length P + T is honoured (padding stays masked; every prefix slot is attended); positions shift by P as in
the reference implementation and PEFT. Options: reparameterisation MLP, prefix dropout, and either the verbalizer
(label word at [MASK] / as continuation) or a linear head on the [CLS] (masked LM) or last prompt token (causal LM).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar

import torch

from core.config import choice
from core.engine.backbone import Backbone, LMKind
from core.engine.prompt_encoders import PrefixEncoder, attention_shape
from core.engine.scoring import PromptHooks, ScoringPlan, batch_scores, prompt_hidden
from core.engine.templates import Template, encode_batch, without_soft_slots
from core.methods.base import LearnedPrompt, PeftExportError
from core.methods.continuous import PROMPT_PREFIX, ContinuousConfig, ContinuousMethod, PromptModule


class HeadKind(str, Enum):
    VERBALIZER = "verbalizer"
    LINEAR = "linear"


@dataclass
class PTuningV2Config(ContinuousConfig):
    lr: float = field(
        default=1e-2,
        metadata={
            "help": "Learning rate of the prefixes (and head). The paper uses 5e-3 to 1e-2 with a frozen backbone."
        },
    )
    max_steps: int = field(default=150, metadata={"help": "Optimizer steps."})
    n_prefix: int = field(default=16, metadata={"help": "Prefix length: virtual keys/values per layer."})
    projection: bool = field(
        default=False,
        metadata={"help": "Reparameterise the prefixes through a 2-layer MLP (Embedding -> Linear-Tanh-Linear)."},
    )
    projection_hidden: int = field(default=512, metadata={"help": "Hidden size of the reparameterisation MLP."})
    prefix_dropout: float = field(default=0.1, metadata={"help": "Dropout on the prefixes while training."})
    head: HeadKind = field(
        default=HeadKind.VERBALIZER,
        metadata={
            "help": "'verbalizer': label words scored at [MASK]; 'linear': a linear classifier on the [CLS] (masked "
            "LM) or last prompt token (causal LM)."
        },
    )

    def __post_init__(self):
        super().__post_init__()
        self.head = choice(HeadKind, self.head, "head")
        if not 1 <= self.n_prefix <= 256:
            raise ValueError(f"n_prefix must be between 1 and 256, not {self.n_prefix}")
        if not 0 <= self.prefix_dropout < 1:
            raise ValueError(f"prefix_dropout must be in [0, 1), not {self.prefix_dropout!r}")
        if self.projection_hidden < 1:
            raise ValueError(f"projection_hidden must be at least 1, not {self.projection_hidden}")


def prefix_cache(config, pairs: list[tuple[torch.Tensor, torch.Tensor]]):
    """A cache object holding the per-layer prefixes, in the installed transformers' API."""
    from transformers import DynamicCache

    try:
        return DynamicCache(ddp_cache_data=pairs, config=config)
    except TypeError:  # transformers 4.x before the `ddp_cache_data` keyword
        return DynamicCache.from_legacy_cache(tuple(pairs))


class DeepPrefix(PromptModule):
    """Prefixes at every layer, plus an optional linear head."""

    def __init__(self, prefix: PrefixEncoder, head: torch.nn.Linear | None, model_config: Any, dtype: torch.dtype):
        super().__init__()
        self.prefix, self.head = prefix, head
        self._config = model_config
        self._dtype = dtype

    def past(self, batch_size: int) -> tuple[object, int]:
        pairs = [(k.to(self._dtype), v.to(self._dtype)) for k, v in self.prefix(batch_size)]
        return prefix_cache(self._config, pairs), self.prefix.n_prefix

    def hooks(self) -> PromptHooks:
        return PromptHooks(prefix=self.past)

    def peft_weights(self) -> torch.Tensor:
        return self.prefix.flat()  # (P, layers * 2 * kv_heads * head_dim)

    def scoring_state(self) -> dict[str, torch.Tensor]:
        """The flat prefixes (the reparameterisation MLP's output, where there is one) and the head."""
        head = {f"head.{k}": v.detach() for k, v in self.head.state_dict().items()} if self.head is not None else {}
        return {"prefix.embedding.weight": self.prefix.flat().detach(), **head}

    def label_scores(
        self, backbone: Backbone, plan: ScoringPlan, records: Sequence[Mapping[str, str]]
    ) -> torch.Tensor:
        if self.head is None:
            return batch_scores(backbone, plan, records, hooks=self.hooks())
        masked = backbone.kind is LMKind.MASKED
        fill = [backbone.mask_id] if masked else []
        enc = encode_batch(backbone, plan.template, records, fill, 1, max_length=plan.max_length).to(backbone.device)
        hidden = prompt_hidden(backbone, enc, self.hooks())  # (B, T, H)
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        pos = torch.zeros_like(rows) if masked else enc.target_pos[:, 0]  # [CLS] / last prompt token
        return torch.log_softmax(self.head(hidden[rows, pos].float()), dim=-1)  # (B, n_labels)


class PTuningV2(ContinuousMethod):
    name: ClassVar[str] = "ptuning_v2"
    label: ClassVar[str] = "P-tuning v2"
    config_cls: ClassVar[type] = PTuningV2Config
    peft_type: ClassVar[str | None] = "PREFIX_TUNING"

    def template_for(self, backbone: Backbone) -> str:
        """v2 has no [P] slots: the config's template, else the user's first one with any [P] slots dropped."""
        return self.plain_template()

    def default_template(self, backbone: Backbone, base: Template) -> str:
        return without_soft_slots(base)

    def check_peft(self, backbone: Backbone, template: Template, learned: LearnedPrompt) -> None:
        if learned.config.get("head", HeadKind.VERBALIZER.value) != HeadKind.VERBALIZER.value:
            raise PeftExportError("PEFT prefix tuning has no place for the linear classification head")
        if backbone.kind is not LMKind.CAUSAL:
            raise PeftExportError("PEFT prefix tuning is exported for causal LMs only")

    def peft_config(self, backbone: Backbone, learned: LearnedPrompt, common: dict[str, Any]) -> Any:
        from peft import PrefixTuningConfig

        layers, kv_heads, head_dim = attention_shape(backbone.model.config)
        return PrefixTuningConfig(
            **common, num_layers=layers, num_attention_heads=kv_heads, token_dim=kv_heads * head_dim
        )

    def build(self, backbone: Backbone, template: Template, n_labels: int, *, for_training: bool) -> PromptModule:
        """Scoring takes the prefixes as they are: the reparameterisation MLP is built for training only."""
        if template.n_soft:
            raise ValueError(
                f"P-tuning v2 learns per-layer prefixes, not [P] slots; remove them from {template.source!r}"
            )
        cfg = self.config
        layers, kv_heads, head_dim = attention_shape(backbone.model.config)
        prefix = PrefixEncoder(
            cfg.n_prefix,
            backbone.hidden_size,
            layers,
            kv_heads,
            head_dim,
            projection=cfg.projection and for_training,
            projection_hidden=cfg.projection_hidden,
            dropout=cfg.prefix_dropout,
        )
        head = torch.nn.Linear(backbone.hidden_size, n_labels) if cfg.head is HeadKind.LINEAR else None
        return DeepPrefix(prefix, head, backbone.model.config, backbone.dtype)

    def legacy_module(self, learned: LearnedPrompt) -> PromptModule | None:
        """Format 1 saved the reparameterisation MLP; its tensors give the width and the flat prefix size (layers
        x keys/values x heads x head dim), all `flat()` needs: one layer of one head stands for them all."""
        if not self.config.projection:
            return None
        weight = learned.tensors.get(PROMPT_PREFIX + "prefix.embedding.weight")
        out = learned.tensors.get(PROMPT_PREFIX + "prefix.transform.2.weight")
        if weight is None or out is None or weight.dim() != 2 or out.dim() != 2:
            return None  # a broken file: `check_fits` names what is wrong
        prefix = PrefixEncoder(
            self.config.n_prefix,
            weight.shape[1],
            1,
            1,
            out.shape[0] // 2,  # flat = layers * 2 * heads * head dim
            projection=True,
            projection_hidden=self.config.projection_hidden,
        )
        return DeepPrefix(prefix, None, None, torch.float32)  # the head, if any, is kept as it is
