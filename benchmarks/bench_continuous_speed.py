"""Training-step time of our continuous prompts against PEFT's and against the floor, side by side in one run.

Same backbone (random weights built from a config, so nothing is downloaded), same batch and sequence length:
- floor: frozen backbone, forward + backward with gradients only for the input embeddings, logits at the label
  position only — the least work any input-level prompt method can do per step;
- ours: P-tuning v1 (LSTM encoder, 20 virtual tokens inside the template), P-tuning v2 (20-token prefixes at every
  layer) and prompt tuning (20 soft tokens), each a full step as the training loop runs it (tokenisation, encoder,
  forward, label scores, loss, backward, AdamW);
- PEFT: `P_TUNING` (LSTM), `PREFIX_TUNING` and `PROMPT_TUNING` with 20 virtual tokens, used the usual way
  (`peft_model(input_ids, attention_mask)`, loss on the label position, backward, AdamW).

    nice python benchmarks/bench_continuous_speed.py                      # CPU, a small Llama-shaped model
    python benchmarks/bench_continuous_speed.py --device cuda --dtype bf16 --config llama-1b --batch 16 --seq 256
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.engine import prefix_cache  # noqa: E402
from core.engine.backbone import Backbone, LMKind, wrap  # noqa: E402
from core.engine.scoring import _lm_head, build_plan  # noqa: E402
from core.engine.templates import Template, Verbalizer, encode_batch  # noqa: E402
from core.methods import create  # noqa: E402
from core.methods.base import PromptSpec  # noqa: E402
from tests.tiny_models import WORDS, build_tokenizer  # noqa: E402

N_VIRTUAL = 20
PTUNING_TEMPLATE = "{text} [P*10] It was [P*10] [MASK]"  # text first, as P-tuning's default template
CONFIGS = {  # name -> (family, config kwargs); real-size shapes for GPU runs, small ones for the CPU
    "small-llama": (
        "llama",
        dict(
            hidden_size=512,
            intermediate_size=1376,
            num_hidden_layers=8,
            num_attention_heads=8,
            num_key_value_heads=4,
            vocab_size=16000,
        ),
    ),
    "tiny-gpt2": ("gpt2", dict(n_embd=64, n_layer=2, n_head=4, vocab_size=1000)),  # code-path checks only
    "tiny-roberta": (
        "roberta",
        dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, vocab_size=1000),
    ),
    "smollm2-135m": (
        "llama",
        dict(
            hidden_size=576,
            intermediate_size=1536,
            num_hidden_layers=30,
            num_attention_heads=9,
            num_key_value_heads=3,
            vocab_size=49152,
            tie_word_embeddings=True,
        ),
    ),
    "llama-1b": (
        "llama",
        dict(
            hidden_size=2048,
            intermediate_size=8192,
            num_hidden_layers=16,
            num_attention_heads=32,
            num_key_value_heads=8,
            vocab_size=128256,
            tie_word_embeddings=True,
        ),
    ),
    "gpt2-medium": ("gpt2", dict(n_embd=1024, n_layer=24, n_head=16, vocab_size=50257)),
    "roberta-large": (
        "roberta",
        dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16, vocab_size=50265),
    ),
}


def build_backbone(name: str, device: str, dtype: torch.dtype) -> Backbone:
    from transformers import (
        GPT2Config,
        GPT2LMHeadModel,
        LlamaConfig,
        LlamaForCausalLM,
        RobertaConfig,
        RobertaForMaskedLM,
    )

    family, kwargs = CONFIGS[name]
    torch.manual_seed(0)
    if family == "llama":
        model = LlamaForCausalLM(
            LlamaConfig(max_position_embeddings=2048, bos_token_id=5, eos_token_id=6, pad_token_id=0, **kwargs)
        )
    elif family == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(n_positions=1024, bos_token_id=5, eos_token_id=6, **kwargs))
    else:
        model = RobertaForMaskedLM(RobertaConfig(max_position_embeddings=514, pad_token_id=0, **kwargs))
    model.config.architectures = [type(model).__name__]
    return wrap(model.to(device=device, dtype=dtype), build_tokenizer(family), name)


def records(n: int, words: int, seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)
    vocab = [w for w in WORDS if w.isalpha()]
    return [{"text": " ".join(rng.choice(vocab) for _ in range(words))} for _ in range(n)]


def timed(step, steps: int, warmup: int, device: str) -> float:
    """Median seconds of one call of `step` over `steps` timed calls after `warmup` untimed ones."""
    return timed_side_by_side([step], steps, warmup, device)[0]


def timed_side_by_side(steps_fns: list, steps: int, warmup: int, device: str) -> list[float]:
    """Median seconds of each step, the steps taken in turn (a, b, a, b, ...) so that whatever else the machine
    does at the time weighs on each alike: their ratio holds on a shared machine, where one-after-another runs
    measured different loads."""
    times: list[list[float]] = [[] for _ in steps_fns]
    for i in range(warmup + steps):
        for fn, out in zip(steps_fns, times, strict=True):
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            if device == "cuda":
                torch.cuda.synchronize()
            if i >= warmup:
                out.append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]


def base_template(backbone: Backbone) -> str:
    return "{text} It was [MASK]" if backbone.kind is LMKind.CAUSAL else "{text} It was [MASK] ."


def spec_for(backbone: Backbone) -> PromptSpec:
    labels = ("negative", "positive")
    return PromptSpec(
        (base_template(backbone),), Verbalizer.from_mapping({"negative": "bad", "positive": "good"}, labels), labels
    )


def our_step(backbone: Backbone, method: str, batch: list[dict], labels: torch.Tensor, autocast):
    options = {
        "ptuning": {"template": PTUNING_TEMPLATE if backbone.kind is LMKind.CAUSAL else PTUNING_TEMPLATE + " ."},
        "ptuning_v2": {"n_prefix": N_VIRTUAL, "prefix_dropout": 0.0},
        "prompt_tuning": {"n_tokens": N_VIRTUAL},
    }[method]
    m = create(method, spec_for(backbone), options)
    template = Template.parse(m.template_for(backbone))
    plan = build_plan(backbone, template, m.spec.verbalizer, m.spec.label_names, max_length=1024)
    torch.manual_seed(0)
    module = m.build(backbone, template, 2, for_training=True).to(backbone.device)
    opt = torch.optim.AdamW(module.parameters(), lr=1e-3)

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast():
            loss = F.cross_entropy(module.label_scores(backbone, plan, batch).float(), labels)
        loss.backward()
        opt.step()

    return step, sum(p.numel() for p in module.parameters())


def prefix_seconds(backbone: Backbone, method: str, batch: list[dict], device: str) -> float:
    """Seconds to compute the batch's frozen prefixes from an empty cache (what a run pays once per example)."""
    if method == "ptuning_v2":  # per-layer prefixes: the plain path, nothing cached
        return 0.0
    m = create(method, spec_for(backbone))
    template = Template.parse(m.template_for(backbone) if method != "ptuning" else PTUNING_TEMPLATE)
    plan = build_plan(backbone, template, m.spec.verbalizer, m.spec.label_names, max_length=1024)
    enc = encode_batch(backbone, template, batch, plan.groups[0].fill, plan.groups[0].n_targets)
    if not prefix_cache.usable(backbone, enc):
        return 0.0
    prefixes = [enc.input_ids[i, :f].tolist() for i, f in enumerate(enc.frozen)]

    def compute():
        prefix_cache.prefix_states(backbone, prefixes, cache=prefix_cache.PrefixCache(0))  # nothing kept: no reuse

    return timed(compute, steps=3, warmup=1, device=device)


def encoded(backbone: Backbone, batch: list[dict], n_extra: int = 0):
    """Input ids of the plain template (plus `n_extra` placeholder slots in front) and the label position."""
    template = Template.parse((f"[P*{n_extra}] " if n_extra else "") + base_template(backbone))
    plan = build_plan(backbone, template, spec_for(backbone).verbalizer, ("negative", "positive"), max_length=1024)
    group = plan.groups[0]
    enc = encode_batch(backbone, template, batch, group.fill, group.n_targets).to(backbone.device)
    return enc, group.word_ids[:, 0].to(backbone.device)


def floor_step(backbone: Backbone, batch: list[dict], labels: torch.Tensor, autocast, n_extra: int = 0):
    enc, word_ids = encoded(backbone, batch, n_extra)
    head = _lm_head(backbone)
    rows = torch.arange(len(batch), device=backbone.device)

    def step():
        embeds = backbone.embeddings(enc.input_ids).detach().requires_grad_(True)
        with autocast():
            hidden = backbone.model.base_model(inputs_embeds=embeds, attention_mask=enc.attention_mask)[0]
            logits = head(hidden[rows, enc.target_pos[:, 0]])[:, word_ids]
        F.cross_entropy(logits.float(), labels).backward()

    return step


def peft_step(backbone: Backbone, peft_type: str, batch: list[dict], labels: torch.Tensor, autocast):
    from peft import PrefixTuningConfig, PromptEncoderConfig, PromptTuningConfig, get_peft_model

    task = "CAUSAL_LM" if backbone.kind is LMKind.CAUSAL else "FEATURE_EXTRACTION"
    if peft_type == "P_TUNING":
        cfg = PromptEncoderConfig(
            task_type=task,
            num_virtual_tokens=N_VIRTUAL,
            encoder_reparameterization_type="LSTM",
            encoder_hidden_size=backbone.hidden_size // 2,
        )
    elif peft_type == "PREFIX_TUNING":
        cfg = PrefixTuningConfig(task_type=task, num_virtual_tokens=N_VIRTUAL)
    else:
        cfg = PromptTuningConfig(task_type=task, num_virtual_tokens=N_VIRTUAL)
    model = get_peft_model(backbone.model, cfg)
    enc, word_ids = encoded(backbone, batch)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    rows = torch.arange(len(batch), device=backbone.device)
    params = sum(p.numel() for p in model.parameters() if p.requires_grad)

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast():
            logits = model(input_ids=enc.input_ids, attention_mask=enc.attention_mask).logits
        offset = logits.shape[1] - enc.input_ids.shape[1]  # PEFT may or may not return the virtual positions
        F.cross_entropy(logits[rows, enc.target_pos[:, 0] + offset][:, word_ids].float(), labels).backward()
        opt.step()

    return step, params, model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="small-llama", choices=sorted(CONFIGS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=64, help="approximate tokens of text per example")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train-examples", type=int, default=64, help="a default run's train set (K = 32 x 2)")
    parser.add_argument("--max-steps", type=int, default=150, help="a default run's steps (prefix amortised)")
    parser.add_argument("--methods", default="ptuning,ptuning_v2,prompt_tuning", help="ours to time against PEFT")
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    backbone = build_backbone(args.config, args.device, dtype)
    for p in backbone.model.parameters():
        p.requires_grad_(False)
    batch = records(args.batch, args.seq)
    labels = torch.tensor([i % 2 for i in range(args.batch)], device=args.device)

    def autocast():
        if args.device.startswith("cuda") and dtype is torch.bfloat16:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    timing = dict(steps=args.steps, warmup=args.warmup, device=args.device.split(":")[0])
    floors = [floor_step(backbone, batch, labels, autocast, n) for n in (0, N_VIRTUAL)]
    floor_s, floor_v_s = timed_side_by_side(floors, **timing)
    results: dict[str, dict] = {"floor": {"seconds": floor_s}, "floor+virtual": {"seconds": floor_v_s}}
    peft_of = {"ptuning": "P_TUNING", "ptuning_v2": "PREFIX_TUNING", "prompt_tuning": "PROMPT_TUNING"}
    pairs = [(m, peft_of[m]) for m in args.methods.split(",")]
    for ours, theirs in pairs:
        step, params = our_step(backbone, ours, batch, labels, autocast)
        try:
            fresh = build_backbone(args.config, args.device, dtype)  # same seed, same weights; PEFT wraps it
            peft, peft_params, _ = peft_step(fresh, theirs, batch, labels, autocast)
            suffix, peft_s = timed_side_by_side([step, peft], **timing)  # after warm-up our prefixes are cached
            results[theirs] = {"seconds": peft_s, "params": peft_params}
            del fresh, peft
        except Exception as err:  # a PEFT method this family does not support: reported, not fatal
            results[theirs] = {"seconds": None, "error": f"{type(err).__name__}: {str(err).splitlines()[0][:120]}"}
            suffix = timed(step, **timing)
        prefix = prefix_seconds(backbone, ours, batch, timing["device"])
        amortised = prefix / args.batch * args.train_examples / args.max_steps  # once per example per run
        results[ours] = {"seconds": suffix + amortised, "step_seconds": suffix, "prefix_batch_seconds": prefix}
        results[ours]["params"] = params
    floor, floor_v = results["floor"]["seconds"], results["floor+virtual"]["seconds"]
    print(
        f"config {args.config} ({backbone.num_parameters() / 1e6:.0f}M params), device {args.device}, "
        f"{args.dtype}, batch {args.batch}, ~{args.seq} text tokens, {N_VIRTUAL} virtual tokens, "
        f"median of {args.steps} steps, ours and PEFT's taken in turn"
    )
    print(
        "floor: the text alone; floor+virtual: the same plus 20 placeholder tokens (the sequence P-tuning and prompt"
    )
    print("tuning feed), both frozen, gradients only for the input embeddings, logits at the label position only")
    print(
        f"ours = step time with the frozen text prefix cached + the prefix's cost amortised as a run pays it (once per "
        f"example: {args.train_examples} examples over {args.max_steps} steps); P-tuning template {PTUNING_TEMPLATE!r}"
    )
    print(
        f"{'method':16s} {'ours ms':>9s} {'PEFT ms':>9s} {'ours/PEFT':>10s} {'ours/floor':>11s} {'ours/floor+v':>13s}"
    )
    print(f"{'floor':16s} {floor * 1e3:9.1f}")
    print(f"{'floor+virtual':16s} {floor_v * 1e3:9.1f}")
    for ours, theirs in pairs:
        o, t = results[ours]["seconds"], results[theirs]["seconds"]
        vs_peft = f"{o / t:10.2f}" if t else f"{'n/a':>10s}"
        print(
            f"{ours:16s} {o * 1e3:9.1f} {t * 1e3 if t else float('nan'):9.1f} {vs_peft} {o / floor:11.2f} "
            f"{o / floor_v:13.2f}   (step {results[ours]['step_seconds'] * 1e3:.1f} ms + prefix "
            f"{results[ours]['prefix_batch_seconds'] * 1e3:.1f} ms per batch, amortised)"
        )
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=2))


if __name__ == "__main__":
    main()
