"""The method interface every way of prompting implements, and the learned prompt it produces.

A method is built from a `PromptSpec` (the user's templates and verbalizer) and its own config dataclass; `fit`
turns train/dev data into a `LearnedPrompt`, and `scores` turns a learned prompt plus records into
[n_examples, n_labels] label log-scores. The engine (compare runner, jobs, CLI, pages) only ever talks to this.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, Protocol

import torch

from core.backbone import Backbone
from core.data import LabeledDataset
from core.progress import ProgressFn, StopFn
from core.templates import Template, Verbalizer


@dataclass(frozen=True)
class PromptSpec:
    """What the user wrote: one or more templates and a verbalizer (label -> words)."""

    templates: tuple[str, ...]
    verbalizer: Verbalizer
    label_names: tuple[str, ...]

    def parsed(self) -> list[Template]:
        return [Template.parse(t) for t in self.templates]


@dataclass
class LearnedPrompt:
    """What `fit` returns and an artifact file stores: enough to score new data on the same backbone.

    tensors: learned weights (soft prompts, encoders, prefixes), saved as safetensors. state: JSON-able method
    state (trigger tokens, calibration prior, majority label). variants: extra prompts to report side by side
    (e.g. every manual template), each a full LearnedPrompt of its own.
    """

    method: str
    template: str
    verbalizer: dict[str, list[str]]
    label_names: list[str]
    backbone: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)
    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    display_name: str = ""
    variants: list[LearnedPrompt] = field(default_factory=list)

    @property
    def trainable_params(self) -> int:
        return int(self.metrics.get("trainable_params", sum(t.numel() for t in self.tensors.values())))

    def verbalizer_obj(self) -> Verbalizer:
        return Verbalizer.from_mapping(self.verbalizer, self.label_names)


class PeftExportError(ValueError):
    """The prompt has no PEFT equivalent; the message says why."""


class PromptMethod(Protocol):
    name: ClassVar[str]
    label: ClassVar[str]
    config_cls: ClassVar[type]
    trains: ClassVar[bool]  # fits weights or searches (queued after the methods that only evaluate)
    peft_type: ClassVar[str | None]  # the PEFT method that can express this one's prompts, if any

    def fit(
        self,
        backbone: Backbone,
        train: LabeledDataset,
        dev: LabeledDataset,
        *,
        progress: ProgressFn,
        should_stop: StopFn,
    ) -> LearnedPrompt: ...

    def scores(
        self, backbone: Backbone, learned: LearnedPrompt, records: Sequence[Mapping[str, str]]
    ) -> torch.Tensor: ...

    def peft_adapter(self, backbone: Backbone, learned: LearnedPrompt) -> tuple[Any, torch.Tensor]: ...


class MethodBase:
    """What every method shares: its spec and config, and how it wraps a result into a LearnedPrompt."""

    name: ClassVar[str]
    label: ClassVar[str]
    config_cls: ClassVar[type]
    trains: ClassVar[bool] = False
    peft_type: ClassVar[str | None] = None

    def __init__(self, spec: PromptSpec, config: Any = None):
        self.spec = spec
        self.config = config or self.config_cls()

    def peft_adapter(self, backbone: Backbone, learned: LearnedPrompt) -> tuple[Any, torch.Tensor]:
        """(PEFT config, `prompt_embeddings`) expressing the prompt in PEFT, or PeftExportError naming why not."""
        raise PeftExportError(f"method {self.name!r} has no PEFT equivalent")

    def learned(self, backbone: Backbone, template: str, **fields: Any) -> LearnedPrompt:
        """A LearnedPrompt of this method on this backbone; `fields` sets state, tensors, metrics and the like."""
        return LearnedPrompt(
            method=self.name,
            template=template,
            verbalizer=self.spec.verbalizer.to_dict(),
            label_names=list(self.spec.label_names),
            backbone=backbone_identity(backbone),
            config=config_to_dict(self.config),
            **{"display_name": self.label, **fields},
        )


def config_to_dict(config: Any) -> dict[str, Any]:
    return {k: (v.value if hasattr(v, "value") else v) for k, v in asdict(config).items()}


def config_from_dict(config_cls: type, values: Mapping[str, Any] | None) -> Any:
    """Build a config dataclass from user values, refusing unknown keys with a one-line message."""
    values = dict(values or {})
    known = {f.name for f in fields(config_cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown option {unknown[0]!r} for {config_cls.__name__}; known: {', '.join(sorted(known))}")
    return config_cls(**values)


def backbone_identity(backbone: Backbone) -> dict[str, Any]:
    return {
        "name": backbone.name,
        "spec": backbone.spec,
        "fingerprint": backbone.fingerprint,
        "kind": backbone.kind.value,
    }
