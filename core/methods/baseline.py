"""Majority-class baseline: the floor every prompt must beat."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch

from core.backbone import Backbone
from core.data import LabeledDataset
from core.methods.base import LearnedPrompt, ProgressFn, PromptSpec, StopFn, backbone_identity, config_to_dict


@dataclass
class MajorityConfig:
    """No options: the majority class of the training sample is predicted for every row."""


class MajorityBaseline:
    name: ClassVar[str] = "baseline"
    label: ClassVar[str] = "Majority class"
    config_cls: ClassVar[type] = MajorityConfig
    trains: ClassVar[bool] = False

    def __init__(self, spec: PromptSpec, config: MajorityConfig | None = None):
        self.spec = spec
        self.config = config or MajorityConfig()

    def fit(
        self,
        backbone: Backbone,
        train: LabeledDataset,
        dev: LabeledDataset,
        *,
        progress: ProgressFn,
        should_stop: StopFn,
    ) -> LearnedPrompt:
        counts = Counter(train.labels)
        majority = min(counts, key=lambda k: (-counts[k], k))  # ties broken by label order: deterministic
        progress(1, 1, {})
        return LearnedPrompt(
            method=self.name,
            template="",
            verbalizer=self.spec.verbalizer.to_dict(),
            label_names=list(self.spec.label_names),
            backbone=backbone_identity(backbone),
            config=config_to_dict(self.config),
            state={"majority": int(majority)},
            display_name=self.label,
            metrics={"trainable_params": 0},
        )

    def scores(self, backbone: Backbone, learned: LearnedPrompt, records: Sequence[Mapping[str, str]]) -> torch.Tensor:
        out = torch.full((len(records), len(learned.label_names)), -1e4)
        out[:, learned.state["majority"]] = 0.0
        return out
