"""fp32 vs bf16 autocast on the CPU, side by side: zero-shot scoring and a P-tuning training step, default backbone.

Decides whether the engine should autocast to bf16 on CPUs (it pays only where the CPU has AMX / AVX512-BF16).

    OMP_NUM_THREADS=2 python benchmarks/bench_bf16_cpu.py --rows 32
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.data import load_dataset  # noqa: E402
from core.engine import prefix_cache  # noqa: E402
from core.engine.backbone import load_backbone  # noqa: E402
from core.engine.scoring import batch_scores, build_plan, score_records  # noqa: E402
from core.engine.templates import Template, Verbalizer  # noqa: E402
from core.methods import create  # noqa: E402
from core.methods.base import PromptSpec  # noqa: E402


def cpu_flags() -> list[str]:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return sorted({f for f in text.split() if f in ("amx_bf16", "amx_tile", "avx512_bf16", "avx512f")})


def autocast(bf16: bool):
    return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    backbone = load_backbone("default", device="cpu")
    backbone.model.requires_grad_(False)
    ds = load_dataset(ROOT / "data/samples/movie_reviews.csv")
    records, labels = list(ds.records[: args.rows]), torch.tensor(ds.labels[: args.rows])
    verbalizer = Verbalizer.from_mapping({"positive": ["great"], "negative": ["terrible"]}, ds.label_names)
    plan = build_plan(backbone, Template.parse("{text} It was [MASK]"), verbalizer, ds.label_names)
    source = "{text} [P*3] It was [P*2] [MASK]"
    method = create(
        "ptuning", PromptSpec((source,), verbalizer, ds.label_names), {"template": source, "encoder": "mlp"}
    )  # oneDNN has no bf16 LSTM here
    torch.manual_seed(0)
    module = method.build(backbone, Template.parse(source), 2, for_training=True)
    opt = torch.optim.AdamW(module.parameters(), lr=1e-3)
    tplan = build_plan(backbone, Template.parse(source), verbalizer, ds.label_names)
    out = {}
    for bf16 in (False, True) * args.repeats:  # interleaved: both see the same load
        name = "bf16" if bf16 else "fp32"
        with autocast(bf16), prefix_cache.bypass():
            t0 = time.perf_counter()
            scores = score_records(backbone, plan, records)
            score_s = time.perf_counter() - t0
            times = []
            for i in range(args.steps):
                batch = [(i * 8 + j) % args.rows for j in range(8)]
                t0 = time.perf_counter()
                opt.zero_grad(set_to_none=True)
                s = batch_scores(backbone, tplan, [records[j] for j in batch], hooks=module.hooks())
                F.cross_entropy(s.float(), labels[batch]).backward()
                opt.step()
                times.append(time.perf_counter() - t0)
        acc = float((scores.argmax(1) == labels).float().mean())
        prev = out.setdefault(name, {"score_eps": [], "step_s": [], "acc": acc, "scores": scores})
        prev["score_eps"].append(args.rows / score_s)
        prev["step_s"].append(statistics.median(times))
    diff = float((out["bf16"]["scores"] - out["fp32"]["scores"]).abs().max())
    agree = float((out["bf16"]["scores"].argmax(1) == out["fp32"]["scores"].argmax(1)).float().mean())
    print(f"CPU flags: {cpu_flags() or 'none of amx/avx512_bf16/avx512f'}; {args.threads} threads; {args.rows} rows")
    print(f"{'':6s} {'scoring ex/s':>13s} {'train step s (batch 8)':>23s} {'accuracy':>9s}")
    for name in ("fp32", "bf16"):
        r = out[name]
        print(f"{name:6s} {max(r['score_eps']):13.2f} {min(r['step_s']):23.2f} {r['acc']:9.3f}")
    ratio = max(out["bf16"]["score_eps"]) / max(out["fp32"]["score_eps"])
    print(
        f"bf16/fp32 scoring throughput {ratio:.2f}x; step time {min(out['bf16']['step_s']) / min(out['fp32']['step_s']):.2f}x"
    )
    print(f"max |score difference| {diff:.3f}; same prediction on {agree:.0%} of rows")


if __name__ == "__main__":
    main()
