"""Where the estimate's error comes from, and the per-method ratios that fit: a `bench_estimate.py --json` file's
runs split into the pieces the estimate models (each tuning trial, the continued winner, the test pass), each
piece's work and scored tokens counted as `core.runs.estimate` counts them, and each method's two ratios to the probe
(`PRIORS`) fitted to those pieces by least squares on relative error.

Why pieces, not whole units: a unit's time is its speed times what tuning did (how many trials, which one won, how
far it continued), and fitting ratios to unit totals folds the second into the first. Fitted per piece, a ratio is a
speed, and the structure is modelled on its own (`core.runs.estimate`'s expectations). Manual is one piece a unit,
its rows and its tokens, so the fit also says what a manual row costs beyond its tokens (`MethodPrior.row`).
`--check` then prints each unit's estimate by the current model against its measured seconds, per job.

    OMP_NUM_THREADS=2 python benchmarks/fit_estimate.py benchmarks/results/estimate_cpu.json \
        benchmarks/results/estimate_cpu_seed1.json --probe 0.713,0.703 --check   # ~3 min: reruns manual per job
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.compare import method_options, plan_units, prompt_spec, run_unit  # noqa: E402
from core.data import few_shot_split, load_dataset, split_dataset  # noqa: E402
from core.engine.backbone import LMKind, load_backbone  # noqa: E402
from core.methods import REGISTRY  # noqa: E402
from core.runs import estimate, estimate_tokens  # noqa: E402
from core.runs.estimate import PRIORS, as_trial, row_tokens, trial_tokens  # noqa: E402


def pieces(run: dict, unit: dict, tokens, sizes: tuple[int, int, int], max_steps: int) -> list[tuple]:
    """See `_pieces`: its trials on the unit's own K-shot rows, its test pass on the split's."""
    return _pieces(run, unit, tokens.for_sample(unit["seed"], run["k"]), tokens, sizes, max_steps)


def _pieces(run: dict, unit: dict, tokens, test_tokens, sizes: tuple[int, int, int], max_steps: int) -> list[tuple]:
    """(label, work tokens, scored tokens, seconds) per trial and for the test pass of one trained unit, counted as
    `estimate_unit` counts them: a cached method finds the dev and test texts' key/values that manual left."""
    method = unit["method"]
    cls = REGISTRY[method]
    cached = PRIORS[method].cached
    options = {k: v for k, v in method_options(method, {}, max_steps=max_steps).items() if k != "checkpoint_dir"}
    base = cls.config_cls(**options)
    fresh, suffix = row_tokens(base, tokens, cached)
    n_train, n_dev, n_test = sizes
    manual_first = "manual" in run["methods"]
    out = []
    for i, t in enumerate(unit["trials"]):
        c = as_trial(dataclasses.replace(base, **t["options"]), t["rung"] or 0)
        work, scored = trial_tokens(c, t["steps"], n_dev, tokens, cached)
        scored += (n_train + (0 if manual_first else n_dev)) * fresh if i == 0 else 0.0
        kind = "continued" if t["continued"] else ("pruned" if t["pruned"] else "trial")
        kind += f" {row_tokens(c, tokens, cached)[1]:.0f}t"
        out.append((kind, work, scored, t["seconds"]))
    fresh, suffix = row_tokens(base, test_tokens, cached)
    out.append(("test", 0.0, n_test * suffix + (0 if manual_first else n_test * fresh), unit["test_seconds"]))
    return out


def picked(backbone, split, spec, k: int, max_steps: int, seed: int) -> str:
    """The template manual picks on this K-shot dev (AutoPrompt starts from its words): rerun, a few seconds."""
    (unit,) = plan_units(["manual"], [seed], lambda m: method_options(m, {}, max_steps=max_steps), [k])
    return (run_unit(backbone, split, spec, unit).get("rows") or [{}])[0].get("template") or ""


def fit(rows: list[tuple[float, float, float]]) -> tuple[float, float]:
    """Ratios (a_w, a_e) minimising the squared relative error of seconds = a_w W + a_e S, over (W, S, seconds)
    with W and S already in the probe's seconds."""
    a = np.array([[w / s, e / s] for w, e, s in rows if s > 0])
    (aw, ae), *_ = np.linalg.lstsq(a, np.ones(len(a)), rcond=None)
    return float(aw), float(ae)


@dataclasses.dataclass
class Context:
    """One comparison of the job as the estimate sees it: its split, prompts, rows' tokens, probe and units."""

    run: dict
    split: Any
    spec: Any
    tokens: Any
    probe: estimate.Probe
    template: str | None  # what manual picked (AutoPrompt searched its words)


def contexts(backbone, path: str, pinned: estimate.Probe | None = None) -> tuple[dict, list[Context]]:
    """Each comparison of the job at `path`, with the probe it recorded (else `pinned`, else one taken now)."""
    data = json.loads(Path(path).read_text())
    bench, out = data["args"], []
    for run in data["runs"]:
        dataset = load_dataset(ROOT / "data/samples" / f"{run['dataset']}.csv")
        split = split_dataset(dataset, test_size=0.5, seed=0)
        if bench.get("test_rows"):
            n_test = min(bench["test_rows"], len(split.test))
            split = dataclasses.replace(split, test=split.test.subset(list(range(n_test))))
        spec = prompt_spec(dataset)
        seed = int(str(bench.get("seeds", "0")).split(",")[0])
        causal = backbone.kind is LMKind.CAUSAL
        units = plan_units(
            run["methods"], [seed], lambda m: method_options(m, {}, max_steps=bench["max_steps"]), [run["k"]]
        )
        samples = estimate.samples_of(split, units)
        tokens = estimate.measure_tokens(
            backbone.tokenizer, split.train.records, spec.templates, causal=causal, samples=samples
        )
        probe = (
            estimate.Probe(**run["probe"])
            if run.get("probe")
            else pinned or estimate.probe(backbone, split.train.records, spec.templates[0])
        )
        template = run.get("picked") or (
            picked(backbone, split, spec, run["k"], bench["max_steps"], seed)
            if "autoprompt" in run["methods"]
            else None
        )
        out.append(Context(run, split, spec, tokens, probe, template))
    return bench, out


def chosen_tokens(ctx: Context, method: str):
    """The rows' tokens as AutoPrompt's estimate counts them once manual has picked (its words, its triggers)."""
    if method == "autoprompt" and ctx.template in ctx.spec.templates:
        anchor = ctx.tokens.anchors[ctx.spec.templates.index(ctx.template)]
        return dataclasses.replace(ctx.tokens, anchors=(anchor,))
    return ctx.tokens


def manual_piece(ctx: Context, unit: dict, sizes: tuple[int, int, int]) -> tuple:
    """Manual as one piece: every template scored on dev (and the content-free rows) and on test, in rows (its
    "work" column: a per-row cost) and in tokens, as `estimate_unit` counts them."""
    _, n_dev, n_test = sizes
    n = len(ctx.spec.templates)
    dev = ctx.tokens.for_sample(unit["seed"], ctx.run["k"])
    rows = float((n_dev + estimate.CONTENT_FREE_ROWS + n_test) * n)
    scored = sum(
        (n_dev + estimate.CONTENT_FREE_ROWS) * dev.prompt(i) + n_test * ctx.tokens.prompt(i) for i in range(n)
    )
    return ("all", rows, scored, unit["actual"])


def fit_priors(ctxs: list[Context], max_steps: int) -> None:
    """Each method's ratios fitted per piece (each piece against its own job's probe), and each piece's error at
    the current and the fitted ratios. Manual's "work" is its rows: the fit says what a row costs beyond its tokens."""
    by_method: dict[str, list[tuple]] = defaultdict(list)
    for ctx in ctxs:
        pw, pe = ctx.probe.work_seconds, ctx.probe.example_seconds
        for unit in ctx.run["units"]:
            train, dev = few_shot_split(ctx.split, ctx.run["k"], unit["seed"])
            sizes = (len(train), len(dev), len(ctx.split.test))
            if unit["method"] == "manual":
                kind, w, e, s = manual_piece(ctx, unit, sizes)
                by_method["manual"].append((ctx.run["dataset"], ctx.run["k"], kind, w, e, s, pw, pe))
            elif unit["trials"]:
                tokens = chosen_tokens(ctx, unit["method"])
                for kind, w, e, s in pieces(ctx.run, unit, tokens, sizes, max_steps):
                    by_method[unit["method"]].append((ctx.run["dataset"], ctx.run["k"], kind, w, e, s, pw, pe))
    for method, rows in by_method.items():
        prior = PRIORS[method]
        aw, ae = fit([(w * pw, e * pe, s) for *_, w, e, s, pw, pe in rows])
        errors = [(aw * pw * w + ae * pe * e) / s - 1 for *_, w, e, s, pw, pe in rows if s > 0]
        rms = float(np.sqrt(np.mean(np.square(errors))))
        print(
            f"\n{method}: now work {prior.work:.2f} example {prior.example:.2f} | fitted work {aw:.2f} example {ae:.2f}"
            f" (rms error per piece {rms:.0%})"
        )
        if method == "manual":
            print(f"  (a row costs {aw * rows[0][6] * 1e3:.2f} ms beyond its tokens: {aw / ae:.1f} tokens' worth)")
            continue
        for ds, k, kind, w, e, s, pw, pe in rows:
            now = prior.work * pw * w + prior.example * pe * e
            new = aw * pw * w + ae * pe * e
            print(
                f"  {ds[:8]:8s} K{k:<3d} {kind:14s} {s:6.1f} s | now {now:6.1f} {now / s - 1:+5.0%}"
                f" | fit {new:6.1f} {new / s - 1:+5.0%}"
            )


def check(bench: dict, ctxs: list[Context]) -> None:
    """Each unit's estimate by the current model (first launch, once manual chose; less the worker's overhead, which
    the benchmark's units do not pay) against its measured seconds."""
    errors = []
    for ctx in ctxs:
        methods = ctx.run["methods"]
        seeds = [int(x) for x in str(bench.get("seeds", "0")).split(",")]
        units = plan_units(
            methods, seeds, lambda m: method_options(m, {}, max_steps=bench["max_steps"]), [ctx.run["k"]]
        )
        for unit in units:
            unit.tune = not bench.get("no_tune")
        rates = estimate.rates_for(methods, probed=ctx.probe)
        est = estimate.estimate_comparison(units, ctx.spec, ctx.split, rates, ctx.tokens)
        for unit, e in zip(units, est.units, strict=True):
            seconds = estimate.as_chosen(e.to_json(), ctx.template)["seconds"] - estimate.UNIT_OVERHEAD_S
            actual = next(
                u["actual"] for u in ctx.run["units"] if u["method"] == unit.method and u["seed"] == unit.seed
            )
            if unit.method != "baseline":
                errors.append(seconds / actual - 1)
                print(
                    f"  {ctx.run['dataset'][:8]:8s} K{ctx.run['k']:<3d} {unit.method:14s} {actual:6.1f} s"
                    f" | estimate {seconds:6.1f} {seconds / actual - 1:+5.0%}"
                )
    within = sum(abs(x) <= 0.3 for x in errors)
    print(
        f"per method, once manual chose: {within}/{len(errors)} within +-30 %,"
        f" mean |error| {np.mean(np.abs(errors)):.0%}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", nargs="+", help="bench_estimate.py --json outputs (their pieces are pooled)")
    parser.add_argument("--check", action="store_true", help="also each unit's estimate by the current model")
    parser.add_argument(
        "--probe",
        help="'work,scored' ms per token, for a job that did not record its probe (else one taken now: "
        "a process's probe varies by up to 20 %%, so a typical one, from bench_probe.py, fits the ratios better)",
    )
    parser.add_argument(
        "--cached-read",
        type=float,
        help="try this `estimate_tokens.CACHED_READ` (P-tuning's share of its cached text)",
    )
    args = parser.parse_args()
    if args.cached_read is not None:
        estimate_tokens.CACHED_READ = args.cached_read  # read by `row_tokens` at every call
    torch.set_num_threads(2)
    backbone = load_backbone("default", device="cpu")
    pinned = None
    if args.probe:
        work, scored = (float(x) / 1e3 for x in args.probe.split(","))
        pinned = estimate.Probe(example_seconds=scored, work_seconds=work, seconds=0.0)
    jobs = [contexts(backbone, path, pinned) for path in args.json]
    fit_priors([c for _, ctxs in jobs for c in ctxs], jobs[0][0]["max_steps"])
    if args.check:
        for path, (bench, ctxs) in zip(args.json, jobs, strict=True):
            print(f"\n{path}:")
            check(bench, ctxs)


if __name__ == "__main__":
    main()
