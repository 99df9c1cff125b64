"""Prompts against fine-tuning on the bundled data: every prompt method and the fine-tuning rows, one table.

    python benchmarks/bench_versus_finetuning.py --datasets airline_tweets,movie_reviews --k-shots 16,32 \
        --seeds 0,1,2 --max-steps 50 --out /tmp/vs_ft            # runs what is missing, then the table
    python benchmarks/bench_versus_finetuning.py --table-only --out /tmp/vs_ft --datasets ... --k-shots ...

Each (dataset, K, seed) is two `python -m core compare` processes on the same split (split seed 0), tuning on dev
on: the fine-tuning rows (finetune, prompt_finetune, lora), then the prompt methods; seed by seed, so the table
holds every seed finished so far. A finished process's folder is kept and not run again: a long benchmark can be
stopped and continued. The table gives each row's accuracy
(mean ± std over seeds), trainable parameters, train seconds, peak memory, and for every other row its share of the
best fine-tuning row's accuracy (that row chosen on dev, never on test), its parameter share and time ratio, and the
paired tests of the difference (bootstrap and McNemar over each seed's test rows, `core.engine.evaluate`).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_accuracy_table import merged, paired  # noqa: E402

from core.engine.evaluate import mean_std  # noqa: E402

PROMPTS = "manual,baseline,linear_probe,autoprompt,ptuning,ptuning_v2,prompt_tuning"
FINE_TUNES = "manual,baseline,finetune,prompt_finetune,lora"  # manual again: each run's own reference row


def run(dataset: str, k: int, seed: int, family: str, methods: str, args: argparse.Namespace) -> Path:
    """One compare process into `out/<dataset>-k<K>/<family>-seed<seed>` unless its results.json is there."""
    out = Path(args.out) / f"{dataset}-k{k}" / f"{family}-seed{seed}"
    if (out / "results.json").is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "core", "compare", "--data", str(ROOT / "data/samples" / f"{dataset}.csv")]
    cmd += ["--k-shot", str(k), "--seeds", str(seed), "--methods", methods, "--max-steps", str(args.max_steps)]
    cmd += ["--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    start = time.perf_counter()
    with open(out / "log.txt", "w") as log:
        rc = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
    print(
        f"{dataset} K={k} seed {seed} {family}: exit {rc} in {time.perf_counter() - start:.0f} s, load {os.getloadavg()}"
    )
    return out


def merge_seeds(parts: list[dict]) -> dict:
    """One family's results from runs of one seed each, as one run of all of them: per prompt, the seeds' rows."""
    out = {**parts[0], "methods": []}
    by_name: dict[tuple, list[dict]] = {}
    for part in parts:
        if part["test_labels"] != parts[0]["test_labels"]:
            raise SystemExit("the seeds' runs scored different test rows; only one split can be merged")
        for row in part["methods"]:  # a row is its method's own, or one variant (template) of it: names may change
            key = (row["method"], row["primary"], None if row["primary"] else row["template"])
            by_name.setdefault(key, []).append(row)
    for rows in by_name.values():
        per_seed = [a for r in rows for a in r["per_seed"]]
        dev = [r["dev_accuracy"] for r in rows if r.get("dev_accuracy") is not None]
        out["methods"].append(
            {
                **rows[0],
                "per_seed": per_seed,
                "accuracy": sum(per_seed) / len(per_seed),
                "seeds": [s for r in rows for s in r["seeds"]],
                "predictions": [p for r in rows for p in r["predictions"]],
                "train_seconds": sum(r["train_seconds"] for r in rows) / len(rows),
                "peak_memory_mb": max(r["peak_memory_mb"] for r in rows),
                "dev_accuracy": sum(dev) / len(dev) if dev else None,
            }
        )
    return out


def best_fine_tune(rows: list[dict]) -> dict | None:
    """The fine-tuning row a user would pick: best dev accuracy, ties by less training time (never by test)."""
    tuned = [r for r in rows if r["primary"] and r["method"] in FINE_TUNES.split(",")[2:]]
    return max(tuned, key=lambda r: (r.get("dev_accuracy") or 0.0, -r["train_seconds"]), default=None)


def table(results: dict) -> list[dict]:
    """One entry per primary row: its numbers and its standing against the best fine-tuning row."""
    rows = [r for r in results["methods"] if r["primary"]]
    ref = best_fine_tune(rows)
    out = []
    for r in rows:
        mean, std = mean_std(r["per_seed"])
        entry = {
            "method": r["method"],
            "accuracy": mean,
            "std": std,
            "params": r["trainable_params"],
            "seconds": r["train_seconds"],
            "peak_mb": r["peak_memory_mb"],
        }
        if ref is not None and r is not ref and ref["accuracy"] > 0:
            entry["share"] = mean / ref["accuracy"]
            entry["param_share"] = r["trainable_params"] / max(ref["trainable_params"], 1)
            entry["time_ratio"] = r["train_seconds"] / ref["train_seconds"] if ref["train_seconds"] else None
            entry["versus"] = paired(r, ref, results["test_labels"])
        out.append(entry)
    return out


def markdown(key: str, entries: list[dict], ref: str) -> str:
    lines = [
        f"**{key}** (reference: {ref}, the fine-tuning row best on dev)",
        "",
        "| method | accuracy (mean ± std) | trainable params | train s | peak MB | share of fine-tuning's accuracy | "
        "params share | time ratio | diff (95 % CI), bootstrap p, McNemar p |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for e in entries:
        cells = ["–"] * 4
        if "versus" in e:
            boot, mc = e["versus"]["bootstrap"], e["versus"]["mcnemar"]
            ratio = f"{e['time_ratio']:.2f}×" if e["time_ratio"] is not None else "–"
            cells = [
                f"{100 * e['share']:.0f} %",
                f"{100 * e['param_share']:.3g} %",
                ratio,
                f"{boot['diff']:+.3f} ({boot['ci_low']:+.3f}, {boot['ci_high']:+.3f}), p={boot['p_value']:.3f}, "
                f"{mc['p_value']:.3f}",
            ]
        lines.append(
            f"| {e['method']} | {e['accuracy']:.3f} ± {e['std']:.3f} | {e['params']:,} | {e['seconds']:.0f} | "
            f"{e['peak_mb']:.0f} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="airline_tweets,movie_reviews")
    parser.add_argument("--k-shots", default="16,32")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--max-steps", type=int, default=50, help="the Train page's default")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", required=True)
    parser.add_argument("--table-only", action="store_true", help="only read finished runs")
    args = parser.parse_args()
    pairs = [(d, int(k)) for d in args.datasets.split(",") for k in args.k_shots.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    families = (("finetuning", FINE_TUNES), ("prompts", PROMPTS))
    if not args.table_only:
        for seed in seeds:  # every (dataset, K) at a seed before the next seed: the table covers them all soonest
            for dataset, k in pairs:
                for family, methods in families:
                    run(dataset, k, seed, family, methods, args)
    texts, tables = [], {}
    for dataset, k in pairs:
        key = f"{dataset}-k{k}"
        found = []
        for family, _ in families:
            paths = [Path(args.out) / key / f"{family}-seed{s}" / "results.json" for s in seeds]
            done = [json.loads(p.read_text()) for p in paths if p.is_file()]
            if done:
                found.append((family, merge_seeds(done)))
        if not found:
            print(f"{key}: nothing finished yet")
            continue
        results = merged([r for _, r in found], [f for f, _ in found])
        tables[key] = table(results)
        ref = best_fine_tune([r for r in results["methods"] if r["primary"]])
        texts.append(markdown(key, tables[key], ref["method"] if ref else "none finished"))
    text = "\n\n".join(texts)
    print(text)
    (Path(args.out) / "table.md").write_text(text + "\n")
    (Path(args.out) / "summary.json").write_text(json.dumps(tables, indent=2))


if __name__ == "__main__":
    main()
