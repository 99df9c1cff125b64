"""Few-shot test accuracy of the continuous prompts against manual prompts and the majority class.

For each sample dataset, K examples per class and seed: manual prompts (best and worst template on test, mean over
seeds), P-tuning v1, P-tuning v2, prompt tuning and the majority class, all on the same held-out test rows, with
the default backbone. Every finished unit is cached in --cache (JSON), so an interrupted run continues where it
stopped; --markdown rewrites only the "## Continuous prompts" section of benchmarks/RESULTS.md.

    nice python benchmarks/bench_continuous_accuracy.py --datasets movie_reviews --k 16,32 --seeds 0,1,2 \
        --test-size 100 --max-steps 30 --markdown
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.compare import Unit, prompt_spec, run_unit  # noqa: E402
from core.data import load_dataset, split_dataset  # noqa: E402
from core.engine.backbone import load_backbone  # noqa: E402
from core.engine.evaluate import mean_std  # noqa: E402

VERBALIZERS = {
    "movie_reviews": {"positive": ["great"], "negative": ["terrible"]},
    "subjectivity": {"subjective": ["opinion"], "objective": ["fact"]},
}
TEMPLATES = {
    "movie_reviews": ["{text} It was [MASK]", "{text} All in all, it was [MASK]", "Review: {text} Sentiment: [MASK]"],
    "subjectivity": [
        "{text} This is a [MASK]",
        "{text} Is this a fact or an opinion? [MASK]",
        "Sentence: {text} Type: [MASK]",
    ],
}
TRAINED = ("ptuning", "ptuning_v2", "prompt_tuning")
SECTION = "## Continuous prompts"


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    cache_path = Path(args.cache)
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    backbone = load_backbone(args.backbone, device="cpu")
    for name in args.datasets.split(","):
        dataset = load_dataset(ROOT / "data" / "samples" / f"{name}.csv")
        split = split_dataset(dataset, test_size=args.test_size, seed=0)
        spec = prompt_spec(dataset, TEMPLATES[name], VERBALIZERS[name])
        for k in [int(x) for x in args.k.split(",")]:
            for method in args.methods.split(","):  # method-major: every seed of a method before the next one
                for seed in [int(x) for x in args.seeds.split(",")]:
                    key = f"{name}|{k}|{seed}|{method}{args.tag}"
                    if key in cache:
                        continue
                    options = {}
                    if method in TRAINED:
                        options = {
                            "max_steps": args.max_steps,
                            "seed": seed,
                            "eval_every": args.eval_every,
                            "batch_size": args.batch_size,
                            "max_length": args.max_length,
                        }
                        options.update(parse_options(args.option).get(method, {}))
                    start = time.perf_counter()
                    result = run_unit(backbone, split, spec, Unit(method, seed, options, k))
                    rows = [
                        {
                            "name": r["name"],
                            "accuracy": r["accuracy"],
                            "primary": r["primary"],
                            "template": r["template"],
                            "trainable_params": r["trainable_params"],
                            "dev_accuracy": r.get("dev_accuracy"),
                            "steps": r.get("steps"),
                            "tuning": r.get("tuning"),
                        }
                        for r in result["rows"]
                    ]
                    cache[key] = {"rows": rows, "seconds": time.perf_counter() - start}
                    cache_path.parent.mkdir(parents=True, exist_ok=True)
                    cache_path.write_text(json.dumps(cache, indent=1))
                    print(f"{key}: {rows[0]['accuracy']:.3f} ({cache[key]['seconds']:.0f} s)", flush=True)
    return cache


def parse_options(items: list[str] | None) -> dict[str, dict]:
    """`ptuning.lr=0.03` -> {"ptuning": {"lr": 0.03}} (values parsed as JSON when they can be)."""
    out: dict[str, dict] = {}
    for item in items or []:
        key, _, value = item.partition("=")
        method, _, name = key.partition(".")
        try:
            out.setdefault(method, {})[name] = json.loads(value)
        except json.JSONDecodeError:
            out.setdefault(method, {})[name] = value
    return out


def table(cache: dict) -> list[str]:
    """One markdown table per dataset and K: mean ± std test accuracy over the seeds found in the cache."""
    groups: dict[tuple[str, int], dict[str, list[dict]]] = {}
    for key, value in cache.items():
        name, k, seed, method = key.split("|")
        groups.setdefault((name, int(k)), {}).setdefault(method, []).append({"seed": int(seed), **value})
    lines = []
    for (name, k), by_method in sorted(groups.items()):
        lines += [
            f"**{name}, K = {k} per class**",
            "",
            "| method | test accuracy (mean ± std) | seeds | params |",
            "|---|---|---|---|",
        ]
        if "manual" in by_method:
            per_template: dict[str, list[float]] = {}
            for unit in by_method["manual"]:
                for row in unit["rows"]:
                    if not row["primary"]:
                        per_template.setdefault(row["template"], []).append(row["accuracy"])
            means = {t: mean_std(v)[0] for t, v in per_template.items()}
            for label, template in (("best", max(means, key=means.get)), ("worst", min(means, key=means.get))):
                m, s = mean_std(per_template[template])
                lines.append(
                    f"| manual, {label} template `{template}` | {m:.3f} ± {s:.3f} | "
                    f"{len(per_template[template])} | 0 |"
                )
            m, s = mean_std([u["rows"][0]["accuracy"] for u in by_method["manual"]])
            lines.append(f"| manual, template chosen on dev | {m:.3f} ± {s:.3f} | {len(by_method['manual'])} | 0 |")
        trained = sorted(
            (m for m in by_method if m not in ("manual", "baseline")),
            key=lambda m: (TRAINED.index(m.split(" ")[0]) if m.split(" ")[0] in TRAINED else 9, m),
        )
        for method in (*trained, "baseline"):
            if method not in by_method:
                continue
            units = by_method[method]
            m, s = mean_std([u["rows"][0]["accuracy"] for u in units])
            params = units[0]["rows"][0]["trainable_params"]
            label = {"baseline": "majority class"}.get(method, f"{method} `{units[0]['rows'][0]['template']}`")
            lines.append(f"| {label} | {m:.3f} ± {s:.3f} | {len(units)} | {params:,} |")
        lines.append("")
    return lines


def speed_lines(path: Path) -> list[str]:
    """The speed benchmark's JSON (bench_continuous_speed.py --json) as a markdown table."""
    data = json.loads(path.read_text())
    a, r = data["args"], data["results"]
    floor, floor_v = r["floor"]["seconds"], r["floor+virtual"]["seconds"]
    cmd = (
        f"nice python benchmarks/bench_continuous_speed.py --config {a['config']} --device {a['device']} "
        f"--dtype {a['dtype']} --batch {a['batch']} --seq {a['seq']} --steps {a['steps']} --warmup {a['warmup']} "
        f"--threads {a['threads']}"
    )
    lines = [
        "### Speed (training step, median)",
        "",
        "```",
        cmd,
        "```",
        "",
        f"Config {a['config']}, {a['device']} {a['dtype']}, batch {a['batch']}, ~{a['seq']} text tokens, "
        "20 virtual tokens. floor = frozen forward+backward with gradients only for the input embeddings "
        "(text only); floor+virtual = the same with the 20 extra input positions P-tuning / prompt tuning feed.",
        "",
        "| ours | ms | PEFT | ms | ours/PEFT | ours/floor | ours/floor+virtual |",
        "|---|---|---|---|---|---|---|",
        f"| floor | {floor * 1e3:.0f} | | | | | |",
        f"| floor+virtual | {floor_v * 1e3:.0f} | | | | | |",
    ]
    for ours, theirs in (("ptuning", "P_TUNING"), ("ptuning_v2", "PREFIX_TUNING"), ("prompt_tuning", "PROMPT_TUNING")):
        o, t = r[ours]["seconds"], r[theirs].get("seconds")
        if t:
            lines.append(
                f"| {ours} | {o * 1e3:.0f} | {theirs} | {t * 1e3:.0f} | {o / t:.2f} | {o / floor:.2f} | "
                f"{o / floor_v:.2f} |"
            )
        else:
            lines.append(f"| {ours} | {o * 1e3:.0f} | {theirs} | n/a | | | |")
    return [*lines, ""]


def write_markdown(cache: dict, command: str, notes: str, path: Path, speed_json: str = "") -> None:
    body = [SECTION, ""]
    if speed_json:
        body += speed_lines(Path(speed_json))
    body += [
        "### Accuracy",
        "",
        "Test accuracy on the sample datasets with the default backbone (SmolLM2-135M, CPU, fp32).",
        "",
        "```",
        command,
        "```",
        "",
        *table(cache),
    ]
    if notes:
        body += [Path(notes).read_text(encoding="utf-8") if Path(notes).is_file() else notes, ""]
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmark results\n\n"
    block = "\n".join(body)
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = (
        pattern.sub(block.replace("\\", "\\\\") + "\n", text)
        if pattern.search(text)
        else (text.rstrip("\n") + "\n\n" + block + "\n")
    )
    path.write_text(text, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="movie_reviews,subjectivity")
    parser.add_argument("--k", default="16,32")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--methods", default="manual,ptuning,prompt_tuning,ptuning_v2,baseline")
    parser.add_argument("--test-size", type=int, default=200)
    parser.add_argument("--max-steps", type=int, default=100)
    parser.add_argument("--eval-every", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=96)
    parser.add_argument("--backbone", default="default")
    parser.add_argument("--option", action="append", help="METHOD.NAME=VALUE override (repeatable)")
    parser.add_argument("--tag", default="", help="suffix of the method name in the cache, e.g. ' (lr 0.03)'")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", default=str(ROOT / "benchmarks" / "results" / "continuous_accuracy.json"))
    parser.add_argument("--markdown", action="store_true", help="rewrite the Continuous prompts section")
    parser.add_argument("--table-only", action="store_true", help="only format the cached results")
    parser.add_argument("--notes", default="", help="text (or a file of it) appended under the tables")
    parser.add_argument("--speed-json", default="", help="bench_continuous_speed.py --json output to include")
    args = parser.parse_args()
    cache_path = Path(args.cache)
    cache = json.loads(cache_path.read_text()) if args.table_only else run(args)
    print("\n".join(table(cache)))
    if args.markdown:
        command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
        write_markdown(cache, command, args.notes, ROOT / "benchmarks" / "RESULTS.md", args.speed_json)


if __name__ == "__main__":
    main()
