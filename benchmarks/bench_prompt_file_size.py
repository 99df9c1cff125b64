"""Prompt-file sizes before/after format 2, side by side, on the default backbone (SmolLM2-135M).

Format 1 saved a continuous prompt's trained module whole (P-tuning's LSTM/MLP encoder, P-tuning v2's
reparameterisation MLP); format 2 saves what scoring needs (the encoder's output: the virtual tokens, the per-layer
prefixes). Each method trains for a few steps on a few rows of the movie reviews; the "before" file is that trained
module's state with the format-1 manifest (as the old save wrote it), the "after" file is `core.prompts.artifacts.save`'s.
Both files are loaded back and score the same held-out rows: the table shows the largest probability difference.

    OMP_NUM_THREADS=2 python benchmarks/bench_prompt_file_size.py --steps 2
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.app.views import fmt_bytes  # noqa: E402
from core.data import load_dataset  # noqa: E402
from core.engine.backbone import load_backbone  # noqa: E402
from core.engine.templates import Verbalizer  # noqa: E402
from core.methods import create  # noqa: E402
from core.methods.base import PromptSpec  # noqa: E402
from core.progress import never_stop, no_progress  # noqa: E402
from core.prompts import artifacts  # noqa: E402
from core.prompts.predict import predict_records  # noqa: E402

CASES = [  # (label, method, options)
    ("P-tuning, LSTM encoder", "ptuning", {"encoder": "lstm"}),
    ("P-tuning, MLP encoder", "ptuning", {"encoder": "mlp"}),
    ("P-tuning v2", "ptuning_v2", {}),
    ("P-tuning v2, reparameterisation MLP", "ptuning_v2", {"projection": True}),
    ("Prompt tuning", "prompt_tuning", {}),
]


def fit_keeping_module(backbone, spec, method: str, options: dict, train, dev):
    """Fit, and also keep the trained module itself (encoder and all): what format 1 saved."""
    base = create(method, spec, options)
    kept = []

    class Keeping(type(base)):
        def build(self, *args, for_training, **kw):
            module = super().build(*args, for_training=for_training, **kw)
            kept.extend([module] if for_training else [])
            return module

    learned = Keeping(base.spec, base.config).fit(backbone, train, dev, progress=no_progress, should_stop=never_stop)
    return learned, kept[-1]


def save_format_1(learned, module, path: Path) -> Path:
    """The trained module's whole state under a format-1 manifest: the file the old save wrote."""
    tensors = {f"prompt.{k}": v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    manifest = {**artifacts.manifest(learned), "format_version": 1, "tensors": sorted(tensors)}
    save_file(tensors, str(path), metadata={artifacts.MANIFEST_KEY: json.dumps(manifest)})
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--rows", type=int, default=8, help="training rows (dev and test: half as many each)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    backbone = load_backbone("default", device="cpu")
    ds = load_dataset(ROOT / "data/samples/movie_reviews.csv")
    half = args.rows // 2
    train = ds.subset(range(args.rows))
    dev = ds.subset(range(args.rows, args.rows + half))
    test = ds.subset(range(args.rows + half, args.rows + 2 * half))
    verbalizer = Verbalizer.from_mapping({"positive": ["great"], "negative": ["terrible"]}, ds.label_names)
    spec = PromptSpec(("{text} It was [MASK]",), verbalizer, ds.label_names)
    print(f"backbone {backbone.name} (hidden {backbone.hidden_size}), {args.steps} steps on {args.rows} rows")
    print(f"| method | before (format 1) | after (format 2) | ratio | tensors after | max abs Δp on {half} rows |")
    print("|---|---:|---:|---:|---|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for i, (label, method, options) in enumerate(CASES):
            opts = {"max_steps": args.steps, "eval_every": args.steps, **options}
            learned, module = fit_keeping_module(backbone, spec, method, opts, train, dev)
            after = artifacts.save(learned, Path(tmp), f"after-{i}")
            before = save_format_1(learned, module, Path(tmp) / f"before-{i}.safetensors")
            p_after = predict_records(backbone, artifacts.load(after), list(test.records))
            p_before = predict_records(backbone, artifacts.load(before), list(test.records))
            shapes = ", ".join(f"{list(v.shape)}" for v in learned.tensors.values())
            b, a = before.stat().st_size, after.stat().st_size
            print(
                f"| {label} | {fmt_bytes(b)} ({b:,} B) | {fmt_bytes(a)} ({a:,} B) | {b / a:,.0f}x | {shapes} "
                f"| {float((p_after - p_before).abs().max()):.1e} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
