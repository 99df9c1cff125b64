"""A comparison request — everything the Train page collects — and every check it must pass before launch.

Apart from the `Workspace` (core/app/service.py), which queues what passes: these checks read the upload, the split,
the prompts, the backbone and the methods' options, and need nothing of the run store or the job queue, so a bad
request is refused in one line before anything is saved or queued.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from core.compare import method_options, parse_k_shots, parse_seeds, prompt_spec
from core.data import LabeledDataset, few_shot_split, load_dataset, split_dataset
from core.engine.backbone import Backbone, BackboneError, LMKind
from core.engine.backbone_pool import BackboneInfo, inspect_backbone
from core.engine.templates import Template
from core.errors import one_line
from core.methods import create, method_class
from core.methods.base import PromptSpec, config_from_dict
from core.resources import free_memory
from core.runs.runner import UPLOAD_LIMITS, GroupContext


@dataclass
class ComparisonRequest:
    """Everything the Train page collects; `launch` validates all of it before anything is queued."""

    data: bytes
    source_name: str
    text_col: str
    label_col: str
    templates: list[str]
    verbalizer: dict[str, list[str]]
    methods: dict[str, dict[str, Any]]  # method name -> changed options
    seeds: list[int] = field(default_factory=lambda: [0])
    backbone: str = "default"
    text_b_col: str | None = None
    test_size: float = 0.5
    dev_size: float = 0.1
    split_seed: int = 0
    k_shot: int | None = None
    max_steps: int | None = None
    tune: bool = True  # each trained method searches its sensitive settings on dev first (core.compare.tuning)
    k_shots: list[int] = field(default_factory=list)  # several K: a learning curve (k_shot is then ignored)

    def k_values(self) -> list[int | None]:
        """The K of every unit: the curve's, else the one k_shot."""
        return parse_k_shots(self.k_shots) if self.k_shots else [self.k_shot]

    def settings(self) -> dict[str, Any]:
        """Every field but the upload's bytes: the settings a group keeps in its group.json."""
        out = asdict(self)
        out.pop("data")
        return out


def validate_request(req: ComparisonRequest) -> tuple[GroupContext, BackboneInfo]:
    """Every check of the request itself that can fail before launch, as DataError/TemplateError/ValueError with one
    line: methods, seeds, the upload, the split and every K, the prompts, the backbone, each method's options. The
    group's context, and what is known of the backbone without loading it (for `check_device_fits`)."""
    if not req.methods:
        raise ValueError("choose at least one method")
    parse_seeds(req.seeds)
    dataset = load_dataset(
        req.data, text_col=req.text_col, label_col=req.label_col, text_b_col=req.text_b_col, limits=UPLOAD_LIMITS
    )
    split = split_dataset(dataset, test_size=req.test_size, dev_size=req.dev_size, seed=req.split_seed)
    for k in req.k_values():
        few_shot_split(split, k, req.seeds[0])
    spec = prompt_spec(dataset, req.templates, req.verbalizer)
    info = inspect_backbone(req.backbone)
    _check_backbone(info, spec, dataset)
    _check_options(req)
    return GroupContext(dataset, split, spec, req.settings()), info


def _check_backbone(info: BackboneInfo, spec: PromptSpec, dataset: LabeledDataset) -> None:
    """Every template fits the backbone's kind (when it is known without loading); else the backbone can be had."""
    if info.kind is not None:
        for t in spec.templates:
            Template.parse(t).validate(dataset.columns, LMKind(info.kind))
    elif not info.available and not info.downloadable:
        raise BackboneError(f"backbone {info.name!r}: {info.note}")


def _check_options(req: ComparisonRequest) -> None:
    """Each method's changed options make a valid config of that method."""
    for name, options in req.methods.items():
        cls = method_class(name)
        try:
            config_from_dict(cls.config_cls, method_options(name, options, max_steps=req.max_steps))
        except (TypeError, ValueError) as err:
            raise ValueError(f"{cls.label}: {one_line(err)}") from None


def check_device_fits(
    req: ComparisonRequest, spec: PromptSpec, info: BackboneInfo, *, loaded: Backbone | None, cpu: bool
) -> None:
    """What the methods need of the backbone and its device, before launch where this server can tell: every
    method's own check on the backbone when this process has it `loaded`; else a full fine-tune's memory from
    the backbone's size, on the CPU (a GPU's free memory is the worker's to read: it checks before training)."""
    for name, options in req.methods.items():
        cls = method_class(name)
        try:
            method = create(name, spec, method_options(name, options, max_steps=req.max_steps))
            if loaded is not None:
                method.check_backbone(loaded)
            elif info.parameters and cpu:
                size = torch.empty((), dtype=getattr(torch, info.dtype, torch.float32)).element_size()
                method.check_memory(info.parameters, size, "cpu", free_memory(torch.device("cpu")))
        except ValueError as err:
            raise ValueError(f"{cls.label}: {one_line(err)}") from None
