"""Export a learned continuous prompt as a folder `peft.PeftModel.from_pretrained(model, folder)` loads.

PEFT can express a prompt when all its virtual tokens come first in the input and the backbone was not tuned:
- prompt tuning -> `PROMPT_TUNING`; P-tuning whose template starts with its only [P] block -> `P_TUNING`;
- P-tuning v2 with the verbalizer (no linear head) on a causal LM -> `PREFIX_TUNING`.
What PEFT itself saves for these is the *output* of the prompt encoder (`prompt_embeddings`: the virtual-token
embeddings, or the flat per-layer prefix), which a model loaded for inference uses as is; we write exactly that,
with an `adapter_config.json` built by PEFT's own config classes (so the folder follows the installed version).
The folder lets the learned prompt be used outside PTune Studio; the label readout (template text, verbalizer)
stays the user's to apply and is recorded in `ptune_manifest.json` beside it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

from core.backbone import Backbone, LMKind
from core.methods.base import LearnedPrompt
from core.templates import SlotKind, Template

PEFT_WEIGHTS = "adapter_model.safetensors"


class PeftExportError(ValueError):
    """The prompt has no PEFT equivalent; the message says why."""


def peft_type(learned: LearnedPrompt, backbone: Backbone) -> str:
    """The PEFT method that expresses this prompt, or PeftExportError naming why none does."""
    from core.methods import method_class

    kind = getattr(method_class(learned.method), "peft_type", None)
    if kind is None:
        raise PeftExportError(f"method {learned.method!r} has no PEFT equivalent")
    if any(k.startswith("backbone.") for k in learned.tensors):
        raise PeftExportError("the backbone was tuned too; PEFT prompt methods keep it frozen")
    if kind in ("PROMPT_TUNING", "P_TUNING"):
        template = Template.parse(learned.template)
        first = template.pieces[0]
        if first.kind is not SlotKind.SOFT or first.count != template.n_soft:
            raise PeftExportError("PEFT only prepends virtual tokens; this template has [P] slots after the start")
    else:  # PREFIX_TUNING
        if learned.config.get("head", "verbalizer") != "verbalizer":
            raise PeftExportError("PEFT prefix tuning has no place for the linear classification head")
        if backbone.kind is not LMKind.CAUSAL:
            raise PeftExportError("PEFT prefix tuning is exported for causal LMs only")
    return kind


def _prompt_embeddings(backbone: Backbone, learned: LearnedPrompt) -> torch.Tensor:
    from core.predict import method_for

    module = method_for(learned).module_for(backbone, learned)
    with torch.no_grad():
        if peft_type(learned, backbone) == "PREFIX_TUNING":
            return module.prefix.flat().detach().float().cpu()  # (P, layers * 2 * kv_heads * head_dim)
        return module.vectors().detach().float().cpu()  # (n, H)


def _peft_config(kind: str, backbone: Backbone, learned: LearnedPrompt, n_virtual: int):
    from peft import PrefixTuningConfig, PromptEncoderConfig, PromptTuningConfig

    from core.prompt_encoders import attention_shape

    task = "CAUSAL_LM" if backbone.kind is LMKind.CAUSAL else "FEATURE_EXTRACTION"
    common = {
        "task_type": task,
        "num_virtual_tokens": n_virtual,
        "base_model_name_or_path": backbone.spec,
        "inference_mode": True,
    }
    if kind == "PROMPT_TUNING":
        return PromptTuningConfig(**common)
    if kind == "P_TUNING":
        encoder = learned.config.get("encoder", "lstm")
        return PromptEncoderConfig(**common, encoder_reparameterization_type="LSTM" if encoder == "lstm" else "MLP")
    layers, kv_heads, head_dim = attention_shape(backbone.model.config)
    return PrefixTuningConfig(**common, num_layers=layers, num_attention_heads=kv_heads, token_dim=kv_heads * head_dim)


def export_peft(backbone: Backbone, learned: LearnedPrompt, folder: str | Path) -> Path:
    """Write the PEFT folder (adapter_config.json + adapter_model.safetensors + our manifest) atomically."""
    kind = peft_type(learned, backbone)
    weights = _prompt_embeddings(backbone, learned)
    config = _peft_config(kind, backbone, learned, weights.shape[0])
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".tmp-peft-"))
    try:
        config.save_pretrained(str(staging))
        save_file({"prompt_embeddings": weights.contiguous()}, str(staging / PEFT_WEIGHTS))
        readme = {
            "method": learned.method,
            "template": learned.template,
            "verbalizer": learned.verbalizer,
            "label_names": learned.label_names,
            "backbone": learned.backbone,
            "peft_type": kind,
        }
        (staging / "ptune_manifest.json").write_text(json.dumps(readme, indent=2), encoding="utf-8")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(staging, folder)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return folder
