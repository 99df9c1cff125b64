"""`python -m core compare`: the comparison from the command line, from the arguments to results.json.

Why its own module: everything about the user's input that needs no model is checked here first (methods, --option
against each method's config, every seed's K-shot draw, the output folder), the units are planned and ordered
cheapest first as the app queues them, then run (`core.cli.run_units`) and summarized into results.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from core import distributed
from core.atomic import write_atomic
from core.cli.common import say, writable_target
from core.cli.run_units import run_my_units, run_units_on_ray
from core.data import few_shot_split, load_dataset, split_dataset
from core.methods import method_names


def _parse_methods(text: str) -> list[str]:
    methods = [m.strip() for m in text.split(",") if m.strip()]
    if not methods:
        raise ValueError(f"--methods names no method; choose from: {', '.join(method_names())}")
    unknown = [m for m in methods if m not in method_names()]
    if unknown:
        raise ValueError(f"unknown method {unknown[0][:40]!r}; choose from: {', '.join(method_names())}")
    if len(set(methods)) != len(methods):
        raise ValueError("--methods lists a method twice; name each once")
    return methods


def _parse_options(items: list[str]) -> dict[str, dict]:
    """`--option ptuning.lr=0.01` -> {"ptuning": {"lr": 0.01}} (values parsed as JSON when they can be)."""
    out: dict[str, dict] = {}
    for item in items:
        key, sep, value = item.partition("=")
        method, dot, name = key.partition(".")
        if not sep or not dot or not name:
            raise ValueError(f"--option {item!r} must look like METHOD.NAME=VALUE, e.g. ptuning.lr=0.01")
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        out.setdefault(method, {})[name] = parsed
    return out


def cmd_compare(args: argparse.Namespace) -> int:
    from core.compare import (
        eval_warnings,
        method_options,
        parse_k_shots,
        parse_seeds,
        plan_units,
        prompt_spec,
        summarize,
    )

    methods = _parse_methods(args.methods)
    seeds = parse_seeds(args.seeds)
    k_shots = parse_k_shots(args.k_shot)
    options = _parse_options(args.option or [])
    _check_options(options, methods, max_steps=args.max_steps)
    out = writable_target(Path(args.out), folder=True)
    dataset = load_dataset(args.data, text_col=args.text_col, label_col=args.label_col, text_b_col=args.text_b_col)
    for warning in dataset.warnings:
        say(f"warning: {warning}")
    split = split_dataset(dataset, test_size=args.test_size, dev_size=args.dev_size, seed=args.split_seed)
    spec = prompt_spec(dataset, args.template, args.verbalizer)
    units = plan_units(methods, seeds, lambda m: method_options(m, options.get(m), max_steps=args.max_steps), k_shots)
    for unit in units:
        unit.tune = not args.no_tune  # tuning on dev: on unless --no-tune
    for k in k_shots:  # every K asked for, even one only zero-shot methods would skip
        few_shot_split(split, k, seeds[0])
    _check_units(units, split)
    units = _cheapest_first(units, spec, split)
    for warning in eval_warnings({m: options.get(m) for m in methods}, max_steps=args.max_steps):
        say(f"warning: {warning}")
    if args.ray_address:  # a Ray cluster runs the units; this process only sends them and writes the files
        results, backbone_info, ran = run_units_on_ray(args, split, spec, units, out)
        processes = {"count": 1, "ray": args.ray_address, "data_parallel": False, "units": ran}
    else:
        group = distributed.join(args.dist_timeout)
        done = run_my_units(args, group, split, spec, units, out)
        if done is None:  # a helper process: the main process writes the files
            return 0
        results, backbone_info, ran = done
        processes = {"count": group.size, "data_parallel": bool(args.data_parallel), "units": ran}
    summary = summarize(
        results, dataset={**dataset.summary(), "source": str(args.data)}, split=split, backbone=backbone_info
    )
    summary["processes"] = processes
    write_atomic(out / "results.json", json.dumps(summary, indent=2, allow_nan=False))  # a failed write keeps the last
    for point in summary.get("learning_curve", {}).get("points", []):
        say(f"K={point['k_shot']:<4d} {point['method']:20s} acc {point['accuracy']:.3f} ± {point['accuracy_std']:.3f}")
    for row in summary["methods"]:
        say(
            f"{row['name'][:60]:60s} acc {row['accuracy']:.3f} ± {row['accuracy_std']:.3f}  "
            f"macro-F1 {row['macro_f1']:.3f}"
        )
    print(out / "results.json")
    return 0


def _cheapest_first(units: list, spec, split) -> list:
    """The units in order of expected cost, as the app queues them (core.runs.estimate; the methods' size priors are
    enough to order them): majority, probe and manual answers come before the learned methods train."""
    from core.runs import estimate

    rates = estimate.rates_for(sorted({u.method for u in units}))
    return estimate.cheapest_first(units, estimate.estimate_comparison(units, spec, split, rates))


def _check_options(options: dict[str, dict], methods: list[str], *, max_steps: int | None) -> None:
    """Every --option names a known method and a field of its config, whether or not --methods runs it (a typo
    is never silently ignored); one for a method that does not run is said to be ignored."""
    from core.compare import method_options
    from core.methods import method_class
    from core.methods.base import config_from_dict

    stray = sorted(set(options) - set(method_names()))
    if stray:
        raise ValueError(f"--option names unknown method {stray[0][:40]!r}; choose from: {', '.join(method_names())}")
    for name, values in options.items():
        config_from_dict(method_class(name).config_cls, method_options(name, values, max_steps=max_steps), method=name)
    for name in sorted(set(options) - set(methods)):
        say(f"warning: --option {name}.{next(iter(options[name]))} is for {name}, which --methods does not run")


def _check_units(units: list, split) -> None:
    """Everything about the units that needs no model, checked before the model loads: each method's options
    (types included), a dev set for methods that choose on dev, and each seed's K-shot draw."""
    from core.methods import method_class
    from core.methods.base import config_from_dict

    for unit in units:
        cls = method_class(unit.method)
        config_from_dict(cls.config_cls, unit.options, method=unit.method)
        if cls.needs_dev and unit.k_shot is None and not len(split.dev):
            raise ValueError(
                f"{unit.method} chooses its prompt on the dev set, but dev_size is 0; "
                "give a dev_size above 0 (e.g. 0.1) or a K-shot size"
            )
        few_shot_split(split, unit.k_shot, unit.seed)
