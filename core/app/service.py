"""The app's service layer: comparison groups and the process-wide `Workspace`.

A `ComparisonRequest` and the checks it passes before launch live in `core/app/request.py` (importable from here).

A *comparison group* is what the Train page launches: one dataset (saved once under ``<home>/runs/<group>/``), one
split, one prompt set, and one run per (method, seed) queued in the run store. Everything a run needs is in its
stored config plus the group folder, so a worker process (or a Ray actor) executes it (`core/runs/runner.py`), a
stopped run can be started again ("resume"), and a group's summary can be assembled at any time from the stored
results. The server itself never trains. Knows nothing of Streamlit: the pages, the tests and a script all drive
it the same way.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from core.app.drafts import Drafts
from core.app.request import ComparisonRequest, check_device_fits, validate_request
from core.app.views.runs import unit_key
from core.atomic import write_atomic
from core.compare import (
    Unit,
    method_options,
    plan_units,
    summarize,
    with_checkpoint_dir,
)
from core.data import Split
from core.engine import prefix_cache
from core.engine.backbone import LMKind
from core.engine.backbone_pool import BackbonePool, DefaultInstaller, inspect_backbone, normalize_spec
from core.methods import REGISTRY, method_class, method_order
from core.methods.base import PromptSpec
from core.runs import cluster, estimate
from core.runs.jobs import (
    JobQueue,
    Launcher,
    ProcessLauncher,
    heartbeat_stale_s,
    place,
    stopping,
    visible_devices,
    worker_argv,
    worker_idle_s,
)
from core.runs.runner import UPLOAD_LIMITS, GroupContext, RunExecutor, group_dir
from core.runs.store import ACTIVE_STATUSES, RunStore, ptune_home

REPO_ROOT = Path(__file__).resolve().parents[2]
UPLOAD_LIMIT_MB = UPLOAD_LIMITS.max_bytes // 2**20
RESUMABLE = ("interrupted", "cancelled", "failed")


def check_settings() -> None:
    """Read every PTUNE_* number the server and the workers it starts use: a bad one is a `SettingError` (one
    line naming the variable) when the app starts, not a worker that exits or a run that fails later."""
    heartbeat_stale_s()
    worker_idle_s()
    prefix_cache.check_settings()


class Workspace:
    """The process-wide state of the app: store, job queue, backbone pool, installer, group contexts."""

    def __init__(
        self,
        home: str | Path | None = None,
        *,
        devices: Sequence[str] | None = None,
        pool: BackbonePool | None = None,
        launcher: Launcher | None = None,
        ray_address: str | None = None,
    ):
        check_settings()
        self.home = Path(home) if home else ptune_home()
        self.home.mkdir(parents=True, exist_ok=True)
        self.store = RunStore(self.home / "runs.db")
        self.pool = pool or BackbonePool()
        self.runner = RunExecutor(self.home, self.store, self.pool)  # group contexts; the work runs in workers
        # $PTUNE_RAY_ADDRESS set: runs go to that Ray cluster instead of local worker processes
        ray_address = ray_address if ray_address is not None else os.environ.get(cluster.RAY_ADDRESS_ENV, "")
        if launcher is None and ray_address:
            from core.runs.ray_launcher import RayLauncher  # Ray is imported only when a cluster is configured

            launcher, devices = RayLauncher(ray_address, self.home), devices or ["ray"]
        launcher = launcher or ProcessLauncher(
            worker_argv("core.runs.worker", self.home), log_dir=self.home / "logs", cwd=REPO_ROOT
        )
        # One queue per device (every visible GPU, and the CPU), executed by worker processes outside this one.
        self.jobs = JobQueue(self.store, launcher, devices=devices or visible_devices())
        self.installer = DefaultInstaller()
        self.drafts = Drafts(self.home / "drafts")
        self._lock = threading.Lock()
        self._summaries: dict[str, tuple[tuple, dict]] = {}
        self._run_timings: dict[str, dict[str, float | None]] = {}
        self._run_estimates: dict[str, dict | None] = {}

    def close(self) -> None:
        """Close the store. Runs keep going in their workers (a server stop never stops the work)."""
        self.store.close()

    def stop_message(self) -> str | None:
        """What the server says as it stops: the work that goes on without it, and where (None: nothing does)."""
        active = self.jobs.active_runs()
        workers = self.store.workers()
        if not active:
            return None
        pids = ", ".join(f"{w['device']} pid {w['pid']}" for w in workers) or "none yet: the next server starts one"
        return (
            f"PTune Studio: server stopped; {len(active)} run(s) keep going in worker processes ({pids}). "
            "They do not need the server: start it again to watch them."
        )

    # -- groups ---------------------------------------------------------------------------------------------

    def group_dir(self, group_id: str) -> Path:
        return group_dir(self.home, group_id)

    def validate(self, req: ComparisonRequest) -> GroupContext:
        """Every check that can fail before launch, as DataError/TemplateError/ValueError with one line: the request's
        own (core/app/request.py), then what the methods need of the backbone and its device, as far as this server
        can tell (a backbone loaded in this process, the device a new run would go to)."""
        ctx, info = validate_request(req)
        check_device_fits(
            req, ctx.spec, info, loaded=self.pool.peek(req.backbone), cpu=self.estimate_device() == "cpu"
        )
        return ctx

    def user(self, owner: str) -> UserWorkspace:
        """The workspace as one person sees it: every call checked against `owner` (see core/app/access.py)."""
        return UserWorkspace(self, owner)

    def _launch(self, req: ComparisonRequest, owner: str) -> str:
        """Validate, save the dataset and settings into a new group folder, create and queue one run per unit."""
        ctx = self.validate(req)
        group_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:4]
        folder = self.group_dir(group_id)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "data.csv").write_bytes(req.data)
        settings = {**ctx.settings, "backbone": normalize_spec(req.backbone), "created": time.time(), "owner": owner}
        (folder / "group.json").write_text(json.dumps(settings, indent=2), encoding="utf-8")
        ctx.settings = settings
        self.runner.remember(group_id, ctx)
        ks = req.k_values()
        units = self.plan(req)
        expected = self.estimate(units, ctx.spec, ctx.split, settings["backbone"])
        by_unit = {id(u): e for u, e in zip(units, expected.units, strict=True)}
        for unit in estimate.cheapest_first(units, expected):  # claimed oldest first: the cheap answers land first
            where = folder / f"k{unit.k_shot}" if len(ks) > 1 else folder  # one checkpoint folder per K on a curve
            config = {
                "group": group_id,
                "method": unit.method,
                "seed": unit.seed,
                "options": with_checkpoint_dir(unit.method, unit.options, where, unit.seed),
                "k_shot": unit.k_shot,
                "tune": req.tune,
                "backbone": settings["backbone"],
                "estimate": by_unit[id(unit)].to_json(),  # the Runs page's ETA uses what the Train page showed
            }
            at_k = f" · K={unit.k_shot}" if len(ks) > 1 else ""
            run_id = self.store.create_run(
                method=unit.method,
                label=f"{method_class(unit.method).label}{at_k} · seed {unit.seed}",
                config=config,
                group_id=group_id,
                seed=unit.seed,
                owner=owner,
                k_shot=unit.k_shot,
            )
            self.jobs.submit(run_id)
        return group_id

    @staticmethod
    def plan(req: ComparisonRequest) -> list[Unit]:
        """The comparison's units (method, seed, K, options, tuning), in the methods' usual order."""
        units = plan_units(
            method_order(req.methods),
            req.seeds,
            lambda m: method_options(m, req.methods[m], max_steps=req.max_steps),
            req.k_values(),
        )
        for unit in units:
            unit.tune = req.tune
        return units

    def estimate_device(self) -> str:
        """Where a new run would go (an accelerator if there is one): the device its estimate is for."""
        return place(self.jobs.devices, {})

    def estimate(
        self, units: Sequence[Unit], spec: PromptSpec, split: Split, backbone: str, *, probe: bool = True
    ) -> estimate.ComparisonEstimate:
        """Every unit's expected seconds on this app's device, from remembered speed (runs that finished here on
        this backbone, drawn toward the probe), else a short probe of this machine (taken once when the backbone
        is already loaded in this process, never loaded for it, and remembered in the store), else a prior from
        the backbone's size."""
        name, device = normalize_spec(backbone), self.estimate_device()
        remembered = self.store.throughput(name, device)
        methods = sorted({u.method for u in units})
        probed = parameters = None
        loaded = self.pool.peek(name)
        if loaded is not None and str(loaded.device) == device:
            probed = estimate.cached_probe(loaded)
            if probed is None and probe and spec.templates and estimate.PROBE_KEY not in remembered:
                probed = estimate.probe(loaded, split.dev.records or split.train.records, spec.templates[0])
            if probed is not None and estimate.PROBE_KEY not in remembered:
                self.store.record_throughput(  # remembered: a restarted server's estimates still lean on it
                    name,
                    device,
                    estimate.PROBE_KEY,
                    work_seconds=probed.work_seconds,
                    example_seconds=probed.example_seconds,
                )
        if probed is None and estimate.PROBE_KEY not in remembered and not set(methods) <= set(remembered):
            parameters = inspect_backbone(name).parameters
        rates = estimate.rates_for(methods, remembered=remembered, probed=probed, parameters=parameters, device=device)
        return estimate.estimate_comparison(units, spec, split, rates, self._tokens(name, split, spec, units))

    def _tokens(
        self, backbone: str, split: Split, spec: PromptSpec, units: Sequence[Unit]
    ) -> estimate.TokenStats | None:
        """The rows' mean tokens with the backbone's own tokenizer, each unit's K-shot rows too (a few milliseconds;
        the tokenizer is loaded once, without the weights), or None (a guess from the characters) when it cannot be
        loaded."""
        try:
            view = self.pool.tokenizer_only(backbone)
        except (OSError, ValueError):
            return None
        rows = split.train.records or split.dev.records
        causal = view.kind is LMKind.CAUSAL
        samples = estimate.samples_of(split, units)
        return estimate.measure_tokens(view.tokenizer, rows, spec.templates, causal=causal, samples=samples)

    def _context(self, group_id: str) -> GroupContext:
        """The group's dataset, split and prompt spec, rebuilt from its folder once per process."""
        return self.runner.context(group_id)

    def _resume(self, run: dict) -> str:
        """Start a stopped run again from its stored config, as a new run in the same group (history is kept).

        Once only: under the lock, a run that already has a newer attempt of the same method and seed is refused,
        so two clicks (or two tabs) cannot start it twice."""
        with self._lock:
            newer = next((r for r in self._runs(run["group_id"]) if r["id"] == run["id"] and r["superseded"]), None)
            if newer is not None:
                raise ValueError(f"run {run['id']} was already resumed; see its newer attempt")
            if run["status"] not in RESUMABLE:
                raise ValueError(
                    f"run {run['id']} is {run['status']}; only {', '.join(RESUMABLE)} runs can be resumed"
                )
            config = {**run["config"], "resumes": run["id"]}
            new_id = self.store.create_run(
                method=run["method"],
                label=run["label"],
                config=config,
                group_id=run["group_id"],
                seed=run["seed"],
                owner=run["owner"],
                k_shot=run.get("k_shot"),
            )
        self.jobs.submit(new_id)
        return new_id

    # -- views ----------------------------------------------------------------------------------------------

    def _runs(self, group_id: str) -> list[dict]:
        """Run rows, newest first, with `superseded` (a newer run of the same method and seed exists in the group)."""
        self.jobs.check()  # runs whose worker is gone become interrupted; queued runs get a worker
        rows = self.store.list_runs(group_id=group_id)
        seen: set[tuple] = set()
        for row in rows:
            key = (row["group_id"], *unit_key(row))
            row["superseded"] = key in seen
            seen.add(key)
            row["active"] = row["status"] in ACTIVE_STATUSES
            row["resumable"] = row["status"] in RESUMABLE and not row["superseded"]
            row["stopping"] = stopping(row)
            row.update(self._timings(row) if row["status"] == "succeeded" else {})
        chosen = {  # the newest manual run's choice per seed and K
            (r["seed"], r.get("k_shot")): r["chosen_template"]
            for r in reversed(rows)
            if r["method"] == "manual" and r.get("chosen_template")
        }
        for row in rows:  # AutoPrompt's estimate once manual has picked the template it starts from
            row["estimate"] = estimate.as_chosen(self._estimate_of(row), chosen.get((row["seed"], row.get("k_shot"))))
        return rows

    def _estimate_of(self, row: dict) -> dict | None:
        """The estimate stored with the run at launch (None for runs launched before estimates), read once."""
        if row["id"] not in self._run_estimates:
            config = (self.store.get_run(row["id"]) or {}).get("config") or {}
            self._run_estimates[row["id"]] = config.get("estimate")
        return self._run_estimates[row["id"]]

    def _timings(self, row: dict) -> dict[str, float | None]:
        """A finished run's training and test-scoring seconds, where it resumed, where tuning continued its best
        trial, and its first prompt's template (read once from its result, then remembered)."""
        cached = self._run_timings.get(row["id"])  # a dict read/write is atomic; _resume holds _lock while here
        if cached is None:
            result = (self.store.get_run(row["id"]) or {}).get("result") or {}
            keys = ("train_seconds", "test_seconds", "resumed_from_step", "continued_from_step")
            cached = {k: result.get(k) for k in keys}
            first = (result.get("rows") or [{}])[0]
            cached["chosen_template"] = first.get("template")  # manual's: the one best on dev
            self._run_timings[row["id"]] = cached
        return cached

    def _metrics_frame(self, run_ids: Sequence[str]) -> pd.DataFrame:
        """Long-format metric series (run, step, metric, value) for altair."""
        frames = []
        for rid in run_ids:
            rows = self.store.metrics(rid)
            if rows:
                df = pd.DataFrame(rows)
                df["run"] = rid
                frames.append(df)
        if not frames:
            return pd.DataFrame(columns=["step", "t", "name", "value", "run"])
        return pd.concat(frames, ignore_index=True)

    def _summary(self, group_id: str) -> dict | None:
        """The group's results.json structure from its newest succeeded run per (method, seed, K); None if none yet."""
        latest: dict[tuple, dict] = {}
        for row in self.store.list_runs(group_id=group_id):
            key = unit_key(row)
            if row["status"] == "succeeded" and key not in latest:
                latest[key] = row
        if not latest:
            return None
        signature = tuple(sorted(r["id"] for r in latest.values()))
        with self._lock:
            cached = self._summaries.get(group_id)
        if cached and cached[0] == signature:
            return cached[1]
        order = {name: i for i, name in enumerate(method_order(REGISTRY))}
        keys = sorted(latest, key=lambda k: (order.get(k[0], len(order)), k[2] or 0, k[1]))
        units = [self.store.get_run(latest[k]["id"])["result"] for k in keys]
        ctx = self._context(group_id)
        dataset = {**ctx.dataset.summary(), "source": ctx.settings.get("source_name", "")}
        summary = summarize(units, dataset=dataset, split=ctx.split, backbone=units[0].get("backbone", {}))
        summary["group"] = group_id
        curve = len({k for _, _, k in keys}) > 1
        summary["runs"] = {f"{m}/seed{s}" + (f"/K{k}" if curve else ""): latest[(m, s, k)]["id"] for m, s, k in keys}
        summary["templates"] = list(ctx.spec.templates)
        summary["verbalizer"] = ctx.spec.verbalizer.to_dict()
        write_atomic(self.group_dir(group_id) / "results.json", json.dumps(summary, indent=2))
        with self._lock:
            self._summaries[group_id] = (signature, summary)
        return summary

    def _artifacts(self, group_id: str) -> list[dict]:
        """Files the group's runs produced: run id, method, seed, kind, path (existing files only)."""
        out = []
        for row in self._runs(group_id):
            if row["status"] != "succeeded":
                continue
            for art in self.store.get_run(row["id"])["artifacts"]:
                if Path(art["path"]).exists():
                    out.append({"run": row["id"], "method": row["method"], "seed": row["seed"], **art})
        return out


class NotYours(LookupError):
    """A comparison or run that does not exist for this person (the same answer whether or not it exists)."""


class UserWorkspace:
    """One person's view of the process-wide `Workspace`: they see, cancel, resume and download only their own
    comparisons, plus read-only the ones shared with them. Pages get only this object, so no page can forget a
    check; the shared parts (backbone pool, installer) are passed through."""

    def __init__(self, workspace: Workspace, owner: str):
        if not owner:
            raise ValueError("a workspace view needs an owner")
        self._ws, self.owner = workspace, owner
        self.pool, self.installer, self.home = workspace.pool, workspace.installer, workspace.home

    # -- own work ---------------------------------------------------------------------------------------------

    def launch(self, req: ComparisonRequest) -> str:
        return self._ws._launch(req, self.owner)

    def estimate(self, req: ComparisonRequest, split: Split, spec: PromptSpec) -> estimate.ComparisonEstimate:
        """What the comparison `req` would cost here, before launch (see `Workspace.estimate`)."""
        return self._ws.estimate(self._ws.plan(req), spec, split, req.backbone)

    def estimate_device(self) -> str:
        return self._ws.estimate_device()

    def cancel(self, run_id: str) -> bool:
        self._own_run(run_id)
        return self._ws.jobs.cancel(run_id)

    def resume(self, run_id: str) -> str:
        return self._ws._resume(self._own_run(run_id))

    def load_draft(self) -> dict[str, Any] | None:
        """This person's unfinished work (dataset, prompts, settings) as last saved, from any tab or session."""
        return self._ws.drafts.load(self.owner)

    def save_draft(self, draft: dict[str, Any]) -> None:
        self._ws.drafts.save(self.owner, draft)

    def share(self, group_id: str) -> str:
        """A token that lets anyone who has it read this comparison (not cancel, resume or change it)."""
        if self._ws.store.group_owner(group_id) != self.owner:
            raise NotYours(f"no comparison {group_id!r} in your workspace")
        return self._ws.store.share(group_id, self.owner)

    def accept_share(self, token: str) -> str:
        """Add a comparison shared with a token to this person's list (read-only); its group id."""
        group_id = self._ws.store.accept_share(str(token), self.owner)
        if group_id is None:
            raise NotYours("this share link is not valid; ask for a new one")
        return group_id

    # -- what they may read -----------------------------------------------------------------------------------

    def groups(self) -> list[dict]:
        return self._ws.store.groups(owner=self.owner)

    def runs(self, group_id: str) -> list[dict]:
        return self._ws._runs(self._readable(group_id))

    def run(self, run_id: str) -> dict:
        """One run with its config, result and artifacts."""
        run = self._ws.store.get_run(run_id)
        if run is None or not self._ws.store.can_read(run["group_id"] or "", self.owner):
            raise NotYours(f"no run {run_id!r} in your workspace")
        return run

    def metrics_frame(self, run_ids: Sequence[str]) -> pd.DataFrame:
        """The runs' metric series; polled every second by Runs, so ownership is checked from the run rows alone
        (one query, and one check per group) rather than by reading every run's config and result."""
        groups = self._ws.store.run_groups(run_ids)
        readable = {g: self._ws.store.can_read(g or "", self.owner) for g in set(groups.values())}
        for run_id in run_ids:
            if run_id not in groups or not readable[groups[run_id]]:
                raise NotYours(f"no run {run_id!r} in your workspace")
        return self._ws._metrics_frame(run_ids)

    def summary(self, group_id: str) -> dict | None:
        return self._ws._summary(self._readable(group_id))

    def context(self, group_id: str) -> GroupContext:
        return self._ws._context(self._readable(group_id))

    def artifacts(self, group_id: str) -> list[dict]:
        return self._ws._artifacts(self._readable(group_id))

    def results_path(self, group_id: str) -> Path:
        return self._ws.group_dir(self._readable(group_id)) / "results.json"

    def is_owner(self, group_id: str) -> bool:
        return self._ws.store.group_owner(group_id) == self.owner

    def _readable(self, group_id: str) -> str:
        if not self._ws.store.can_read(group_id, self.owner):
            raise NotYours(f"no comparison {group_id!r} in your workspace")
        return group_id

    def _own_run(self, run_id: str) -> dict:
        run = self._ws.store.get_run(run_id)
        if run is None or run["owner"] != self.owner:
            raise NotYours(f"no run {run_id!r} in your workspace")
        return run
