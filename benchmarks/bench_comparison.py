"""The product's main job, timed: the default comparison on a 1,000-row CSV, frozen-prefix cache on and off.

Every method the Train page offers (manual templates, majority, linear probe, AutoPrompt, P-tuning v1, P-tuning v2,
prompt tuning) with its default options, K = 32 per label, one seed, on the default backbone (SmolLM2-135M, CPU),
scored on the same held-out test split — once with `core.prefix_cache` (one cache for the whole comparison, as
the app's process has) and once with it bypassed (`nocache`), or bypassed with the training loop as it was before
(`before`: no early stopping, no length buckets), which gives the before/after accuracy table. Prints wall seconds per method and in total, test accuracy,
peak RSS and the cache's hit rate, side by side.

    OMP_NUM_THREADS=2 python benchmarks/bench_comparison.py                      # the whole job (long on 2 cores)
    python benchmarks/bench_comparison.py --test-rows 100 --modes cache          # a quicker look
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import sys
import time
from dataclasses import fields, replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core import prefix_cache  # noqa: E402
from core.backbone import load_backbone  # noqa: E402
from core.compare import Unit, method_options, prompt_spec, run_unit  # noqa: E402
from core.data import load_dataset, split_dataset  # noqa: E402
from core.methods import method_class  # noqa: E402

METHODS = ("manual", "baseline", "linear_probe", "autoprompt", "ptuning", "ptuning_v2", "prompt_tuning")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


BEFORE = {"patience": 0, "bucket_by_length": False}  # the training loop before issue 11


def run_mode(backbone, split, spec, methods, args, *, mode: str) -> dict:
    """One whole comparison; returns per-method wall seconds and accuracies, and the cache's counts.

    cache: everything on (the defaults). nocache: the cache bypassed. before: the cache bypassed and the training
    loop as it was before (no early stopping, no length buckets), for before/after accuracy on the same split.
    """
    cached = mode == "cache"
    prefix_cache.PREFIX_CACHE.clear()
    before = prefix_cache.stats()
    out: dict = {"methods": {}}
    start = time.perf_counter()
    with contextlib.nullcontext() if cached else prefix_cache.bypass():
        for name in methods:
            options = method_options(name, {}, max_steps=args.max_steps)
            if mode == "before":
                known = {f.name for f in fields(method_class(name).config_cls)}
                options.update({k: v for k, v in BEFORE.items() if k in known})
            t0 = time.perf_counter()
            unit = run_unit(backbone, split, spec, Unit(name, args.seed, options, args.k_shot))
            rows = unit["rows"]
            out["methods"][name] = {
                "seconds": time.perf_counter() - t0,
                "accuracy": next(r["accuracy"] for r in rows if r["primary"]),
                "rows": {r["name"]: r["accuracy"] for r in rows},
                "steps": rows[0].get("steps"),
                "predictions": next(r["predictions"] for r in rows if r["primary"]),
            }
            print(
                f"  [{'cache' if cached else 'no cache'}] {name}: {out['methods'][name]['seconds']:.1f} s", flush=True
            )
    out["seconds"] = time.perf_counter() - start
    after = prefix_cache.stats()
    hits, misses = after["hits"] - before["hits"], after["misses"] - before["misses"]
    out.update(hits=hits, misses=misses, hit_rate=hits / max(1, hits + misses), peak_rss_mb=peak_rss_mb())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT / "data/samples/movie_reviews.csv"), help="1,000 labelled rows")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--modes", default="cache,before", help="cache, nocache and/or before, in this order")
    parser.add_argument("--k-shot", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--test-size", type=float, default=0.5)
    parser.add_argument("--test-rows", type=int, default=0, help="score only the first N test rows (0: all)")
    parser.add_argument("--max-steps", type=int, default=None, help="override every method's steps (default: theirs)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--backbone", default="default", help="'default' (SmolLM2-135M) or a path")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (bf16 on a GPU that has it)")
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dataset = load_dataset(args.data)
    split = split_dataset(dataset, test_size=args.test_size, seed=0)
    if args.test_rows:
        split = replace(split, test=split.test.subset(list(range(min(args.test_rows, len(split.test))))))
    spec = prompt_spec(dataset)
    backbone = load_backbone(args.backbone, device=args.device)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    with open("/proc/loadavg") as f:
        load_start = f.read().split()[:3]
    results = {}
    for mode in [m.strip() for m in args.modes.split(",")]:
        results[mode] = run_mode(backbone, split, spec, methods, args, mode=mode)
    with open("/proc/loadavg") as f:
        load_end = f.read().split()[:3]
    print(
        f"\n{len(dataset)} rows ({Path(args.data).name}), test {len(split.test)} rows, K = {args.k_shot} per label, "
        f"seed {args.seed}, {backbone.name}, {backbone.device} {backbone.dtype}, {args.threads} threads; load average {' '.join(load_start)} at "
        f"start, {' '.join(load_end)} at end"
    )
    modes = list(results)
    print(f"{'method':16s}" + "".join(f" {m + ' s':>12s} {m + ' acc':>12s}" for m in modes) + "  steps")
    for name in methods:
        cells = "".join(
            f" {results[m]['methods'][name]['seconds']:12.1f} {results[m]['methods'][name]['accuracy']:12.3f}"
            for m in modes
        )
        print(f"{name:16s}{cells}  {results[modes[0]]['methods'][name]['steps']}")
    print(f"{'total':16s}" + "".join(f" {results[m]['seconds']:12.1f} {'':12s}" for m in modes))
    for m in modes:
        r = results[m]
        print(
            f"{m}: peak RSS {r['peak_rss_mb']:.0f} MB (process, so far), prefix cache {r['hits']} hits / "
            f"{r['misses']} misses (hit rate {r['hit_rate']:.2f})"
        )
    if len(modes) == 2:
        a, b = (results[m]["methods"] for m in modes)
        same = {n: a[n]["predictions"] == b[n]["predictions"] for n in methods}
        print(f"identical test predictions {modes[0]} vs {modes[1]}: {same}")
        print(f"speed-up {modes[1]} / {modes[0]}: {results[modes[1]]['seconds'] / results[modes[0]]['seconds']:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=2, default=str))


if __name__ == "__main__":
    main()
