"""AutoPrompt search speed: batched candidate scoring vs the reference one-candidate-at-a-time loop, side by side.

Both runs do the same search (same backbone, data, seed, k, batch size, accumulation steps, so the same gradient
batches, candidates and scoring batches); only how the candidates (and the gradient pass) are computed differs:

- reference:  one full forward pass per candidate, as the reference AutoPrompt implementation does;
- batched:    all k candidates x B examples in large batches, without the prefix cache (attribution);
- batched+cache (ours): batched, and for causal LMs the tokens before the first trigger run once per example and
              are reused as past key/values by every candidate, gradient pass and later iteration.

    python benchmarks/bench_autoprompt_speed.py --backbone default --k 10 --batch 16 --iterations 6
    python benchmarks/bench_autoprompt_speed.py --device cuda ...   # on a GPU machine

Prints a markdown table and writes JSON with --json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.data import few_shot_split, load_dataset, split_dataset  # noqa: E402
from core.engine.backbone import load_backbone  # noqa: E402
from core.engine.scoring import build_plan  # noqa: E402
from core.engine.templates import Template, Verbalizer  # noqa: E402
from core.methods.autoprompt import default_template  # noqa: E402
from core.methods.autoprompt.trigger_search import (  # noqa: E402
    SearchSettings,
    TriggerScorer,
    candidate_filter,
    search_triggers,
    trigger_words,
)

MODES = {  # name -> (batched candidate scoring, prefix cache)
    "reference (1 candidate / forward)": (False, False),
    "batched": (True, False),
    "batched + prefix cache (ours)": (True, True),
}


def run_mode(backbone, plan, train, settings, init, banned, *, batched: bool, cache: bool, max_rows: int):
    scorer = TriggerScorer(backbone, plan, train.records, max_rows=max_rows, prefix_cache=cache)
    s = SearchSettings(**{**settings.__dict__, "batched": batched})
    if backbone.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = search_triggers(scorer, train.labels, init, banned, s)
    if backbone.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return seconds, result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="default")
    ap.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    ap.add_argument("--data", default="data/samples/movie_reviews.csv")
    ap.add_argument("--k-shot", type=int, default=32, help="training examples per class")
    ap.add_argument("--k", type=int, default=10, help="candidates per iteration (num_candidates)")
    ap.add_argument("--batch", type=int, default=16, help="examples per gradient / scoring batch")
    ap.add_argument("--accumulation", type=int, default=1, help="gradient batches per iteration")
    ap.add_argument("--n-triggers", type=int, default=4)
    ap.add_argument("--iterations", type=int, default=6, help="timed search iterations per run")
    ap.add_argument("--repeats", type=int, default=2, help="runs per mode, interleaved; the median is reported")
    ap.add_argument("--max-rows", type=int, default=256, help="rows per forward in batched scoring")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--modes", default="all", help="comma-separated subset of: reference,batched,cache")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    backbone = load_backbone(args.backbone, device=args.device)
    data = load_dataset(args.data)
    split = split_dataset(data, test_size=0.5, seed=0)
    train, _ = few_shot_split(split, args.k_shot, 0)
    template = Template.parse(default_template(backbone.kind, args.n_triggers, train.columns))
    plan = build_plan(backbone, template, Verbalizer.default(train.label_names), train.label_names)
    banned = candidate_filter(backbone, plan)
    init = [backbone.mask_id if backbone.mask_id is not None else backbone.tokenizer(" the")["input_ids"][-1]]
    init = init * args.n_triggers
    settings = SearchSettings(
        iterations=args.iterations,
        num_candidates=args.k,
        batch_size=args.batch,
        accumulation_steps=args.accumulation,
        seed=0,
    )
    wanted = {"reference": 0, "batched": 1, "cache": 2}
    modes = list(MODES.items())
    if args.modes != "all":
        modes = [modes[wanted[m.strip()]] for m in args.modes.split(",")]

    # warm-up (allocations, lazy init) on one iteration of each mode
    for _, (batched, cache) in modes:
        run_mode(
            backbone,
            plan,
            train,
            SearchSettings(**{**settings.__dict__, "iterations": 1}),
            init,
            banned,
            batched=batched,
            cache=cache,
            max_rows=args.max_rows,
        )
    times: dict[str, list[float]] = {name: [] for name, _ in modes}
    found: dict[str, list[str]] = {}
    for _ in range(args.repeats):
        for name, (batched, cache) in modes:
            seconds, result = run_mode(
                backbone, plan, train, settings, init, banned, batched=batched, cache=cache, max_rows=args.max_rows
            )
            times[name].append(seconds)
            found[name] = trigger_words(backbone, result.last)
            print(f"  {name}: {seconds:.2f} s for {args.iterations} iterations -> {found[name]}", file=sys.stderr)
    ref_name = modes[0][0]
    rows = []
    for name, _ in modes:
        med = statistics.median(times[name])
        rows.append(
            {
                "mode": name,
                "seconds": med,
                "iterations_per_second": args.iterations / med,
                "speedup": statistics.median(times[ref_name]) / med,
                "runs": times[name],
                "final_triggers": found[name],
            }
        )
    info = {
        "backbone": backbone.describe(),
        "device": str(backbone.device),
        "threads": args.threads,
        "cpu": platform.processor() or platform.machine(),
        "k": args.k,
        "batch": args.batch,
        "accumulation": args.accumulation,
        "n_triggers": args.n_triggers,
        "iterations": args.iterations,
        "k_shot": args.k_shot,
        "template": template.source,
        "same_search": len({tuple(v) for v in found.values()}) == 1,
        "rows": rows,
    }
    print(
        f"backbone {backbone.name} on {backbone.device} ({args.threads} threads); k={args.k}, batch={args.batch}, "
        f"accumulation={args.accumulation}, {args.n_triggers} triggers, template {template.source!r}"
    )
    print("| mode | s / iteration | iterations / s | speed-up |")
    print("|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['mode']} | {r['seconds'] / args.iterations:.3f} | {r['iterations_per_second']:.3f} | "
            f"{r['speedup']:.2f}x |"
        )
    print(f"same triggers found by every mode: {info['same_search']}")
    if args.json:
        args.json.write_text(json.dumps(info, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
