"""Paired significance (McNemar and paired bootstrap, pairing rows by seed and test example) and the papers'
question read from it: each prompt against the best fine-tuning row, as shares of its accuracy, parameters and time.

Why its own module: the statistics are what a verdict rests on; `core.compare.summary` calls them for the reference
method's prompt and for the fine-tuning reference alike, so both are computed one way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from core.engine.evaluate import mcnemar_test, paired_bootstrap
from core.methods import method_class


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
    tests = {s["method"]: s for s in paired_tests(by_name, best["name"], gold)}
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


def paired_tests(by_name: Mapping[str, list[dict]], reference: str, gold: list[int]) -> list[dict[str, Any]]:
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
