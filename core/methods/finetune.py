"""Fine-tuning references: the whole backbone trained, the row every prompt-tuning paper reads its prompts against.

- `finetune`: standard fine-tuning — a linear classification head on the label-slot representation (the hidden
  state the LM head reads at [MASK], or at the last prompt token of a causal LM) under the user's first template,
  trained together with every backbone weight.
- `prompt_finetune`: prompt-based fine-tuning (LM-BFF, PET; the "fine-tuned LM" column of P-tuning's tables) — every
  backbone weight trained through the user's best manual template on dev, the verbalizer's label words as the
  classifier (so it is calibrated like any prompt).

Both train a private copy of the backbone (the shared one never changes), skip the frozen-prefix cache (the weights
change every step) and save the whole backbone in the prompt file. `check_backbone` refuses, before anything
trains, a device whose free memory cannot hold that copy with its gradients and AdamW's two moments, naming what
would fit (LoRA trains a few adapter matrices instead).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import torch

from core.data import LabeledDataset
from core.engine.backbone import Backbone, LMKind
from core.engine.scoring import ScoringPlan, prompt_hidden
from core.engine.templates import Template, encode_batch
from core.engine.training import ParamGroup
from core.methods.base import FIXED, Dimension, LearnedPrompt, lr_grid
from core.methods.continuous import (
    BACKBONE_PREFIX,
    ContinuousConfig,
    ContinuousMethod,
    PromptModule,
    private_backbone,
)
from core.methods.manual import best_manual
from core.progress import StopFn, never_stop
from core.resources import free_memory

ADAMW_BYTES_PER_PARAM = 8  # two fp32 moments
GRAD_BYTES_PER_PARAM = 4
HEADROOM = 1.25  # activations, the kept best state and the allocator's slack, on top of weights + grads + moments


@dataclass
class FineTuneConfig(ContinuousConfig):
    lr: float = field(default=1e-3, metadata={"help": "Learning rate of the classification head (AdamW)."})
    backbone_lr: float = field(
        default=3e-5,
        metadata={"help": "Learning rate of every backbone weight (AdamW); tuned on dev on a log grid around it."},
    )
    tune_backbone: bool = field(
        default=True, metadata={"help": "Fine-tuning trains every backbone weight.", FIXED: True}
    )
    max_steps: int = field(default=150, metadata={"help": "Optimizer steps."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay."})


@dataclass
class PromptFineTuneConfig(FineTuneConfig):
    lr: float = field(default=1e-3, metadata={"help": "Unused: the prompt has no weights of its own.", FIXED: True})


class SlotHead(PromptModule):
    """A linear classifier on the label slot's final hidden state: (B, H) -> (B, n_labels) log-scores."""

    def __init__(self, hidden: int, n_labels: int):
        super().__init__()
        self.head = torch.nn.Linear(hidden, n_labels)

    def label_scores(
        self, backbone: Backbone, plan: ScoringPlan, records: Sequence[Mapping[str, str]]
    ) -> torch.Tensor:
        fill = [backbone.mask_id] if backbone.kind is LMKind.MASKED else []
        enc = encode_batch(backbone, plan.template, records, fill, 1, max_length=plan.max_length).to(backbone.device)
        hidden = prompt_hidden(backbone, enc)  # (B, T, H)
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        slot = hidden[rows, enc.target_pos[:, 0]]  # (B, H): at [MASK], or the last prompt token (causal)
        return torch.log_softmax(self.head(slot.float()), dim=-1)


class NoPrompt(PromptModule):
    """The template as written: nothing trainable besides the backbone, label words scored as a manual prompt's."""


def memory_needed(n_params: int, param_bytes: int) -> int:
    """Bytes a full fine-tune adds on its device: the private copy, its gradients, AdamW's moments, with headroom."""
    return int(n_params * (param_bytes + GRAD_BYTES_PER_PARAM + ADAMW_BYTES_PER_PARAM) * HEADROOM)


def check_fits(method: str, backbone: Backbone, available: int | None = None) -> None:
    """Refuse (one line) a full fine-tune whose copy, gradients and optimizer state would not fit the device."""
    params = list(backbone.model.parameters())
    n = sum(p.numel() for p in params)
    have = free_memory(backbone.device) if available is None else available
    check_size(method, n, params[0].element_size() if params else 4, str(backbone.device), have)


def check_size(method: str, n_params: int, param_bytes: int, device: str, available: int) -> None:
    """Refuse (one line) a full fine-tune of `n_params` weights that `available` bytes on `device` cannot hold."""
    need = memory_needed(n_params, param_bytes)
    if need > available:
        gib = 2**30
        raise ValueError(
            f"{method} needs about {need / gib:.1f} GiB free on {device} for the backbone's "
            f"{n_params / 1e6:.0f}M weights, their gradients and AdamW's state, and {available / gib:.1f} GiB is "
            "free; run lora instead (a few adapter matrices), or a prompt method"
        )


class FineTuneBase(ContinuousMethod):
    """What both full fine-tunes share: every backbone weight trains, on dev-tuned `backbone_lr`."""

    fine_tunes: ClassVar[bool] = True
    peft_type: ClassVar[str | None] = None

    def check_backbone(self, backbone: Backbone) -> None:
        check_fits(self.name, backbone)

    def check_memory(self, n_params: int, param_bytes: int, device: str, available: int) -> None:
        check_size(self.name, n_params, param_bytes, device, available)

    def search_space(self, fixed: Collection[str]) -> list[Dimension]:
        """The backbone's learning rate, on a log grid around the config's, unless the user set it."""
        return (
            [] if "backbone_lr" in fixed else [lr_grid(self.config.backbone_lr, self.lr_factors, name="backbone_lr")]
        )

    def training_backbone(self, backbone: Backbone) -> tuple[Backbone, ParamGroup | None]:
        private = private_backbone(backbone)
        weights = {BACKBONE_PREFIX + k: p for k, p in private.model.named_parameters()}
        return private, ParamGroup(weights, self.config.backbone_lr, self.config.weight_decay)


class FineTune(FineTuneBase):
    name: ClassVar[str] = "finetune"
    label: ClassVar[str] = "Fine-tuning"
    config_cls: ClassVar[type] = FineTuneConfig

    def template_for(self, backbone: Backbone) -> str:
        """The config's template, else the user's first one with any [P] slots dropped: the head reads its slot."""
        return self.plain_template()

    def build(self, backbone: Backbone, template: Template, n_labels: int, *, for_training: bool) -> PromptModule:
        if template.n_soft:
            raise ValueError(
                f"fine-tuning reads the label slot of a plain template; remove the [P] slots of {template.source!r}"
            )
        return SlotHead(backbone.hidden_size, n_labels)


class ThroughTemplate(ContinuousMethod):
    """A method that trains the backbone (all of it, or adapters) through the user's best manual template on dev and
    the verbalizer: no prompt weights of its own, the label words' scores as the classifier."""

    def fit(self, backbone: Backbone, train: LabeledDataset, dev: LabeledDataset, **kw: Any) -> LearnedPrompt:
        """Fix the template first (the best manual one on dev), so the saved config names the prompt trained."""
        if not self.config.template:
            self.config = replace(self.config, template=chosen_template(self, backbone, dev, kw.get("should_stop")))
        return super().fit(backbone, train, dev, **kw)

    def template_for(self, backbone: Backbone) -> str:
        return self.plain_template()  # the template `fit` chose on dev, once it has

    def build(self, backbone: Backbone, template: Template, n_labels: int, *, for_training: bool) -> PromptModule:
        if template.n_soft:
            raise ValueError(f"{self.label} trains a plain template; remove the [P] slots of {template.source!r}")
        return NoPrompt()


def chosen_template(method: ContinuousMethod, backbone: Backbone, dev: LabeledDataset, stop: StopFn | None) -> str:
    """The user's manual template best on dev (zero-shot, as the manual row chooses), else their first one."""
    best = best_manual(method.spec, backbone, dev, stop or never_stop, reduce=method.config.reduce)
    return best.template if best is not None else method.plain_template()


class PromptFineTune(ThroughTemplate, FineTuneBase):
    name: ClassVar[str] = "prompt_finetune"
    label: ClassVar[str] = "Prompt fine-tuning"
    config_cls: ClassVar[type] = PromptFineTuneConfig
