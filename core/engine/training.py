"""The one training loop every trained method uses (P-tuning v1/v2, prompt tuning, fine-tuning baselines).

Read top to bottom: config -> learning-rate schedule -> batch order -> checkpoint I/O -> `train`. The loop knows
nothing about prompts: a method hands it named parameter groups, a `loss_fn(records, labels)` and an `eval_fn()`.

- AdamW, linear warm-up then linear/cosine decay (or constant), gradient accumulation, gradient clipping.
- bf16 autocast on CUDA; fp32 on the CPU.
- Dev evaluation every `eval_every` steps; the best state (dev accuracy, ties broken by lower dev loss) is kept and
  restored at the end; early stopping once dev has plateaued (`patience` evaluations in a row with neither a better
  accuracy nor a lower loss), never before `min_steps_fraction` of the budget: on a few-shot dev set accuracy moves
  in steps of 1/len(dev), and a short run stopped on its first flat stretch lost to zero-shot (issue 24).
- Seeded and stateless batch order (the batch of step s is a pure function of seed and s), and the torch RNG state
  is checkpointed, so a run stopped at step k and resumed produces the same loss curve as an uninterrupted one.
- `should_stop()` is polled before every step; on stop a checkpoint is written and `core.runs.jobs.Cancelled` raised.
- Checkpoints are one safetensors file (tensors + JSON metadata; optimizer moments as tensors): nothing pickled.
- Data parallel inside `core.distributed.data_parallel(group)`: every process takes its share of each batch and
  the gradients are summed across processes, so N processes take the same steps as one (same seed, same batches);
  only the main process writes checkpoints.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from core import distributed
from core.atomic import replacing
from core.config import choice
from core.progress import (
    EVALUATING,
    TRAINING,
    Cancelled,
    ProgressFn,
    StopFn,
    check_claim,
    enter_phase,
    resumed_phase,
    under_claim,
)

CHECKPOINT_FILE = "checkpoint.safetensors"
CHECKPOINT_KEY = "ptune_checkpoint"
CHECKPOINT_VERSION = 1


class Schedule(str, Enum):
    LINEAR = "linear"
    COSINE = "cosine"
    CONSTANT = "constant"


@dataclass
class TrainConfig:
    """Options shared by every trained method; each method subclasses it with its own defaults."""

    lr: float = field(default=1e-3, metadata={"help": "Learning rate of the prompt parameters (AdamW)."})
    tune_backbone: bool = field(
        default=False,
        metadata={
            "help": "Also train the backbone's weights (much slower, stores a full copy of the model in the prompt "
            "file). Off: the backbone stays frozen and bit-identical."
        },
    )
    backbone_lr: float = field(
        default=1e-5,
        metadata={"help": "Learning rate of the backbone when it is tuned (far smaller than the prompt's)."},
    )
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    max_steps: int = field(
        default=200, metadata={"help": "Optimizer steps (each of batch_size x grad_accum examples)."}
    )
    batch_size: int = field(default=8, metadata={"help": "Examples per forward pass."})
    grad_accum: int = field(default=1, metadata={"help": "Forward passes whose gradients are summed per step."})
    warmup_ratio: float = field(default=0.1, metadata={"help": "Fraction of the steps spent warming the LR up."})
    schedule: Schedule = field(
        default=Schedule.LINEAR,
        metadata={"help": "LR decay after warm-up: 'linear' or 'cosine' to zero, or 'constant'."},
    )
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm (0: no clipping)."})
    eval_every: int = field(
        default=0, metadata={"help": "Score dev every N steps and at the end (0: about 10 times per run)."}
    )
    eval_from: int = field(
        default=0,
        metadata={
            "help": "No dev evaluation before this step, and one at it (0: from the first interval). Tuning's trials "
            "use it to be scored once, at their rung, instead of at every interval before it."
        },
    )
    eval_look: int = field(
        default=0,
        metadata={
            "help": "One more dev evaluation at this step, before `eval_from` (0: none): tuning's early look at a "
            "trial, which stops it there when it trails the best earlier trial's look by more than two standard errors."
        },
    )
    patience: int = field(
        default=3,
        metadata={
            "help": "Stop after this many dev evaluations in a row with neither a better dev accuracy nor a lower dev "
            "loss (0: never stop early); the best state on dev is kept either way."
        },
    )
    min_steps_fraction: float = field(
        default=0.5,
        metadata={
            "help": "Early stopping may end a run only after this fraction of its steps (0 to 1): on a small dev "
            "set the first flat stretch is often noise, not the end of learning."
        },
    )
    bucket_by_length: bool = field(
        default=True,
        metadata={"help": "Batch training examples of similar length together (less padding); off: plain shuffle."},
    )
    eval_batch_size: int = field(default=32, metadata={"help": "Examples per forward pass when scoring."})
    seed: int = field(default=0, metadata={"help": "Seed of initialisation, batch order and dropout."})
    bf16: bool = field(default=True, metadata={"help": "bf16 autocast on a GPU (ignored on the CPU)."})
    checkpoint_dir: str = field(
        default="",
        metadata={
            "help": "Folder for a resumable checkpoint ('' = none). A run finding a matching checkpoint there resumes."
        },
    )
    checkpoint_every: int = field(default=50, metadata={"help": "Write the checkpoint every N steps."})

    def __post_init__(self):
        self.schedule = choice(Schedule, self.schedule, "schedule")
        positive = ("max_steps", "batch_size", "grad_accum", "eval_batch_size", "checkpoint_every")
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)!r}")
        for name in ("lr", "backbone_lr"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"{name} must be a positive number, not {getattr(self, name)!r}")
        if not 0 <= self.warmup_ratio < 1:
            raise ValueError(f"warmup_ratio must be in [0, 1), not {self.warmup_ratio!r}")
        if self.weight_decay < 0 or self.max_grad_norm < 0 or self.patience < 0 or self.eval_every < 0:
            raise ValueError("weight_decay, max_grad_norm, patience and eval_every cannot be negative")
        if self.eval_from < 0 or self.eval_look < 0:
            raise ValueError(f"eval_from and eval_look cannot be negative, not {self.eval_from}, {self.eval_look}")
        if not 0 <= self.min_steps_fraction <= 1:
            raise ValueError(f"min_steps_fraction must be between 0 and 1, not {self.min_steps_fraction}")

    @property
    def eval_interval(self) -> int:
        """Steps between dev evaluations: `eval_every`, or (0) a tenth of the run so every curve has ~10 points."""
        return int(self.eval_every) or max(1, self.max_steps // 10)

    def evaluates_at(self, step: int) -> bool:
        """Whether dev is scored after optimizer step `step`: every `eval_interval` steps from `eval_from` on, at
        `eval_from` itself, at `eval_look` when set, and at the last step."""
        if step == self.max_steps or step == self.eval_from or (self.eval_look and step == self.eval_look):
            return True
        return step > self.eval_from and step % self.eval_interval == 0


# 1. learning-rate schedule ------------------------------------------------------------------------------------


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Multiplier of the base LR for optimizer step `step` (1-based): warm-up, then decay."""
    warmup = round(cfg.warmup_ratio * cfg.max_steps)
    if step <= warmup:
        return step / max(1, warmup)
    if cfg.schedule is Schedule.CONSTANT:
        return 1.0
    progress = (step - warmup - 1) / max(1, cfg.max_steps - warmup)  # 0 at the first decay step; the last is > 0
    if cfg.schedule is Schedule.COSINE:
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return max(0.0, 1.0 - progress)


# 2. batch order ---------------------------------------------------------------------------------------------


class BatchOrder:
    """Example indices of micro-batch m: epochs of seeded permutations laid end to end (stateless, resumable).

    With `lengths`, each epoch's permutation is cut into windows of `bucket` batches, each window sorted by length
    and cut into batches, and the batches shuffled: examples of similar length share a batch (little padding),
    every example is still seen once per epoch, and the order is still a pure function of seed and epoch.
    """

    def __init__(self, n: int, batch_size: int, seed: int, lengths: Sequence[int] | None = None, bucket: int = 8):
        self.n, self.batch_size, self.seed = n, min(batch_size, n), seed
        self.lengths, self.bucket = (list(lengths) if lengths is not None else None), bucket
        self._perms: dict[int, list[int]] = {}

    def _perm(self, epoch: int) -> list[int]:
        if epoch not in self._perms:
            gen = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            perm = torch.randperm(self.n, generator=gen).tolist()
            if self.lengths is not None:
                perm = self._bucketed(perm, gen)
            self._perms = {epoch: perm}  # keep one epoch in memory
        return self._perms[epoch]

    def _bucketed(self, perm: list[int], gen: torch.Generator) -> list[int]:
        window = self.batch_size * self.bucket
        batches = []
        for start in range(0, len(perm), window):
            chunk = sorted(perm[start : start + window], key=lambda i: self.lengths[i])  # stable: ties stay seeded
            batches += [chunk[b : b + self.batch_size] for b in range(0, len(chunk), self.batch_size)]
        return [i for b in torch.randperm(len(batches), generator=gen).tolist() for i in batches[b]]

    def batch(self, m: int) -> list[int]:
        start = m * self.batch_size
        return [self._perm(j // self.n)[j % self.n] for j in range(start, start + self.batch_size)]


# 3. checkpoints ---------------------------------------------------------------------------------------------


@dataclass
class LoopState:
    """Everything besides tensors that a resumed run needs."""

    step: int = 0
    best_step: int = 0
    best_dev: float | None = None
    best_dev_loss: float | None = None
    bad_evals: int = 0  # evaluations in a row with neither a better accuracy (the kept state) nor a lower loss
    lowest_dev_loss: float | None = None
    losses: list[float] = field(default_factory=list)  # training loss of every step so far
    evals: list[dict] = field(default_factory=list)  # {"step", "dev_accuracy", "dev_loss"}


def _atomic_save(tensors: dict[str, torch.Tensor], meta: dict, path: Path) -> None:
    with replacing(path) as tmp:
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in tensors.items()},
            str(tmp),
            metadata={CHECKPOINT_KEY: json.dumps(meta)},
        )


def save_checkpoint(
    path: Path,
    key: str,
    params: Mapping[str, nn.Parameter],
    best: Mapping[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    state: LoopState,
) -> None:
    """params, best state, AdamW moments, RNG state and loop state in one safetensors file (atomic)."""
    tensors = {f"param/{k}": v for k, v in params.items()}
    tensors.update({f"best/{k}": v for k, v in best.items()})
    opt_state = optimizer.state_dict()["state"]
    for idx, slots in opt_state.items():
        for slot, value in slots.items():
            tensors[f"opt/{idx}/{slot}"] = value if torch.is_tensor(value) else torch.tensor(value)
    tensors["rng/torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        tensors["rng/cuda"] = torch.cuda.get_rng_state()
    meta = {"version": CHECKPOINT_VERSION, "key": key, "loop": state.__dict__}
    check_claim()  # in a worker that lost its run, not even serialised (the rename is fenced too)
    _atomic_save(tensors, meta, path)


def load_checkpoint(path: Path, key: str) -> tuple[dict[str, torch.Tensor], dict, LoopState] | None:
    """(tensors, metadata, loop state) of a checkpoint for this exact run (same `key`), else None."""
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get(CHECKPOINT_KEY, "null"))
            if not isinstance(meta, dict) or meta.get("version") != CHECKPOINT_VERSION or meta.get("key") != key:
                return None
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
    except (OSError, SafetensorError, json.JSONDecodeError):
        return None
    return tensors, meta, LoopState(**meta["loop"])


def _restore(
    tensors: dict[str, torch.Tensor], params: Mapping[str, nn.Parameter], optimizer: torch.optim.Optimizer
) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        for k, p in params.items():
            p.copy_(tensors[f"param/{k}"])
    sd = optimizer.state_dict()
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith("opt/"):
            _, idx, slot = name.split("/", 2)
            state.setdefault(int(idx), {})[slot] = value
    sd["state"] = state
    optimizer.load_state_dict(sd)
    torch.set_rng_state(tensors["rng/torch"])
    if "rng/cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng/cuda"])
    return {k.removeprefix("best/"): v for k, v in tensors.items() if k.startswith("best/")}


# 4. the loop ------------------------------------------------------------------------------------------------


@dataclass
class ParamGroup:
    """Named parameters trained with one learning rate (names must be unique across groups)."""

    params: dict[str, nn.Parameter]
    lr: float
    weight_decay: float = 0.0


@dataclass
class TrainResult:
    state: dict[str, torch.Tensor]  # the kept (best on dev, else last) values of every trained parameter
    steps: int
    best_step: int
    best_dev_accuracy: float | None
    losses: list[float]
    evals: list[dict]
    resumed_from: int
    stopped_early: bool
    seconds: float


LossFn = Callable[[Sequence[Mapping[str, str]], torch.Tensor], torch.Tensor]
EvalFn = Callable[[], tuple[float, float]]  # () -> (dev accuracy, dev loss)


def plateaued(state: LoopState, cfg: TrainConfig) -> bool:
    """Whether early stopping ends the run now: `patience` evaluations without progress, past the minimum steps."""
    return (
        bool(cfg.patience) and state.bad_evals >= cfg.patience and state.step >= cfg.min_steps_fraction * cfg.max_steps
    )


def _better(acc: float, loss: float, state: LoopState) -> bool:
    if state.best_dev is None:
        return True
    return acc > state.best_dev or (acc == state.best_dev and loss < (state.best_dev_loss or math.inf))


def train(
    groups: Sequence[ParamGroup],
    loss_fn: LossFn,
    eval_fn: EvalFn | None,
    records: Sequence[Mapping[str, str]],
    labels: Sequence[int],
    cfg: TrainConfig,
    *,
    device: torch.device,
    modules: Sequence[nn.Module] = (),
    run_key: str = "",
    progress: ProgressFn,
    should_stop: StopFn,
    lengths: Sequence[int] | None = None,
) -> TrainResult:
    """Train `groups` to minimise `loss_fn` on (records, labels); returns the kept state (also loaded in place).

    `modules` are put in train mode for steps and eval mode for dev scoring (dropout); the caller owns
    everything else. `run_key` identifies the run for resuming: a checkpoint with another key is ignored.
    `lengths` (one per record, any length proxy) makes batches of similar length (see `BatchOrder`).
    """
    params = {k: p for g in groups for k, p in g.params.items()}
    if len(params) != sum(len(g.params) for g in groups):
        raise ValueError("parameter names repeat across groups")
    optimizer = torch.optim.AdamW(
        [{"params": list(g.params.values()), "lr": g.lr, "weight_decay": g.weight_decay} for g in groups],
        lr=groups[0].lr,
    )
    base_lrs = [g.lr for g in groups]
    order = BatchOrder(len(records), cfg.batch_size, cfg.seed, lengths if cfg.bucket_by_length else None)
    labels_t = torch.as_tensor(list(labels), dtype=torch.long)
    ckpt_path = Path(cfg.checkpoint_dir) / CHECKPOINT_FILE if cfg.checkpoint_dir else None
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda" and cfg.bf16)

    dp = distributed.data_parallel_group()  # processes splitting each batch (one outside data_parallel)

    state, best = LoopState(), {}
    loaded = load_checkpoint(ckpt_path, run_key) if ckpt_path else None
    if loaded is not None:
        tensors, _meta, state = loaded
        best = _restore(tensors, params, optimizer)
        progress(state.step, cfg.max_steps, {})  # the card shows where it resumed at once
        enter_phase(progress, resumed_phase(state.step))
    else:
        torch.manual_seed(cfg.seed)
    resumed_from = state.step
    distributed.broadcast_parameters(list(params.values()), dp)

    def checkpoint() -> None:
        if ckpt_path is not None and dp.is_main:
            save_checkpoint(ckpt_path, run_key, params, best, optimizer, state)

    def set_mode(training: bool) -> None:
        for m in modules:
            m.train(training)

    def evaluate() -> float:
        set_mode(False)
        acc, loss = eval_fn()
        set_mode(True)
        state.evals.append({"step": state.step, "dev_accuracy": acc, "dev_loss": loss})
        improved = _better(acc, loss, state)
        if improved:
            state.best_dev, state.best_dev_loss, state.best_step = acc, loss, state.step
            best.clear()
            best.update({k: p.detach().clone() for k, p in params.items()})
        lower = state.lowest_dev_loss is None or loss < state.lowest_dev_loss
        if lower:
            state.lowest_dev_loss = loss
        state.bad_evals = 0 if improved or lower else state.bad_evals + 1
        return acc

    start = time.perf_counter()
    stopped_early = False
    set_mode(True)
    try:
        while state.step < cfg.max_steps:
            if should_stop():
                checkpoint()
                raise Cancelled(f"stopped at step {state.step} of {cfg.max_steps}")
            t0 = time.perf_counter()
            step = state.step + 1
            factor = lr_factor(step, cfg)
            for group, base in zip(optimizer.param_groups, base_lrs, strict=True):
                group["lr"] = base * factor
            optimizer.zero_grad(set_to_none=True)
            total_loss, seen = 0.0, 0
            for micro in range(cfg.grad_accum):
                idx = order.batch(state.step * cfg.grad_accum + micro)
                mine = distributed.my_share(idx, dp)
                seen += len(idx)
                if not mine:  # fewer examples than processes: this one only joins the gradient sum
                    continue
                share = len(mine) / len(idx) / cfg.grad_accum  # weights make the sum over processes the batch mean
                with autocast:
                    loss = loss_fn([records[i] for i in mine], labels_t[mine].to(device))
                (loss * share).backward()
                total_loss += float(loss.detach()) * share
            total_loss = distributed.sum_gradients(list(params.values()), total_loss, dp)
            if cfg.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(list(params.values()), cfg.max_grad_norm)
            optimizer.step()
            state.step = step
            state.losses.append(total_loss)
            elapsed = time.perf_counter() - t0
            metrics = {
                "loss": total_loss,
                "lr": base_lrs[0] * factor,
                "examples_per_second": seen / elapsed if elapsed > 0 else 0.0,
            }
            if eval_fn is not None and cfg.evaluates_at(step):
                enter_phase(progress, EVALUATING)
                metrics["dev_accuracy"] = evaluate()
                enter_phase(progress, resumed_phase(resumed_from) if resumed_from else TRAINING)
                metrics["dev_loss"] = state.evals[-1]["dev_loss"]
                stopped_early = plateaued(state, cfg)
            progress(step, cfg.max_steps, metrics)
            if stopped_early:
                break
            if step % cfg.checkpoint_every == 0 and step < cfg.max_steps:
                checkpoint()
    finally:
        set_mode(False)
        optimizer.zero_grad(set_to_none=True)
    if best:
        with torch.no_grad():
            for k, p in params.items():
                p.copy_(best[k])
    if ckpt_path is not None and dp.is_main and ckpt_path.exists():
        with under_claim():
            ckpt_path.unlink()  # finished: the learned prompt is the result; a rerun trains afresh
    return TrainResult(
        state={k: p.detach().clone() for k, p in params.items()},
        steps=state.step,
        best_step=state.best_step if best else state.step,
        best_dev_accuracy=state.best_dev,
        losses=list(state.losses),
        evals=list(state.evals),
        resumed_from=resumed_from,
        stopped_early=stopped_early,
        seconds=time.perf_counter() - start,
    )
