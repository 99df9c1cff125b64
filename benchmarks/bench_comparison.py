"""The product's main job, timed as a user waits for it: the default comparison on a 1,000-row CSV, tuning on.

Every method the Train page offers (manual templates, majority, linear probe, AutoPrompt, P-tuning v1, P-tuning v2,
prompt tuning) with its default options, K = 32 per label, one seed, tuning on dev on, on the default backbone
(SmolLM2-135M, CPU), scored on the same held-out test split, in the order the app runs them (cheapest first by
`core.runs.estimate` where this checkout has it). Prints, for one mode or several side by side:

- the time to the first provisional verdict (the first prompting method's row, manual or learned: the baselines
  alone say nothing about prompts), counted from launch with the backbone loaded, and when each method's row lands;
- wall seconds per method and in total, test accuracy, steps used, peak RSS and the prefix cache's hit rate;
- the estimate made before launch (`core.runs.estimate.estimate_comparison`) against the actual time: the ETA error;
- with `--against`, each method's McNemar p against the other checkout's predictions on the same test rows, so a
  speed-up that cost accuracy shows as a significant difference, not as noise in the accuracy column.

`--json` keeps the numbers, so a run of an older checkout (`--label before`) and this one can be compared by
`--against FILE`, which prints the two side by side.

    OMP_NUM_THREADS=2 python benchmarks/bench_comparison.py --json after.json        # the whole job (~15 min)
    python benchmarks/bench_comparison.py --test-rows 100 --methods manual,baseline  # a quicker look
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.compare import Unit, method_options, prompt_spec, run_unit  # noqa: E402
from core.data import load_dataset, split_dataset  # noqa: E402
from core.engine import prefix_cache  # noqa: E402
from core.engine.backbone import load_backbone  # noqa: E402
from core.engine.evaluate import mcnemar_test  # noqa: E402

METHODS = ("manual", "baseline", "linear_probe", "autoprompt", "ptuning", "ptuning_v2", "prompt_tuning")
BASELINES = ("baseline", "linear_probe")  # majority class and the head-only probe: bars, not prompts


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def load_average() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def plan(backbone, split, spec, methods: list[str], args) -> tuple[list[Unit], dict[str, float] | None]:
    """The units in the order the app would run them, and the estimate before launch (None: no estimator here)."""
    units = [
        Unit(m, args.seed, method_options(m, {}, max_steps=args.max_steps), args.k_shot, tune=not args.no_tune)
        for m in methods
    ]
    try:
        from core.runs import estimate  # noqa: PLC0415  (absent in checkouts before issue 24)
    except ImportError:
        return units, None
    probed = estimate.probe(backbone, split.train.records, spec.templates[0])  # a first launch on this device
    rates = estimate.rates_for(methods, probed=probed)
    guess = estimate.estimate_comparison(units, spec, split, rates)
    by_method = {u.method: e.seconds for u, e in zip(units, guess.units, strict=True)}
    return estimate.cheapest_first(units, guess), {**by_method, "total": guess.total, "source": guess.source}


def run(backbone, split, spec, units: list[Unit]) -> dict:
    """Run the units one after another as a worker does (one process, one prefix cache); time each row's arrival."""
    prefix_cache.PREFIX_CACHE.clear()
    before = prefix_cache.stats()
    out: dict = {"methods": {}, "order": [u.method for u in units]}
    start = time.perf_counter()
    for unit in units:
        t0, cache0 = time.perf_counter(), prefix_cache.stats()
        rows = run_unit(backbone, split, spec, unit)["rows"]
        cache1 = prefix_cache.stats()
        primary = next(r for r in rows if r["primary"])
        out["methods"][unit.method] = {
            "seconds": time.perf_counter() - t0,
            "landed_at": time.perf_counter() - start,
            "accuracy": primary["accuracy"],
            "dev_accuracy": primary.get("dev_accuracy"),
            "steps": primary.get("steps"),
            "predictions": primary["predictions"],
            "tuning": primary.get("tuning"),  # chosen settings and every trial's steps, seconds and dev scores
            "cache": {k: cache1.get(k, 0) - cache0.get(k, 0) for k in ("hits", "misses", "evictions")},
        }
        c = out["methods"][unit.method]["cache"]
        print(
            f"  {unit.method}: {out['methods'][unit.method]['seconds']:.1f} s, acc {primary['accuracy']:.3f}, "
            f"prefix cache {c['hits']} hits {c['misses']} misses {c['evictions']} evictions; load {load_average()}",
            flush=True,
        )
    out["seconds"] = time.perf_counter() - start
    prompting = [m for name, m in out["methods"].items() if name not in BASELINES] or list(out["methods"].values())
    out["first_verdict_s"] = min(m["landed_at"] for m in prompting)  # a verdict on prompts needs a prompt's row
    after = prefix_cache.stats()
    hits, misses = after["hits"] - before["hits"], after["misses"] - before["misses"]
    out.update(hit_rate=hits / max(1, hits + misses), peak_rss_mb=peak_rss_mb(), cache_max_mb=after.get("max_mb"))
    return out


def paired_p(new: dict, old: dict, gold: list[int]) -> str:
    """McNemar p of a method's test predictions now against the other checkout's ('same' when they agree)."""
    if new["predictions"] == old["predictions"]:
        return "same"
    return f"{mcnemar_test(new['predictions'], old['predictions'], gold)['p_value']:.3f}"


def report(result: dict, estimate: dict | None, against: dict | None, gold: list[int]) -> None:
    methods = result["order"]
    old = (against or {}).get("result", {}).get("methods", {})
    print(
        f"{'method':16s} {'seconds':>9s} {'landed at':>10s} {'accuracy':>9s} {'steps':>6s} {'hits':>7s} {'misses':>6s}",
        end="",
    )
    print(f" {'estimate':>9s}" if estimate else "", end="")
    print(f" {'before s':>9s} {'before acc':>10s} {'ratio':>6s} {'McNemar p':>9s}" if old else "")
    for name in methods:
        m = result["methods"][name]
        c = m.get("cache", {})
        line = f"{name:16s} {m['seconds']:9.1f} {m['landed_at']:10.1f} {m['accuracy']:9.3f} {str(m['steps']):>6s}"
        line += f" {c.get('hits', '-'):>7} {c.get('misses', '-'):>6}"
        if estimate:
            line += f" {estimate.get(name, float('nan')):9.1f}"
        if name in old:
            line += f" {old[name]['seconds']:9.1f} {old[name]['accuracy']:10.3f} {old[name]['seconds'] / m['seconds']:5.2f}x"
            line += f" {paired_p(m, old[name], gold):>9s}"
        print(line)
    print(f"{'total':16s} {result['seconds']:9.1f}", end="")
    print(f" {'':10s} {'':9s} {'':6s} {estimate['total']:9.1f}" if estimate else "", end="")
    print(f" {against['result']['seconds']:9.1f}" if old else "")
    first = min(
        (n for n in methods if n not in BASELINES), key=lambda n: result["methods"][n]["landed_at"], default="-"
    )
    print(
        f"time to the first provisional verdict: {result['first_verdict_s']:.1f} s (the first prompt's row: {first})"
    )
    if old:
        print(
            f"before: first verdict {against['result']['first_verdict_s']:.1f} s, total {against['result']['seconds']:.1f} s"
        )
        print(f"speed-up before / now: {against['result']['seconds'] / result['seconds']:.2f}x")
    if estimate:
        error = (estimate["total"] - result["seconds"]) / result["seconds"]
        print(
            f"ETA at launch {estimate['total']:.0f} s ({estimate['source']}) vs actual {result['seconds']:.0f} s: "
            f"error {error:+.0%}"
        )
    budget = f" (budget {result['cache_max_mb']:.0f} MB)" if result.get("cache_max_mb") else ""
    print(f"peak RSS {result['peak_rss_mb']:.0f} MB, prefix cache hit rate {result['hit_rate']:.2f}{budget}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT / "data/samples/movie_reviews.csv"), help="1,000 labelled rows")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--k-shot", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--test-size", type=float, default=0.5)
    parser.add_argument("--test-rows", type=int, default=0, help="score only the first N test rows (0: all)")
    parser.add_argument("--max-steps", type=int, default=None, help="override every method's steps (default: theirs)")
    parser.add_argument("--no-tune", action="store_true", help="each method's defaults, no search on dev")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--backbone", default="default", help="'default' (SmolLM2-135M) or a path")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (bf16 on a GPU that has it)")
    parser.add_argument("--label", default="now", help="what this checkout is, kept in the JSON (e.g. before)")
    parser.add_argument("--json", help="write the numbers here")
    parser.add_argument("--against", help="a JSON this script wrote for another checkout: print both side by side")
    parser.add_argument("--report", help="a JSON this script wrote: print its report (with --against) without running")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dataset = load_dataset(args.data)
    split = split_dataset(dataset, test_size=args.test_size, seed=0)
    if args.test_rows:
        split = replace(split, test=split.test.subset(list(range(min(args.test_rows, len(split.test))))))
    spec = prompt_spec(dataset)
    against = json.loads(Path(args.against).read_text()) if args.against else None
    if args.report:
        saved = json.loads(Path(args.report).read_text())
        return report(saved["result"], saved["estimate"], against, list(split.test.labels))
    backbone = load_backbone(args.backbone, device=args.device)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    load_start = load_average()
    units, estimate = plan(backbone, split, spec, methods, args)
    result = run(backbone, split, spec, units)
    print(
        f"\n{len(dataset)} rows ({Path(args.data).name}), test {len(split.test)} rows, K = {args.k_shot} per label, "
        f"seed {args.seed}, tuning {'off' if args.no_tune else 'on'}, {backbone.name}, {backbone.device} "
        f"{backbone.dtype}, {args.threads} threads; load average {load_start} at start, {load_average()} at end"
    )
    report(result, estimate, against, list(split.test.labels))
    if args.json:
        payload = {"label": args.label, "args": vars(args), "estimate": estimate, "result": result}
        Path(args.json).write_text(json.dumps(payload, indent=2, default=str))


if __name__ == "__main__":
    main()
