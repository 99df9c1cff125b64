"""Option forms generated from the methods' config dataclasses, so no page has per-method code.

A config field becomes a form field by its type (bool, int, float, a `str` Enum as choices, str, anything else as
JSON) and its `metadata["help"]`. Settings the app sets for every method at once are hidden here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, dataclass, fields
from enum import Enum
from types import UnionType
from typing import Any, Union, get_args, get_origin, get_type_hints

from core.methods import REGISTRY
from core.methods.base import FIXED

# Set by the app (or tuning), not per method:
HIDDEN_OPTIONS = ("seed", "max_steps", "checkpoint_dir", "eval_from", "eval_look")
# ... unless a config marks the field `metadata={"per_method": True}`: then it is the method's own setting (AutoPrompt's
# search iterations are not the soft prompts' training steps), shown in its form and always sent with the request.
PER_METHOD = "per_method"
# The trained methods the Train page preselects beside what trains nothing: the design card's comparison of a manual,
# a discrete-searched and a continuous prompt (the first registered of each group; the queue runs them cheapest first).
PREFERRED_TRAINED = (("autoprompt",), ("ptuning", "prompt_tuning"))


# Option labels in words, with their units; a field not listed reads as its name with spaces.
LABELS = {
    "lr": "learning rate",
    "backbone_lr": "backbone learning rate",
    "weight_decay": "weight decay (AdamW)",
    "batch_size": "batch size (examples)",
    "eval_batch_size": "scoring batch size (examples)",
    "grad_accum": "gradient accumulation (batches per step)",
    "accumulation_steps": "gradient accumulation (batches per iteration)",
    "warmup_ratio": "warm-up (share of the steps)",
    "max_grad_norm": "gradient clipping (max norm, 0 = off)",
    "eval_every": "evaluate on dev every (steps, 0 = about 10 times)",
    "patience": "early stop after (dev evaluations without gain, 0 = never)",
    "min_steps_fraction": "early stop no sooner than (share of the steps)",
    "checkpoint_every": "checkpoint every (steps)",
    "bf16": "bf16 on a GPU",
    "tune_backbone": "also tune the backbone",
    "max_length": "max prompt length (tokens)",
    "n_tokens": "soft tokens (count)",
    "n_prefix": "prefix length (tokens per layer)",
    "n_triggers": "trigger tokens (count)",
    "num_candidates": "candidates per trigger slot",
    "beam_size": "beam size",
    "max_rows": "rows per search step",
    "label_words_per_class": "label words per class",
    "encoder_hidden": "encoder hidden size",
    "encoder_dropout": "encoder dropout (probability)",
    "encoder_anchor": "pull towards the start (penalty weight)",
    "init_from_template": "start from anchor + label words",
    "scale_encoder": "size the encoder to the training set",
    "use_label_words": "use searched label words (per class, 0: off)",
    "prefix_dropout": "prefix dropout (probability)",
    "projection_hidden": "projection hidden size",
    "steps": "training steps",
    "reduce": "multi-token label words: combine by",
    "calibrate": "calibrate (divide out the empty-input prior)",
}


@dataclass
class OptionField:
    """One field of a method's config dataclass, described for a generated form."""

    name: str
    kind: str  # bool | int | float | enum | str | json
    default: Any
    help: str = ""
    choices: tuple[str, ...] = ()
    optional: bool = False
    title: str = ""  # the config's own label for the field (metadata["label"]), else LABELS or the name
    per_method: bool = False  # a globally set option that this method sets itself

    @property
    def label(self) -> str:
        """The field in words, with its unit (what a form shows; the name stays in the help)."""
        return self.title or LABELS.get(self.name, self.name.replace("_", " "))


def config_fields(config_cls: type) -> list[OptionField]:
    """The form a config dataclass asks for: bool, int, float, str Enum (choices), str; anything else as JSON."""
    hints = get_type_hints(config_cls)
    out = []
    for f in fields(config_cls):
        per_method = bool(f.metadata.get(PER_METHOD))
        if (f.name in HIDDEN_OPTIONS and not per_method) or not f.init or f.metadata.get(FIXED):
            continue
        typ, optional = hints.get(f.name, str), False
        if get_origin(typ) in (Union, UnionType):
            args = [a for a in get_args(typ) if a is not type(None)]
            optional = len(args) < len(get_args(typ))
            typ = args[0] if len(args) == 1 else str
        if f.default is not MISSING:
            default = f.default
        elif f.default_factory is not MISSING:
            default = f.default_factory()
        else:
            default = None
        choices: tuple[str, ...] = ()
        if isinstance(typ, type) and issubclass(typ, Enum):
            kind, choices = "enum", tuple(str(m.value) for m in typ)
            default = default.value if isinstance(default, Enum) else default
        elif typ is bool:
            kind = "bool"
        elif typ is int:
            kind = "int"
        elif typ is float:
            kind = "float"
        elif typ is str:
            kind = "str"
        else:
            kind = "json"
        help_text, title = f.metadata.get("help", ""), f.metadata.get("label", "")
        out.append(OptionField(f.name, kind, default, help_text, choices, optional, title, per_method))
    return out


def changed_options(config_cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
    """Only the options that differ from the dataclass defaults (so global settings like max_steps still apply),
    plus a method's own value for a global setting even at its default (else the global one would replace it)."""
    fields_ = {f.name: f for f in config_fields(config_cls)}
    return {k: v for k, v in values.items() if k in fields_ and (fields_[k].per_method or v != fields_[k].default)}


def default_methods(device: str = "cpu") -> list[str]:
    """What the Train page preselects: every method that trains nothing (manual prompts, the majority class), then
    a discrete search and a continuous prompt (`PREFERRED_TRAINED`), so a newcomer sees all three kinds side by side
    (one trained prompt method when none of those is registered), plus the fine-tuning references where runs go to
    an accelerator (on a CPU they are the slowest rows by far: off)."""
    untrained = [n for n, cls in REGISTRY.items() if not cls.trains]
    trained = [n for n, cls in REGISTRY.items() if cls.trains and not cls.fine_tunes]
    preferred = [next(n for n in group if n in trained) for group in PREFERRED_TRAINED if set(group) & set(trained)]
    references = [n for n, cls in REGISTRY.items() if cls.fine_tunes] if device != "cpu" else []
    return untrained + (preferred or trained[:1]) + references
