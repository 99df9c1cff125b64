"""One process against two, side by side in one run: the same prompt-tuning unit trained data-parallel, and the
same comparison split across processes.

Part `train`: prompt tuning on the default backbone (SmolLM2-135M, real weights) and K-shot movie reviews, trained by
1 process and by 2 processes under torchrun (gloo, each process half of every batch, gradients summed). Prints the
largest loss difference per step and the training time per example of each, and their ratio.

Part `compare`: `python -m core compare` vs `torchrun --nproc_per_node 2 -m core compare` on the same arguments:
wall time of each and whether the two results.json agree (accuracies, predictions, significance).

    OMP_NUM_THREADS=1 python benchmarks/bench_data_parallel.py            # both parts, 1 thread per process
    python benchmarks/bench_data_parallel.py --part train --steps 30 --threads 2

With `--threads T` every process gets T threads, so 2 processes use twice the cores of 1: on a machine with fewer
free cores than that, the processes compete and the ratio says so.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = ROOT / "data" / "samples" / "movie_reviews.csv"
TIMING = {"train_seconds", "peak_memory_mb", "examples_per_second", "test_seconds", "artifact", "artifacts"}
TIMING |= {"prefix_cache_hits", "prefix_cache_misses"}  # depend on what else ran in the same process


def worker(args: argparse.Namespace) -> None:
    """Train one prompt-tuning unit in this process's share (run by plain python or by torchrun)."""
    import torch

    from core import distributed
    from core.compare import prompt_spec
    from core.data import few_shot_split, load_dataset, split_dataset
    from core.engine.backbone import load_backbone
    from core.methods import create

    group = distributed.join(600)
    torch.set_num_threads(args.threads)
    dataset = load_dataset(DATA)
    split = split_dataset(dataset, test_size=0.5, dev_size=0.1, seed=0)
    train, dev = few_shot_split(split, args.k_shot, 0)
    spec = prompt_spec(dataset, ["{text} It was [MASK]"], '{"positive": ["great"], "negative": ["terrible"]}')
    backbone = load_backbone("default", device=str(group.device))
    options = {"max_steps": args.steps, "batch_size": args.batch, "eval_every": 10_000, "seed": 0, "max_length": 96}
    method = create("prompt_tuning", spec, options)
    stamps: list[float] = []

    def progress(step: int, total: int, metrics) -> None:
        stamps.append(time.perf_counter())

    start = time.perf_counter()
    with distributed.data_parallel(group):
        learned = method.fit(backbone, train, dev, progress=progress, should_stop=lambda: False)
    seconds = time.perf_counter() - start
    if group.is_main:
        steps = [b - a for a, b in zip([start, *stamps[:-1]], stamps, strict=True)][:-1]  # the last one includes dev
        out = {
            "processes": group.size,
            "threads": torch.get_num_threads(),
            "losses": learned.state["losses"],
            "fit_seconds": seconds,
            "step_seconds": steps,
            "batch": args.batch,
        }
        Path(args.out).write_text(json.dumps(out))


def launch(n: int, argv: list[str], threads: int, timeout: float) -> tuple[subprocess.CompletedProcess, float]:
    prefix = [sys.executable] if n == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    if n > 1:
        prefix += ["--nproc_per_node", str(n)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    done = subprocess.run([*prefix, *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode:
        raise SystemExit(f"{n} process(es) failed:\n{done.stderr[-3000:]}")
    return done, time.perf_counter() - start


def part_train(args: argparse.Namespace, tmp: Path) -> dict:
    runs = {}
    for n in (1, 2):
        out = tmp / f"train{n}.json"
        argv = [str(Path(__file__).resolve()), "--worker", "--out", str(out), "--steps", str(args.steps)]
        argv += ["--batch", str(args.batch), "--k-shot", str(args.k_shot), "--threads", str(args.threads)]
        _, wall = launch(n, argv, args.threads, args.timeout)
        runs[n] = {**json.loads(out.read_text()), "wall_seconds": wall}
    one, two = runs[1], runs[2]
    diff = max(abs(a - b) for a, b in zip(one["losses"], two["losses"], strict=True))
    per_example = {n: statistics.median(r["step_seconds"]) / r["batch"] for n, r in runs.items()}
    print(f"loss per step, 1 process : {' '.join(f'{x:.4f}' for x in one['losses'])}")
    print(f"loss per step, 2 processes: {' '.join(f'{x:.4f}' for x in two['losses'])}")
    print(f"largest loss difference: {diff:.2e} over {len(one['losses'])} steps")
    for n in (1, 2):
        print(
            f"{n} process(es) x {runs[n]['threads']} thread(s): {per_example[n] * 1000:.1f} ms per example "
            f"(median step / batch {args.batch}), fit {runs[n]['fit_seconds']:.1f} s, wall {runs[n]['wall_seconds']:.1f} s"
        )
    print(f"ratio 1 process / 2 processes, time per example: {per_example[1] / per_example[2]:.2f}x")
    return {"runs": runs, "max_loss_diff": diff, "ms_per_example": {n: v * 1000 for n, v in per_example.items()}}


def part_compare(args: argparse.Namespace, tmp: Path) -> dict:
    base = ["-m", "core", "compare", "--data", str(DATA), "--methods", args.methods, "--seeds", args.seeds]
    base += ["--k-shot", str(args.k_shot), "--max-steps", str(args.steps), "--test-size", "200"]
    results, walls = {}, {}
    for n in (1, 2):
        out = tmp / f"compare{n}"
        _, walls[n] = launch(n, [*base, "--out", str(out)], args.threads, args.timeout)
        results[n] = json.loads((out / "results.json").read_text())

    def comparable(r: dict) -> dict:
        rows = [{k: v for k, v in m.items() if k not in TIMING} for m in r["methods"]]
        return {**{k: v for k, v in r.items() if k != "processes"}, "methods": rows}

    equal = comparable(results[1]) == comparable(results[2])
    print(f"compare {args.methods} seeds {args.seeds}: 1 process {walls[1]:.1f} s, 2 processes {walls[2]:.1f} s")
    print(f"ratio 1 / 2 processes, wall: {walls[1] / walls[2]:.2f}x; results.json equal (timings aside): {equal}")
    for m in results[2]["methods"]:
        print(f"  {m['name'][:50]:50s} {m['accuracy']:.3f}")
    return {"wall_seconds": walls, "equal": equal, "units": results[2]["processes"]["units"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["train", "compare", "both"], default="both")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--k-shot", type=int, default=16)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")))
    parser.add_argument("--methods", default="manual,prompt_tuning")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--json", help="also write the numbers here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    print(f"load average before: {Path('/proc/loadavg').read_text().strip()}")
    numbers = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.part in ("train", "both"):
            numbers["train"] = part_train(args, Path(tmp))
        if args.part in ("compare", "both"):
            numbers["compare"] = part_compare(args, Path(tmp))
    print(f"load average after: {Path('/proc/loadavg').read_text().strip()}")
    if args.json:
        Path(args.json).write_text(json.dumps(numbers, indent=1))


if __name__ == "__main__":
    main()
