"""The `results.json` contract: unit results folded into one row per prompt (mean ± std over seeds), the learning
curve when several K ran, and the paired significance against the reference method's prompt.

Why its own module: the CLI, the app's service and the Runs page all write or read this one shape; the unit that
produces the rows (`core.compare.unit`) and the tests against fine-tuning (`core.compare.versus`) stay apart from it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from core.compare.versus import paired_tests, versus_finetuning
from core.data import Split
from core.engine.evaluate import mean_std
from core.methods import method_class


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
    significance = paired_tests(by_name, reference, list(split.test.labels)) if reference else []
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
