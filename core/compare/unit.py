"""The comparison: every chosen method, every seed, scored on the same held-out test split.

One (method, seed) pair is a *unit* — what the job manager runs as one background run and the CLI runs in a loop.
`summarize` folds unit results into the `results.json` contract (mean ± std over seeds, significance against the
reference method's prompt on the same test rows).
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from core.compare import tuning
from core.data import LabeledDataset, Split, few_shot_split
from core.engine import calibration, prefix_cache
from core.engine.backbone import Backbone
from core.engine.evaluate import evaluate, mcnemar_test, mean_std, paired_bootstrap
from core.engine.scoring import calibrate
from core.engine.templates import Template, Verbalizer
from core.methods import create, method_class
from core.methods.base import ENGINE_PATHS, LearnedPrompt, PromptSpec, config_from_dict
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

DEFAULT_TEMPLATES = ("{text} It was [MASK]", "{text} All in all, it was [MASK]", "Text: {text} Label: [MASK]")
DEFAULT_PAIR_TEMPLATES = ("{text} Question: {text_b} Answer: [MASK]", "{text} {text_b} Label: [MASK]")


def default_templates(dataset: LabeledDataset) -> tuple[str, ...]:
    return DEFAULT_PAIR_TEMPLATES if dataset.text_b_col else DEFAULT_TEMPLATES


def prompt_spec(
    dataset: LabeledDataset, templates: Sequence[str] | None = None, verbalizer: Mapping[str, Any] | str | None = None
) -> PromptSpec:
    """The user's templates and verbalizer, checked against the data's columns and labels."""
    chosen = tuple(templates) if templates else default_templates(dataset)
    for t in chosen:
        Template.parse(t).validate(dataset.columns)
    names = dataset.label_names
    if verbalizer is None:
        verb = Verbalizer.default(names)
    elif isinstance(verbalizer, str):
        verb = Verbalizer.from_json(verbalizer, names)
    else:
        verb = Verbalizer.from_mapping(verbalizer, names)
    return PromptSpec(templates=chosen, verbalizer=verb, label_names=tuple(names))


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


MAX_SEED = 2**32 - 1  # numpy's and torch's seed range
MAX_SEEDS = 100


def parse_seeds(value: str | Sequence[int]) -> list[int]:
    """Seeds from text like "0, 1, 2" (CLI, Train page) or a list: at least one, each a whole number >= 0."""
    bad = ValueError(f"seeds must be non-negative whole numbers separated by commas, e.g. 0,1,2 (got {value!r})")
    if isinstance(value, str):
        try:
            seeds = [int(s) for s in value.replace(" ", "").split(",") if s]
        except ValueError:
            raise bad from None
    else:
        seeds = list(value)
    if not seeds:
        raise ValueError("seeds is empty; give at least one seed, e.g. 0")
    if any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise bad
    if max(seeds) > MAX_SEED:
        raise ValueError(f"seed {max(seeds)} is out of range; a seed is a whole number from 0 to {MAX_SEED}")
    if len(seeds) > MAX_SEEDS:
        raise ValueError(f"seeds lists {len(seeds)} seeds; give at most {MAX_SEEDS}")
    if len(set(seeds)) != len(seeds):
        raise ValueError("seeds lists a seed twice; give each seed once, e.g. 0,1,2")
    return seeds


MAX_K_VALUES = 20
_DIGITS = re.compile("[0-9]+")


def parse_k_shots(value: str | int | Sequence[int] | None) -> list[int | None]:
    """K values from text like "8,16,32,64" (CLI, Train page), one int, a list, or None (all training rows).

    Several values ask for a learning curve; they come back sorted. One value is the plain K-shot comparison.
    """
    if value is None or value == "":
        return [None]
    fix = "give whole numbers of examples per label, 1 or more, separated by commas, e.g. 8,16,32,64"
    if isinstance(value, str):
        parts = [p for p in value.replace(" ", "").split(",") if p]
        if not all(_DIGITS.fullmatch(p) for p in parts):  # str.isdigit() also passes '²', which int() refuses
            bad = next(p for p in parts if not _DIGITS.fullmatch(p))
            raise ValueError(f"K-shot {bad[:20]!r} is not a whole number; {fix}")
        ks = [int(p) for p in parts]
    else:
        ks = [value] if isinstance(value, int) else list(value)
    if not ks or any(isinstance(k, bool) or not isinstance(k, int) for k in ks):
        raise ValueError(f"K-shot {value!r} is not valid; {fix}")
    if min(ks) < 1:
        raise ValueError(f"K-shot {min(ks)} is below 1; {fix}")
    if len(set(ks)) != len(ks):
        raise ValueError(f"K-shot lists a value twice ({value!r}); give each K once, e.g. 8,16,32")
    if len(ks) > MAX_K_VALUES:
        raise ValueError(f"K-shot lists {len(ks)} values; give at most {MAX_K_VALUES}")
    return sorted(ks)


def plan_units(
    methods: Sequence[str],
    seeds: Sequence[int],
    options: Callable[[str], dict[str, Any]],
    k_shots: Sequence[int | None],
) -> list[Unit]:
    """Every (method, K, seed) unit of a comparison. On a learning curve (several K) a zero-shot method, which
    learns nothing from train rows, runs at the smallest K only: it is the curve's flat reference line."""
    units = []
    for m in methods:
        ks = k_shots[:1] if len(k_shots) > 1 and method_class(m).zero_shot else k_shots
        units += [Unit(m, s, options(m), k) for k in ks for s in seeds]
    return units


def with_checkpoint_dir(method: str, options: Mapping[str, Any], root: Path, seed: int) -> dict[str, Any]:
    """`options` plus a checkpoint folder under `root`, one per (method, seed), for methods that checkpoint.

    The folder does not depend on the run: a resumed run finds the checkpoint its predecessor wrote.
    """
    out = dict(options)
    if not out.get("checkpoint_dir") and "checkpoint_dir" in {f.name for f in fields(method_class(method).config_cls)}:
        out["checkpoint_dir"] = str(root / "checkpoints" / f"{method}-seed{seed}")
    return out


def method_options(method: str, options: Mapping[str, Any] | None, *, max_steps: int | None) -> dict[str, Any]:
    """User options for a method, plus the global `max_steps` where the method's config has that field.

    A caller may not choose where files go: a path option would let one person's run write into another's folder
    (or outside PTUNE_HOME), so `ENGINE_PATHS` are refused here, where every caller's options come in."""
    merged = dict(options or {})
    given = sorted(set(merged) & set(ENGINE_PATHS))
    if given:
        raise ValueError(
            f"{method} option {given[0]!r} is a folder PTune Studio chooses (inside the run's own folder); leave it out"
        )
    known = {f.name for f in fields(method_class(method).config_cls)}
    if max_steps is not None and "max_steps" in known:
        merged.setdefault("max_steps", max_steps)
    if "seed" in known:
        merged.setdefault("seed", 0)
    return merged


def eval_warnings(methods: Mapping[str, Mapping[str, Any] | None], *, max_steps: int | None) -> list[str]:
    """One line per method whose steps are fewer than its dev-evaluation interval: dev is then scored only at the
    last step, so the run has no dev curve and its best-on-dev choice has a single candidate."""
    out = []
    for name, options in methods.items():
        cls = method_class(name)
        try:
            cfg = config_from_dict(cls.config_cls, method_options(name, options, max_steps=max_steps), method=name)
        except (ValueError, TypeError):
            continue  # a bad option gets its own error at launch
        every, steps = getattr(cfg, "eval_every", 0), getattr(cfg, "max_steps", None)
        if every and steps is not None and steps < every:
            out.append(
                f"{cls.label} runs {steps} steps but evaluates on dev every {every}, so dev is scored only at the last "
                f"step (no dev curve); set eval_every to {steps} or less (0 = about 10 times a run) or raise the steps"
            )
    return out


def assign(units: Sequence[Unit], rank: int, size: int, *, data_parallel: bool = False) -> list[tuple[Unit, bool]]:
    """Process `rank`'s work among `size` processes, as (unit, shared) pairs in the order to run them.

    Shared units (`data_parallel` on, for methods whose training splits batches across processes) are run by every
    process together, first, in the same order everywhere; the other units are dealt out round-robin.
    """
    together = [data_parallel and size > 1 and method_class(u.method).data_parallel for u in units]
    shared = [u for u, t in zip(units, together, strict=True) if t]
    alone = [u for u, t in zip(units, together, strict=True) if not t]
    return [(u, True) for u in shared] + [(u, False) for u in alone[rank::size]]


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


def summarize(
    units: Sequence[Mapping[str, Any]],
    *,
    dataset: Mapping[str, Any],
    split: Split,
    backbone: Mapping[str, Any],
    reference_method: str = "manual",
) -> dict[str, Any]:
    """Fold per-seed rows into one row per prompt (mean ± std over seeds) plus significance tests.

    Units at several K (a learning curve) add `learning_curve`; the table and significance are then those of the
    largest K (with each zero-shot method's one run).
    """
    curve = learning_curve(units)
    if curve:
        units = _at_largest_k(units)
    by_name: dict[str, list[dict]] = {}
    for unit in units:
        for row in unit["rows"]:
            by_name.setdefault(row["name"], []).append(row)
    methods = [_aggregate(name, rows) for name, rows in by_name.items()]
    reference = next(
        (name for name, rows in by_name.items() if rows[0]["method"] == reference_method and rows[0]["primary"]), None
    )
    significance = _significance(by_name, reference, list(split.test.labels)) if reference else []
    seeds = sorted({u["seed"] for u in units})
    out = {
        "dataset": {
            **dataset,
            "split": split.summary(),
            "seeds": seeds,
            "k_shot": max(curve["k_shots"]) if curve else units[0]["k_shot"] if units else None,
        },
        "backbone": dict(backbone),
        "methods": methods,
        "reference": reference,
        "significance": significance,
        "test_labels": list(split.test.labels),
    }
    if curve:
        out["dataset"]["k_shots"] = curve["k_shots"]
        out["learning_curve"] = curve
    against = versus_finetuning(methods, by_name, list(split.test.labels))
    if against:
        out["versus_finetuning"] = against
    return out


def best_finetuning(methods: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The fine-tuning reference every prompt is read against: among the fine-tuning methods' primary rows, the
    best dev accuracy (ties: the shorter training), never chosen on test. None when no fine-tuning row ran."""
    rows = [m for m in methods if m["primary"] and method_class(m["method"]).fine_tunes]

    def on_dev(m: Mapping[str, Any]) -> tuple[float, float]:
        dev = m.get("dev_accuracy")
        return (-1.0 if dev is None else dev), -m["train_seconds"]

    return max(rows, key=on_dev, default=None)


def versus_finetuning(
    methods: Sequence[Mapping[str, Any]], by_name: Mapping[str, list[dict]], gold: list[int]
) -> dict[str, Any] | None:
    """The papers' question: each row's accuracy as a share of the best fine-tuning row's, at what share of its
    trainable parameters and what multiple of its training time, with the paired significance of the difference
    (McNemar and paired bootstrap, pairing by seed and test example, as `significance`). None without fine-tuning."""
    best = best_finetuning(methods)
    if best is None:
        return None
    tests = {s["method"]: s for s in _significance(by_name, best["name"], gold)}
    rows = []
    for m in methods:
        if m["name"] == best["name"]:
            continue
        rows.append(
            {
                "name": m["name"],
                "method": m["method"],
                "primary": m["primary"],
                "fine_tunes": method_class(m["method"]).fine_tunes,
                "accuracy": m["accuracy"],
                "accuracy_share": _share(m["accuracy"], best["accuracy"]),
                "params_share": _share(m["trainable_params"], best["trainable_params"]),
                "time_ratio": _share(m["train_seconds"], best["train_seconds"]),
                "mcnemar": tests[m["name"]]["mcnemar"],
                "bootstrap": tests[m["name"]]["bootstrap"],
            }
        )
    keys = ("name", "method", "accuracy", "accuracy_std", "dev_accuracy", "trainable_params", "train_seconds")
    return {
        "reference": {k: best.get(k) for k in keys},
        "chosen_by": "dev accuracy (ties: shorter training)",
        "rows": rows,
    }


def _share(value: float | None, of: float | None) -> float | None:
    """`value / of`, or None where the ratio means nothing (a reference of 0)."""
    return value / of if value is not None and of else None


def _at_largest_k(units: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Each (method, seed)'s unit at its largest K, in the given order."""
    top: dict[tuple, int] = {}
    for u in units:
        key = (u["method"], u["seed"])
        top[key] = max(top.get(key, 0), u["k_shot"] or 0)
    return [u for u in units if (u["k_shot"] or 0) == top[(u["method"], u["seed"])]]


def learning_curve(units: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """Accuracy against K: per method and K, the mean ± std over seeds of its primary prompt's test accuracy;
    zero-shot methods (one K only) are flat reference lines. None unless the units span several K."""
    ks = sorted({u["k_shot"] for u in units if u["k_shot"] is not None})
    if len(ks) < 2:
        return None
    acc: dict[tuple[str, int], list[float]] = {}
    names: dict[str, str] = {}
    for u in units:
        row = next(r for r in u["rows"] if r["primary"])
        acc.setdefault((u["method"], u["k_shot"]), []).append(row["accuracy"])
        names.setdefault(u["method"], row["name"])
    methods = list(dict.fromkeys(m for m, _ in acc))
    points, references = [], []
    for m in methods:
        for k in ks:
            if (m, k) not in acc:
                continue
            mean, std = mean_std(acc[(m, k)])
            point = {"method": m, "name": names[m], "k_shot": k, "accuracy": mean, "accuracy_std": std}
            point["n_seeds"] = len(acc[(m, k)])
            (references if method_class(m).zero_shot else points).append(point)
    return {"k_shots": ks, "points": points, "references": references}


def _aggregate(name: str, rows: list[dict]) -> dict[str, Any]:
    acc, acc_std = mean_std([r["accuracy"] for r in rows])
    f1, f1_std = mean_std([r["macro_f1"] for r in rows])
    first = rows[0]
    return {
        "name": name,
        "method": first["method"],
        "template": first["template"],
        "prompt": first["prompt"],
        "accuracy": acc,
        "accuracy_std": acc_std,
        "macro_f1": f1,
        "macro_f1_std": f1_std,
        "n_test": first["n_test"],
        "n_seeds": len(rows),
        "per_seed": [r["accuracy"] for r in rows],
        "trainable_params": first["trainable_params"],
        "train_seconds": sum(r["train_seconds"] for r in rows) / len(rows),
        "test_seconds": sum(r.get("test_seconds") or 0.0 for r in rows) / len(rows),
        "dev_accuracy": _mean_or_none([r.get("dev_accuracy") for r in rows]),
        "peak_memory_mb": max(r["peak_memory_mb"] for r in rows),
        "steps": first.get("steps"),
        "steps_per_seed": [r.get("steps") for r in rows],  # what each seed's run used (early stopping differs)
        "calibration": _calibration_summary(rows),
        "prefix_cache_hits": sum(r.get("prefix_cache_hits", 0) for r in rows),
        "prefix_cache_misses": sum(r.get("prefix_cache_misses", 0) for r in rows),
        "examples_per_second": first.get("examples_per_second"),
        "artifact": first["artifact"],
        "artifacts": [r["artifact"] for r in rows if r["artifact"]],
        "confusion": first["confusion"],
        "predictions": [r["predictions"] for r in rows],
        "seeds": [r["seed"] for r in rows],
        "primary": first["primary"],
        "tuning": [r.get("tuning") for r in rows],
        "label_words": [r.get("label_words") for r in rows],  # per seed: chosen settings and every trial's dev scores
    }


def _calibration_summary(rows: list[dict]) -> dict[str, Any] | None:
    """How often each way (calibrated / uncalibrated) was chosen on dev over the seeds, and each way's mean dev
    and test accuracy, so the table shows what calibration did for this prompt."""
    parts = [r["calibration"] for r in rows if r.get("calibration")]
    if not parts:
        return None
    ways = list(parts[0]["test_accuracy"])
    chosen = [p["chosen"] for p in parts]
    return {
        "chosen": {w: chosen.count(w) for w in ways if w in chosen},
        "by": sorted({p["by"] for p in parts}),
        "dev_accuracy": {w: _mean_or_none([p["dev_accuracy"].get(w) for p in parts]) for w in ways},
        "test_accuracy": {w: _mean_or_none([p["test_accuracy"].get(w) for p in parts]) for w in ways},
    }


def _mean_or_none(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def _significance(by_name: Mapping[str, list[dict]], reference: str, gold: list[int]) -> list[dict[str, Any]]:
    """McNemar and paired bootstrap against the reference, pairing rows by (seed, test example)."""
    ref = {r["seed"]: r["predictions"] for r in by_name[reference]}
    out = []
    for name, rows in by_name.items():
        if name == reference:
            continue
        pairs = [(r["predictions"], ref[r["seed"]]) for r in rows if r["seed"] in ref]
        if not pairs:
            pairs = [(r["predictions"], next(iter(ref.values()))) for r in rows]
        pred_a = [p for a, _ in pairs for p in a]
        pred_b = [p for _, b in pairs for p in b]
        gold_all = gold * len(pairs)
        out.append(
            {
                "method": name,
                "versus": reference,
                "mcnemar": mcnemar_test(pred_a, pred_b, gold_all),
                "bootstrap": paired_bootstrap(pred_a, pred_b, gold_all),
            }
        )
    return out
