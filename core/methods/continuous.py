"""What the three continuous-prompt methods share: template choice, the fit/score flow around `core.engine.training`.

Each method (ptuning, ptuning_v2, prompt_tuning) supplies a config (a `TrainConfig` with its own defaults), a
default template, and a `PromptModule` (the trainable part: soft tokens, encoder, prefixes, head). Everything else
— the loss (cross-entropy over the label scores that `core.engine.scoring` computes for manual prompts too), training,
tuning or freezing the backbone, the `LearnedPrompt` and scoring it later — lives here once.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import threading
import weakref
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from core.config import choice
from core.data import LabeledDataset
from core.engine import prefix_cache
from core.engine.backbone import Backbone, LMKind
from core.engine.prompt_encoders import EncoderKind, PromptEncoder
from core.engine.scoring import (
    PromptHooks,
    Reduce,
    ScoringPlan,
    batch_scores,
    build_plan,
    map_batches,
    record_length,
    reduce_field,
)
from core.engine.templates import Encoded, SlotKind, Template, without_soft_slots
from core.engine.training import ParamGroup, TrainConfig, TrainResult, train
from core.errors import one_line
from core.methods.base import Dimension, LearnedPrompt, MethodBase, PeftExportError, lr_grid
from core.progress import ProgressFn, StopFn

PROMPT_PREFIX = "prompt."
BACKBONE_PREFIX = "backbone."


@dataclass
class ContinuousConfig(TrainConfig):
    """Options every continuous-prompt method has besides training."""

    template: str = field(
        default="",
        metadata={
            "help": "Template with [P] slots for the learned tokens. Empty: derived from your first template "
            "(your own when it already has [P] slots)."
        },
    )
    reduce: Reduce = reduce_field()
    max_length: int = field(default=256, metadata={"help": "Longest prompt in tokens; the text is cut to fit."})

    def __post_init__(self):
        super().__post_init__()
        self.reduce = choice(Reduce, self.reduce, "reduce")
        if self.max_length < 8:
            raise ValueError(f"max_length must be at least 8, not {self.max_length}")


class PromptModule(nn.Module):
    """The trainable part of a continuous prompt. `label_scores` is differentiable: (B, n_labels) log-scores."""

    def hooks(self) -> PromptHooks:
        return PromptHooks()

    def label_scores(
        self, backbone: Backbone, plan: ScoringPlan, records: Sequence[Mapping[str, str]]
    ) -> torch.Tensor:
        return batch_scores(backbone, plan, records, hooks=self.hooks())

    def readout(self, backbone: Backbone) -> list | None:
        """Nearest vocabulary tokens of the learned vectors, where that means something (display only)."""
        return None

    def penalty(self) -> torch.Tensor | float:
        """A regulariser added to the training loss (0: none)."""
        return 0.0

    def peft_weights(self) -> torch.Tensor:
        """What PEFT stores as `prompt_embeddings`: the encoder's output, which inference uses as is."""
        raise NotImplementedError

    def scoring_state(self) -> dict[str, torch.Tensor]:
        """What a prompt file holds: the state of the module `build(..., for_training=False)` makes, i.e. only what
        scoring needs. An encoder or reparameterisation only shapes training; its output is all inference uses."""
        return {k: v.detach() for k, v in self.state_dict().items()}


class SoftTokens(PromptModule):
    """Virtual tokens scattered into the [P] positions of the input embeddings (P-tuning v1, prompt tuning).

    A template that *starts* with [P*k] puts those k tokens before the tokenizer's start tokens ([CLS], <s>) too,
    i.e. at the very start of the input, as Lester et al. and PEFT prepend them.
    """

    def __init__(self, encoder: nn.Module, template: Template, n_special: int):
        super().__init__()
        self.encoder = encoder
        first = template.pieces[0]
        self.lead = first.count if first.kind is SlotKind.SOFT else 0
        self.n_special = n_special

    def vectors(self) -> torch.Tensor:
        return self.encoder()  # (n, H)

    def embed(self, enc: Encoded, embeds: torch.Tensor) -> torch.Tensor:
        soft = self.vectors().to(embeds.dtype)  # (n, H)
        batch = embeds.shape[0]
        out = embeds.masked_scatter(enc.soft_mask.unsqueeze(-1), soft.unsqueeze(0).expand(batch, -1, -1))  # (B, T, H)
        if self.lead and self.n_special:
            p, n = self.n_special, self.lead
            out = torch.cat([out[:, p : p + n], out[:, :p], out[:, p + n :]], dim=1)
        return out

    def hooks(self) -> PromptHooks:
        return PromptHooks(embed=self.embed, shared_lead=self.lead)  # the leading soft tokens: the same in every row

    def penalty(self) -> torch.Tensor | float:
        penalty = getattr(self.encoder, "penalty", None)
        return penalty() if penalty is not None else 0.0

    def peft_weights(self) -> torch.Tensor:
        return self.vectors()  # (n, H)

    def scoring_state(self) -> dict[str, torch.Tensor]:
        return {"encoder.embedding.weight": self.vectors().detach()}  # what `fixed_tokens` loads

    def readout(self, backbone: Backbone) -> list | None:
        from core.engine.prompt_encoders import nearest_tokens

        with torch.no_grad():
            return nearest_tokens(backbone, self.vectors())


def fixed_tokens(backbone: Backbone, template: Template) -> SoftTokens:
    """Soft tokens as scoring uses them: the vectors themselves (an encoder's output), with no encoder."""
    encoder = PromptEncoder(template.n_soft, backbone.hidden_size, EncoderKind.NONE)
    return SoftTokens(encoder, template, len(backbone.prefix_ids))


def private_backbone(backbone: Backbone, tuned: Mapping[str, torch.Tensor] | None = None) -> Backbone:
    """A copy of the backbone whose weights can change (tuned while training, or a tuned prompt's weights loaded
    for scoring) without touching the shared one that other sessions and runs keep using meanwhile."""
    model = copy.deepcopy(backbone.model)
    if tuned:
        params = dict(model.named_parameters())
        unknown = sorted(set(tuned) - set(params))
        if unknown:
            raise ValueError(f"the prompt file tunes backbone weight {unknown[0]!r} that this backbone does not have")
        with torch.no_grad():
            for k, v in tuned.items():
                params[k].copy_(v)
    return dataclasses.replace(backbone, model=model, lock=threading.Lock())


class ContinuousMethod(MethodBase):
    """fit/scores for a method defined by `default_template` and `build` (see the subclasses)."""

    trains: ClassVar[bool] = True
    data_parallel: ClassVar[bool] = True  # training goes through core.engine.training.train, which splits batches
    peft_type: ClassVar[str | None] = None  # the PEFT method that can express this one, when there is one

    # -- per method ---------------------------------------------------------------------------------------------

    def default_template(self, backbone: Backbone, base: Template) -> str:
        raise NotImplementedError

    def build(self, backbone: Backbone, template: Template, n_labels: int, *, for_training: bool) -> PromptModule:
        """The trainable module (`for_training`: with its encoder and initial values), else the one scoring uses,
        whose state is exactly what the trained module's `scoring_state` gives."""
        raise NotImplementedError

    def legacy_module(self, learned: LearnedPrompt) -> PromptModule | None:
        """The trained module a format-1 file's tensors load into, sized from those tensors (no backbone at hand),
        where that file held more than scoring needs (an encoder); None where its layout is today's."""
        return None

    def check_peft(self, backbone: Backbone, template: Template, learned: LearnedPrompt) -> None:
        """Raise PeftExportError where PEFT cannot express this prompt; soft-token methods: PEFT only prepends."""
        first = template.pieces[0]
        if first.kind is not SlotKind.SOFT or first.count != template.n_soft:
            raise PeftExportError("PEFT only prepends virtual tokens; this template has [P] slots after the start")

    def peft_config(self, backbone: Backbone, learned: LearnedPrompt, common: dict[str, Any]) -> Any:
        """PEFT's config class for this method, built from the keyword arguments every PEFT prompt config takes."""
        raise NotImplementedError

    lr_factors: ClassVar[tuple[float, ...]] = (1.0, 1 / 3, 3.0)  # the tuned lr grid around the default, default first

    def search_space(self, fixed: Collection[str]) -> list[Dimension]:
        """The learning rate, on a log grid around the config's, unless the user set it."""
        return [] if "lr" in fixed else [lr_grid(self.config.lr, self.lr_factors)]

    # -- shared -------------------------------------------------------------------------------------------------

    def peft_adapter(self, backbone: Backbone, learned: LearnedPrompt) -> tuple[Any, dict[str, torch.Tensor]]:
        if self.peft_type is None:
            raise PeftExportError(f"method {self.name!r} has no PEFT equivalent")
        if any(k.startswith(BACKBONE_PREFIX) for k in learned.tensors):
            raise PeftExportError("the backbone was tuned too; PEFT prompt methods keep it frozen")
        self.check_peft(backbone, Template.parse(learned.template), learned)
        with torch.no_grad():
            weights = self.module_for(backbone, learned).peft_weights().detach().float().cpu()
        common = {
            "task_type": "CAUSAL_LM" if backbone.kind is LMKind.CAUSAL else "FEATURE_EXTRACTION",
            "num_virtual_tokens": weights.shape[0],
            "base_model_name_or_path": backbone.spec,
            "inference_mode": True,
        }
        return self.peft_config(backbone, learned, common), {"prompt_embeddings": weights}

    def plain_template(self) -> str:
        """The config's template, else the user's first template with any [P] slots dropped: the template of a
        method that learns no virtual tokens (P-tuning v2's prefixes, the fine-tuning rows)."""
        if self.config.template:
            return self.config.template
        return without_soft_slots((self.spec.parsed() or [Template.parse("{text} It was [MASK]")])[0])

    def template_for(self, backbone: Backbone) -> str:
        """The config's template, else the user's first template with [P] slots, else one derived from it."""
        if self.config.template:
            return self.config.template
        parsed = self.spec.parsed() or [Template.parse("{text} It was [MASK]")]
        with_slots = [t for t in parsed if t.n_soft]
        return with_slots[0].source if with_slots else self.default_template(backbone, parsed[0])

    def _plan(self, backbone: Backbone, template: Template, verbalizer, label_names) -> ScoringPlan:
        return build_plan(
            backbone, template, verbalizer, label_names, reduce=self.config.reduce, max_length=self.config.max_length
        )

    def _score(
        self, backbone: Backbone, module: PromptModule, plan: ScoringPlan, records: Sequence[Mapping[str, str]]
    ) -> torch.Tensor:
        return map_batches(
            records,
            self.config.eval_batch_size,
            lambda chunk: module.label_scores(backbone, plan, chunk),
            plan.n_labels,
        )

    def fit(
        self,
        backbone: Backbone,
        train_set: LabeledDataset,
        dev: LabeledDataset,
        *,
        progress: ProgressFn,
        should_stop: StopFn,
    ) -> LearnedPrompt:
        cfg = self.config
        backbone, weights = self.training_backbone(backbone)  # a private copy when weights of it train
        source = self.template_for(backbone)
        template = Template.parse(source)
        template.validate(train_set.columns, backbone.kind)
        plan = self._plan(backbone, template, self.spec.verbalizer, self.spec.label_names)
        torch.manual_seed(cfg.seed)
        module = self.build(backbone, template, len(self.spec.label_names), for_training=True).to(backbone.device)
        groups = [ParamGroup({PROMPT_PREFIX + k: p for k, p in module.named_parameters()}, cfg.lr, cfg.weight_decay)]
        model = backbone.model
        flags = {k: p.requires_grad for k, p in model.named_parameters()}
        dev_labels = torch.tensor(list(dev.labels), dtype=torch.long)

        def loss_fn(records: Sequence[Mapping[str, str]], labels: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(module.label_scores(backbone, plan, records).float(), labels) + module.penalty()

        dev_scores: list[torch.Tensor] = []  # one per evaluation in this process, to hand the kept one on

        def eval_fn() -> tuple[float, float]:
            scores = self._score(backbone, module, plan, dev.records)
            dev_scores.append(scores)
            return float((scores.argmax(1) == dev_labels).float().mean()), float(F.cross_entropy(scores, dev_labels))

        tuned: dict[str, torch.Tensor] = {}
        tuning = prefix_cache.bypass() if weights else contextlib.nullcontext()  # weights change per step
        try:
            for p in model.parameters():
                p.requires_grad_(False)
            modules: list[nn.Module] = [module]
            if weights:
                for p in weights.params.values():
                    p.requires_grad_(True)
                groups.append(weights)
                modules.append(model)
            groups = [g for g in groups if g.params]  # a prompt with no weights of its own (prompt-based fine-tuning)
            with tuning:
                result = train(
                    groups,
                    loss_fn,
                    eval_fn if len(dev) else None,
                    train_set.records,
                    train_set.labels,
                    cfg,
                    device=backbone.device,
                    modules=modules,
                    run_key=self.run_key(backbone, source, train_set),
                    progress=progress,
                    should_stop=should_stop,
                    lengths=[record_length(r) for r in train_set.records],
                )
            if weights:  # the private copy is dropped after this fit: its tensors need no second copy
                tuned = {k: p.detach() for k, p in weights.params.items()}
        finally:
            for k, p in model.named_parameters():
                p.requires_grad_(flags[k])
            model.eval()
        module.eval()
        with torch.no_grad():
            tensors = {PROMPT_PREFIX + k: v for k, v in module.scoring_state().items()}
        tensors.update(tuned)
        trainable = sum(p.numel() for g in groups for p in g.params.values())
        readout = module.readout(backbone)
        metrics: dict[str, Any] = {
            "trainable_params": trainable,
            "dev_accuracy": result.best_dev_accuracy,
            "dev_loss": next((e["dev_loss"] for e in result.evals if e["step"] == result.best_step), None),
            "steps": result.steps,
            "best_step": result.best_step,
            "stopped_early": result.stopped_early,
            "resumed_from_step": result.resumed_from,
            "train_seconds": result.seconds,
        }
        state: dict[str, Any] = {"losses": result.losses, "evals": result.evals}
        if readout is not None:
            state["nearest_tokens"] = readout
        learned = self.learned(backbone, source, tensors=tensors, state=state, metrics=metrics)
        learned.dev_scores = kept_scores(result, dev_scores)
        return learned

    def upgrade(self, learned: LearnedPrompt, version: int) -> LearnedPrompt:
        """Format 1 saved the trained module's whole state (an LSTM/MLP encoder, a prefix MLP: megabytes); today's
        files hold what it outputs. Run that module once to turn such a file's tensors into today's layout."""
        if version >= 2:
            return learned
        try:
            with torch.device("meta"):  # shapes first, allocating nothing: the file's tensors size the module
                shapes = self.legacy_module(learned)
        except (RuntimeError, ValueError) as err:  # sizes no module has (a zero width)
            raise ValueError(
                f"the {self.name} prompt's format-1 tensors do not fit its config ({one_line(err)})"
            ) from None
        if shapes is None:
            return learned
        meta = shapes.state_dict()
        own = {k: PROMPT_PREFIX + k for k in meta}  # the module's names -> the file's
        for key, name in own.items():
            if name not in learned.tensors:
                raise ValueError(f"the {self.name} prompt (format 1) lacks tensor {name!r}")
            want, got = tuple(meta[key].shape), tuple(learned.tensors[name].shape)
            if want != got:
                raise ValueError(
                    f"the {self.name} prompt's (format 1) tensor {name!r} is {list(got)}, its config builds "
                    f"{list(want)}; download it again"
                )
        module = self.legacy_module(learned)
        module.load_state_dict({k: learned.tensors[name] for k, name in own.items()})
        with torch.no_grad():
            state = module.eval().scoring_state()
        tensors = {k: v for k, v in learned.tensors.items() if k not in own.values()}  # a head, a tuned backbone
        tensors.update({PROMPT_PREFIX + k: v for k, v in state.items()})
        return dataclasses.replace(learned, tensors=tensors)

    def expected_tensors(self, backbone: Backbone, learned: LearnedPrompt) -> dict[str, tuple[tuple[int, ...], Any]]:
        """The module's weights as this config builds them (on the meta device: no memory), plus every backbone
        weight when the backbone was tuned."""
        with torch.device("meta"):
            module = self.build(
                backbone, Template.parse(learned.template), len(learned.label_names), for_training=False
            )
        out = {PROMPT_PREFIX + k: (tuple(v.shape), v.dtype) for k, v in module.state_dict().items()}
        if self.config.tune_backbone:
            out.update({BACKBONE_PREFIX + k: (tuple(p.shape), p.dtype) for k, p in backbone.model.named_parameters()})
        return out

    def module_for(self, backbone: Backbone, learned: LearnedPrompt) -> PromptModule:
        """The trained module of a learned prompt, rebuilt from its config and tensors."""
        template = Template.parse(learned.template)
        module = self.build(backbone, template, len(learned.label_names), for_training=False)
        weights = {k.removeprefix(PROMPT_PREFIX): v for k, v in learned.tensors.items() if k.startswith(PROMPT_PREFIX)}
        try:
            module.load_state_dict(weights)
        except RuntimeError as err:
            raise ValueError(
                f"the {self.name} prompt's tensors do not fit this backbone or config ({one_line(err)}); "
                "use the backbone it was learned on"
            ) from None
        return module.to(backbone.device).eval()

    def scores(self, backbone: Backbone, learned: LearnedPrompt, records: Sequence[Mapping[str, str]]) -> torch.Tensor:
        module = self.module_for(backbone, learned)
        plan = self._plan(backbone, Template.parse(learned.template), learned.verbalizer_obj(), learned.label_names)
        changed = self.scoring_backbone(backbone, learned)
        if changed is None:
            return self._score(backbone, module, plan, records)
        with prefix_cache.bypass():  # other weights than the shared backbone's: its cached states do not apply
            return self._score(changed, module, plan, records)

    # -- the backbone's own weights: frozen (the default), every one (`tune_backbone`), or adapters (LoRA) -------

    def training_backbone(self, backbone: Backbone) -> tuple[Backbone, ParamGroup | None]:
        """The backbone a fit trains on and the group of its weights that train with the prompt (None: frozen, the
        shared backbone itself). Weights that train belong to a private copy: the shared backbone never changes."""
        if not self.config.tune_backbone:
            return backbone, None
        private = private_backbone(backbone)
        weights = {BACKBONE_PREFIX + k: p for k, p in private.model.named_parameters()}
        return private, ParamGroup(weights, self.config.backbone_lr, self.config.weight_decay)

    def scoring_backbone(self, backbone: Backbone, learned: LearnedPrompt) -> Backbone | None:
        """The backbone a learned prompt is scored on when it changed the backbone's weights (None: the shared one).
        One copy is kept for the prompt scored last, so scoring a split in chunks copies the weights once."""
        tuned = {
            k.removeprefix(BACKBONE_PREFIX): v for k, v in learned.tensors.items() if k.startswith(BACKBONE_PREFIX)
        }
        if not tuned:
            return None
        return scoring_copy(backbone, learned, lambda: private_backbone(backbone, tuned))


class _LastCopy:
    """The private backbone of the prompt scored last, for as long as that prompt lives (a one-entry cache): test
    scoring calls `scores` chunk by chunk, and a fine-tuned prompt would otherwise copy the whole backbone for every
    chunk. Keyed by the shared backbone and the prompt object; dropped with the prompt (a weak reference)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._key: tuple | None = None
        self._prompt: weakref.ref | None = None
        self._copy: Backbone | None = None

    def get(self, backbone: Backbone, learned: LearnedPrompt, make: Callable[[], Backbone]) -> Backbone:
        key = (id(backbone.model), backbone.fingerprint, id(learned))
        with self._lock:
            alive = self._prompt is not None and self._prompt() is learned
            if key != self._key or not alive or self._copy is None:
                self._drop()  # the old copy goes before the new one is made (memory)
                self._copy, self._key = make(), key
                self._prompt = weakref.ref(learned, lambda _ref: self._drop())
            return self._copy

    def _drop(self) -> None:
        self._key, self._prompt, self._copy = None, None, None


_LAST_COPY = _LastCopy()


def scoring_copy(backbone: Backbone, learned: LearnedPrompt, make: Callable[[], Backbone]) -> Backbone:
    """The backbone copy `make` builds for `learned`, built once while `learned` is the prompt being scored."""
    return _LAST_COPY.get(backbone, learned, make)


def kept_scores(result: TrainResult, scores: Sequence[torch.Tensor]) -> torch.Tensor | None:
    """The dev scores of the kept (best) state, when this process computed them: `scores` holds one per evaluation
    since the run (re)started, the last `len(scores)` of `result.evals`."""
    steps = [e["step"] for e in result.evals[len(result.evals) - len(scores) :]]
    return scores[steps.index(result.best_step)] if result.best_step in steps else None
