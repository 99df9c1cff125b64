"""Every method at its best, against the manual templates: datasets x K x seeds, tuned on dev, one table.

    python benchmarks/bench_accuracy_table.py --jobs 6 --out /tmp/acc          # run the comparisons, then the table
    python benchmarks/bench_accuracy_table.py --table-only --out /tmp/acc      # the table from finished runs

Each (dataset, K) is one `python -m core compare` process: every method, every seed, tuning on dev on (the
product's default), the same test rows for every method, K and seed of a dataset (split seed 0). `--jobs` of them
run at once: a GPU has room for several runs of a small backbone; on a 2-core CPU use 1.

The table gives, per dataset and K, each method's test accuracy (mean ± std over seeds) against three manual bars:
the best template (best mean test accuracy: an oracle, the strictest bar), the median template, and the template
manual picks on dev (the fair bar). The paired tests (bootstrap and McNemar, `core.engine.evaluate`) pair each seed's test
rows of the method with the best template's. Targets (issue 12): P-tuning v1, prompt tuning and P-tuning v2 at
least the best template; AutoPrompt at least the median template.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.engine.evaluate import mcnemar_test, mean_std, paired_bootstrap  # noqa: E402

DATASETS = ("movie_reviews", "subjectivity", "airline_tweets")
METHODS = ("manual", "baseline", "autoprompt", "ptuning", "ptuning_v2", "prompt_tuning")
BAR = {"ptuning": "best", "ptuning_v2": "best", "prompt_tuning": "best", "autoprompt": "median"}


def run_one(dataset: str, k: int, args: argparse.Namespace, extra: list[str]) -> dict:
    """One `core compare` process for (dataset, K); its log beside its results.json."""
    out = Path(args.out) / f"{dataset}-k{k}"
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "core", "compare", "--data", str(ROOT / "data/samples" / f"{dataset}.csv")]
    cmd += ["--k-shot", str(k), "--seeds", args.seeds, "--methods", args.methods, "--out", str(out), *extra]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    start = time.perf_counter()
    with open(out / "log.txt", "w") as log:
        rc = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
    seconds = time.perf_counter() - start
    print(f"{dataset} K={k}: exit {rc} in {seconds:.0f} s", flush=True)
    return {"dataset": dataset, "k": k, "rc": rc, "seconds": seconds}


def paired(rows_a: dict, rows_b: dict, gold: list[int]) -> dict:
    """Bootstrap and McNemar of A against B, pairing each seed's test rows (B's single run pairs with every seed)."""
    b_by_seed = dict(zip(rows_b["seeds"], rows_b["predictions"], strict=True))
    pred_a, pred_b = [], []
    for seed, pred in zip(rows_a["seeds"], rows_a["predictions"], strict=True):
        pred_a += pred
        pred_b += b_by_seed.get(seed, rows_b["predictions"][0])
    gold_all = gold * len(rows_a["seeds"])
    return {"bootstrap": paired_bootstrap(pred_a, pred_b, gold_all), "mcnemar": mcnemar_test(pred_a, pred_b, gold_all)}


def merged(results: list[dict], folders: list[str]) -> dict:
    """One comparison's results from several runs on the same test rows (e.g. one method family per run): the
    first run's rows, then every other run's learned-method rows. A method already present comes in again as
    `method@folder`, so two versions of a method sit side by side (and are paired with each other)."""
    out = {**results[0], "methods": list(results[0]["methods"])}
    for other, folder in zip(results[1:], folders[1:], strict=False):
        if other["test_labels"] != out["test_labels"]:
            raise SystemExit(f"{folder}: its test rows differ from {folders[0]}'s; only the same split can be merged")
        present = {r["method"] for r in out["methods"]}
        for r in other["methods"]:
            if r["method"] in ("manual", "baseline") and r["method"] in present:
                continue
            out["methods"].append({**r, "method": f"{r['method']}@{folder}"} if r["method"] in present else r)
    return out


def table_for(results: dict) -> dict:
    """Per method: accuracy mean ± std, the manual bars, the paired tests against the best template, target met."""
    rows = results["methods"]
    gold = results["test_labels"]
    templates = [r for r in rows if r["method"] == "manual" and not r["primary"]]
    on_dev = next(r for r in rows if r["method"] == "manual" and r["primary"])
    best = max(templates, key=lambda r: r["accuracy"])
    bars = {
        "best": best["accuracy"],
        "median": statistics.median(r["accuracy"] for r in templates),
        "on_dev": on_dev["accuracy"],
        "best_template": best["template"],
    }
    out = {}
    for r in rows:
        if not r["primary"] or r["method"] == "manual":
            continue
        mean, std = mean_std(r["per_seed"])
        entry = {"name": r["name"], "accuracy": mean, "std": std, "per_seed": r["per_seed"]}
        entry["steps"] = r.get("steps_per_seed") or [r.get("steps")]  # older results keep the first seed's only
        entry["versus_best"] = paired(r, best, gold)
        entry["tuning"] = [t.get("summary") if t else None for t in r.get("tuning") or []]
        family, _, _ = r["method"].partition("@")
        if family != r["method"]:  # a second version of a method: paired with the first as well
            first = next(x for x in rows if x["method"] == family and x["primary"])
            entry["versus_first"] = paired(r, first, gold)
        if family in BAR:
            entry["target"] = BAR[family]
            entry["met"] = mean >= bars[BAR[family]]
        out[r["method"]] = entry
    return {"bars": bars, "methods": out, "n_test": len(gold), "seeds": results["dataset"]["seeds"]}


def markdown(summary: dict) -> str:
    lines = [
        "| dataset | K | best template | median | manual on dev | method | accuracy | steps used | vs best template: "
        "diff (95% CI), bootstrap p, McNemar p | target |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, t in summary.items():
        dataset, k = key.rsplit("-k", 1)
        b = t["bars"]
        for m, e in t["methods"].items():
            boot = e["versus_best"]["bootstrap"]
            target = "–" if "target" not in e else f"{'met' if e['met'] else 'NOT met'} (≥ {e['target']})"
            lines.append(
                f"| {dataset} | {k} | {b['best']:.3f} | {b['median']:.3f} | {b['on_dev']:.3f} | {m} | "
                f"{e['accuracy']:.3f} ± {e['std']:.3f} | {', '.join(map(str, e.get('steps') or []))} | "
                f"{boot['diff']:+.3f} ({boot['ci_low']:+.3f}, {boot['ci_high']:+.3f}), p={boot['p_value']:.3f}, "
                f"{e['versus_best']['mcnemar']['p_value']:.3f} | {target} |"
            )
    versions = [
        f"{key} {m}: {e['accuracy'] - t['methods'][m.partition('@')[0]]['accuracy']:+.3f} against "
        f"{m.partition('@')[0]}, p={e['versus_first']['bootstrap']['p_value']:.3f} (paired bootstrap), "
        f"McNemar p={e['versus_first']['mcnemar']['p_value']:.3f}"
        for key, t in summary.items()
        for m, e in t["methods"].items()
        if "versus_first" in e
    ]
    return "\n".join(lines + ([""] + versions if versions else []))


def averages(summary: dict) -> str:
    """Each method's accuracy minus its bar, averaged over every (dataset, K): the 'on average' of the targets."""
    gaps: dict[str, list[float]] = {}
    for t in summary.values():
        for m, e in t["methods"].items():
            if "target" in e:
                gaps.setdefault(m, []).append(e["accuracy"] - t["bars"][e["target"]])
    return "\n".join(
        f"{m}: mean gap to its bar {sum(g) / len(g):+.3f} over {len(g)} (dataset, K); met in "
        f"{sum(x >= 0 for x in g)} of {len(g)}"
        for m, g in gaps.items()
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default=",".join(DATASETS), help="names under data/samples/")
    parser.add_argument("--k-shots", default="16,32")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--jobs", type=int, default=1, help="comparisons at once")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads per comparison")
    parser.add_argument("--out", required=True, help="folder for the runs; with --table-only, several: a,b,c")
    parser.add_argument("--table-only", action="store_true", help="only read finished runs in --out")
    args, extra = parser.parse_known_args()  # the rest goes to `core compare` (e.g. --max-steps 60, --no-tune)
    pairs = [(d, int(k)) for d in args.datasets.split(",") for k in args.k_shots.split(",")]
    runs = []
    if not args.table_only:
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            runs = list(pool.map(lambda p: run_one(p[0], p[1], args, extra), pairs))
    summary = {}
    folders = [Path(f) for f in args.out.split(",")]
    for d, k in pairs:
        found = [(f.name, f / f"{d}-k{k}" / "results.json") for f in folders]
        found = [(name, json.loads(path.read_text())) for name, path in found if path.is_file()]
        if found:
            summary[f"{d}-k{k}"] = table_for(merged([r for _, r in found], [name for name, _ in found]))
        else:
            print(f"{d} K={k}: no results.json in {args.out}")
    text = markdown(summary) + "\n\n" + averages(summary)
    print(text)
    (folders[0] / "table.md").write_text(text + "\n")
    (folders[0] / "summary.json").write_text(json.dumps({"runs": runs, "tables": summary}, indent=2))


if __name__ == "__main__":
    main()
