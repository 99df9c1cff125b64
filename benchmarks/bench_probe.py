"""How steady the estimate's probe is (issue 31): the probe (`core.runs.estimate.probe`) taken afresh in N new
processes on each dataset's training rows, as the app takes it once per server process; the spread of its two
per-token rates (scoring, training work) and their median.

Every first-launch estimate is the probe's rates times the method priors, so the probe's noise between processes is
the estimate's noise: run on the same drug reviews twice, its estimate moved by 18 % while the runs themselves
moved by 2 %. Compare a checkout against another, back to back:

    OMP_NUM_THREADS=2 python benchmarks/bench_probe.py --json probe_before.json            # in the older checkout
    OMP_NUM_THREADS=2 python benchmarks/bench_probe.py --json probe_after.json --against probe_before.json

`--against` prints, per dataset and rate, the spread before and after and the ratio of the medians (by which the
priors must move for the estimates to stay where they were calibrated).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATASETS = ("movie_reviews", "drug_reviews")
ONE = """
import json, sys, time
sys.path.insert(0, {root!r})
from core.compare import prompt_spec
from core.data import load_dataset, split_dataset
from core.engine.backbone import load_backbone
from core.runs import estimate
dataset = load_dataset({csv!r})
split = split_dataset(dataset, test_size=0.5, seed=0)
backbone = load_backbone("default", device="cpu")
t0 = time.perf_counter()
p = estimate.probe(backbone, split.train.records, prompt_spec(dataset).templates[0])
print(json.dumps({{"example": p.example_seconds, "work": p.work_seconds, "seconds": time.perf_counter() - t0}}))
"""


def load_average() -> str:
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def spread(values: list[float]) -> float:
    """Max over min: how far apart two processes' probes may land."""
    return max(values) / min(values)


def probes(name: str, n: int) -> list[dict]:
    code = ONE.format(root=str(ROOT), csv=str(ROOT / "data/samples" / f"{name}.csv"))
    out = []
    for _ in range(n):
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        out.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=5, help="fresh processes per dataset")
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--json", help="write every probe here")
    parser.add_argument("--against", help="an earlier --json to compare with")
    args = parser.parse_args()
    print(f"load average {load_average()} at start", flush=True)
    results = {name: probes(name, args.processes) for name in args.datasets.split(",")}
    before = json.loads(Path(args.against).read_text()) if args.against else {}
    for name, rows in results.items():
        for rate in ("example", "work"):
            values = [r[rate] * 1e3 for r in rows]
            line = (
                f"{name:14s} {rate:7s} median {statistics.median(values):.3f} ms/token, max/min {spread(values):.2f}"
            )
            if name in before:
                old = [r[rate] * 1e3 for r in before[name]]
                line += (
                    f" | before: median {statistics.median(old):.3f}, max/min {spread(old):.2f}"
                    f" | before/after medians {statistics.median(old) / statistics.median(values):.3f}"
                )
            print(line)
        print(f"{name:14s} probe takes {statistics.median(r['seconds'] for r in rows):.2f} s (median)")
    print(f"load average {load_average()} at end")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
