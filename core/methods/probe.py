"""Head-only baseline: a logistic-regression probe on the frozen LM's representation at the label slot.

It answers "how much of the task is already linearly readable from the backbone", the classic fine-tuning floor,
with no prompt learning at all: the features are the LM head's input at [MASK] (masked LM) or at the last prompt
position (causal LM), under the user's first template; the classifier is fit by full-batch L-BFGS (the same probe
AutoPrompt's label-word search trains). The fine-tuning rows (`core/methods/finetune.py`, `lora.py`) train the
backbone as well; this one never changes it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from core.data import LabeledDataset
from core.engine.backbone import Backbone
from core.engine.evaluate import accuracy
from core.engine.templates import Template
from core.methods.autoprompt.label_search import slot_features, train_probe
from core.methods.base import LearnedPrompt, MethodBase
from core.progress import ProgressFn, StopFn


@dataclass
class ProbeConfig:
    template: str = field(
        default="",
        metadata={"help": "Template whose label-slot representation is probed; empty: your first template."},
    )
    weight_decay: float = field(default=1e-3, metadata={"help": "L2 penalty on the probe's weights."})
    steps: int = field(default=300, metadata={"help": "L-BFGS iterations (full batch)."})
    seed: int = field(default=0, metadata={"help": "Seed of the probe's initial weights."})

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, not {self.steps}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be 0 or more, not {self.weight_decay}")


class LinearProbe(MethodBase):
    name: ClassVar[str] = "linear_probe"
    label: ClassVar[str] = "Linear probe (head-only)"
    config_cls: ClassVar[type] = ProbeConfig
    trains: ClassVar[bool] = True

    def fit(
        self,
        backbone: Backbone,
        train: LabeledDataset,
        dev: LabeledDataset,
        *,
        progress: ProgressFn,
        should_stop: StopFn,
    ) -> LearnedPrompt:
        template = self.config.template or self.spec.templates[0]
        features = slot_features(backbone, Template.parse(template), train.records)
        progress(1, 2, {})
        weight, bias = train_probe(
            features,
            train.labels,
            len(self.spec.label_names),
            steps=self.config.steps,
            weight_decay=self.config.weight_decay,
            seed=self.config.seed,
        )
        learned = self.learned(
            backbone,
            template,
            tensors={"probe.weight": weight, "probe.bias": bias},
            metrics={"trainable_params": weight.numel() + bias.numel()},
        )
        dev_pred = self.scores(backbone, learned, dev.records).argmax(1).tolist() if len(dev) else []
        learned.metrics["dev_accuracy"] = accuracy(dev_pred, list(dev.labels)) if dev_pred else None
        progress(2, 2, {"dev_accuracy": learned.metrics["dev_accuracy"] or 0.0})
        return learned

    def expected_tensors(self, backbone: Backbone, learned: LearnedPrompt) -> dict[str, tuple[tuple[int, ...], Any]]:
        n = len(learned.label_names)
        return {"probe.weight": ((backbone.hidden_size, n), torch.float32), "probe.bias": ((n,), torch.float32)}

    def scores(self, backbone: Backbone, learned: LearnedPrompt, records: Sequence[Mapping[str, str]]) -> torch.Tensor:
        features = slot_features(backbone, Template.parse(learned.template), records)
        return F.log_softmax(features @ learned.tensors["probe.weight"] + learned.tensors["probe.bias"], dim=-1)
