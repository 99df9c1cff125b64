"""AutoPrompt (Shin et al. 2020): trigger tokens found by gradient-guided search, then used as a manual prompt.

The template carries trigger slots (`{text} [T*4] [MASK]`); `core.methods.autoprompt.trigger_search` fills them with vocabulary
tokens that lower the label-word loss on the K-shot train sample, keeping the sequence best on dev. The result is
a plain discrete prompt: a JSON manifest with the template, `trigger_ids` and readable `trigger_words`, scored
afterwards exactly like a manual prompt. Optionally the label words are searched too (proposals only), and the
template-selection baseline (best manual template on dev) is reported alongside.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import ClassVar

import torch

from core.atomic import write_atomic
from core.config import choice
from core.data import LabeledDataset
from core.engine.backbone import Backbone, LMKind
from core.engine.calibration import content_free_records
from core.engine.scoring import Reduce, ScoringPlan, build_plan, content_free_log_prior, reduce_field
from core.engine.templates import MAX_SLOT_REPEAT, SlotKind, Template, TemplateError, Verbalizer, source_of
from core.methods.autoprompt.label_search import propose_label_words
from core.methods.autoprompt.trigger_search import (
    SearchEvent,
    SearchSettings,
    SearchState,
    TriggerScorer,
    candidate_filter,
    search_triggers,
    trigger_words,
)
from core.methods.base import Dimension, LearnedPrompt, MethodBase, PromptSpec
from core.methods.manual import best_manual, discrete_scores, plain_templates
from core.progress import TRAINING, Cancelled, ProgressFn, StopFn, enter_phase, fenced, under_claim

log = logging.getLogger(__name__)


class CandidateScoring(StrEnum):
    BATCHED = "batched"  # all candidates x examples in large batches, shared prefix computed once
    SEQUENTIAL = "sequential"  # one forward pass per candidate, as the reference implementation does


@dataclass
class AutoPromptConfig:
    template: str = field(
        default="",
        metadata={
            "help": "Template with trigger slots, e.g. '{text} [T*4] [MASK]'. Empty: the first of your templates that "
            "has [T] slots, else '{text} [T*n] [MASK]' (plus ' .' for masked LMs)."
        },
    )
    n_triggers: int = field(
        default=4, metadata={"help": "Trigger slots in the default template (when not starting from your template)."}
    )
    init_token: str = field(
        default="",
        metadata={"help": "Word every trigger starts as; empty: the mask token (masked LMs) or 'the' (causal LMs)."},
    )
    init_from_template: bool = field(
        default=True,
        metadata={
            "help": "Start from your best manual template on dev: its words before the label slot become the "
            "triggers, starting as those very words ('{text} It was [MASK]' -> '{text} [T*2] [MASK]' from 'It "
            "was'), so the search begins at your prompt and keeps it unless it finds better on dev. Off, or with "
            "init_token set: n_triggers slots after the text, all starting as init_token."
        },
    )
    max_steps: int = field(
        default=40,
        metadata={
            "help": "Search iterations (one token swap tried per iteration); its own setting, not the training steps "
            "of the soft-prompt methods.",
            "label": "search iterations",
            "per_method": True,  # shown in the method's form even though the app sets max_steps for the others
        },
    )
    num_candidates: int = field(
        default=10,
        metadata={"help": "k: replacement tokens re-scored per searched position (top-k of the gradient estimate)."},
    )
    batch_size: int = field(default=16, metadata={"help": "Examples per gradient batch and per scoring batch."})
    accumulation_steps: int = field(default=2, metadata={"help": "Batches the trigger gradient is averaged over."})
    all_positions: bool = field(
        default=False,
        metadata={
            "help": "Search every trigger position each iteration (k candidates each) instead of one random one."
        },
    )
    beam_size: int = field(default=1, metadata={"help": "Trigger sequences kept per iteration (1: greedy)."})
    filter_non_words: bool = field(
        default=True,
        metadata={"help": "Only whole alphabetic words as triggers (no sub-word pieces, digits or punctuation)."},
    )
    eval_every: int = field(default=1, metadata={"help": "Score the dev set every N iterations (keeps best-on-dev)."})
    scoring: CandidateScoring = field(
        default=CandidateScoring.BATCHED,
        metadata={
            "help": "'batched' (all candidates together, shared prefix reused) or 'sequential' (reference loop)."
        },
    )
    max_rows: int = field(default=256, metadata={"help": "Rows (candidates x examples) per forward pass."})
    calibrate: bool = field(
        default=False,
        metadata={"help": "Contextual calibration of the found prompt, as for manual prompts."},
    )
    calibrated_search: bool = field(
        default=True,
        metadata={
            "help": "Keep the triggers that score best on dev calibrated or raw, whichever is better (as the "
            "comparison reports them), not raw only: the content-free inputs go through each dev checkpoint."
        },
    )
    reduce: Reduce = reduce_field()
    label_search: bool = field(
        default=False,
        metadata={
            "help": "Also propose label words per class (logistic probe on the label slot); shown, not applied."
        },
    )
    label_words_per_class: int = field(default=5, metadata={"help": "How many label words to propose per class."})
    use_label_words: int = field(
        default=0,
        metadata={
            "help": "Search label words first and use each class's N best as the verbalizer of the trigger search "
            "and of scoring (0: your verbalizer; the proposals, if on, are only shown)."
        },
    )
    template_selection: bool = field(
        default=False,
        metadata={
            "help": "Also report template selection (best of your manual templates on dev) as a row: the honest "
            "baseline a searched prompt must beat."
        },
    )
    seed: int = field(default=0, metadata={"help": "Seed of the batch order and position choice."})
    checkpoint_dir: str = field(
        default="",
        metadata={
            "help": "Folder for the search state ('' = none), written after every iteration; a run finding the "
            "state of the same search there continues from its iteration."
        },
    )

    def __post_init__(self):
        self.scoring = CandidateScoring(self.scoring)  # stored configs come back as strings
        self.reduce = choice(Reduce, self.reduce, "reduce")
        for name in (
            "n_triggers",
            "max_steps",
            "num_candidates",
            "batch_size",
            "accumulation_steps",
            "beam_size",
            "eval_every",
            "max_rows",
            "label_words_per_class",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, not {getattr(self, name)}")
        if self.use_label_words < 0:
            raise ValueError(f"use_label_words must be 0 (off) or more, not {self.use_label_words}")
        if self.template:
            parsed = Template.parse(self.template)
            if parsed.n_trigger == 0:
                raise ValueError(f"the AutoPrompt template {self.template!r} has no trigger slot; add [T] or [T*k]")

    def settings(self) -> SearchSettings:
        return SearchSettings(
            iterations=self.max_steps,
            num_candidates=self.num_candidates,
            batch_size=self.batch_size,
            accumulation_steps=self.accumulation_steps,
            all_positions=self.all_positions,
            beam_size=self.beam_size,
            eval_every=self.eval_every,
            batched=self.scoring is CandidateScoring.BATCHED,
            seed=self.seed,
        )


STATE_FILE = "autoprompt_search.json"


class SearchCheckpoint:
    """The search state of one run in `folder`, tagged with the run's key so another search never picks it up."""

    def __init__(self, folder: str, key: str):
        self.path, self.key = Path(folder) / STATE_FILE, key

    def load(self) -> SearchState | None:
        try:
            saved = json.loads(self.path.read_text())
            return SearchState(**saved["state"]) if saved.get("key") == self.key else None
        except (OSError, ValueError, KeyError, TypeError):
            return None  # none, unreadable or of another version: the search starts over

    def save(self, state: SearchState) -> None:
        """Atomically (a stop or crash mid-write leaves the previous state)."""
        write_atomic(self.path, json.dumps({"key": self.key, "state": state.__dict__}))

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def default_template(kind: LMKind, n_triggers: int, columns: Sequence[str] = ("text",)) -> str:
    pair = " {text_b}" if "text_b" in columns else ""
    tail = " ." if kind is LMKind.MASKED else ""
    return f"{{text}} [T*{n_triggers}]{pair} [MASK]{tail}"


def triggers_from(backbone: Backbone, template: Template) -> tuple[str, list[int]] | None:
    """A manual template as a trigger template that starts exactly where it is: the words between its last field
    and the label slot become [T] slots holding their own tokens, so the first prompt searched renders to the very
    same token ids. None when there are no such words (e.g. '{text}[MASK]') or too many to be slots."""
    pieces = template.pieces
    start, mask = template.anchor
    between = pieces[start:mask]
    if not between or any(p.kind is not SlotKind.TEXT for p in between):
        return None
    anchor = "".join(p.value for p in between)
    ids = backbone.tokenizer(anchor.rstrip(), add_special_tokens=False)["input_ids"] if anchor.strip() else []
    if not 1 <= len(ids) <= MAX_SLOT_REPEAT:
        return None
    head = "".join(source_of(p) for p in pieces[:start])
    tail = "".join(source_of(p) for p in pieces[mask:])
    slots = f"[T*{len(ids)}]" if len(ids) > 1 else "[T]"
    lead, trail = (" " if side.isspace() else "" for side in (anchor[:1], anchor[-1:]))  # a bare space: no token
    return f"{head}{lead}{slots}{trail}{tail}", list(ids)


class AutoPrompt(MethodBase):
    name: ClassVar[str] = "autoprompt"
    label: ClassVar[str] = "AutoPrompt"
    config_cls: ClassVar[type] = AutoPromptConfig
    trains: ClassVar[bool] = True
    needs_dev: ClassVar[bool] = True

    def __init__(self, spec: PromptSpec, config: AutoPromptConfig | None = None):
        super().__init__(spec, config)
        self.current_triggers: list[str] = []  # live view for a UI polling the method while it searches

    candidate_factors: ClassVar[tuple[float, ...]] = (1.0, 0.5, 2.0)  # tuned candidate counts, the configured first

    def search_space(self, fixed: Collection[str]) -> list[Dimension]:
        """Candidates per position against iterations, at the configured budget (candidates x iterations),
        unless the user set the candidate count."""
        if "num_candidates" in fixed:
            return []
        k, budget = self.config.num_candidates, self.config.num_candidates * self.config.max_steps
        counts = dict.fromkeys(max(1, round(k * f)) for f in self.candidate_factors)
        choices = tuple({"num_candidates": c, "max_steps": max(1, budget // c)} for c in counts)
        return [Dimension("candidates x iterations", choices)]

    def trigger_template(self, kind: LMKind, columns: Sequence[str]) -> str:
        if self.config.template:
            return self.config.template
        for t in self.spec.templates:
            if Template.parse(t).n_trigger:
                return t
        return default_template(kind, self.config.n_triggers, columns)

    def manual_templates(self) -> list[str]:
        """The user's templates without [T] or [P] slots: the ones manual prompting can score as they are."""
        return plain_templates(self.spec)

    def best_manual(self, backbone: Backbone, dev: LabeledDataset, should_stop: StopFn) -> LearnedPrompt | None:
        """Template selection: the manual template best on dev (None without one, or without dev rows). It is
        both where the search may start and the honest baseline a searched prompt must beat."""
        return best_manual(self.spec, backbone, dev, should_stop, reduce=self.config.reduce)

    def starts_from_template(self, backbone: Backbone, columns: Sequence[str]) -> bool:
        """Whether the search starts from a manual template (`init_from_template`) rather than the default one."""
        cfg = self.config
        default = self.trigger_template(backbone.kind, columns) == default_template(
            backbone.kind, cfg.n_triggers, columns
        )
        return default and cfg.init_from_template and not cfg.init_token.strip() and bool(self.manual_templates())

    def starting_point(
        self, backbone: Backbone, columns: Sequence[str], best: LearnedPrompt | None
    ) -> tuple[str, list[int]]:
        """The trigger template and the triggers' first tokens: from `best` (the best manual template on dev, else
        the first) when the search starts from a template, else the trigger template with `init_token`s."""
        if self.starts_from_template(backbone, columns):
            start = triggers_from(backbone, Template.parse(best.template if best else self.manual_templates()[0]))
            if start is not None:
                return start
        source = self.trigger_template(backbone.kind, columns)
        return source, self.init_ids(backbone, Template.parse(source).n_trigger)

    def init_ids(self, backbone: Backbone, n: int) -> list[int]:
        word = self.config.init_token.strip()
        if not word and backbone.mask_id is not None:
            return [backbone.mask_id] * n
        word = word or "the"
        for text in (" " + word, word):
            ids = backbone.tokenizer(text, add_special_tokens=False)["input_ids"]
            if len(ids) == 1:
                return ids * n
        raise ValueError(f"init_token {word!r} is several tokens for this backbone; choose a single-token word")

    def fit(
        self,
        backbone: Backbone,
        train: LabeledDataset,
        dev: LabeledDataset,
        *,
        progress: ProgressFn,
        should_stop: StopFn,
    ) -> LearnedPrompt:
        cfg = self.config
        wanted = cfg.template_selection or self.starts_from_template(backbone, train.columns)
        selected = self.best_manual(backbone, dev, should_stop) if wanted else None  # scored on dev once for both
        source, init = self.starting_point(backbone, train.columns, selected)
        template = Template.parse(source)
        template.validate(train.columns, backbone.kind)
        if template.n_trigger == 0:
            raise TemplateError(f"the template {source!r} has no trigger slot; add [T] or [T*k] for AutoPrompt")
        plan = build_plan(backbone, template, self.spec.verbalizer, self.spec.label_names, reduce=cfg.reduce)
        verbalizer = self.spec.verbalizer
        if cfg.use_label_words:
            verbalizer = self.searched_verbalizer(backbone, plan, train, init)
            plan = build_plan(backbone, template, verbalizer, self.spec.label_names, reduce=cfg.reduce)
        batched = cfg.scoring is CandidateScoring.BATCHED
        train_scorer = TriggerScorer(backbone, plan, train.records, max_rows=cfg.max_rows, prefix_cache=batched)
        dev_scorer = (
            TriggerScorer(backbone, plan, dev.records, max_rows=cfg.max_rows, prefix_cache=batched)
            if len(dev)
            else None
        )
        content_free = (
            TriggerScorer(backbone, plan, content_free_records(train.columns), prefix_cache=batched)
            if dev_scorer is not None and cfg.calibrated_search
            else None
        )
        banned = candidate_filter(backbone, plan, words_only=cfg.filter_non_words)
        ckpt = (
            SearchCheckpoint(cfg.checkpoint_dir, self.run_key(backbone, source, train)) if cfg.checkpoint_dir else None
        )
        resume = ckpt.load() if ckpt else None
        if resume is not None:
            progress(resume.iteration, cfg.max_steps, {})  # the card shows where it resumed at once
            enter_phase(progress, f"{TRAINING}, resumed from iteration {resume.iteration}")

        def on_iteration(event: SearchEvent, triggers: list[int]) -> None:
            self.current_triggers = trigger_words(backbone, triggers)
            metrics = {"train_loss": event.loss_after, "accepted": float(event.accepted)}
            if event.dev_accuracy is not None:
                metrics.update(dev_accuracy=event.dev_accuracy, dev_loss=event.dev_loss)
            log.debug("autoprompt %d/%d %s %s", event.iteration, cfg.max_steps, self.current_triggers, metrics)
            progress(event.iteration, cfg.max_steps, metrics)

        with backbone.lock:
            result = search_triggers(
                train_scorer,
                train.labels,
                init,
                banned,
                cfg.settings(),
                dev=dev_scorer,
                dev_labels=dev.labels,
                content_free=content_free,
                on_iteration=on_iteration,
                should_stop=should_stop,
                resume=resume,
                on_state=fenced(ckpt.save) if ckpt else None,
            )
        if should_stop():
            raise Cancelled(f"AutoPrompt cancelled after {result.iterations} of {cfg.max_steps} iterations")
        if ckpt:
            with under_claim():
                ckpt.clear()  # finished: the found prompt is the result; a rerun searches afresh
        words = trigger_words(backbone, result.triggers)
        state: dict = {
            "trigger_ids": result.triggers,
            "trigger_words": words,
            "filled_template": template.with_triggers(words),
            "history": [
                {
                    "iteration": e.iteration,
                    "tokens": trigger_words(backbone, e.after),
                    "accepted": e.accepted,
                    "loss": round(e.loss_after, 5),
                    "dev_accuracy": e.dev_accuracy,
                }
                for e in result.history
            ],
        }
        if cfg.calibrate:
            state["log_prior"] = content_free_log_prior(
                backbone, plan, train.columns, trigger_ids=result.triggers
            ).tolist()
        metrics = {
            "trainable_params": 0,
            "dev_accuracy": result.dev_accuracy,
            "dev_loss": result.dev_loss,
            "iterations": result.iterations,
            "resumed_from_step": resume.iteration if resume else 0,
            "search_seconds": result.seconds,
            "accepted_swaps": sum(e.accepted for e in result.history),
            "trigger_tokens": " ".join(words),
        }
        if cfg.label_search:
            proposals = propose_label_words(
                backbone,
                plan,
                train.records,
                train.labels,
                trigger_ids=result.triggers,
                per_class=cfg.label_words_per_class,
                seed=cfg.seed,
            )
            state["proposed_label_words"] = {k: [w for w, _ in v] for k, v in proposals.items()}
            state["proposed_label_scores"] = {k: [p for _, p in v] for k, v in proposals.items()}
        if cfg.use_label_words:
            state["searched_label_words"] = verbalizer.to_dict()
        learned = self.learned(backbone, source, state=state, metrics=metrics, verbalizer=verbalizer.to_dict())
        if cfg.template_selection and selected is not None:
            selected.display_name = "Template selection (best manual on dev)"
            learned.variants = [selected]
        return learned

    def searched_verbalizer(
        self, backbone: Backbone, plan: ScoringPlan, train: LabeledDataset, trigger_ids: Sequence[int]
    ) -> Verbalizer:
        """Each class's `use_label_words` best searched words (a word another class took first is skipped); a
        class left with none keeps your words."""
        n = self.config.use_label_words
        proposals = propose_label_words(
            backbone,
            plan,
            train.records,
            train.labels,
            trigger_ids=trigger_ids,
            per_class=n + 4,
            seed=self.config.seed,
        )
        taken: set[str] = set()
        words: dict[str, list[str]] = {}
        for label in self.spec.label_names:
            mine = [w for w, _ in proposals.get(label, []) if w and w.lower() not in taken][:n]
            words[label] = mine or list(self.spec.verbalizer.words[label])
            taken.update(w.lower() for w in words[label])
        return Verbalizer.from_mapping(words, self.spec.label_names)

    def check_state(self, learned: LearnedPrompt) -> None:
        super().check_state(learned)
        ids, n = learned.state.get("trigger_ids"), Template.parse(learned.template).n_trigger
        if not isinstance(ids, list) or len(ids) != n or not all(type(i) is int and i >= 0 for i in ids):
            raise ValueError(f"trigger_ids must be {n} token ids, one per [T] slot of the template")

    def check_fits(self, backbone: Backbone, learned: LearnedPrompt) -> None:
        super().check_fits(backbone, learned)
        vocab = backbone.embeddings.weight.shape[0]
        if any(i >= vocab for i in learned.state["trigger_ids"]):
            raise ValueError(f"a trigger token id is outside this backbone's vocabulary of {vocab}")

    def scores(self, backbone: Backbone, learned: LearnedPrompt, records: Sequence[Mapping[str, str]]) -> torch.Tensor:
        return discrete_scores(backbone, learned, records)  # the found triggers, or a template-selection variant
