"""The method interface every way of prompting implements, and the learned prompt it produces.

A method is built from a `PromptSpec` (the user's templates and verbalizer) and its own config dataclass; `fit`
turns train/dev data into a `LearnedPrompt`, and `scores` turns a learned prompt plus records into
[n_examples, n_labels] label log-scores. The engine (compare runner, jobs, CLI, pages) only ever talks to this.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from enum import Enum
from types import UnionType
from typing import Any, ClassVar, Protocol, Union, get_args, get_origin, get_type_hints

import torch

from core.data import LabeledDataset
from core.engine.backbone import Backbone
from core.engine.templates import Template, Verbalizer
from core.progress import ProgressFn, StopFn


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

    tensors: what scoring needs (soft tokens, per-layer prefixes, a head; an encoder's output, never the encoder),
    saved as safetensors. state: JSON-able method state (trigger tokens, calibration prior, majority label).
    variants: extra prompts to report side by side (e.g. every manual template), each a full LearnedPrompt of its own.
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
    # Raw (uncalibrated) label scores of the dev rows at the kept state, as `fit` computed them choosing it; in
    # memory only (never saved), so the calibrated-or-not choice on dev does not score dev a second time.
    dev_scores: torch.Tensor | None = field(default=None, repr=False, compare=False)

    @property
    def trainable_params(self) -> int:
        return int(self.metrics.get("trainable_params", sum(t.numel() for t in self.tensors.values())))

    def verbalizer_obj(self) -> Verbalizer:
        return Verbalizer.from_mapping(self.verbalizer, self.label_names)


@dataclass(frozen=True)
class Dimension:
    """One setting (or a few tied together) worth tuning on dev: alternative option sets, the current one first.

    A numeric log grid may `extend` past its edges: when the best choice so far is the grid's largest (smallest)
    value, one more point `ratio` times beyond it is tried, up to `extend` times. A grid whose edge keeps winning
    has not bracketed the optimum (a short step budget wants a larger learning rate than the default's grid holds).
    """

    name: str
    choices: tuple[dict[str, Any], ...]
    extend: int = 0
    ratio: float = 1.0

    @property
    def extends(self) -> bool:
        """Whether this dimension is a log grid that may extend past its edges at all."""
        return self.extend > 0 and self.ratio > 1.0

    def beyond(self, tried: Sequence[dict[str, Any]], best: dict[str, Any]) -> dict[str, Any] | None:
        """The next point past the edge `best` sits on among `tried` (this dimension's choices so far), or None
        when `best` is inside the grid, the dimension does not extend, or its extensions are used up."""
        if not self.extends or len(tried) - len(self.choices) >= self.extend:
            return None
        values = [c[self.name] for c in tried]
        value = best[self.name]
        if value == max(values):
            return {self.name: float(f"{value * self.ratio:.3g}")}
        if value == min(values):
            return {self.name: float(f"{value / self.ratio:.3g}")}
        return None


def lr_grid(lr: float, factors: Sequence[float], extend: int = 2, name: str = "lr") -> Dimension:
    """A learning-rate dimension of option `name`: `lr` times each factor (a log grid), in the factors' order,
    extending past whichever edge wins by the grid's own step (at most `extend` more points)."""
    points = sorted(factors)
    ratio = points[1] / points[0] if len(points) > 1 else 1.0
    return Dimension(name, tuple({name: float(f"{lr * f:.3g}")} for f in factors), extend, ratio)


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

    def peft_adapter(self, backbone: Backbone, learned: LearnedPrompt) -> tuple[Any, dict[str, torch.Tensor]]: ...

    def run_key(self, backbone: Backbone, template: str, train_set: LabeledDataset) -> str: ...


class MethodBase:
    """What every method shares: its spec and config, and how it wraps a result into a LearnedPrompt."""

    name: ClassVar[str]
    label: ClassVar[str]
    config_cls: ClassVar[type]
    trains: ClassVar[bool] = False
    peft_type: ClassVar[str | None] = None
    data_parallel: ClassVar[bool] = False  # fit can split its batches across processes (core.distributed)
    calibratable: ClassVar[bool] = True  # its scores depend on the input, so content-free calibration means something
    zero_shot: ClassVar[bool] = False  # learns nothing from train rows: one K stands for all on a learning curve
    fine_tunes: ClassVar[bool] = False  # a fine-tuning reference (changes the backbone): prompts are read against it

    def __init__(self, spec: PromptSpec, config: Any = None):
        self.spec = spec
        self.config = config or self.config_cls()

    def peft_adapter(self, backbone: Backbone, learned: LearnedPrompt) -> tuple[Any, dict[str, torch.Tensor]]:
        """(PEFT config, the tensors PEFT saves: `prompt_embeddings`, LoRA's matrices) expressing the prompt in PEFT,
        or PeftExportError naming why not."""
        raise PeftExportError(f"method {self.name!r} has no PEFT equivalent")

    needs_dev: ClassVar[bool] = False  # chooses among candidates on dev, so an empty dev makes its answer arbitrary

    def search_space(self, fixed: Collection[str]) -> list[Dimension]:
        """The settings worth tuning on dev (core.compare.tuning), searched one after another; `fixed` names the options
        the user set, which stay as set. Nothing by default."""
        return []

    def check_backbone(self, backbone: Backbone) -> None:
        """Refuse (ValueError, one line) a backbone or device this method's config cannot train on, before anything
        trains: a LoRA layer it lacks, memory a full fine-tune would not find. Nothing to check by default."""

    def check_memory(self, n_params: int, param_bytes: int, device: str, available: int) -> None:
        """Refuse (ValueError, one line) a backbone of `n_params` weights whose training by this method would not fit
        `available` bytes on `device`: what can be checked before the backbone loads. Nothing by default (a prompt
        method's few weights always fit beside the backbone that scoring needs anyway)."""

    def expected_tensors(self, backbone: Backbone, learned: LearnedPrompt) -> dict[str, tuple[tuple[int, ...], Any]]:
        """Name -> (shape, dtype) of exactly the tensors a prompt of this method carries on `backbone`."""
        return {}

    def upgrade(self, learned: LearnedPrompt, version: int) -> LearnedPrompt:
        """A prompt read from a file of an earlier format `version`, in today's layout (where the layout changed)."""
        return learned

    def check_state(self, learned: LearnedPrompt) -> None:
        """Refuse (ValueError, one line) a stored state this method could not score with; no backbone needed."""
        prior = learned.state.get("log_prior")
        if prior is not None and not _numbers(prior, len(learned.label_names)):
            raise ValueError(f"log_prior must be {len(learned.label_names)} numbers, one per label")

    def check_fits(self, backbone: Backbone, learned: LearnedPrompt) -> None:
        """Refuse a prompt whose tensors are not exactly what this method builds on `backbone` (names, shapes,
        dtypes): a wrong-shape tensor could otherwise broadcast silently into the backbone's weights."""
        expected = self.expected_tensors(backbone, learned)
        have = learned.tensors
        missing, extra = sorted(set(expected) - set(have)), sorted(set(have) - set(expected))
        if missing or extra:
            what = f"lacks tensor {missing[0]!r}" if missing else f"has unexpected tensor {extra[0]!r}"
            raise ValueError(f"the {self.name} prompt {what}")
        for key, (shape, dtype) in expected.items():
            got = have[key]
            if tuple(got.shape) != tuple(shape) or got.dtype != dtype:
                raise ValueError(
                    f"tensor {key!r} is {list(got.shape)} {str(got.dtype).removeprefix('torch.')}, the {self.name} "
                    f"method expects {list(shape)} {str(dtype).removeprefix('torch.')} on this backbone"
                )

    def run_key(self, backbone: Backbone, template: str, train_set: LabeledDataset) -> str:
        """What a checkpoint must match to be resumed: method, config (less where checkpoints go), template,
        backbone, labels, verbalizer and training data."""
        cfg = {k: v for k, v in config_to_dict(self.config).items() if k not in ("checkpoint_dir", "checkpoint_every")}
        blob = json.dumps(
            {
                "method": self.name,
                "config": cfg,
                "template": template,
                "backbone": backbone.fingerprint,
                "labels": list(self.spec.label_names),
                "verbalizer": self.spec.verbalizer.to_dict(),
                "data": data_hash(train_set),
            },
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:24]

    def learned(self, backbone: Backbone, template: str, **fields: Any) -> LearnedPrompt:
        """A LearnedPrompt of this method on this backbone; `fields` sets state, tensors, metrics and the like."""
        defaults = {"verbalizer": self.spec.verbalizer.to_dict(), "display_name": self.label}
        return LearnedPrompt(
            method=self.name,
            template=template,
            label_names=list(self.spec.label_names),
            backbone=backbone_identity(backbone),
            config=config_to_dict(self.config),
            **{**defaults, **fields},
        )


def data_hash(dataset: LabeledDataset) -> str:
    h = hashlib.sha256()
    for rec, label in zip(dataset.records, dataset.labels, strict=True):
        h.update(json.dumps([rec, label], sort_keys=True).encode())
    return h.hexdigest()[:16]


def config_to_dict(config: Any) -> dict[str, Any]:
    return {k: (v.value if hasattr(v, "value") else v) for k, v in asdict(config).items()}


ENGINE_PATHS = ("checkpoint_dir",)  # folders the engine chooses inside a run's own folder, never a caller
FIXED = "fixed"  # a config field's metadata flag: the method sets it itself (forms hide it, another value is refused)


def config_from_dict(config_cls: type, values: Mapping[str, Any] | None, *, method: str = "") -> Any:
    """Build a config dataclass from user values, refusing unknown keys and wrong types with a one-line message."""
    values = dict(values or {})
    known = {f.name for f in fields(config_cls)}
    unknown = sorted(set(values) - known)
    owner = f"{method} " if method else ""
    if unknown:
        where = f" for {method}" if method else ""
        raise ValueError(
            f"unknown option {unknown[0]!r}{where}; known: {', '.join(sorted(known - set(ENGINE_PATHS)))}"
        )
    hints = get_type_hints(config_cls)
    checked = {k: _typed(f"{owner}option {k!r}", hints[k], v) for k, v in values.items()}
    for f in fields(config_cls):
        if f.metadata.get(FIXED) and f.name in checked and checked[f.name] != f.default:
            raise ValueError(f"{owner}option {f.name!r} is fixed at {f.default!r} ({f.metadata.get('help', '')})")
    try:
        return config_cls(**checked)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{owner}options: {' '.join(str(err).split())}") from None


def _typed(name: str, hint: Any, value: Any) -> Any:
    """`value` as the type `hint` names (int, float, bool, str, an Enum, or one of these | None), else ValueError."""
    if get_origin(hint) in (Union, UnionType):
        args = get_args(hint)
        if value is None and type(None) in args:
            return None
        hint = next(a for a in args if a is not type(None))
    if isinstance(hint, type) and issubclass(hint, Enum):
        allowed = [m.value for m in hint]
        if isinstance(value, hint) or value in allowed:
            return hint(value)
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, not {_shown(value)}")
    if hint is bool and isinstance(value, bool):
        return value
    if hint is int and isinstance(value, int | float) and not isinstance(value, bool) and float(value).is_integer():
        return int(value)
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    if hint is str and isinstance(value, str):
        return value
    if hint not in (bool, int, float, str):
        return value  # a structured option: its __post_init__ checks it
    expected = {bool: "true or false", int: "a whole number", float: "a finite number", str: "text"}[hint]
    raise ValueError(f"{name} must be {expected}, not {_shown(value)}")


def _shown(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _numbers(value: Any, n: int) -> bool:
    return (
        isinstance(value, list)
        and len(value) == n
        and all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in value)
    )


def backbone_identity(backbone: Backbone) -> dict[str, Any]:
    return {
        "name": backbone.name,
        "spec": backbone.spec,
        "fingerprint": backbone.fingerprint,
        "kind": backbone.kind.value,
    }
