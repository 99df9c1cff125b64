"""Where an estimate's seconds come from: each method's two rates on a backbone and device (`Throughput`: seconds
per token of training work and per scored token), from the best source there is, and the short probe that measures
them on a loaded backbone. Per token, not per row: a rate measured on 26-token tweets holds for 110-token drug
reviews (`core.runs.estimate_tokens` counts the tokens).

Why its own module: `core.runs.estimate` models how much work a unit is; this module says how fast that work goes,
best first from (a) remembered measurements of that method (`rates_for`'s `remembered`, drawn toward the probe
while they are few: `_shrunk`), (b) other methods' measurements scaled by the `PRIORS` ratios, (c) the probe
(`probe`, about two seconds, cached per backbone and device and remembered in the store under `PROBE_KEY`), scaled
the same way, or (d) a rough prior from the parameter count. Everything here is importable from
`core.runs.estimate` too.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from core.engine import prefix_cache
from core.engine.backbone import Backbone
from core.engine.templates import Template, Verbalizer
from core.methods import create
from core.methods.base import PromptSpec
from core.runs.estimate_tokens import ROW_TOKENS

MEASURED, DERIVED, PROBED, PRIOR = "measured", "measured (other methods)", "probe", "prior"
SOURCE_RANK = {MEASURED: 0, DERIVED: 1, PROBED: 2, PRIOR: 3}  # how much an estimate is to be trusted, best first


@dataclass(frozen=True)
class MethodPrior:
    """A method's speed relative to the probe's, per token: `work` scales the probe's seconds per token of training
    work (a token through forward + backward counts 3), `example` its seconds per scored token (manual templates,
    batch 16). `cached`: the method reuses the text's key/values on a causal LM (`core.runs.estimate_tokens`).
    `row`: what a scored row costs beyond its tokens, in tokens (manual scores every template on dev and test in
    small batches, so its rows' fixed cost shows on short rows)."""

    work: float
    example: float
    cached: bool = False
    row: float = 0.0  # token-equivalents a scored row costs beyond its tokens (manual: batching, calibration)


# Per-method ratios to the probe's two per-token rates. First calibrated per row on this 2-core CPU (benchmarks/
# RESULTS.md, issue 24: `bench_comparison.py`, SmolLM2-135M, K = 32, tuning on), then restated per token for issue 31
# (each ratio times the probe's tokens a row over the tokens the method runs a row, `estimate_tokens.row_tokens`) and
# checked out of sample by `benchmarks/bench_estimate.py` (3 datasets x 2 K x 2 method sets). The probe's rates carry
# its own bias (small batches, the full vocabulary at every position), which these ratios absorb: they hold
# for this probe, measured this way. AutoPrompt re-scores candidates on cached texts and P-tuning trains on cached
# texts (`cached`: their steps run only the tokens after the text, so their per-token ratios are larger: a short
# suffix uses the CPU less well), prompt tuning and P-tuning v2 carry the whole text through every layer at every
# step. Where no probe ran, `CPU_SECONDS_PER_GPARAM` gives the probe's two rates from the parameter count (the
# probe measured about 1.2 ms a token for 0.135e9 parameters), and an accelerator is assumed `GPU_SPEEDUP` times
# faster: a rough prior, and said to be one. Measured runs replace all of it. Every ratio here was then restated for
# the fixed-length probe (`probe`): x1.51 work, x1.44 example, the old probe's median rates on movie reviews (the
# in-sample data) over the new one's, back to back (`benchmarks/bench_probe.py`), so the calibration holds.
PRIORS: dict[str, MethodPrior] = {
    # Manual fitted per unit by `benchmarks/fit_estimate.py` (the seed-0 and seed-1 jobs of `bench_estimate.py`, 12
    # units): its tokens and its rows, a row costing about 12 tokens more, which shows on 25-token tweets, not on
    # 115-token drug reviews.
    "manual": MethodPrior(work=0.80, example=0.69, row=12.0),
    "baseline": MethodPrior(work=0.0, example=0.0),
    "linear_probe": MethodPrior(work=1.28, example=0.30),
    # The four searched and tuned methods: fitted per piece (each tuning trial, the continued winner, the test pass:
    # about 350 pieces of the seed-0 and seed-1 jobs of `bench_estimate.py`, 3 + 3 datasets x K 8, 16, each on its
    # own K-shot rows' tokens) by `benchmarks/fit_estimate.py`, counted as `core.runs.estimate` counts them. Fitted to
    # whole units before, their scoring ratios were 2.5-3.5x too low and their work ratios high to make up for it,
    # which underestimated K = 16 (twice the dev rows to score) and folded tuning's extensions and early stops into
    # the speeds. The seed-0 job alone fits within 10 % of these: they are speeds.
    "autoprompt": MethodPrior(work=0.77, example=0.81),
    "ptuning": MethodPrior(work=1.07, example=0.91, cached=True),  # with `CACHED_READ` 0.04 of its text a pass
    "ptuning_v2": MethodPrior(work=1.05, example=1.10),
    "prompt_tuning": MethodPrior(work=1.13, example=1.14),
    # The fine-tuning rows (issue 30) train every weight (or LoRA's adapters) of a private copy with the prefix cache
    # off: a step is a full forward and backward with weight gradients plus AdamW over every trained weight, and
    # scoring runs the whole prompt. From `bench_versus_finetuning.py` on this 2-core CPU (benchmarks/RESULTS.md).
    "finetune": MethodPrior(work=4.5, example=0.87),
    "prompt_finetune": MethodPrior(work=4.5, example=0.87),
    "lora": MethodPrior(work=2.4, example=0.87),
}
DEFAULT_PRIOR = MethodPrior(work=1.2, example=0.43)  # a method added later, until it is measured
CPU_SECONDS_PER_GPARAM = {"work": 0.0089, "example": 0.0091}  # per 1e9 parameters, per work / scored token
GPU_SPEEDUP = 25.0
PROBE_KEY = "probe"  # the store's throughput row that remembers the last probe of a backbone on a device
PROBE_RUNS = 3  # finished runs the probe weighs as against a method's own measured rates (`_shrunk`)
REMEMBER_WEIGHT = 0.5  # a new measurement's weight against the remembered one (a loaded machine does not stick)


@dataclass(frozen=True)
class Throughput:
    """A method's two rates on one backbone and device, and where they came from (`MEASURED` ... `PRIOR`)."""

    work_seconds: float  # per token of training work (one forward-equivalent token of a training step)
    example_seconds: float  # per scored token
    source: str
    runs: int = 0  # finished runs the rates rest on (measured ones: this method's; derived: the others')


@dataclass(frozen=True)
class Probe:
    """The probe's two rates: seconds per scored token (manual template) and per token of training work."""

    example_seconds: float
    work_seconds: float
    seconds: float  # what the probe itself took
    tokens: float = 0.0  # its rows' mean tokens


def rates_for(
    methods: Sequence[str],
    *,
    remembered: Mapping[str, Mapping[str, float]] | None = None,
    probed: Probe | None = None,
    parameters: int | None = None,
    device: str = "cpu",
) -> dict[str, Throughput]:
    """Each method's rates, from the best source there is (see the module docstring).

    `remembered`: method -> {"work_seconds", "example_seconds", "runs"} per token, measured on this backbone and
    device (the store's `throughput`); `probed`: the probe's rates; `parameters`: the backbone's size, for the last
    resort."""
    remembered = dict(remembered or {})
    kept = remembered.pop(PROBE_KEY, None)  # the last probe of this machine, as the store remembers it
    if probed is None and kept is not None and kept.get("work_seconds"):
        probed = Probe(float(kept["example_seconds"]), float(kept["work_seconds"]), 0.0)
    base = _base_from(remembered)
    others = sum(int(r.get("runs") or 1) for r in remembered.values())
    out = {}
    for m in methods:
        if m in remembered:
            r = remembered[m]
            prior = PRIORS.get(m, DEFAULT_PRIOR)
            work = r.get("work_seconds")
            if work is None:  # a method measured only scoring (manual): its training rate from the others'
                work = prior.work * (base or _probe_or_prior(probed, parameters, device))[0]
            runs = int(r.get("runs") or 1)
            rates = (float(work), float(r["example_seconds"]))
            if probed is not None:
                rates = _shrunk(
                    rates, (prior.work * probed.work_seconds, prior.example * probed.example_seconds), runs
                )
            out[m] = Throughput(*rates, MEASURED, runs)
            continue
        runs = 0
        if base is not None:
            rates, source, runs = base, DERIVED, others
        elif probed is not None:
            rates, source = (probed.work_seconds, probed.example_seconds), PROBED
        else:
            rates, source = _probe_or_prior(None, parameters, device), PRIOR
        prior = PRIORS.get(m, DEFAULT_PRIOR)
        out[m] = Throughput(prior.work * rates[0], prior.example * rates[1], source, runs)
    return out


def _shrunk(measured: tuple[float, float], probed: tuple[float, float], runs: int) -> tuple[float, float]:
    """A method's measured rates drawn toward what the probe and its prior say, the probe weighing as `PROBE_RUNS`
    finished runs (geometric means: rates are ratios). Why: one run's time on a 2-core machine moves by 20 % between
    identical runs, and its training rate is what is left after its scoring, which magnifies that; out of sample
    (`bench_estimate.py`), estimates from one run alone were within 30 % for 16 of 25 units, from the probe 22."""
    weight = runs / (runs + PROBE_RUNS)

    def mix(mine: float, probe: float) -> float:
        return mine**weight * probe ** (1 - weight) if mine > 0 and probe > 0 else mine

    return mix(measured[0], probed[0]), mix(measured[1], probed[1])


def _base_from(remembered: Mapping[str, Mapping[str, float]]) -> tuple[float, float] | None:
    """The probe-equivalent rates implied by the measured methods (each divided by its ratio), averaged."""
    works, examples = [], []
    for m, r in remembered.items():
        prior = PRIORS.get(m, DEFAULT_PRIOR)
        if r.get("work_seconds") and prior.work:
            works.append(r["work_seconds"] / prior.work)
        if r.get("example_seconds") and prior.example:
            examples.append(r["example_seconds"] / prior.example)
    if not examples:
        return None
    example = sum(examples) / len(examples)
    work = (
        sum(works) / len(works)
        if works
        else example * CPU_SECONDS_PER_GPARAM["work"] / CPU_SECONDS_PER_GPARAM["example"]
    )
    return work, example


def _probe_or_prior(probed: Probe | None, parameters: int | None, device: str) -> tuple[float, float]:
    if probed is not None:
        return probed.work_seconds, probed.example_seconds
    size = (parameters or 135e6) / 1e9
    speed = 1.0 if device == "cpu" else GPU_SPEEDUP
    return CPU_SECONDS_PER_GPARAM["work"] * size / speed, CPU_SECONDS_PER_GPARAM["example"] * size / speed


# -- the probe -------------------------------------------------------------------------------------------------

PROBE_REPEATS = 3  # timings of each kind after a warm-up; their median is the probe's rate
PROBE_TOKENS = 32  # tokens of text in each probe row, whatever the data's length (`_probe_rows`)
SCORE_ROWS, TRAIN_ROWS = 8, 4  # rows in the probe's scoring batch and its training step
_probes: dict[tuple[str, str], Probe] = {}
_probe_lock = threading.Lock()


def probe(backbone: Backbone, records: Sequence[Mapping[str, str]], template: str, *, fresh: bool = False) -> Probe:
    """Time scoring (a manual template, `SCORE_ROWS` rows) and a training step (`TRAIN_ROWS` rows, forward and
    backward to the input embeddings, as a prompt method's step is) on `backbone`, per token: each once to warm up,
    then `PROBE_REPEATS` times, the median kept. About two seconds on a CPU for a 135M model.

    What it times is this machine, not the data: rows of the user's words cut to `PROBE_TOKENS` tokens each
    (`_probe_rows`), so the probe a server takes on its first dataset holds for every later one. Timed on the
    user's rows as they were, drug reviews' uneven lengths read 1.4x slower per token than movie snippets (the
    training batch pads to its longest row), and that first probe then set every later estimate; one cold timing
    of each kind moved one comparison's estimate by up to 20 % between processes (`benchmarks/bench_probe.py`).
    Cached per backbone fingerprint and device for the life of the process: the page calls it on every rerun.
    `fresh`: time it again all the same (`benchmarks/bench_estimate.py`: each comparison a first launch, on the
    machine as fast as it is then)."""
    key = (backbone.fingerprint or backbone.name, str(backbone.device))
    with _probe_lock:
        if key in _probes and not fresh:
            return _probes[key]
    from core.methods.manual import discrete_scores

    start = time.perf_counter()
    rows = _probe_rows(backbone.tokenizer, records)
    spec = PromptSpec((template,), Verbalizer.from_mapping({"a": ["good"], "b": ["bad"]}, ["a", "b"]), ("a", "b"))
    method = create("manual", spec, {"calibrate": False})
    prompt = method.learned(backbone, template, metrics={"trainable_params": 0})
    with prefix_cache.bypass():  # every repeat computes its rows afresh, and the probe leaves nothing cached
        scored = _median_seconds(lambda: discrete_scores(backbone, prompt, rows[:SCORE_ROWS], calibrated=False))
    texts = [Template.parse(template).fill(r).replace("[MASK]", "") for r in rows[:SCORE_ROWS]]
    batch = backbone.tokenizer(texts, return_tensors="pt", padding=True, truncation=True, max_length=256)
    lengths = batch["attention_mask"].sum(1).tolist()
    ids, mask = (batch[k][:TRAIN_ROWS].to(backbone.device) for k in ("input_ids", "attention_mask"))
    work = _median_seconds(lambda: _training_step(backbone, ids, mask))
    example = scored / (sum(lengths) + ROW_TOKENS * len(lengths))  # per token as `TokenStats.prompt` counts a row
    trained = sum(lengths[:TRAIN_ROWS]) / TRAIN_ROWS + ROW_TOKENS
    result = Probe(example, work / (3 * TRAIN_ROWS * trained), time.perf_counter() - start, trained)
    with _probe_lock:
        _probes[key] = result
    return result


def _probe_rows(tokenizer: Any, records: Sequence[Mapping[str, str]]) -> list[dict[str, str]]:
    """`SCORE_ROWS` rows whose first field is `PROBE_TOKENS` tokens of the user's words (their texts run together
    and cut), the other fields empty: the same work on every dataset, in the data's own vocabulary."""
    fields = list(records[0]) if records else ["text"]
    text = " ".join(" ".join(str(v) for v in r.values()) for r in records[:64]) or "probe"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    ids = ids * (SCORE_ROWS * PROBE_TOKENS // max(len(ids), 1) + 1)
    chunks = [tokenizer.decode(ids[i * PROBE_TOKENS : (i + 1) * PROBE_TOKENS]) for i in range(SCORE_ROWS)]
    return [{f: (chunk if j == 0 else "") for j, f in enumerate(fields)} for chunk in chunks]


def _training_step(backbone: Backbone, ids: torch.Tensor, mask: torch.Tensor) -> None:
    embeds = backbone.embeddings(ids).detach().requires_grad_(True)
    logits = backbone.model(inputs_embeds=embeds, attention_mask=mask).logits
    torch.autograd.grad(logits[:, -1].float().logsumexp(-1).sum(), embeds)


def _median_seconds(work: Callable[[], object]) -> float:
    """`work`'s median wall seconds over `PROBE_REPEATS` runs, after one run to warm up (first-call costs are not
    throughput)."""
    work()
    times = []
    for _ in range(PROBE_REPEATS):
        t0 = time.perf_counter()
        work()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def cached_probe(backbone: Backbone) -> Probe | None:
    """The probe already taken of this backbone on its device in this process, if any."""
    with _probe_lock:
        return _probes.get((backbone.fingerprint or backbone.name, str(backbone.device)))
