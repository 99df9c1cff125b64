"""Headless command line: `python -m core compare | predict | models`.

Runs the same engine as the app. Bad input exits with status 2 and one line on stderr (no traceback); it also runs
unchanged under `torchrun` / `accelerate launch` (each process loads the backbone on its own device and runs its
share of the units; process 0 gathers the results and writes results.json; see core/distributed.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

from core import distributed
from core.atomic import write_atomic
from core.data import DataError, few_shot_split, load_dataset, read_table, split_dataset
from core.engine import prefix_cache
from core.engine.backbone import BackboneError, install_default, load_backbone
from core.errors import one_line
from core.methods import method_names
from core.progress import ClaimLost, never_stop
from core.prompts import artifacts
from core.runs import cluster
from core.runs.device_claim import DeviceBusy, DeviceClaim
from core.runs.store import RunStore, StoreDamaged, ptune_home

EXIT_BAD_INPUT = 2
EXIT_FAILED = 1
BAD_INPUT = (ValueError, DataError, BackboneError, OSError)  # a unit failing on these is the user's to fix


class UsageError(ValueError):
    """A command line argparse cannot read; said in one line with `--help` named, not argparse's usage block."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message}; see {self.prog} --help")


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


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


def _part_size(text: str) -> float | int:
    """--test-size / --dev-size: digits alone are a row count (200), anything else a fraction (0.5); a fraction of
    1 or more, such as 1.0, is refused by the split with what to give instead."""
    if re.fullmatch(r"\s*[0-9]+\s*", text):
        return int(text)
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:20]!r} is neither a fraction such as 0.5 nor a row count") from None


def _writable_target(path: Path, *, folder: bool) -> Path:
    """Refuse an output that cannot be written before any work: a file where a folder goes (or the reverse), or a
    place the process may not write to. Creates nothing that stays."""
    if folder and path.exists() and not path.is_dir():
        raise ValueError(f"--out {str(path)!r} is a file; give a folder for the results")
    if not folder and path.is_dir():
        raise ValueError(f"--out {str(path)!r} is a folder; give a file name such as predictions.csv")
    parent = path if folder else path.parent
    existing = next(p for p in (parent, *parent.parents) if p.exists())
    if not existing.is_dir():
        raise ValueError(f"--out {str(path)!r} cannot be created: {str(existing)!r} is a file, not a folder")
    try:
        tempfile.TemporaryFile(dir=existing).close()
    except OSError as err:
        raise ValueError(f"--out {str(path)!r} is not writable ({err.strerror}); choose another place") from None
    return path


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


def _progress_printer(label: str):
    last = [0.0]

    def progress(step: int, total: int, metrics) -> None:
        now = time.monotonic()
        if now - last[0] < 2.0 and step < total:
            return
        last[0] = now
        shown = " ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, int | float))
        _say(f"[{label}] {step}/{total} {shown}")

    return progress


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
    out = _writable_target(Path(args.out), folder=True)
    dataset = load_dataset(args.data, text_col=args.text_col, label_col=args.label_col, text_b_col=args.text_b_col)
    for warning in dataset.warnings:
        _say(f"warning: {warning}")
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
        _say(f"warning: {warning}")
    if args.ray_address:  # a Ray cluster runs the units; this process only sends them and writes the files
        results, backbone_info, ran = _run_units_on_ray(args, split, spec, units, out)
        processes = {"count": 1, "ray": args.ray_address, "data_parallel": False, "units": ran}
    else:
        group = distributed.join(args.dist_timeout)
        done = _run_my_units(args, group, split, spec, units, out)
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
        _say(
            f"K={point['k_shot']:<4d} {point['method']:20s} acc {point['accuracy']:.3f} ± {point['accuracy_std']:.3f}"
        )
    for row in summary["methods"]:
        _say(
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
        _say(f"warning: --option {name}.{next(iter(options[name]))} is for {name}, which --methods does not run")


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


def _check_backbone(units: list, spec, backbone) -> None:
    """What each method needs of the loaded backbone and its device (LoRA's layers, a full fine-tune's memory),
    checked for every method before the first unit trains, so a late unit cannot fail after hours of work."""
    from core.methods import create

    for unit in {u.method: u for u in units}.values():
        create(unit.method, spec, unit.options).check_backbone(backbone)


def _run_my_units(
    args: argparse.Namespace, group: distributed.Group, split, spec, units: list, out: Path
) -> tuple[list[dict], dict, list[dict]] | None:
    """Run this process's share of the (method, seed) units and gather everyone's results on the main process.

    Under a launcher each process takes every N-th unit on its own device; with `--data-parallel` the continuous
    methods' units are trained by all processes together instead. Returns (unit results in `units` order, backbone
    description, who ran what) on the main process, None on the others.
    """
    with _device_claim(str(group.device)) as claim:
        return _run_claimed_units(args, group, split, spec, units, out, claim)


def gpu_name(device: str) -> str | None:
    """The app's name for `device` when it is a GPU (``cuda`` alone is ``cuda:0``); None for anything else."""
    if not device.startswith("cuda"):
        return None
    return device if ":" in device else "cuda:0"


@contextlib.contextmanager
def _device_claim(device: str) -> Iterator[DeviceClaim | None]:
    """On a GPU, hold it in the app's store ($PTUNE_HOME/runs.db) for the whole comparison, as the app's worker
    would: refused (`DeviceBusy`, one line naming the run there) while the app trains on it; the app's runs wait
    meanwhile. The CPU is shared as before. A store that cannot be opened is said, and the run goes on unclaimed."""
    gpu = gpu_name(device)
    if gpu is None:
        yield None
        return
    path = ptune_home() / "runs.db"
    try:
        store = RunStore(path)
    except (OSError, sqlite3.Error, RuntimeError) as err:
        _say(f"warning: {gpu} not claimed in {path} ({one_line(err)}); the app may train on it at the same time")
        yield None
        return
    try:
        with DeviceClaim(store, gpu) as claim:
            yield claim
    finally:
        store.close()


def _run_claimed_units(
    args: argparse.Namespace, group: distributed.Group, split, spec, units: list, out: Path, claim
) -> tuple[list[dict], dict, list[dict]] | None:
    from core.compare import assign, run_unit

    tag = f"[process {group.rank}/{group.size}] " if group.is_distributed else ""
    should_stop = (lambda: claim.check() or False) if claim is not None else never_stop
    backbone = load_backbone(
        args.backbone,
        trust_remote_code=args.trust_remote_code,
        progress=lambda msg: _say(tag + msg),
        device=None if args.device_map else str(group.device),
        device_map=args.device_map,
    )
    _check_backbone(units, spec, backbone)
    results, ran = [], []
    for unit, shared in assign(units, group.rank, group.size, data_parallel=args.data_parallel):
        who = "all processes" if shared else f"process {group.rank}"
        at_k = f", K={unit.k_shot}" if unit.k_shot is not None else ""
        _say(f"{tag}running {unit.method} (seed {unit.seed}{at_k}) on {backbone.device}, {who}")
        label = f"{unit.method} seed {unit.seed}{at_k}" + (f", process {group.rank}" if group.is_distributed else "")
        try:
            with distributed.data_parallel(group) if shared else contextlib.nullcontext():
                result = run_unit(
                    backbone,
                    split,
                    spec,
                    unit,
                    out_dir=out,
                    progress=_progress_printer(label),
                    should_stop=should_stop,
                    score_test=group.is_main or not shared,
                )
        except Exception as err:  # in a group: one line naming the process, then exit (the launcher stops the rest)
            if not group.is_distributed or isinstance(err, ClaimLost):
                raise
            raise _unit_failed(err, group, unit) from err
        if group.is_main or not shared:
            results.append(result)
            ran.append(
                {
                    "method": unit.method,
                    "seed": unit.seed,
                    "k_shot": unit.k_shot,
                    "process": "all" if shared else group.rank,
                }
            )
    gathered = distributed.exchange(group, {"results": results, "ran": ran})
    distributed.leave(group)
    if not group.is_main:
        return None
    order = {(u.method, u.seed, u.k_shot): i for i, u in enumerate(units)}
    merged = sorted(
        (r for g in gathered for r in g["results"]), key=lambda r: order[(r["method"], r["seed"], r["k_shot"])]
    )
    who_ran = sorted(
        (r for g in gathered for r in g["ran"]), key=lambda r: order[(r["method"], r["seed"], r["k_shot"])]
    )
    return merged, backbone.describe(), who_ran


def _run_units_on_ray(args: argparse.Namespace, split, spec, units: list, out: Path) -> tuple[list, dict, list]:
    """Every unit as a Ray task (`core/runs/cluster.py`); results in `units` order, the backbone as the first unit
    describes it, and where each unit ran."""
    if args.data_parallel or args.device_map:
        raise ValueError("--ray-address runs whole units on cluster nodes; leave out --data-parallel and --device-map")
    _say(f"sending {len(units)} unit(s) to the Ray cluster at {args.ray_address}")
    results = cluster.run_units(
        args.ray_address, args.backbone, split, spec, units, out, trust_remote_code=args.trust_remote_code
    )
    ran = [{"method": u.method, "seed": u.seed, "k_shot": u.k_shot, "process": "ray"} for u in units]
    backbones = [r.pop("backbone") for r in results]
    return results, backbones[0] if backbones else {}, ran


class UnitFailed(ValueError):
    """A unit failed in one process of a group; every process reports its own (errors before it, only process 0)."""

    def __init__(self, message: str, *, bad_input: bool):
        super().__init__(message)
        self.bad_input = bad_input


def _unit_failed(err: Exception, group: distributed.Group, unit) -> UnitFailed:
    """One line naming the process and unit that failed: bad input stays bad input (exit 2), the rest exit 1."""
    first = one_line(err)
    where = f"process {group.rank} of {group.size}, {unit.method} seed {unit.seed}"
    if isinstance(err, BAD_INPUT):
        return UnitFailed(f"{where}: {first}", bad_input=True)
    return UnitFailed(f"{where}: {type(err).__name__}: {first}", bad_input=False)


def _launched_rank() -> int:
    """This process's rank as the launcher set it (0 without one): input errors are the same on every process."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from core.prompts.export import write_safe_csv
    from core.prompts.predict import predict_frame

    out = _writable_target(Path(args.out), folder=False)
    learned = artifacts.load(args.prompt)  # fully validated before anything it names is used
    df = read_table(args.data)
    spec = args.backbone or learned.backbone.get("spec") or "default"
    backbone = load_backbone(spec, trust_remote_code=args.trust_remote_code, progress=_say)
    preds = predict_frame(backbone, learned, df, text_col=args.text_col, text_b_col=args.text_b_col)
    for warning in preds.attrs.get("warnings", ()):
        _say(f"warning: {warning}")
    print(write_safe_csv(preds, out))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    if args.action == "install-default":
        start = time.perf_counter()
        path = install_default(progress=_say)
        _say(f"installed in {time.perf_counter() - start:.1f} s")
        print(path)
        return 0
    start = time.perf_counter()
    backbone = load_backbone(args.backbone, trust_remote_code=args.trust_remote_code)
    info = {**backbone.describe(), "load_seconds": round(time.perf_counter() - start, 2)}
    print(json.dumps(info, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m core", description="PTune Studio: compare ways of prompting a language model on a labeled CSV."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{compare,predict,models}")
    cmp_ = sub.add_parser("compare", help="run methods side by side on one held-out split; writes results.json")
    cmp_.add_argument("--data", required=True, help="labeled CSV")
    cmp_.add_argument("--text-col", help="text column (auto-detected)")
    cmp_.add_argument("--text-b-col", help="second text column for pair tasks")
    cmp_.add_argument("--label-col", help="label column (auto-detected)")
    cmp_.add_argument("--methods", default="manual,baseline", help=f"comma-separated: {', '.join(method_names())}")
    cmp_.add_argument("--backbone", default="default", help="'default' (SmolLM2-135M), a Hugging Face ID or a path")
    cmp_.add_argument("--template", action="append", help="template (repeat for several), e.g. '{text} It was [MASK]'")
    cmp_.add_argument("--verbalizer", help='JSON, e.g. \'{"positive": ["great"], "negative": ["terrible"]}\'')
    cmp_.add_argument(
        "--k-shot",
        default=None,
        help="examples per class for training and dev (default: all); several, e.g. 8,16,32,64, draw a learning "
        "curve (every method and seed at each K, the same test rows)",
    )
    cmp_.add_argument("--seeds", default="0", help="comma-separated seeds, e.g. 0,1,2")
    cmp_.add_argument(
        "--test-size",
        type=_part_size,
        default=0.5,
        help="test share: a fraction such as 0.5, or a row count such as 200",
    )
    cmp_.add_argument(
        "--dev-size", type=_part_size, default=0.1, help="dev share: a fraction of all rows, or a row count"
    )
    cmp_.add_argument("--split-seed", type=int, default=0, help="seed of the train/dev/test split (shared by all)")
    cmp_.add_argument("--max-steps", type=int, default=None, help="training steps for trained methods")
    cmp_.add_argument("--option", action="append", help="method option METHOD.NAME=VALUE (repeatable)")
    cmp_.add_argument(
        "--no-tune",
        action="store_true",
        help="skip the automatic per-method tuning on dev (learning rate, encoder, AutoPrompt's candidates; "
        "options you set with --option are never tuned)",
    )
    cmp_.add_argument("--out", default="runs/latest", help="output folder")
    cmp_.add_argument("--trust-remote-code", action="store_true", help="allow a backbone's own code to run")
    cmp_.add_argument("--device-map", choices=["auto"], help="shard a backbone larger than one GPU across GPUs")
    cmp_.add_argument(
        "--data-parallel",
        action="store_true",
        help="under torchrun/accelerate launch: train each continuous-prompt unit on all processes together "
        "(batches split, gradients averaged) instead of one unit per process",
    )
    cmp_.add_argument(
        "--dist-timeout",
        type=float,
        default=distributed.DEFAULT_TIMEOUT_S,
        help="under a launcher: seconds a process waits for the others at a collective call (the end-of-run "
        "exchange waits for the slowest process)",
    )
    cmp_.add_argument(
        "--ray-address",
        default=os.environ.get(cluster.RAY_ADDRESS_ENV) or None,
        help="send the units to this Ray cluster (auto, HOST:6379, ray://HOST:10001; 'local' starts one here); "
        "default: $PTUNE_RAY_ADDRESS, else run here",
    )
    cmp_.set_defaults(func=cmd_compare)
    pred = sub.add_parser("predict", help="predict labels for a new CSV with a learned-prompt file")
    pred.add_argument("--prompt", required=True, help="learned-prompt file (.safetensors or .json)")
    pred.add_argument("--data", required=True, help="CSV with a text column")
    pred.add_argument("--out", required=True, help="output CSV")
    pred.add_argument("--text-col", help="text column (default: 'text' or the longest)")
    pred.add_argument("--text-b-col", help="second text column for pair tasks")
    pred.add_argument("--backbone", help="override the backbone recorded in the prompt file")
    pred.add_argument("--trust-remote-code", action="store_true")
    pred.set_defaults(func=cmd_predict)
    models = sub.add_parser("models", help="install the embedded default backbone, or describe one")
    models.add_argument("action", choices=["install-default", "info"])
    models.add_argument("--backbone", default="default")
    models.add_argument("--trust-remote-code", action="store_true")
    models.set_defaults(func=cmd_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except UsageError as err:
        if _launched_rank() == 0:
            _say(f"error: {err}")
        return EXIT_BAD_INPUT
    try:
        prefix_cache.check_settings()  # a bad PTUNE_* setting: one line before any work
        return args.func(args)
    except UnitFailed as err:
        _say(f"error: {err}")
        return EXIT_BAD_INPUT if err.bad_input else EXIT_FAILED
    except DeviceBusy as err:
        _say(f"error: {err}")
        return EXIT_BAD_INPUT
    except (ClaimLost, StoreDamaged) as err:
        _say(f"error: {one_line(err)}")
        return EXIT_FAILED
    except (ValueError, DataError, BackboneError) as err:
        if _launched_rank() == 0:  # the same on every process of a group: said once
            _say(f"error: {one_line(err)}")
        return EXIT_BAD_INPUT
    except OSError as err:  # a file that vanished or cannot be written while we ran
        where = f" ({Path(err.filename).name})" if err.filename else ""
        if _launched_rank() == 0:
            _say(f"error: {err.strerror or type(err).__name__}{where}; check the paths and permissions")
        return EXIT_BAD_INPUT
    except distributed.DistributedError as err:
        _say(f"error: {err}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        _say("interrupted")
        return 130
