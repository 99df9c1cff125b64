"""The estimate a first launch gets (no speed measured yet) against a comparison that ran.

Reads a finished `core compare` folder (results.json) of the airline tweets at K = 16, 50 steps, tuning on, seeds
0-2 (as `bench_accuracy_table.py --datasets airline_tweets --k-shots 16 --max-steps 50` writes it), estimates the same
comparison with `core.runs.estimate` and prints each method's error and the total's: an out-of-sample check of the
priors, which were calibrated on the movie-review comparison (benchmarks/RESULTS.md, issue 24). Two first launches:
the size prior (no backbone loaded yet), and `--probe`, a short probe of the loaded backbone on this data (what the
Train page uses when the backbone is loaded in the server), so the machine's own speed is measured and only the
per-method ratios carry over.

    python benchmarks/eta_against_run.py /tmp/acc/airline_tweets-k16 [--probe]
"""

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from core.compare import method_options, plan_units, prompt_spec  # noqa: E402
from core.data import load_dataset, split_dataset  # noqa: E402
from core.runs import estimate  # noqa: E402

METHODS = ("manual", "ptuning", "ptuning_v2", "prompt_tuning")
PARAMETERS = 134_515_008  # SmolLM2-135M


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="the compare output folder holding results.json")
    parser.add_argument("--probe", action="store_true", help="probe the default backbone here instead of the prior")
    parser.add_argument("--methods", default=",".join(METHODS), help="the methods to compare (primary rows)")
    parser.add_argument("--seeds", default="0,1,2", help="the seeds the run used")
    parser.add_argument("--dataset", default="airline_tweets", help="its CSV under data/samples/")
    args = parser.parse_args()
    results = json.loads((Path(args.run) / "results.json").read_text())
    dataset = load_dataset(ROOT / "data/samples" / f"{args.dataset}.csv")
    split, spec = split_dataset(dataset, test_size=0.5, seed=0), prompt_spec(dataset)
    methods = args.methods.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    units = plan_units(methods, seeds, lambda m: method_options(m, {}, max_steps=50), [16])
    for unit in units:
        unit.tune = True
    probed = None
    if args.probe:
        from core.engine.backbone import load_backbone  # noqa: PLC0415  (only when asked: loading takes seconds)

        probed = estimate.probe(load_backbone("default", device="cpu"), split.train.records, spec.templates[0])
    rates = estimate.rates_for(methods, probed=probed, parameters=PARAMETERS, device="cpu")
    guess = estimate.estimate_comparison(units, spec, split, rates)
    expected: dict[str, float] = {}
    for unit, est in zip(units, guess.units, strict=True):
        expected[unit.method] = expected.get(unit.method, 0.0) + est.seconds
    actual = {  # training and test scoring, per seed on average, times the seeds
        m["method"]: (m["train_seconds"] + m["test_seconds"]) * m["n_seeds"]
        for m in results["methods"]
        if m["primary"]
    }
    for m in methods:
        error = (expected[m] - actual[m]) / actual[m]
        print(f"{m:14s} estimate {expected[m]:7.0f} s  actual {actual[m]:7.0f} s  error {error:+.0%}")
    total_e, total_a = sum(expected.values()), sum(actual.values())
    print(
        f"total: estimate {total_e:.0f} s ({guess.source}) vs actual {total_a:.0f} s: {(total_e - total_a) / total_a:+.0%}"
    )


if __name__ == "__main__":
    main()
