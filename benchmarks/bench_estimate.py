"""The estimate against the truth, out of sample (issue 31): datasets x K x method sets, each estimated before launch
and then run with the real engine, estimate vs actual per method and in total.

Two estimates of every comparison, with the same settings as the run:
- *first launch*: nothing remembered; a probe of the loaded backbone, taken afresh before each comparison (as a
  freshly started server takes it: a 2-core machine's speed drifts by 15-30 % over half an hour here, and one probe
  at the job's start made its later comparisons read that drift as the model's error), and the rows' tokens
  measured with its tokenizer, each unit's K-shot rows too;
- *after one run*: the per-token rates the worker would have remembered (`core.runs.estimate.measured`, kept in a
  real `RunStore`) from the first comparison that ran each method — then applied to every other comparison (other
  datasets, other K): out of sample. The comparisons the rates came from are marked "in sample" and left out of
  the after-one-run score.

Each comparison runs its units one after another in one process, in the order the app runs them
(`cheapest_first`), with the prefix cache cleared before it (a new dataset shares nothing with the last). Prints
each unit's estimate (with its range) and wall seconds, each comparison's total, the errors as percentages and the
share within +-30 %. The machine's load average is printed at start and end: time is only as quiet as the machine.
The units run through `run_unit` here, not a worker, so every estimate is compared less the worker's own
per-run cost (`UNIT_OVERHEAD_S`: claiming the run, saving its files), which they do not pay.

    OMP_NUM_THREADS=2 python benchmarks/bench_estimate.py            # the whole job: 3 x 2 x 2 (~25 min, 2 cores)
    python benchmarks/bench_estimate.py --datasets airline_tweets --k-shots 8 --test-rows 60   # a quick look
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.compare import method_options, plan_units, prompt_spec, run_unit  # noqa: E402
from core.data import load_dataset, split_dataset  # noqa: E402
from core.engine import prefix_cache  # noqa: E402
from core.engine.backbone import LMKind, load_backbone  # noqa: E402
from core.runs import estimate  # noqa: E402
from core.runs.store import RunStore  # noqa: E402

DATASETS = ("movie_reviews", "airline_tweets", "drug_reviews")
METHOD_SETS = ("manual,baseline,autoprompt,ptuning", "ptuning_v2,prompt_tuning")
BAND = 0.30


def load_average() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def error(expected: float, actual: float) -> float:
    return (expected - actual) / actual if actual > 0 else float("nan")


def net(seconds: float) -> float:
    """An estimate less the worker's own per-run cost (claiming the run, saving its files: `UNIT_OVERHEAD_S`),
    which `run_unit` called directly here does not pay."""
    return max(seconds - estimate.UNIT_OVERHEAD_S, 0.0)


def once_chosen(est: estimate.ComparisonEstimate | None, i: int, template: str | None) -> float | None:
    """Unit `i`'s seconds as the pages show them once manual has chosen `template` (at launch's for all but
    AutoPrompt, whose triggers are that template's words), less the worker's overhead."""
    return net(estimate.as_chosen(est.units[i].to_json(), template)["seconds"]) if est else None


def comparison(backbone, store: RunStore, name: str, k: int, methods: list[str], args) -> dict:
    """Estimate (first launch, and from what `store` remembers), then run the comparison; per unit and in total."""
    dataset = load_dataset(ROOT / "data/samples" / f"{name}.csv")
    split = split_dataset(dataset, test_size=0.5, seed=0)
    if args.test_rows:
        split = replace(split, test=split.test.subset(list(range(min(args.test_rows, len(split.test))))))
    spec = prompt_spec(dataset)
    seeds = [int(s) for s in args.seeds.split(",")]
    units = plan_units(methods, seeds, lambda m: method_options(m, {}, max_steps=args.max_steps), [k])
    for unit in units:
        unit.tune = not args.no_tune
    causal = backbone.kind is LMKind.CAUSAL
    samples = estimate.samples_of(split, units)
    tokens = estimate.measure_tokens(
        backbone.tokenizer, split.train.records, spec.templates, causal=causal, samples=samples
    )
    probed = estimate.probe(backbone, split.train.records, spec.templates[0], fresh=True)
    first = estimate.estimate_comparison(units, spec, split, estimate.rates_for(methods, probed=probed), tokens)
    remembered = store.throughput(backbone.name, "cpu")
    known = estimate.rates_for(methods, remembered=remembered, probed=probed)
    after = estimate.estimate_comparison(units, spec, split, known, tokens) if remembered else None
    in_sample = [m for m in methods if m not in remembered]  # this comparison teaches the store these methods
    order = estimate.cheapest_first(units, first)
    index = {id(u): i for i, u in enumerate(units)}
    prefix_cache.PREFIX_CACHE.clear()
    rows, start = [], time.perf_counter()
    picked: dict[int, str] = {}  # per seed: the template the manual run picked on dev (AutoPrompt starts from it)
    for unit in order:
        t0 = time.perf_counter()
        result = run_unit(backbone, split, spec, unit)
        wall = time.perf_counter() - t0
        i = index[id(unit)]
        if unit.method in in_sample and unit.seed == seeds[0]:
            rates = estimate.measured(result, unit.options, tokens=tokens)
            if rates is not None:
                store.record_throughput(backbone.name, "cpu", unit.method, **rates)
        first_row = (result.get("rows") or [{}])[0]
        if unit.method == "manual" and first_row.get("template"):
            picked[unit.seed] = first_row["template"]

        row = {
            "method": unit.method,
            "seed": unit.seed,
            "actual": wall,
            "first": net(first.units[i].seconds),
            "low": net(first.units[i].low),
            "high": net(first.units[i].high),
            "chosen": once_chosen(first, i, picked.get(unit.seed)),
            "after": net(after.units[i].seconds) if after else None,
            "after_chosen": once_chosen(after, i, picked.get(unit.seed)),
            "after_source": after.units[i].source if after else None,
            "in_sample": unit.method in in_sample,
            "train_seconds": first_row.get("train_seconds"),
            "test_seconds": first_row.get("test_seconds"),
            "trials": [  # what tuning ran: a measured rate is only as good as the work it is divided by
                {k: t.get(k) for k in ("options", "steps", "rung", "seconds", "continued", "pruned")}
                for t in (first_row.get("tuning") or {}).get("trials") or []
            ],
        }
        rows.append(row)
        print(
            f"  {unit.method:14s} seed {unit.seed}: actual {wall:6.1f} s | first launch {row['first']:6.1f} s "
            f"({row['low']:.0f}-{row['high']:.0f}) {error(row['first'], wall):+5.0%}"
            + (f" | once manual chose {row['chosen']:6.1f} s {error(row['chosen'], wall):+5.0%}")
            + (
                f" | after one run {row['after']:6.1f} s {error(row['after'], wall):+5.0%} ({row['after_source']})"
                if after
                else ""
            ),
            flush=True,
        )
    actual = time.perf_counter() - start
    return {
        "dataset": name,
        "k": k,
        "methods": methods,
        "tokens": tokens.text + tokens.templates[0],
        "actual": actual,
        "first": sum(r["first"] for r in rows),
        "chosen": sum(r["chosen"] for r in rows),
        "first_words": first.words("cpu"),
        "after": sum(r["after"] for r in rows) if after else None,
        "after_chosen": sum(r["after_chosen"] for r in rows) if after else None,
        "after_words": after.words("cpu") if after else None,
        "in_sample": bool(in_sample),
        "probe": dataclasses.asdict(probed),
        "picked": picked.get(seeds[0]),
        "units": rows,
    }


def score(runs: list[dict]) -> None:
    """Errors per method (summed over its units in a comparison) and per comparison, and the share within BAND."""

    def line(label: str, pairs: list[tuple[float, float]]) -> None:
        errs = [error(e, a) for e, a in pairs]
        if not errs:
            print(f"{label}: nothing out of sample")
            return
        within = sum(abs(x) <= BAND for x in errs)
        worst = max(errs, key=abs)
        mean_abs = sum(abs(x) for x in errs) / len(errs)
        print(f"{label}: {within}/{len(errs)} within +-{BAND:.0%}, mean |error| {mean_abs:.0%}, worst {worst:+.0%}")

    labels = {
        "first": "first launch (probe)",
        "chosen": "first launch, once manual chose its template",
        "after": "after one run",
        "after_chosen": "after one run, once manual chose its template",
    }
    for key, label in labels.items():
        learned = key.startswith("after")
        keep = [r for r in runs if r.get(key) is not None and not (learned and r["in_sample"])]
        line(f"{label}, totals", [(r[key], r["actual"]) for r in keep])
        per_method: list[tuple[float, float]] = []
        for r in keep:
            for m in r["methods"]:
                mine = [u for u in r["units"] if u["method"] == m and not (learned and u["in_sample"])]
                if mine and m != "baseline":  # the majority class takes no time worth a percentage
                    per_method.append((sum(u[key] for u in mine), sum(u["actual"] for u in mine)))
        line(f"{label}, per method", per_method)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(DATASETS), help="CSV names under data/samples/")
    parser.add_argument("--k-shots", default="8,16", help="K per label, one comparison each")
    parser.add_argument("--method-sets", default=";".join(METHOD_SETS), help="';'-separated comma lists")
    parser.add_argument("--seeds", default="0", help="seeds per comparison")
    parser.add_argument("--test-rows", type=int, default=120, help="score the first N test rows (0: all)")
    parser.add_argument("--max-steps", type=int, default=30, help="every method's steps (AutoPrompt: iterations)")
    parser.add_argument("--no-tune", action="store_true", help="each method's defaults, no search on dev")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="write every number here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    backbone = load_backbone("default", device="cpu")
    load_start = load_average()
    runs = []
    with tempfile.TemporaryDirectory() as home, RunStore(Path(home) / "runs.db") as store:
        for name in args.datasets.split(","):
            for k in [int(x) for x in args.k_shots.split(",")]:
                for methods in args.method_sets.split(";"):
                    print(f"\n{name}, K = {k}, {methods} (load average {load_average()})", flush=True)
                    run = comparison(backbone, store, name, k, methods.split(","), args)
                    runs.append(run)
                    after = (
                        f" | after one run {run['after']:.0f} s {error(run['after'], run['actual']):+.0%}"
                        f"{' (in sample)' if run['in_sample'] else ''}"
                        if run["after"] is not None
                        else ""
                    )
                    print(
                        f"  total: actual {run['actual']:.0f} s | first launch {run['first']:.0f} s "
                        f"{error(run['first'], run['actual']):+.0%}{after}\n  said: {run['first_words']}"
                    )
    print(
        f"\n{backbone.name}, {args.threads} threads, test {args.test_rows or 'all'} rows, max_steps {args.max_steps}, "
        f"tuning {'off' if args.no_tune else 'on'}, seeds {args.seeds}; load average {load_start} at start, "
        f"{load_average()} at end"
    )
    score(runs)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
