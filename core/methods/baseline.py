"""Majority-class baseline: the floor every prompt must beat."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch

from core.data import LabeledDataset
from core.engine.backbone import Backbone
from core.methods.base import LearnedPrompt, MethodBase
from core.progress import ProgressFn, StopFn


@dataclass
class MajorityConfig:
    """No options: the majority class of the training sample is predicted for every row."""


class MajorityBaseline(MethodBase):
    name: ClassVar[str] = "baseline"
    label: ClassVar[str] = "Majority class"
    config_cls: ClassVar[type] = MajorityConfig
    calibratable: ClassVar[bool] = False  # the same scores for every input: calibrating them only erases the answer

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
        return self.learned(backbone, "", state={"majority": int(majority)}, metrics={"trainable_params": 0})

    def check_state(self, learned: LearnedPrompt) -> None:
        majority = learned.state.get("majority")
        if isinstance(majority, bool) or not isinstance(majority, int) or not 0 <= majority < len(learned.label_names):
            raise ValueError(f"the majority label must be an index from 0 to {len(learned.label_names) - 1}")

    def scores(self, backbone: Backbone, learned: LearnedPrompt, records: Sequence[Mapping[str, str]]) -> torch.Tensor:
        out = torch.full((len(records), len(learned.label_names)), -1e4)
        out[:, learned.state["majority"]] = 0.0
        return out
