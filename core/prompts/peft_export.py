"""Export a learned continuous prompt as a folder `peft.PeftModel.from_pretrained(model, folder)` loads.

PEFT can express a prompt when all its virtual tokens come first in the input and the backbone was not tuned:
- prompt tuning -> `PROMPT_TUNING`; P-tuning whose template starts with its only [P] block -> `P_TUNING`;
- P-tuning v2 with the verbalizer (no linear head) on a causal LM -> `PREFIX_TUNING`.
Each method says for itself whether and how (`peft_adapter`: PEFT's own config class and the `prompt_embeddings`
PEFT saves, i.e. the prompt encoder's output); this module only writes the folder, with our manifest beside it,
so the learned prompt can be used outside PTune Studio (the label readout stays the user's to apply).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from safetensors.torch import save_file

from core.engine.backbone import Backbone
from core.methods import method_for
from core.methods.base import LearnedPrompt, PeftExportError
from core.prompts.artifacts import safe_filename

PEFT_WEIGHTS = "adapter_model.safetensors"


def peft_type(learned: LearnedPrompt, backbone: Backbone) -> str:
    """The PEFT method that expresses this prompt, or PeftExportError naming why none does."""
    method = method_for(learned)
    if method.peft_type is None:
        raise PeftExportError(f"method {learned.method!r} has no PEFT equivalent")
    method.peft_adapter(backbone, learned)
    return method.peft_type


def export_peft(backbone: Backbone, learned: LearnedPrompt, folder: str | Path) -> Path:
    """Write the PEFT folder (adapter_config.json + adapter_model.safetensors + our manifest) atomically."""
    method = method_for(learned)
    config, tensors = method.peft_adapter(backbone, learned)
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".tmp-peft-"))
    try:
        config.save_pretrained(str(staging))
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(staging / PEFT_WEIGHTS))
        readme = {
            "method": learned.method,
            "template": learned.template,
            "verbalizer": learned.verbalizer,
            "label_names": learned.label_names,
            "backbone": learned.backbone,
            "peft_type": method.peft_type,
        }
        (staging / "ptune_manifest.json").write_text(json.dumps(readme, indent=2), encoding="utf-8")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(staging, folder)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return folder


def export_if_expressible(backbone: Backbone, learned: LearnedPrompt, folder: Path, stem: str) -> Path | None:
    """Also write a `peft.PeftModel.from_pretrained` folder next to the prompt file when PEFT can express it."""
    try:
        return export_peft(backbone, learned, folder / (safe_filename(stem) + "-peft"))
    except PeftExportError:
        return None
