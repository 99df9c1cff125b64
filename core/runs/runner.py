"""What a worker runs: a stored run (its config plus its comparison's folder) turned back into `run_unit`.

Why here and not in the server: a run must be executable by any process that can read `PTUNE_HOME` — a worker
process on this machine, a Ray actor on another — from the store and the group folder alone, so nothing of the
launching process (its memory, its threads) is needed to run, resume or summarise it.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.compare import Unit, prompt_spec, run_unit
from core.data import LabeledDataset, Limits, Split, load_dataset, split_dataset
from core.engine.backbone import LMKind
from core.engine.backbone_pool import BackbonePool
from core.methods.base import PromptSpec
from core.progress import Cancelled, ProgressFn, StopFn
from core.prompts import artifacts
from core.runs import estimate
from core.runs.jobs import JobFn, current_device
from core.runs.store import RunStore

UPLOAD_LIMITS = Limits()  # the same caps as the CLI; the Data page states them


@dataclass
class GroupContext:
    dataset: LabeledDataset
    split: Split
    spec: PromptSpec
    settings: dict[str, Any]


def group_dir(home: Path, group_id: str) -> Path:
    return home / "runs" / artifacts.safe_filename(group_id)


def load_context(home: Path, group_id: str) -> GroupContext:
    """The group's dataset, split and prompt spec, rebuilt from its folder (data.csv + group.json)."""
    folder = group_dir(home, group_id)
    settings = json.loads((folder / "group.json").read_text(encoding="utf-8"))
    dataset = load_dataset(
        folder / "data.csv",
        text_col=settings["text_col"],
        label_col=settings["label_col"],
        text_b_col=settings.get("text_b_col"),
        limits=UPLOAD_LIMITS,
    )
    split = split_dataset(
        dataset, test_size=settings["test_size"], dev_size=settings["dev_size"], seed=settings["split_seed"]
    )
    spec = prompt_spec(dataset, settings["templates"], settings["verbalizer"])
    return GroupContext(dataset, split, spec, settings)


class RunExecutor:
    """Turns stored runs into jobs: group contexts rebuilt once per process, backbones loaded once per device."""

    def __init__(self, home: Path, store: RunStore, pool: BackbonePool | None = None):
        self.home, self.store, self.pool = Path(home), store, pool or BackbonePool()
        self._lock = threading.Lock()
        self._contexts: dict[str, GroupContext] = {}

    def context(self, group_id: str) -> GroupContext:
        with self._lock:
            if group_id in self._contexts:
                return self._contexts[group_id]
        ctx = load_context(self.home, group_id)
        with self._lock:
            return self._contexts.setdefault(group_id, ctx)

    def remember(self, group_id: str, ctx: GroupContext) -> None:
        with self._lock:
            self._contexts[group_id] = ctx

    def job(self, run: dict) -> JobFn:
        """The work of a stored run: fit and score its unit, record its prompt files, return its result."""
        run_id, config, claim = run["id"], run["config"], run.get("claim")

        def fn(progress: ProgressFn, should_stop: StopFn) -> dict:
            ctx = self.context(config["group"])
            backbone = self.pool.get(config["backbone"], device=current_device())  # the worker's own device
            unit = Unit(
                config["method"], config["seed"], dict(config["options"]), config["k_shot"], config.get("tune", False)
            )
            out_dir = group_dir(self.home, config["group"]) / run_id
            result = run_unit(
                backbone, ctx.split, ctx.spec, unit, out_dir=out_dir, progress=progress, should_stop=should_stop
            )
            if should_stop():
                raise Cancelled()
            for row in result["rows"]:
                if row.get("artifact"):
                    self.store.add_artifact(run_id, "prompt", row["artifact"], claim=claim)
                if row.get("peft_export"):  # a folder peft.PeftModel.from_pretrained loads (where PEFT can express it)
                    self.store.add_artifact(run_id, "peft", row["peft_export"], claim=claim)
            result["backbone"] = backbone.describe()
            tokens = estimate.measure_tokens(  # its K-shot rows too: its rates are per token of what it ran
                backbone.tokenizer,
                ctx.split.train.records or ctx.split.dev.records,
                ctx.spec.templates,
                causal=backbone.kind is LMKind.CAUSAL,
                samples=estimate.samples_of(ctx.split, [unit]),
            )
            self.remember_speed(config, current_device() or run.get("device") or "cpu", result, tokens)
            return result

        return fn

    def remember_speed(
        self, config: dict, device: str, result: dict, tokens: estimate.TokenStats | None = None
    ) -> None:
        """Keep the finished unit's measured per-token rates (`tokens`: its rows' tokens) for its backbone, device and
        method: the next estimate of any comparison on them, on any data, starts from this machine's own speed
        (core.runs.estimate)."""
        rates = estimate.measured(result, config["options"], resumed=bool(config.get("resumes")), tokens=tokens)
        if rates is not None:
            self.store.record_throughput(config["backbone"], device, config["method"], **rates)
