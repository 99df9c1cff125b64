"""The shared training loop: schedule, batch order, early stopping, cancel, checkpoint and exact resume."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors import safe_open
from torch import nn

from core.engine.training import CHECKPOINT_FILE, BatchOrder, ParamGroup, TrainConfig, lr_factor, train
from core.methods import create
from core.progress import Cancelled, never_stop, no_progress
from tests.ptuning_helpers import keyword_data, learnable_backbone, spec_for

RECORDS = [{"text": str(i)} for i in range(10)]
LABELS = [i % 2 for i in range(10)]


class Toy(nn.Module):
    """A linear classifier over a fixed random feature per record, with dropout (so the RNG matters)."""

    def __init__(self):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.features = torch.randn(10, 4, generator=gen)
        self.linear = nn.Linear(4, 2)
        self.drop = nn.Dropout(0.3)

    def loss(self, records, labels):
        x = self.features[[int(r["text"]) for r in records]]
        return nn.functional.cross_entropy(self.linear(self.drop(x)), labels)

    def evaluate(self):
        with torch.no_grad():
            logits = self.linear(self.features)
        labels = torch.tensor(LABELS)
        return float((logits.argmax(1) == labels).float().mean()), float(nn.functional.cross_entropy(logits, labels))


def run_toy(cfg, *, stop_after=None, progress=no_progress):
    torch.manual_seed(123)
    toy = Toy()
    calls = {"n": 0}

    def should_stop():
        calls["n"] += 1
        return stop_after is not None and calls["n"] > stop_after

    result = train(
        [ParamGroup(dict(toy.named_parameters()), cfg.lr)],
        toy.loss,
        toy.evaluate,
        RECORDS,
        LABELS,
        cfg,
        device=torch.device("cpu"),
        modules=[toy],
        run_key="toy",
        progress=progress,
        should_stop=should_stop,
    )
    return toy, result


def test_lr_schedule_warms_up_then_decays():
    cfg = TrainConfig(max_steps=100, warmup_ratio=0.1)
    assert lr_factor(5, cfg) == pytest.approx(0.5) and lr_factor(10, cfg) == pytest.approx(1.0)
    assert lr_factor(11, cfg) == 1.0 and lr_factor(56, cfg) == pytest.approx(0.5)
    assert lr_factor(100, cfg) == pytest.approx(1 / 90)  # the last step still learns
    assert lr_factor(1, TrainConfig(max_steps=1)) == 1.0
    cos = TrainConfig(max_steps=100, warmup_ratio=0.0, schedule="cosine")
    assert lr_factor(51, cos) == pytest.approx(0.5) and 0 < lr_factor(100, cos) < 1e-3
    assert lr_factor(70, TrainConfig(max_steps=100, schedule="constant")) == 1.0


def test_batch_order_is_seeded_and_covers_each_epoch():
    order = BatchOrder(10, 4, seed=3)
    stream = [i for m in range(5) for i in order.batch(m)]  # 20 indices = 2 epochs
    assert sorted(stream[:10]) == list(range(10)) and sorted(stream[10:]) == list(range(10))
    assert stream == [i for m in range(5) for i in BatchOrder(10, 4, seed=3).batch(m)]
    assert stream != [i for m in range(5) for i in BatchOrder(10, 4, seed=4).batch(m)]


def test_progress_events_and_best_state(tmp_path):
    events = []
    cfg = TrainConfig(lr=0.1, max_steps=12, batch_size=4, eval_every=4, warmup_ratio=0.0)
    toy, result = run_toy(cfg, progress=lambda s, t, m: events.append((s, t, dict(m))))
    assert [e[0] for e in events] == list(range(1, 13)) and all(e[1] == 12 for e in events)
    assert {"loss", "lr", "examples_per_second"} <= set(events[0][2])
    assert [e[0] for e in events if "dev_accuracy" in e[2]] == [4, 8, 12]
    assert result.best_dev_accuracy == max(e["dev_accuracy"] for e in result.evals)
    assert torch.equal(result.state["linear.weight"], toy.linear.weight)  # the kept state is loaded in place
    assert all(math.isfinite(x) for x in result.losses)


def run_scripted(cfg: TrainConfig, evals: list[tuple[float, float]]):
    """The loop on a one-number model whose dev scores (accuracy, loss) are given in order: the stopping rule alone."""
    weight = nn.Parameter(torch.zeros(1))
    script = iter(evals)
    return train(
        [ParamGroup({"w": weight}, cfg.lr)],
        lambda records, labels: (weight - 1).pow(2).sum(),
        lambda: next(script),
        RECORDS,
        LABELS,
        cfg,
        device=torch.device("cpu"),
        progress=no_progress,
        should_stop=never_stop,
    )


def test_early_stopping_after_patience():
    cfg = TrainConfig(max_steps=50, batch_size=4, eval_every=2, patience=2, min_steps_fraction=0)
    result = run_scripted(cfg, [(0.5, 1.0), (0.5, 1.0), (0.4, 1.1), *[(0.9, 0.1)] * 30])
    assert result.stopped_early and result.steps == 6  # best at 2, no gain at 4 and 6
    assert result.best_step == 2


def test_a_lower_dev_loss_is_progress_too():
    """Accuracy flat on a small dev set while the loss still falls: learning goes on, no early stop."""
    cfg = TrainConfig(max_steps=20, batch_size=4, eval_every=2, patience=2, min_steps_fraction=0)
    falling = [(0.5, 1.0 - 0.05 * i) for i in range(10)]
    result = run_scripted(cfg, falling)
    assert not result.stopped_early and result.steps == 20
    assert result.best_step == 20  # equal accuracy, lower loss: the latest state is kept


def test_no_early_stop_before_the_minimum_share_of_steps():
    cfg = TrainConfig(max_steps=40, batch_size=4, eval_every=2, patience=2, min_steps_fraction=0.5)
    result = run_scripted(cfg, [(0.6, 0.5)] + [(0.5, 0.9)] * 19)  # flat from the first evaluation
    assert result.stopped_early and result.steps == 20  # patience ran out at step 6; stopping waited for step 20
    assert result.best_step == 2
    with pytest.raises(ValueError, match="min_steps_fraction must be between 0 and 1"):
        TrainConfig(min_steps_fraction=1.5)


def test_cancel_writes_checkpoint_and_resume_gives_the_same_loss_curve(tmp_path):
    cfg = TrainConfig(
        lr=0.05,
        max_steps=12,
        batch_size=3,
        grad_accum=2,
        eval_every=4,
        checkpoint_every=5,
        checkpoint_dir=str(tmp_path),
    )
    _, full = run_toy(TrainConfig(**{**cfg.__dict__, "checkpoint_dir": ""}))
    with pytest.raises(Cancelled):
        run_toy(cfg, stop_after=7)  # stops before step 8
    ckpt = tmp_path / CHECKPOINT_FILE
    with safe_open(str(ckpt), framework="pt") as f:  # safetensors: no pickle
        names = set(f.keys())  # noqa: SIM118 (safe_open is not a dict)
        assert "param/linear.weight" in names and "rng/torch" in names
    toy, resumed = run_toy(cfg)
    assert resumed.resumed_from == 7
    assert resumed.losses == full.losses  # bit-identical curve
    assert torch.equal(resumed.state["linear.weight"], full.state["linear.weight"])
    assert not ckpt.exists()  # a finished run removes its checkpoint


def test_checkpoint_of_another_run_is_ignored(tmp_path):
    cfg = TrainConfig(lr=0.05, max_steps=6, batch_size=3, checkpoint_dir=str(tmp_path))
    with pytest.raises(Cancelled):
        run_toy(cfg, stop_after=3)
    toy = Toy()
    result = train(
        [ParamGroup(dict(toy.named_parameters()), cfg.lr)],
        toy.loss,
        None,
        RECORDS,
        LABELS,
        cfg,
        device=torch.device("cpu"),
        run_key="another",
        progress=no_progress,
        should_stop=never_stop,
    )
    assert result.resumed_from == 0 and result.steps == 6


def test_ptuning_v2_resume_continues_the_same_loss_curve(tmp_path):
    """A real method (prefix dropout on, so the RNG state matters) stopped at step 4 and resumed."""
    backbone = learnable_backbone("gpt2")
    train_set, dev = keyword_data(16, 0), keyword_data(8, 1)
    options = {"max_steps": 8, "eval_every": 3, "batch_size": 4, "checkpoint_every": 2, "prefix_dropout": 0.2}

    def fit(checkpoint_dir, stop=never_stop):
        method = create("ptuning_v2", spec_for(backbone), {**options, "checkpoint_dir": checkpoint_dir})
        return method.fit(backbone, train_set, dev, progress=no_progress, should_stop=stop)

    full = fit("")
    calls = {"n": 0}

    def stop_at_4():
        calls["n"] += 1
        return calls["n"] > 4

    with pytest.raises(Cancelled):
        fit(str(tmp_path), stop_at_4)
    resumed = fit(str(tmp_path))
    assert resumed.metrics["resumed_from_step"] == 4
    assert resumed.state["losses"] == full.state["losses"]
    assert all(torch.equal(resumed.tensors[k], full.tensors[k]) for k in full.tensors)


def test_config_validation():
    with pytest.raises(ValueError, match="schedule must be one of"):
        TrainConfig(schedule="exp")
    with pytest.raises(ValueError, match="warmup_ratio"):
        TrainConfig(warmup_ratio=1.5)
    assert TrainConfig(schedule="cosine").schedule.value == "cosine"
