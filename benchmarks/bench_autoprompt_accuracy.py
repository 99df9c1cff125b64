"""AutoPrompt accuracy vs manual templates (best, worst, best-on-dev) vs majority, K-shot, several seeds.

The same protocol as `python -m core compare --methods baseline,manual,autoprompt --k-shot K --seeds ...`: one
held-out test split shared by every seed, per seed a K-per-class train sample and a K-per-class dev sample, manual
prompts zero-shot with contextual calibration (the `manual` defaults), AutoPrompt searched on train and selected on
dev. Zero-shot manual scores do not depend on the seed, so each (template, text) is scored once and reused, which
is what makes three seeds affordable on a small CPU:

    python benchmarks/bench_autoprompt_accuracy.py --k-shot 32 --seeds 0,1,2 --test-size 100 --max-steps 8

Prints one markdown table per dataset (accuracy mean ± std over seeds) and writes the raw numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.compare import method_options, prompt_spec  # noqa: E402
from core.data import few_shot_split, load_dataset, split_dataset  # noqa: E402
from core.engine.backbone import load_backbone  # noqa: E402
from core.engine.evaluate import accuracy, mean_std  # noqa: E402
from core.engine.scoring import build_plan, calibrate, content_free_log_prior  # noqa: E402
from core.engine.templates import Template  # noqa: E402
from core.methods import create  # noqa: E402
from core.methods.manual import ManualConfig, ManualPrompts  # noqa: E402

DATASETS = ("data/samples/movie_reviews.csv", "data/samples/subjectivity.csv")


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def parse_options(items: list[str] | None) -> dict:
    out = {}
    for item in items or []:
        key, _, value = item.partition("=")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


class ManualCache:
    """Zero-shot calibrated manual scores, computed once per (template, text)."""

    def __init__(self, backbone, spec, fields):
        self.backbone = backbone
        self.method = ManualPrompts(spec, ManualConfig())
        self.prompts = {t: self.method.prompt_for(backbone, t, fields) for t in spec.templates}
        self.scores: dict[tuple[str, str], torch.Tensor] = {}

    def predict(self, template: str, records) -> list[int]:
        todo = [r for r in records if (template, json.dumps(r, sort_keys=True)) not in self.scores]
        if todo:
            s = self.method.scores(self.backbone, self.prompts[template], todo)
            for r, row in zip(todo, s, strict=True):
                self.scores[(template, json.dumps(r, sort_keys=True))] = row
        return [int(self.scores[(template, json.dumps(r, sort_keys=True))].argmax()) for r in records]


def run_dataset(backbone, path: str, args, ap_options: dict) -> dict:
    data = load_dataset(path)
    split = split_dataset(data, test_size=args.test_size, seed=0)
    spec = prompt_spec(data)
    test, gold = split.test, list(split.test.labels)
    manual = ManualCache(backbone, spec, test.columns)
    start = time.perf_counter()
    manual_test = {t: accuracy(manual.predict(t, test.records), gold) for t in spec.templates}
    say(
        f"{Path(path).stem}: manual templates on {len(test)} test rows in {time.perf_counter() - start:.0f} s: "
        f"{manual_test}"
    )
    rows: dict[str, list[float]] = {"majority": [], "selected": [], "autoprompt": [], "autoprompt_cal": []}
    found, dev_accs, seconds = [], [], []
    for seed in args.seeds:
        train, dev = few_shot_split(split, args.k_shot, seed)
        counts = Counter(train.labels)
        majority = min(counts, key=lambda k: (-counts[k], k))
        rows["majority"].append(accuracy([majority] * len(gold), gold))
        selected = None
        if not args.no_selection:
            dev_acc = {t: accuracy(manual.predict(t, dev.records), list(dev.labels)) for t in spec.templates}
            selected = max(spec.templates, key=lambda t: dev_acc[t])  # first wins ties, as in `manual`
            rows["selected"].append(manual_test[selected])
        method = create(
            "autoprompt", spec, method_options("autoprompt", ap_options, max_steps=args.max_steps) | {"seed": seed}
        )
        start = time.perf_counter()

        def progress(step, total, metrics, seed=seed, method=method):
            say(
                f"  seed {seed} iteration {step}/{total} {' '.join(method.current_triggers)!r} "
                + " ".join(f"{k}={v:.3f}" for k, v in metrics.items())
            )

        learned = method.fit(backbone, train, dev, progress=progress, should_stop=lambda: False)
        seconds.append(time.perf_counter() - start)
        raw = method.scores(backbone, learned, test.records)
        plan = build_plan(backbone, Template.parse(learned.template), learned.verbalizer_obj(), learned.label_names)
        prior = content_free_log_prior(backbone, plan, test.columns, trigger_ids=learned.state["trigger_ids"])
        rows["autoprompt"].append(accuracy(raw.argmax(1).tolist(), gold))
        rows["autoprompt_cal"].append(accuracy(calibrate(raw, prior).argmax(1).tolist(), gold))
        found.append(learned.state["filled_template"])
        dev_accs.append(learned.metrics["dev_accuracy"])
        say(
            f"  seed {seed}: selected {selected!r}; AutoPrompt {found[-1]!r} dev {dev_accs[-1]:.3f} test "
            f"{rows['autoprompt'][-1]:.3f} (calibrated {rows['autoprompt_cal'][-1]:.3f}) in {seconds[-1]:.0f} s"
        )
    best = max(spec.templates, key=lambda t: manual_test[t])
    worst = min(spec.templates, key=lambda t: manual_test[t])
    n = len(args.seeds)
    table = [
        ("Majority class", rows["majority"]),
        (f"Manual, worst template on test (`{worst}`)", [manual_test[worst]] * n),
        (f"Manual, best template on test (`{best}`)", [manual_test[best]] * n),
        *([("Template selection (best manual on dev)", rows["selected"])] if rows["selected"] else []),
        ("AutoPrompt", rows["autoprompt"]),
        ("AutoPrompt + contextual calibration (same triggers)", rows["autoprompt_cal"]),
    ]
    return {
        "dataset": Path(path).stem,
        "n_test": len(test),
        "manual_test": manual_test,
        "found": found,
        "autoprompt_dev": dev_accs,
        "search_seconds": seconds,
        "rows": [
            {"name": name, "accuracy": mean_std(a)[0], "std": mean_std(a)[1], "per_seed": a} for name, a in table
        ],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="default")
    ap.add_argument("--device", default=None)
    ap.add_argument("--data", action="append", help="CSV (repeatable); default: the two sample datasets")
    ap.add_argument("--k-shot", type=int, default=32)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--test-size", type=float, default=100, help="held-out rows (int) or fraction")
    ap.add_argument("--max-steps", type=int, default=None, help="AutoPrompt search iterations")
    ap.add_argument("--option", action="append", help="AutoPrompt option NAME=VALUE (repeatable)")
    ap.add_argument("--no-selection", action="store_true", help="skip scoring manual templates on each dev set")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    args.seeds = [int(s) for s in args.seeds.split(",")]
    if args.test_size >= 1:
        args.test_size = int(args.test_size)
    torch.set_num_threads(args.threads)
    backbone = load_backbone(args.backbone, device=args.device)
    ap_options = parse_options(args.option)
    results = []
    for path in args.data or DATASETS:
        res = run_dataset(backbone, path, args, ap_options)
        results.append(res)
        print(
            f"\n**{res['dataset']}** ({res['n_test']} test rows, K = {args.k_shot} per class, seeds "
            f"{','.join(map(str, args.seeds))}; accuracy mean ± std over seeds)\n"
        )
        print("| prompt | accuracy | per seed |")
        print("|---|---|---|")
        for r in res["rows"]:
            print(
                f"| {r['name']} | {r['accuracy']:.3f} ± {r['std']:.3f} | "
                f"{', '.join(f'{a:.3f}' for a in r['per_seed'])} |"
            )
        print("\nAutoPrompt prompts found: " + "; ".join(f"`{p}`" for p in res["found"]))
        sys.stdout.flush()
        if args.json:
            args.json.write_text(
                json.dumps(
                    {"backbone": backbone.describe(), "args": vars(args) | {"json": None}, "results": results},
                    indent=2,
                    default=str,
                )
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
