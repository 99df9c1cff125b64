"""The method registry: the one place that maps a method name to its implementation.

Pages, the CLI and the compare runner look methods up here and never branch on their names. One module per way
of prompting behind `PromptMethod` (`base`); the trained soft prompts and fine-tuning references share
`continuous`'s fit; AutoPrompt's search is its own package (`autoprompt/`).

May import: the foundations, `core.data` and `core.engine`. Never prompt files, the comparison or a run.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from core.methods.autoprompt import AutoPrompt
from core.methods.base import LearnedPrompt, PromptMethod, PromptSpec, config_from_dict
from core.methods.baseline import MajorityBaseline
from core.methods.finetune import FineTune, PromptFineTune
from core.methods.lora import LoRA
from core.methods.manual import ManualPrompts
from core.methods.probe import LinearProbe
from core.methods.prompt_tuning import PromptTuning
from core.methods.ptuning import PTuning
from core.methods.ptuning_v2 import PTuningV2

REGISTRY: dict[str, type] = {
    cls.name: cls
    for cls in (
        ManualPrompts,
        AutoPrompt,
        MajorityBaseline,
        LinearProbe,
        PTuning,
        PTuningV2,
        PromptTuning,
        FineTune,
        PromptFineTune,
        LoRA,
    )
}


class UnknownMethodError(ValueError):
    pass


def method_names() -> list[str]:
    return list(REGISTRY)


def method_class(name: str) -> type:
    if name not in REGISTRY:
        raise UnknownMethodError(f"unknown method {name!r}; choose from: {', '.join(REGISTRY)}")
    return REGISTRY[name]


def method_order(names: Iterable[str]) -> list[str]:
    """Methods that fit nothing (manual, baseline) first, then trained ones; registry order within each."""
    index = {name: i for i, name in enumerate(REGISTRY)}
    return sorted(names, key=lambda n: (n in REGISTRY and REGISTRY[n].trains, index.get(n, len(index))))


def create(name: str, spec: PromptSpec, options: Mapping[str, Any] | None = None) -> PromptMethod:
    """Instantiate a method with its config built from user options (unknown options refused)."""
    cls = method_class(name)
    return cls(spec, config_from_dict(cls.config_cls, options, method=name))


def method_for(learned: LearnedPrompt) -> PromptMethod:
    """The method instance that scores a saved learned prompt (its spec and config come from the prompt)."""
    spec = PromptSpec(
        templates=(learned.template,) if learned.template else (),
        verbalizer=learned.verbalizer_obj(),
        label_names=tuple(learned.label_names),
    )
    return create(learned.method, spec, learned.config)


__all__ = [
    "REGISTRY",
    "LearnedPrompt",
    "PromptSpec",
    "UnknownMethodError",
    "create",
    "method_class",
    "method_for",
    "method_names",
    "method_order",
]
