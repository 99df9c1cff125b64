"""Content-free calibration for every method, chosen on dev: each prompt is reported calibrated or not, whichever
scores better on the dev split, so no method wins (or loses) on calibration alone.

Calibration (Zhao et al. 2021) needs only the prompt's label scores for a few content-free inputs ("N/A", "",
"[MASK]" as text, as Zhao et al. wrote it) put through the very same prompt — soft tokens, prefixes, triggers and all — so it costs a handful of
forward passes on top of whatever the method already did. A prompt carries its chosen prior as
`state["log_prior"]` (as manual prompts always have), and `scores` applies it for any method.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from core.engine.backbone import Backbone
from core.engine.evaluate import accuracy
from core.engine.scoring import CONTENT_FREE_INPUTS, calibrate, prior_from_scores

if TYPE_CHECKING:  # the trigger search ranks with `choose`, and core.methods imports the trigger search
    from core.methods.base import LearnedPrompt

CALIBRATED, UNCALIBRATED = "calibrated", "uncalibrated"


def uncalibrated(prompt: LearnedPrompt) -> LearnedPrompt:
    """The prompt without a content-free prior: its method's scores are then the raw label scores."""
    if "log_prior" not in prompt.state:
        return prompt
    return replace(prompt, state={k: v for k, v in prompt.state.items() if k != "log_prior"}, variants=[])


def with_prior(prompt: LearnedPrompt, log_prior: torch.Tensor | None) -> LearnedPrompt:
    """The prompt carrying `log_prior` (None: none), as saved to its file so prediction reproduces the choice."""
    state = {k: v for k, v in prompt.state.items() if k != "log_prior"}
    if log_prior is not None:
        state["log_prior"] = [float(v) for v in log_prior]
    return replace(prompt, state=state)


def content_free_records(columns: Sequence[str]) -> list[dict[str, str]]:
    """One record per content-free input, every field of the template filled with it."""
    return [{c: value for c in columns} for value in CONTENT_FREE_INPUTS]


def log_prior(method: Any, backbone: Backbone, prompt: LearnedPrompt, columns: Sequence[str]) -> torch.Tensor:
    """log p_cf(label): the prompt's mean label distribution over the content-free inputs (n_labels,)."""
    return prior_from_scores(method.scores(backbone, uncalibrated(prompt), content_free_records(columns)))


def scores(
    method: Any, backbone: Backbone, prompt: LearnedPrompt, records: Sequence[Mapping[str, str]]
) -> torch.Tensor:
    """Label log-scores as the prompt was chosen: raw, then calibrated when it carries a prior (any method)."""
    raw = method.scores(backbone, uncalibrated(prompt), records)
    prior = prompt.state.get("log_prior")
    return calibrate(raw.float(), torch.tensor(prior, dtype=torch.float32)) if prior is not None else raw


@dataclass
class Choice:
    """Which way a prompt is reported, and why: dev accuracy of both ways (then dev loss), never test."""

    chosen: str  # CALIBRATED or UNCALIBRATED
    by: str  # "dev", or why not: "no dev rows", "not calibratable"
    dev_accuracy: dict[str, float | None]
    dev_loss: dict[str, float | None]


def choose(
    raw_dev: torch.Tensor | None, prior: torch.Tensor | None, dev_labels: Sequence[int], default: str
) -> Choice:
    """Calibrated or not, by dev accuracy, ties by dev cross-entropy, then uncalibrated; `default` without dev."""
    if prior is None:
        return Choice(UNCALIBRATED, "not calibratable", {UNCALIBRATED: None}, {UNCALIBRATED: None})
    if raw_dev is None or not len(dev_labels):
        unknown = {CALIBRATED: None, UNCALIBRATED: None}
        return Choice(default, "no dev rows", unknown, dict(unknown))
    gold = torch.tensor(list(dev_labels))
    ways = {UNCALIBRATED: raw_dev.float(), CALIBRATED: calibrate(raw_dev.float(), prior)}
    acc = {k: accuracy(v.argmax(1).tolist(), list(dev_labels)) for k, v in ways.items()}
    loss = {k: float(F.cross_entropy(F.log_softmax(v, dim=-1), gold)) for k, v in ways.items()}
    best = min(ways, key=lambda k: (-acc[k], loss[k], k != UNCALIBRATED))
    return Choice(best, "dev", acc, loss)
