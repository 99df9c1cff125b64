"""LoRA (Hu et al. 2021) through the user's best manual template and verbalizer: the parameter-efficient fine-tune
people would pick instead of soft prompts today.

Adapters come from `peft` (`inject_adapter_in_model`: the backbone stays its own Hugging Face class, so every
scoring path works unchanged) on a private copy of the backbone; only their matrices train, and only they are
saved: in our prompt file as `lora.<PEFT's key>`, and in the folder `peft.PeftModel.from_pretrained` loads. The rank
is tuned on dev among a few values (after the learning rate), unless the user set it.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from core.engine.backbone import Backbone, LMKind
from core.engine.training import ParamGroup
from core.errors import one_line
from core.methods.base import FIXED, Dimension, LearnedPrompt
from core.methods.continuous import ContinuousConfig, private_backbone, scoring_copy
from core.methods.finetune import ThroughTemplate

LORA_PREFIX = "lora."
ADAPTER = "default"  # PEFT's adapter name; its saved keys leave it out
PEFT_KEY_PREFIX = "base_model.model."  # where PeftModel.save_pretrained puts the wrapped model's keys
RANKS = (8, 4, 16)  # tuned on dev, the default first


@dataclass
class LoraOptions(ContinuousConfig):
    lr: float = field(default=1e-3, metadata={"help": "Learning rate of the LoRA matrices (AdamW)."})
    max_steps: int = field(default=150, metadata={"help": "Optimizer steps."})
    rank: int = field(
        default=8,
        metadata={"help": "LoRA rank r (1 to 256): the width of each adapter; tuned on dev among 4, 8 and 16."},
    )
    alpha: float = field(default=16.0, metadata={"help": "LoRA alpha: the update is scaled by alpha / rank."})
    dropout: float = field(default=0.05, metadata={"help": "Dropout on the adapters' input while training (0 to 1)."})
    target_modules: str = field(
        default="",
        metadata={
            "help": "Comma-separated names of the layers that get adapters (e.g. q_proj,v_proj). Empty: PEFT's "
            "default for the architecture (q_proj,v_proj on Llama; query,value on BERT; c_attn on GPT-2)."
        },
    )
    tune_backbone: bool = field(default=False, metadata={"help": "LoRA keeps the backbone frozen.", FIXED: True})
    backbone_lr: float = field(default=1e-5, metadata={"help": "Unused: only the adapters train.", FIXED: True})

    def __post_init__(self):
        super().__post_init__()
        if not 1 <= self.rank <= 256:
            raise ValueError(f"rank must be a whole number from 1 to 256, not {self.rank}")
        if not self.alpha > 0:
            raise ValueError(f"alpha must be a positive number, not {self.alpha}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), not {self.dropout}")
        bad = next((n for n in target_names(self.target_modules) if not n.isidentifier()), None)
        if bad is not None:
            raise ValueError(f"target_modules names layers by name, e.g. q_proj,v_proj; {bad[:40]!r} is not a name")


def target_names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


def adapted_layer_names(model: nn.Module) -> list[str]:
    """The layer names LoRA can adapt in `model` (its linear and GPT-2 Conv1D layers), for the error message."""
    from transformers.pytorch_utils import Conv1D

    kinds = (nn.Linear, Conv1D)
    return sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules() if name and isinstance(m, kinds)})


def inject(options: LoraOptions, model: nn.Module) -> nn.Module:
    """Insert the adapters into `model` in place (peft), refusing in one line a layer name the model lacks."""
    from peft import LoraConfig, inject_adapter_in_model
    from transformers.pytorch_utils import Conv1D

    targets = target_names(options.target_modules) or None
    wanted = set(targets or ())
    conv = any(
        isinstance(m, Conv1D) and (not wanted or n.rsplit(".", 1)[-1] in wanted) for n, m in model.named_modules()
    )
    config = LoraConfig(
        r=options.rank,
        lora_alpha=options.alpha,
        lora_dropout=options.dropout,
        target_modules=targets,
        fan_in_fan_out=conv,  # GPT-2's Conv1D stores its weight transposed
    )
    layers = adapted_layer_names(model)
    missing = sorted(wanted - set(layers))
    if missing:
        raise ValueError(
            f"lora target_modules {missing[0]!r} is not a layer of this backbone; choose from: {', '.join(layers)}"
        )
    try:
        return inject_adapter_in_model(config, model, adapter_name=ADAPTER)
    except ValueError as err:  # no default targets for this architecture
        raise ValueError(f"lora: {one_line(err)[:160]}; set target_modules to some of: {', '.join(layers)}") from None


def adapter_params(model: nn.Module) -> dict[str, nn.Parameter]:
    """The adapters' matrices by PEFT's saved key (adapter name left out), with our prefix."""
    marker = f".{ADAPTER}."
    return {LORA_PREFIX + n.replace(marker, "."): p for n, p in model.named_parameters() if "lora_" in n}


class LoRA(ThroughTemplate):
    name: ClassVar[str] = "lora"
    label: ClassVar[str] = "LoRA"
    config_cls: ClassVar[type] = LoraOptions
    fine_tunes: ClassVar[bool] = True
    peft_type: ClassVar[str | None] = "LORA"

    def search_space(self, fixed: Collection[str]) -> list[Dimension]:
        """The learning rate (log grid), then the rank, each unless the user set it."""
        dims = super().search_space(fixed)
        if "rank" not in fixed:
            ranks = [self.config.rank, *(r for r in RANKS if r != self.config.rank)]
            dims.append(Dimension("rank", tuple({"rank": r} for r in ranks)))
        return dims

    def check_backbone(self, backbone: Backbone) -> None:
        self._skeleton(backbone)  # the same injection as training, on a weightless copy: refuses a layer it lacks

    def training_backbone(self, backbone: Backbone) -> tuple[Backbone, ParamGroup | None]:
        private = private_backbone(backbone)
        inject(self.config, private.model)
        return private, ParamGroup(adapter_params(private.model), self.config.lr, self.config.weight_decay)

    def scoring_backbone(self, backbone: Backbone, learned: LearnedPrompt) -> Backbone | None:
        return scoring_copy(backbone, learned, lambda: self._adapted(backbone, learned))

    def _adapted(self, backbone: Backbone, learned: LearnedPrompt) -> Backbone:
        private = private_backbone(backbone)
        inject(self.config, private.model)
        params = adapter_params(private.model)
        with torch.no_grad():
            for key, value in learned.tensors.items():
                if key.startswith(LORA_PREFIX):
                    params[key].copy_(value)
        private.model.eval()
        return private

    def _skeleton(self, backbone: Backbone) -> nn.Module:
        """The backbone's architecture with the adapters inserted, on the meta device (no memory, no weights)."""
        with torch.device("meta"):
            model = type(backbone.model)(backbone.model.config).to(backbone.dtype)
        return inject(self.config, model)

    def expected_tensors(self, backbone: Backbone, learned: LearnedPrompt) -> dict[str, tuple[tuple[int, ...], Any]]:
        """The adapters' matrices this config puts on `backbone`, read off a weightless copy."""
        return {k: (tuple(p.shape), torch.float32) for k, p in adapter_params(self._skeleton(backbone)).items()}

    def peft_adapter(self, backbone: Backbone, learned: LearnedPrompt) -> tuple[Any, dict[str, torch.Tensor]]:
        """PEFT's LoraConfig as the adapters were inserted, and their matrices under the keys PeftModel saves."""
        model = self._skeleton(backbone)
        config = model.peft_config[ADAPTER]
        config.base_model_name_or_path = backbone.spec
        config.task_type = "CAUSAL_LM" if backbone.kind is LMKind.CAUSAL else None
        config.inference_mode = True
        tensors = {
            PEFT_KEY_PREFIX + k.removeprefix(LORA_PREFIX): v.detach().float().cpu().contiguous()
            for k, v in learned.tensors.items()
            if k.startswith(LORA_PREFIX)
        }
        return config, tensors
