"""Learned-prompt files: one `.safetensors` file (tensors + JSON manifest in its header) or a `.json` manifest.

Safetensors carries only tensors and string metadata, so loading a file shared by someone else can never execute
code (no pickle anywhere). Writes go to a temporary file and are renamed into place, so an interrupted save never
leaves a half-written prompt. Loading checks the format version and, against a backbone, its fingerprint.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from core.backbone import Backbone
from core.methods.base import LearnedPrompt

FORMAT = "ptune-studio/learned-prompt"
FORMAT_VERSION = 1
MANIFEST_KEY = "ptune_manifest"


class ArtifactError(ValueError):
    """A learned-prompt file that cannot be used; one line naming the fix."""


def manifest(learned: LearnedPrompt) -> dict:
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "method": learned.method,
        "display_name": learned.display_name,
        "backbone": learned.backbone,
        "template": learned.template,
        "verbalizer": learned.verbalizer,
        "label_names": learned.label_names,
        "config": learned.config,
        "state": learned.state,
        "metrics": learned.metrics,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "tensors": sorted(learned.tensors),
    }


def safe_filename(name: str, *, max_len: int = 80) -> str:
    """A file name from user-influenced text that cannot escape its directory or confuse a shell."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._-")[:max_len]
    return cleaned or "prompt"


def save(learned: LearnedPrompt, folder: Path, stem: str) -> Path:
    """Write the prompt into `folder` (atomically) and return its path."""
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".safetensors" if learned.tensors else ".json"
    path = folder / (safe_filename(stem) + suffix)
    text = json.dumps(manifest(learned), allow_nan=False, default=float)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=suffix)
    os.close(fd)
    try:
        if learned.tensors:
            tensors = {k: v.detach().to("cpu").contiguous() for k, v in learned.tensors.items()}
            save_file(tensors, tmp, metadata={MANIFEST_KEY: text})
        else:
            Path(tmp).write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load(path: str | Path) -> LearnedPrompt:
    """Read a prompt file written by `save`; refuse anything else with a clear message."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"prompt file {str(path)!r} does not exist; check the path")
    tensors: dict[str, torch.Tensor] = {}
    try:
        if path.suffix == ".safetensors":
            with safe_open(str(path), framework="pt") as f:
                text = (f.metadata() or {}).get(MANIFEST_KEY)
                tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a dict)
        elif path.suffix == ".json":
            text = path.read_text(encoding="utf-8")
        else:
            raise ArtifactError(f"{path.name} is not a learned-prompt file; expected .safetensors or .json")
        data = json.loads(text) if text else None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, SafetensorError) as err:
        raise ArtifactError(
            f"{path.name} is not a readable learned-prompt file ({type(err).__name__}); "
            "download it again from PTune Studio"
        ) from None
    return _from_manifest(data, tensors, path.name)


def _from_manifest(data: object, tensors: dict[str, torch.Tensor], name: str) -> LearnedPrompt:
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ArtifactError(f"{name} has no PTune Studio manifest; it is not a learned-prompt file")
    if data.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(
            f"{name} has format version {data.get('format_version')}, this PTune Studio reads "
            f"version {FORMAT_VERSION}; upgrade PTune Studio or re-export the prompt"
        )
    return LearnedPrompt(
        method=data["method"],
        template=data["template"],
        verbalizer=data["verbalizer"],
        label_names=data["label_names"],
        backbone=data["backbone"],
        config=data["config"],
        tensors=tensors,
        state=data["state"],
        metrics=data["metrics"],
        display_name=data.get("display_name", ""),
    )


def check_backbone(learned: LearnedPrompt, backbone: Backbone) -> None:
    """A prompt only means something on the model it was learned on: refuse any other."""
    want = learned.backbone
    if want.get("fingerprint") != backbone.fingerprint:
        raise ArtifactError(
            f"this prompt was learned on {want.get('name')!r} (fingerprint {want.get('fingerprint')}) "
            f"but the loaded backbone is {backbone.name!r} ({backbone.fingerprint}); "
            f"load {want.get('name')!r} to use it"
        )
