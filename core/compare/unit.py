"""One unit of a comparison: one method at one seed (and K), fitted on its K-shot sample and scored on the shared
held-out test split.

Why its own module: a unit is what the job manager runs as one background run, a Ray task runs on a node and the CLI
runs in a loop, so this is the one place that fits a method (with tuning on dev), chooses calibration on dev, scores
the test split and saves the prompt files. What it returns (`run_unit`'s rows) is what `core.compare.summary` folds.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

import core.compare.tuning as tuning  # not `from core.compare`: the package's __init__ imports this module
from core.data import LabeledDataset, Split, few_shot_split
from core.engine import calibration, prefix_cache
from core.engine.backbone import Backbone
from core.engine.evaluate import evaluate
from core.engine.scoring import calibrate
from core.engine.templates import Template
from core.methods import create, method_class
from core.methods.base import LearnedPrompt, PromptSpec
from core.progress import (
    CHOOSING,
    SAVING,
    SCORING,
    TRAINING,
    Cancelled,
    ProgressFn,
    StopFn,
    enter_phase,
    never_stop,
    no_progress,
)
from core.prompts import artifacts
from core.prompts.peft_export import export_if_expressible
from core.resources import measure_peak


@dataclass
class Unit:
    """One method at one seed: the unit of background work."""

    method: str
    seed: int
    options: dict[str, Any] = field(default_factory=dict)
    k_shot: int | None = None
    tune: bool = (
        False  # search the method's declared settings on dev first (core.compare.tuning); the CLI and app turn it on
    )


def with_checkpoint_dir(method: str, options: Mapping[str, Any], root: Path, seed: int) -> dict[str, Any]:
    """`options` plus a checkpoint folder under `root`, one per (method, seed), for methods that checkpoint.

    The folder does not depend on the run: a resumed run finds the checkpoint its predecessor wrote.
    """
    out = dict(options)
    if not out.get("checkpoint_dir") and "checkpoint_dir" in {f.name for f in fields(method_class(method).config_cls)}:
        out["checkpoint_dir"] = str(root / "checkpoints" / f"{method}-seed{seed}")
    return out


def run_unit(
    backbone: Backbone,
    split: Split,
    spec: PromptSpec,
    unit: Unit,
    *,
    out_dir: Path | None = None,
    progress: ProgressFn = no_progress,
    should_stop: StopFn = never_stop,
    score_test: bool = True,
) -> dict[str, Any]:
    """Fit one method at one seed on its K-shot sample, then score the shared test split.

    `score_test=False` only fits (a helper process of a data-parallel unit: the main process scores and saves).
    """
    train, dev = few_shot_split(split, unit.k_shot, unit.seed)
    options = dict(unit.options)
    if "seed" in options:
        options["seed"] = unit.seed
    if out_dir is not None:
        options = with_checkpoint_dir(unit.method, options, out_dir, unit.seed)
    for template in spec.templates:  # the columns from train/dev: the test split is read only when scored, last
        Template.parse(template).validate(_columns(train, dev), backbone.kind)
    method = create(unit.method, spec, options)
    method.check_backbone(backbone)  # a device too small for a full fine-tune, a LoRA layer it lacks: before training
    enter_phase(progress, TRAINING if method.trains else CHOOSING)
    start = time.perf_counter()
    cache_before = prefix_cache.stats()
    with measure_peak(backbone.device) as peak:  # tuning's trials count as training time
        tuned = tuning.fit(
            method,
            backbone,
            train,
            dev,
            fixed=unit.options,
            enabled=unit.tune,
            progress=progress,
            should_stop=should_stop,
        )
    method, learned = tuned.method, tuned.learned
    train_seconds = time.perf_counter() - start
    if out_dir is not None:
        _remove_empty_checkpoint_dirs(Path(options.get("checkpoint_dir") or out_dir / "checkpoints"), out_dir)
    fitted = [learned, *learned.variants] if score_test else []  # helper processes leave the test to process 0
    prompts = [calibration.uncalibrated(p) for p in fitted]  # raw scores; calibrated or not is chosen on dev next
    calibration_start = time.perf_counter()
    choices = _calibrate_on_dev(backbone, method, prompts, fitted, dev, _columns(train, dev), should_stop)
    calibration_seconds = time.perf_counter() - calibration_start
    scored = _score_test(backbone, method, prompts, split.test, progress, should_stop)
    test_seconds = sum(seconds for _, seconds in scored.values())
    cache = {k: prefix_cache.stats()[k] - cache_before[k] for k in ("hits", "misses")}  # this unit's lookups
    enter_phase(progress, SAVING)
    rows = [
        {**_test_row(backbone, method, prompt, split.test, out_dir, unit, scored, choices), "primary": i == 0}
        for i, prompt in enumerate(prompts)
    ]
    for row in rows:
        row.update(
            train_seconds=train_seconds,
            peak_memory_mb=peak.mb,
            seed=unit.seed,
            method=unit.method,
            prefix_cache_hits=cache["hits"],
            prefix_cache_misses=cache["misses"],
            tuning=tuned.report,
        )
    return {
        "method": unit.method,
        "seed": unit.seed,
        "k_shot": unit.k_shot,
        "rows": rows,
        "n_train": len(train),
        "n_dev": len(dev),
        "train_seconds": train_seconds,
        "test_seconds": test_seconds,
        "calibration_seconds": calibration_seconds,  # the content-free prior and dev scores of both ways
        "resumed_from_step": int(learned.metrics.get("resumed_from_step") or 0),  # 0: not resumed after a stop
        "continued_from_step": int(learned.metrics.get("continued_from_step") or 0),  # where tuning went on (0: no)
    }


def _remove_empty_checkpoint_dirs(folder: Path, out_dir: Path) -> None:
    """A finished fit leaves no checkpoint (it is the result): drop its folder, and `checkpoints/` once it is empty
    too, so a run's folder holds only its results. Anything still inside (another unit's) stays."""
    for path in (folder, out_dir / "checkpoints"):
        if path.is_relative_to(out_dir) and path != out_dir:
            with contextlib.suppress(OSError):
                path.rmdir()


def _columns(train: LabeledDataset, dev: LabeledDataset) -> list[str]:
    """The fields a template may use, read from train (or dev): every part of a split has the same columns."""
    return (train if len(train) else dev).columns


def _calibrate_on_dev(
    backbone: Backbone,
    method,
    prompts: Sequence[LearnedPrompt],
    fitted: Sequence[LearnedPrompt],
    dev: LabeledDataset,
    columns: Sequence[str],
    should_stop: StopFn,
) -> dict[str, tuple[calibration.Choice, torch.Tensor | None]]:
    """Each distinct (raw) prompt's content-free prior and its calibrated-or-not choice on dev, keyed by
    `_prompt_key`. A prompt that came calibrated (manual) keeps its prior and defaults to it when dev is empty."""
    out: dict[str, tuple[calibration.Choice, torch.Tensor | None]] = {}
    for prompt, original in zip(prompts, fitted, strict=True):
        key = _prompt_key(prompt)
        if key in out:
            continue
        if should_stop():
            raise Cancelled("stopped while calibrating on dev")
        carried = original.state.get("log_prior")
        prior = None
        if method.calibratable:
            prior = torch.tensor(carried) if carried else calibration.log_prior(method, backbone, prompt, columns)
        raw_dev = None
        if prior is not None and len(dev):
            known = original.dev_scores
            raw_dev = (
                known if known is not None and len(known) == len(dev) else method.scores(backbone, prompt, dev.records)
            )
        default = calibration.CALIBRATED if carried else calibration.UNCALIBRATED
        out[key] = (calibration.choose(raw_dev, prior, list(dev.labels), default), prior)
    return out


def _prompt_key(prompt: LearnedPrompt) -> str:
    """The same weight-free prompt (manual's best-on-dev is one of its variants) is scored once; a prompt with
    weights is its own key."""
    if prompt.tensors:
        return f"id:{id(prompt)}"
    return json.dumps([prompt.method, prompt.template, prompt.state], sort_keys=True)


def _score_test(
    backbone: Backbone,
    method,
    prompts: Sequence[LearnedPrompt],
    test: LabeledDataset,
    progress: ProgressFn,
    should_stop: StopFn,
) -> dict[str, tuple]:
    """Every distinct prompt's test scores and seconds, keyed by `_prompt_key`; reported as rows n/N over all
    prompts (scored in chunks so the progress moves and a cancel is seen between chunks)."""
    enter_phase(progress, SCORING)  # first: the test split is read from here on, never before
    distinct = {_prompt_key(p): p for p in prompts}
    n, total = len(test), len(distinct) * len(test)
    chunk = max(64, -(-n // 20))
    progress(0, total, {})
    out, done = {}, 0
    for key, prompt in distinct.items():
        parts, start = [], time.perf_counter()
        for lo in range(0, n, chunk):
            if should_stop():
                raise Cancelled(f"stopped while scoring the test split ({done}/{total} rows)")
            parts.append(method.scores(backbone, prompt, test.records[lo : lo + chunk]))
            done += min(chunk, n - lo)
            progress(done, total, {})
        out[key] = (
            torch.cat(parts) if parts else torch.empty(0, len(prompt.label_names)),
            time.perf_counter() - start,
        )
    return out


def _test_row(
    backbone: Backbone,
    method,
    prompt: LearnedPrompt,
    test: LabeledDataset,
    out_dir: Path | None,
    unit: Unit,
    scored: Mapping[str, tuple],
    choices: Mapping[str, tuple[calibration.Choice, torch.Tensor | None]],
) -> dict[str, Any]:
    """One prompt's test evaluation (calibrated or not, as chosen on dev; both ways' accuracies kept), and its
    prompt file (and PEFT export) saved carrying the chosen calibration."""
    raw, seconds = scored[_prompt_key(prompt)]
    choice, prior = choices[_prompt_key(prompt)]
    ways = {calibration.UNCALIBRATED: raw}
    if prior is not None:
        ways[calibration.CALIBRATED] = calibrate(raw.float(), prior)
    gold = list(test.labels)
    ev = evaluate(ways[choice.chosen], gold, len(prompt.label_names))
    prompt = calibration.with_prior(prompt, prior if choice.chosen == calibration.CALIBRATED else None)
    artifact = peft_dir = None
    if out_dir is not None:
        stem = f"{unit.method}-{prompt.display_name}-seed{unit.seed}"
        artifact = str(artifacts.save(prompt, out_dir, stem))
        peft_dir = export_if_expressible(backbone, prompt, out_dir, stem)
    return {
        "name": prompt.display_name or method.label,
        "template": prompt.template,
        "prompt": readable_prompt(prompt),
        "accuracy": ev.accuracy,
        "macro_f1": ev.macro_f1,
        "confusion": ev.confusion,
        "n_test": ev.n,
        "predictions": ev.predictions,
        "trainable_params": prompt.trainable_params,
        "test_seconds": seconds,
        "examples_per_second": ev.n / seconds if seconds > 0 else None,
        "artifact": artifact,
        "peft_export": str(peft_dir) if peft_dir else None,
        "dev_accuracy": choice.dev_accuracy[choice.chosen]
        if choice.by == "dev"
        else prompt.metrics.get("dev_accuracy"),
        "calibration": {
            "chosen": choice.chosen,
            "by": choice.by,
            "dev_accuracy": choice.dev_accuracy,
            "dev_loss": choice.dev_loss,
            "test_accuracy": {k: evaluate(v, gold, len(prompt.label_names)).accuracy for k, v in ways.items()},
        },
        "steps": prompt.metrics.get("steps", prompt.metrics.get("iterations")),
        "stopped_early": prompt.metrics.get("stopped_early"),
        "label_words": prompt.state.get("searched_label_words"),  # the verbalizer a label-word search put to use
    }


def readable_prompt(prompt: LearnedPrompt) -> str:
    """What to show the user as 'the prompt': the template, with found trigger words where there are some, and
    searched label words where they were used."""
    text = prompt.template
    if prompt.state.get("trigger_words"):
        text = Template.parse(prompt.template).with_triggers(prompt.state["trigger_words"])
    if prompt.state.get("searched_label_words"):
        words = "; ".join(f"{k}: {', '.join(v)}" for k, v in prompt.state["searched_label_words"].items())
        text += f"  (label words: {words})"
    return text
