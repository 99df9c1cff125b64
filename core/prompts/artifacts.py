"""Learned-prompt files: one `.safetensors` file (tensors + JSON manifest in its header) or a `.json` manifest.

Safetensors carries only tensors and string metadata, so loading a file shared by someone else can never execute
code (no pickle anywhere). Writes go to a temporary file and are renamed into place, so an interrupted save never
leaves a half-written prompt. Loading checks the format version and, against a backbone, its fingerprint.
"""

from __future__ import annotations

import functools
import json
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from core.atomic import replacing, write_atomic
from core.engine.backbone import Backbone
from core.engine.templates import Template
from core.errors import one_line
from core.methods import method_for, method_names
from core.methods.base import LearnedPrompt
from core.paths import not_a_file, path_kind

FORMAT = "ptune-studio/learned-prompt"
# 2: a continuous prompt holds what scoring needs (an encoder's output, not the encoder: kilobytes, not megabytes);
# 1: the trained module's whole state, still read (each method's `upgrade` turns it into today's layout)
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
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
    if not learned.tensors:
        return write_atomic(path, text)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in learned.tensors.items()}
    with replacing(path) as tmp:
        save_file(tensors, str(tmp), metadata={MANIFEST_KEY: text})
    return path


@dataclass(frozen=True)
class PromptLimits:
    """What a prompt file may declare, checked before any tensor is read or any work done on it.

    A prompt learned with `tune_backbone` carries the whole backbone, hence the generous byte cap; the app may pass
    tighter limits for uploads.
    """

    max_file_bytes: int = 4 * 2**30
    max_manifest_bytes: int = 2**20
    max_json_depth: int = 16
    max_labels: int = 1000
    max_words_per_label: int = 64
    max_text_chars: int = 2000  # one label name, label word or template
    max_tensors: int = 4096
    max_tensor_elements: int = 2**28


_FIELDS: dict[str, type] = {
    "format": str,
    "format_version": int,
    "method": str,
    "template": str,
    "verbalizer": dict,
    "label_names": list,
    "backbone": dict,
    "config": dict,
    "state": dict,
    "metrics": dict,
}
_OPTIONAL_FIELDS: dict[str, type] = {"display_name": str, "created": str, "tensors": list}
_BACKBONE_FIELDS = ("name", "spec", "fingerprint", "kind")
_FLOAT_DTYPES = {"F16", "BF16", "F32", "F64"}
# a string runs to its closing quote or the end of the text, so an unclosed one cannot make the scan quadratic
_JSON_TOKENS = re.compile(r'"(?:[^"\\]|\\[\s\S]?)*(?:"|\Z)|[\[\]{}]')


def load(path: str | Path, *, limits: PromptLimits = PromptLimits(), shown_as: str | None = None) -> LearnedPrompt:
    """Read a prompt file written by `save`; anything else, or anything over `limits`, is one ArtifactError line.

    `shown_as` is the name the person knows the file by (an upload's own name, not the server's copy)."""
    path = Path(path)
    _check_is_a_file(path, shown_as)
    name = shown_as or path.name
    if path.suffix not in (".safetensors", ".json"):
        raise ArtifactError(f"{name} is not a learned-prompt file; expected .safetensors or .json")
    size = path.stat().st_size
    if size > limits.max_file_bytes:
        raise ArtifactError(f"{name} is {size / 2**20:.0f} MiB, over the {limits.max_file_bytes / 2**20:.0f} MiB cap")
    try:
        if path.suffix == ".safetensors":
            text, tensors = _read_safetensors(path, name, limits)
        else:
            text, tensors = _read_text(path, name, limits), {}
    except (OSError, UnicodeDecodeError, SafetensorError, RuntimeError, ValueError) as err:
        if isinstance(err, ArtifactError):
            raise
        why = f"it cannot be read: {err.strerror}" if isinstance(err, OSError) else "damaged or in another format"
        raise ArtifactError(
            f"{name} is not a readable learned-prompt file ({why}); download it again from PTune Studio"
        ) from None
    return _from_manifest(_parse_manifest(text, name, limits), tensors, name, limits)


def _check_is_a_file(path: Path, shown_as: str | None) -> None:
    """A regular file, or one line saying what the path is instead (a device or pipe would be read forever; the
    PEFT folder the product writes beside a prompt file is pointed back to that file)."""
    kind = path_kind(path)
    if kind == "file":
        return
    shown = shown_as or str(path)
    if kind == "missing":
        raise ArtifactError(f"prompt file {shown!r} does not exist; check the path")
    if kind == "folder" and (path / "adapter_config.json").is_file():
        beside = path.parent / (path.name.removesuffix("-peft") + ".safetensors")
        which = beside.name if path.name.endswith("-peft") and beside.is_file() else "the .safetensors file"
        raise ArtifactError(
            f"{shown} is a PEFT adapter folder (for peft.PeftModel.from_pretrained); give the learned-prompt file "
            f"saved beside it instead: {which}"
        )
    raise ArtifactError(f"{not_a_file(shown, kind)}; give a learned-prompt file (.safetensors or .json)")


def _read_text(path: Path, name: str, limits: PromptLimits) -> str:
    if path.stat().st_size > limits.max_manifest_bytes:
        raise ArtifactError(f"{name}'s manifest is over the {limits.max_manifest_bytes} byte cap")
    return path.read_text(encoding="utf-8")


def _read_safetensors(path: Path, name: str, limits: PromptLimits) -> tuple[str | None, dict[str, torch.Tensor]]:
    """The manifest and tensors, after checking the header's tensor count, dtypes and sizes (nothing read yet),
    then that every value is finite (a NaN or infinite prompt labels every row the same, silently)."""
    _check_header(path, name, limits)
    with safe_open(str(path), framework="pt") as f:
        text = (f.metadata() or {}).get(MANIFEST_KEY)
        if text is not None and len(text) > limits.max_manifest_bytes:
            raise ArtifactError(f"{name}'s manifest is over the {limits.max_manifest_bytes} byte cap")
        keys = list(f.keys())
        if len(keys) > limits.max_tensors:
            raise ArtifactError(f"{name} holds {len(keys)} tensors, over the cap of {limits.max_tensors}")
        for key in keys:
            piece = f.get_slice(key)
            dtype, shape = piece.get_dtype(), piece.get_shape()
            if dtype not in _FLOAT_DTYPES:
                raise ArtifactError(f"{name}: tensor {_short(key)} is {dtype}; a learned prompt holds float tensors")
            if math.prod(shape) > limits.max_tensor_elements:
                raise ArtifactError(
                    f"{name}: tensor {_short(key)} has {math.prod(shape)} values, over the cap of "
                    f"{limits.max_tensor_elements}"
                )
        tensors = {k: f.get_tensor(k) for k in keys}
    broken = next((k for k, t in tensors.items() if not torch.isfinite(t).all()), None)
    if broken is not None:
        raise ArtifactError(
            f"{name}: tensor {_short(broken)} holds NaN or infinite values, so the prompt cannot score anything; "
            "train it again (a lower learning rate keeps training from diverging)"
        )
    return text, tensors


def _check_header(path: Path, name: str, limits: PromptLimits) -> None:
    """Parse the safetensors header (8-byte little-endian length, then JSON) ourselves and refuse a key given twice,
    at its top level or in ``__metadata__``: JSON readers keep one of the two silently (safetensors the last), so
    a second manifest with another label order would label every row differently, with exit 0."""
    with path.open("rb") as f:
        size = int.from_bytes(f.read(8), "little")
        cap = limits.max_manifest_bytes + 512 * limits.max_tensors  # the manifest plus each tensor's entry
        if size > cap:  # not one of ours (a pickle, say): said as any unreadable file is
            raise ValueError(f"header of {size} bytes")
        header = f.read(size)
    json.loads(header.decode("utf-8"), object_pairs_hook=functools.partial(_unique, where=f"{name}'s header"))


def _unique(pairs: list[tuple[str, object]], where: str) -> dict:
    """A JSON object's pairs as a dict, or ArtifactError naming the first key given twice."""
    seen: dict = {}
    for key, value in pairs:
        if key in seen:
            raise ArtifactError(f"{where} gives {_short(key)} twice, so it is ambiguous; download it again")
        seen[key] = value
    return seen


def _parse_manifest(text: str | None, name: str, limits: PromptLimits) -> object:
    if not text:
        raise ArtifactError(f"{name} has no PTune Studio manifest; it is not a learned-prompt file")
    depth = json_depth(text)
    if depth > limits.max_json_depth:
        raise ArtifactError(f"{name}'s manifest nests {depth} levels deep, over the cap of {limits.max_json_depth}")
    try:
        data = json.loads(
            text, parse_constant=_no_constant, object_pairs_hook=functools.partial(_unique, where=f"{name}'s manifest")
        )
    except json.JSONDecodeError as err:
        raise ArtifactError(
            f"{name}'s manifest is not valid JSON (line {err.lineno}, column {err.colno}); download it again"
        ) from None
    except ArtifactError:
        raise
    except (ValueError, RecursionError) as err:
        raise ArtifactError(f"{name}'s manifest {one_line(err)}; download it again") from None
    return data


def _no_constant(token: str) -> None:
    """JSON's NaN/Infinity extension: PTune Studio never writes it, and a NaN prior or metric breaks predictions."""
    raise ValueError(f"holds {token}, which a learned prompt never has")


def json_depth(text: str) -> int:
    """How deeply the JSON in `text` nests arrays and objects (strings skipped), in one linear pass, unparsed."""
    depth = deepest = 0
    for token in _JSON_TOKENS.findall(text):
        if token in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif token in "]}":
            depth -= 1
    return deepest


def _short(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_fields(data: dict, name: str) -> None:
    for key in _FIELDS:
        if key not in data:
            raise ArtifactError(f"{name}'s manifest has no {key!r}; it is incomplete, download it again")
    for key, kind in {**_FIELDS, **_OPTIONAL_FIELDS}.items():
        value = data.get(key, kind())
        if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
            raise ArtifactError(
                f"{name}'s manifest has {key!r} of type {type(value).__name__}, expected {kind.__name__}"
            )
    for key in _BACKBONE_FIELDS:
        if not isinstance(data["backbone"].get(key), str):
            raise ArtifactError(f"{name}'s manifest has no backbone {key!r} string; it is incomplete")


def _check_labels(data: dict, name: str, limits: PromptLimits) -> None:
    labels, verbalizer = data["label_names"], data["verbalizer"]
    if not 2 <= len(labels) <= limits.max_labels:
        raise ArtifactError(f"{name} declares {len(labels)} labels; a prompt has 2 to {limits.max_labels}")
    if len(verbalizer) > limits.max_labels:
        raise ArtifactError(f"{name}'s verbalizer has {len(verbalizer)} labels, over the cap of {limits.max_labels}")
    words = [w for v in verbalizer.values() for w in (v if isinstance(v, list) else [v])]
    texts = [*labels, *words, *verbalizer, data["template"]]
    if any(not isinstance(t, str) for t in texts):
        raise ArtifactError(f"{name}: labels, label words and the template must be strings")
    if any(isinstance(v, list) and len(v) > limits.max_words_per_label for v in verbalizer.values()):
        raise ArtifactError(f"{name}'s verbalizer has a label with over {limits.max_words_per_label} words")
    if any(len(t) > limits.max_text_chars for t in texts):
        raise ArtifactError(f"{name} has a label, word or template over {limits.max_text_chars} characters")
    if len(set(labels)) != len(labels):
        raise ArtifactError(f"{name} names a label twice; its label order is broken")


def _from_manifest(
    data: object, tensors: dict[str, torch.Tensor], name: str, limits: PromptLimits = PromptLimits()
) -> LearnedPrompt:
    """Check the format, every field's type, the caps and the method's own expectations, then build the prompt."""
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ArtifactError(f"{name} has no PTune Studio manifest; it is not a learned-prompt file")
    version = data.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise ArtifactError(
            f"{name}'s manifest has format_version {_short(version)}; it must be a whole number such as "
            f"{FORMAT_VERSION}, so the file was altered — download it again"
        )
    if version not in READABLE_VERSIONS:
        raise ArtifactError(
            f"{name} has format version {_short(data.get('format_version'))}, this PTune Studio reads "
            f"versions {READABLE_VERSIONS[0]} to {FORMAT_VERSION}; upgrade PTune Studio or re-export the prompt"
        )
    _check_fields(data, name)
    _check_labels(data, name, limits)
    if data["method"] not in method_names():
        raise ArtifactError(f"{name} is for method {_short(data['method'])}, which this PTune Studio does not know")
    listed = data.get("tensors", sorted(tensors))
    if sorted(map(str, listed)) != sorted(tensors):
        raise ArtifactError(f"{name}'s tensors do not match the names its manifest lists; the file was altered")
    learned = LearnedPrompt(
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
    try:
        if learned.template:
            Template.parse(learned.template)
        method = method_for(learned)
        learned = method.upgrade(learned, data["format_version"])
        method.check_state(learned)
    except ValueError as err:  # TemplateError and config errors included
        raise ArtifactError(f"{name}: {one_line(err)}") from None
    return learned


def shown_name(name: str) -> str:
    """A backbone name fit for a message: a filesystem path is cut to its last part so no server path leaks."""
    if name.startswith(("/", "~", ".", "\\")) or name.count("/") > 1 or re.match(r"[A-Za-z]:[\\/]", name):
        return Path(name.replace("\\", "/")).name or "a local model"
    return name


def check_backbone(learned: LearnedPrompt, backbone: Backbone) -> None:
    """A prompt only means something on the model it was learned on: compare fingerprints (never load what the
    manifest names), then the tensors and state against what the method builds for this backbone."""
    want = learned.backbone
    if want.get("fingerprint") != backbone.fingerprint:
        learned_on = _short(shown_name(str(want.get("name"))), 60)
        raise ArtifactError(
            f"this prompt was learned on {learned_on} (fingerprint {_short(want.get('fingerprint'), 24)}) but the "
            f"selected backbone is {shown_name(backbone.name)!r} ({backbone.fingerprint}); load {learned_on} to use it"
        )
    try:
        if learned.template:
            Template.parse(learned.template).validate(Template.parse(learned.template).fields, backbone.kind)
        method_for(learned).check_fits(backbone, learned)
    except ValueError as err:
        raise ArtifactError(f"the prompt does not fit this backbone: {one_line(err)}") from None
