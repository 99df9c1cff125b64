"""Manual prompts: user-written templates scored zero-shot, optionally with contextual calibration.

Every template is evaluated; the one best on dev is the method's answer, and every template is also reported on
test as a variant, because the spread between wordings is itself a finding (prompts are brittle).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from core.config import choice
from core.data import LabeledDataset
from core.engine.backbone import Backbone
from core.engine.evaluate import accuracy
from core.engine.scoring import Reduce, build_plan, calibrate, content_free_log_prior, reduce_field, score_records
from core.engine.templates import Template
from core.methods.base import LearnedPrompt, MethodBase, PromptSpec
from core.progress import Cancelled, ProgressFn, StopFn, no_progress


@dataclass
class ManualConfig:
    calibrate: bool = field(
        default=True,
        metadata={
            "help": "Contextual calibration (Zhao et al. 2021) while choosing the template on dev: divide by the label "
            "probabilities for content-free inputs such as 'N/A', removing the template's bias toward one label. "
            "The comparison then reports every prompt calibrated or not, whichever scores better on dev."
        },
    )
    reduce: Reduce = reduce_field()
    batch_size: int = field(default=16, metadata={"help": "Examples per forward pass."})

    def __post_init__(self):
        self.reduce = choice(Reduce, self.reduce, "reduce")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {self.batch_size}")


class ManualPrompts(MethodBase):
    name: ClassVar[str] = "manual"
    label: ClassVar[str] = "Manual prompt"
    config_cls: ClassVar[type] = ManualConfig
    needs_dev: ClassVar[bool] = True
    zero_shot: ClassVar[bool] = True

    def prompt_for(self, backbone: Backbone, template: str, fields: Sequence[str]) -> LearnedPrompt:
        """A zero-shot prompt for one template, its calibration prior computed once here."""
        parsed = Template.parse(template)
        state: dict = {}
        if self.config.calibrate:
            plan = build_plan(backbone, parsed, self.spec.verbalizer, self.spec.label_names, reduce=self.config.reduce)
            state["log_prior"] = content_free_log_prior(backbone, plan, fields).tolist()
        return self.learned(backbone, template, state=state, metrics={"trainable_params": 0})

    def fit(
        self,
        backbone: Backbone,
        train: LabeledDataset,
        dev: LabeledDataset,
        *,
        progress: ProgressFn,
        should_stop: StopFn,
    ) -> LearnedPrompt:
        best, candidates = select_template(
            self, backbone, self.spec.templates, dev, progress=progress, should_stop=should_stop
        )
        return LearnedPrompt(**{**best.__dict__, "display_name": "Manual (best on dev)", "variants": candidates})

    def scores(self, backbone: Backbone, learned: LearnedPrompt, records: Sequence[Mapping[str, str]]) -> torch.Tensor:
        return discrete_scores(backbone, learned, records)


def discrete_scores(
    backbone: Backbone, learned: LearnedPrompt, records: Sequence[Mapping[str, str]], *, calibrated: bool = True
) -> torch.Tensor:
    """Label log-scores of a prompt with no learned weights: a manual template, or one with found trigger tokens
    (`state["trigger_ids"]`); calibrated when the prompt carries a content-free prior (unless `calibrated` is
    off). Manual and AutoPrompt prompts are scored only here."""
    plan = build_plan(
        backbone,
        Template.parse(learned.template),
        learned.verbalizer_obj(),
        learned.label_names,
        reduce=learned.config.get("reduce", Reduce.SUM),
    )
    raw = score_records(
        backbone,
        plan,
        records,
        batch_size=learned.config.get("batch_size", 16),
        trigger_ids=learned.state.get("trigger_ids", ()),
    )
    if calibrated and "log_prior" in learned.state:
        return calibrate(raw, torch.tensor(learned.state["log_prior"]))
    return raw


def select_template(
    method: ManualPrompts,
    backbone: Backbone,
    templates: Sequence[str],
    dev: LabeledDataset,
    *,
    progress: ProgressFn,
    should_stop: StopFn,
    name: str = "Manual",
) -> tuple[LearnedPrompt, list[LearnedPrompt]]:
    """Template selection, the cheapest discrete "search": score every template zero-shot on dev, keep the best.

    Returns (best, every candidate in the user's order, each with `dev_accuracy` and a display name); the first
    template wins ties. Searched prompts (AutoPrompt) are honest only when they beat this.
    """
    candidates = []
    total = len(templates)
    for i, template in enumerate(templates):
        if should_stop():
            break
        Template.parse(template).validate(dev.columns, backbone.kind)
        prompt = method.prompt_for(backbone, template, dev.columns)
        prompt.dev_scores = discrete_scores(backbone, prompt, dev.records, calibrated=False)
        prior = prompt.state.get("log_prior")
        chosen = calibrate(prompt.dev_scores, torch.tensor(prior)) if prior is not None else prompt.dev_scores
        prompt.metrics["dev_accuracy"] = accuracy(chosen.argmax(1).tolist(), list(dev.labels))
        prompt.display_name = f"{name} #{i + 1}: {template}"
        candidates.append(prompt)
        progress(i + 1, total, {"dev_accuracy": prompt.metrics["dev_accuracy"]})
    if not candidates:
        raise Cancelled("cancelled before any template was scored")
    best = max(candidates, key=lambda p: p.metrics["dev_accuracy"])  # first wins ties: the user's order
    return best, candidates


def plain_templates(spec: PromptSpec) -> list[str]:
    """The user's templates without [T] or [P] slots: the ones manual prompting can score as they are."""
    return [t for t in spec.templates if not (p := Template.parse(t)).n_trigger and not p.n_soft]


def best_manual(
    spec: PromptSpec, backbone: Backbone, dev: LabeledDataset, should_stop: StopFn, *, reduce: Reduce = Reduce.SUM
) -> LearnedPrompt | None:
    """The user's manual template best on dev, scored zero-shot and calibrated as the manual row is (None without a
    plain template or dev rows): where AutoPrompt's search starts, and the prompt prompt-based fine-tuning trains."""
    templates = plain_templates(spec)
    if not templates or not len(dev):
        return None
    manual = ManualPrompts(
        PromptSpec(tuple(templates), spec.verbalizer, spec.label_names), ManualConfig(reduce=reduce)
    )
    best, _ = select_template(manual, backbone, templates, dev, progress=no_progress, should_stop=should_stop)
    return best
