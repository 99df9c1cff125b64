"""AutoPrompt alone against AutoPrompt run after another method, in one process, side by side.

The default comparison runs P-tuning before AutoPrompt in one worker (one process, one prefix cache), and AutoPrompt
took about twice as long there as alone. This runs the same AutoPrompt unit twice on the same split, K-shot sample
and options: first with a fresh prefix cache ("alone"), then after the method(s) in `--before` ("after"), and
prints for each the wall seconds, the prefix cache's hits / misses / evictions during the unit, the backbone's
forward passes and the tokens they computed (counts do not depend on what else shares the CPU), and the ratio.
The load average is printed with every timing.

    OMP_NUM_THREADS=2 python benchmarks/bench_autoprompt_after.py                     # 400 rows, tuning off
    OMP_NUM_THREADS=2 python benchmarks/bench_autoprompt_after.py --rows 1000 --tune  # the comparison's size
    ... --profile prof_after.out   # cProfile of the "after" unit (read with pstats)
"""

from __future__ import annotations

import argparse
import cProfile
import json
import resource
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.compare import Unit, method_options, prompt_spec, run_unit  # noqa: E402
from core.data import load_dataset, split_dataset  # noqa: E402
from core.engine import prefix_cache  # noqa: E402
from core.engine.backbone import load_backbone  # noqa: E402


def load_average() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


class ForwardCounter:
    """Counts the backbone's forward passes and the input tokens they computed (cached prefixes not counted)."""

    def __init__(self, module: torch.nn.Module):
        self.calls = self.tokens = 0
        self._handle = module.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, _module, args, kwargs):
        x = kwargs.get("input_ids")
        if x is None:
            x = kwargs.get("inputs_embeds")
        if x is None and args:
            x = args[0]
        self.calls += 1
        if x is not None:
            self.tokens += int(x.shape[0] * x.shape[1])

    def snapshot(self) -> tuple[int, int]:
        return self.calls, self.tokens


def process_state(backbone) -> dict:
    """What an earlier method could leave behind that slows a later one (the second hypothesis of the issue)."""
    model = backbone.model
    return {
        "threads": torch.get_num_threads(),
        "grad_enabled": torch.is_grad_enabled(),
        "train_mode": model.training,
        "params_requiring_grad": sum(p.requires_grad for p in model.parameters()),
        "param_version": sum(p._version for p in model.parameters()),
    }


def timed_unit(backbone, split, spec, unit, counter, profile_path: str | None = None) -> dict:
    before, calls0 = prefix_cache.stats(), counter.snapshot()
    state = process_state(backbone)
    faults0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    load = load_average()
    prof = cProfile.Profile() if profile_path else None
    t0 = time.perf_counter()
    if prof:
        prof.enable()
    result = run_unit(backbone, split, spec, unit)
    if prof:
        prof.disable()
        prof.dump_stats(profile_path)
    seconds = time.perf_counter() - t0
    after, calls1 = prefix_cache.stats(), counter.snapshot()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults0
    primary = next(r for r in result["rows"] if r["primary"])
    return {
        "method": unit.method,
        "seconds": seconds,
        "train_seconds": result["train_seconds"],
        "test_seconds": result["test_seconds"],
        "accuracy": primary["accuracy"],
        "predictions": primary["predictions"],
        **{k: after[k] - before[k] for k in ("hits", "misses", "evictions")},
        "cache_entries": after["entries"],
        "cache_mb": after["mb"],
        "forwards": calls1[0] - calls0[0],
        "tokens": calls1[1] - calls0[1],
        "page_faults": faults,
        "state_at_start": state,
        "load_before": load,
        "load_after": load_average(),
    }


def show(label: str, r: dict) -> None:
    print(
        f"{label:28s} {r['seconds']:8.1f} s (train {r['train_seconds']:6.1f}, test {r['test_seconds']:5.1f})  "
        f"acc {r['accuracy']:.3f}  hits {r['hits']:7d} misses {r['misses']:6d} evictions {r['evictions']:6d}  "
        f"forwards {r['forwards']:6d} tokens {r['tokens']:9d}  cache {r['cache_entries']} entries "
        f"{r['cache_mb']:.0f} MB  page faults {r['page_faults']}  load {r['load_before']} -> {r['load_after']}",
        flush=True,
    )
    print(f"{'':28s} process state at start: {r['state_at_start']}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT / "data/samples/movie_reviews.csv"))
    parser.add_argument("--rows", type=int, default=400, help="use the first N rows of the CSV (0: all)")
    parser.add_argument("--before", default="ptuning", help="method(s) run before AutoPrompt, comma-separated")
    parser.add_argument("--k-shot", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--test-size", type=float, default=0.5)
    parser.add_argument("--max-steps", type=int, default=None, help="override the methods' steps (default: theirs)")
    parser.add_argument(
        "--before-max-steps", type=int, default=None, help="steps of the method(s) run before (default: --max-steps)"
    )
    parser.add_argument("--tune", action="store_true", help="tuning on dev on, as the comparison (slower)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--order", choices=("alone-first", "after-first"), default="alone-first")
    parser.add_argument("--profile", help="write a cProfile of the 'after' AutoPrompt unit here (alone: .alone)")
    parser.add_argument("--json", help="write the numbers here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dataset = load_dataset(args.data)
    if args.rows:
        dataset = dataset.subset(list(range(min(args.rows, len(dataset)))))
    split = split_dataset(dataset, test_size=args.test_size, seed=0)
    spec = prompt_spec(dataset)
    backbone = load_backbone("default", device="cpu")
    counter = ForwardCounter(backbone.model.base_model)

    def unit(method: str, steps: int | None = args.max_steps) -> Unit:
        return Unit(method, args.seed, method_options(method, {}, max_steps=steps), args.k_shot, args.tune)

    print(
        f"{len(dataset)} rows, train {len(split.train)}, test {len(split.test)}, K = {args.k_shot}, tuning "
        f"{'on' if args.tune else 'off'}, {args.threads} threads, cache budget {prefix_cache.PREFIX_CACHE.max_bytes / 2**20:.0f} MB; "
        f"load average {load_average()}",
        flush=True,
    )
    results: dict = {"before": {}}

    def alone() -> None:
        prefix_cache.PREFIX_CACHE.clear()
        results["alone"] = timed_unit(
            backbone, split, spec, unit("autoprompt"), counter, args.profile and args.profile + ".alone"
        )
        show("autoprompt alone", results["alone"])

    def after() -> None:
        prefix_cache.PREFIX_CACHE.clear()
        for m in [m.strip() for m in args.before.split(",") if m.strip()]:
            results["before"][m] = timed_unit(
                backbone, split, spec, unit(m, args.before_max_steps or args.max_steps), counter
            )
            show(f"{m} (before)", results["before"][m])
        results["after"] = timed_unit(backbone, split, spec, unit("autoprompt"), counter, args.profile)
        show(f"autoprompt after {args.before}", results["after"])

    for step in (alone, after) if args.order == "alone-first" else (after, alone):
        step()
    a, b = results["alone"], results["after"]
    print(
        f"\nafter / alone: wall {b['seconds'] / a['seconds']:.2f}x, forwards {b['forwards'] / max(1, a['forwards']):.2f}x, "
        f"tokens {b['tokens'] / max(1, a['tokens']):.2f}x, page faults {b['page_faults'] / max(1, a['page_faults']):.2f}x, misses {b['misses']} vs {a['misses']}; "
        f"same predictions: {a['predictions'] == b['predictions']}; load average now {load_average()}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), **results}, indent=2, default=str))


if __name__ == "__main__":
    main()
