"""Label scores: log p(verbalizer words | filled template), batched, padding-aware, for masked and causal LMs.

A `ScoringPlan` groups the verbalizer's words so that one forward pass scores every word of a group: for a masked
LM all words with the same number of tokens share one input (L mask tokens); for a causal LM all single-token words
share the prompt, and a multi-token word is teacher-forced after it. Methods change what the model sees through
`PromptHooks` (soft embeddings at [P] slots, per-layer prefixes) and reuse everything else, with gradients when
they train and `torch.inference_mode` when they only score.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import torch
import torch.nn.functional as F

from core.engine import prefix_cache
from core.engine.backbone import Backbone, LMKind
from core.engine.templates import Encoded, Template, Verbalizer, mask_has_space, pad_rows, render_ids, tokenize_word
from core.progress import Cancelled

CONTENT_FREE_INPUTS = ("N/A", "", "[MASK]")
MAX_RENDERED = 50_000  # rendered prompts a plan keeps (a few MB); beyond that it starts afresh


@dataclass
class PromptHooks:
    """How a method alters the model's input. All optional; manual prompts use none.

    embed(enc, inputs_embeds) -> inputs_embeds: e.g. scatter soft-prompt vectors into the [P] positions.
    prefix(batch_size) -> (past_key_values, prefix_length): deep prompts seen by every layer (P-tuning v2).
    shared_lead: after `embed`, the first n input vectors are the same in every row (a soft prompt placed first),
    so a causal LM may run them once per batch (`core.engine.prefix_cache.shared_lead_hidden`).
    """

    embed: Callable[[Encoded, torch.Tensor], torch.Tensor] | None = None
    prefix: Callable[[int], tuple[object, int]] | None = None
    shared_lead: int = 0


@dataclass
class WordGroup:
    fill: list[int]  # ids placed at the [MASK] slot for this group
    n_targets: int  # L: tokens per word in this group
    word_ids: torch.Tensor  # (W_g, L)
    columns: list[int]  # each word's column in the flat word list


class Reduce(str, Enum):
    """How a multi-token label word's token log-probabilities combine."""

    SUM = "sum"  # the joint probability of the word
    MEAN = "mean"  # length-normalised


def reduce_field() -> Any:
    """The `reduce` option of every config that scores label words (one help text, one default)."""
    return field(
        default=Reduce.SUM,
        metadata={
            "help": "How a multi-token label word's token log-probabilities combine: 'sum' (joint probability) or "
            "'mean' (length-normalised)."
        },
    )


@dataclass
class ScoringPlan:
    """A template + verbalizer, tokenised once for a backbone."""

    template: Template
    label_names: list[str]
    word_label: list[int]  # flat word index -> label index
    groups: list[WordGroup] = field(default_factory=list)
    reduce: Reduce = Reduce.SUM
    max_length: int = 256

    _rows: dict = field(default_factory=dict, repr=False)  # rendered prompts, see `encode`

    @property
    def n_labels(self) -> int:
        return len(self.label_names)

    def encode(
        self, backbone: Backbone, group: int, records: Sequence[Mapping[str, str]], trigger_ids: Sequence[int] = ()
    ) -> Encoded:
        """One word group's batch, each prompt tokenised once for the plan's life (a run's every step reuses it)."""
        g = self.groups[group]
        rows = []
        for record in records:
            key = (group, tuple(trigger_ids), tuple(record.items()))
            row = self._rows.get(key)
            if row is None:
                if len(self._rows) >= MAX_RENDERED:
                    self._rows.clear()
                row = render_ids(
                    backbone,
                    self.template,
                    record,
                    g.fill,
                    g.n_targets,
                    trigger_ids=trigger_ids,
                    max_length=self.max_length,
                )
                self._rows[key] = row
            rows.append(row)
        return pad_rows(backbone, rows, g.n_targets)


def build_plan(
    backbone: Backbone,
    template: Template,
    verbalizer: Verbalizer,
    label_names: Sequence[str],
    *,
    reduce: Reduce | str = Reduce.SUM,
    max_length: int = 256,
) -> ScoringPlan:
    """Tokenise the verbalizer in the template's context and group words that can share a forward pass."""
    space = mask_has_space(template)
    words: list[tuple[int, list[int]]] = []
    for li, label in enumerate(label_names):
        for word in verbalizer.words[label]:
            words.append((li, tokenize_word(backbone, word, space_before=space)))
    keyed: dict[tuple, list[int]] = {}
    for col, (_, ids) in enumerate(words):
        keyed.setdefault(_group_key(backbone, ids), []).append(col)
    groups = []
    for key, cols in keyed.items():
        n_targets = len(words[cols[0]][1])
        groups.append(
            WordGroup(
                fill=list(key[1]),
                n_targets=n_targets,
                word_ids=torch.tensor([words[c][1] for c in cols], dtype=torch.long),
                columns=cols,
            )
        )
    return ScoringPlan(template, list(label_names), [li for li, _ in words], groups, Reduce(reduce), max_length)


def _group_key(backbone: Backbone, ids: list[int]) -> tuple[int, tuple[int, ...]]:
    if backbone.kind is LMKind.MASKED:
        return len(ids), tuple([backbone.mask_id] * len(ids))
    return len(ids), tuple(ids[:-1])  # causal: teacher-force all but the last token after the prompt


def _lm_head(backbone: Backbone) -> torch.nn.Module | None:
    """The module mapping final hidden states to vocabulary logits, for the families we support explicitly."""
    model = backbone.model
    if backbone.kind is LMKind.CAUSAL:
        return model.get_output_embeddings()
    for name in ("cls", "lm_head"):  # BERT family / RoBERTa family
        head = getattr(model, name, None)
        if isinstance(head, torch.nn.Module):
            return head
    return None


def target_logits(backbone: Backbone, enc: Encoded, hooks: PromptHooks | None = None) -> torch.Tensor:
    """Vocabulary logits at the target positions only: (B, L, V). Skips the full (B, T, V) projection.

    A causal LM's frozen prefix (the text before the first prompt slot) comes from `core.engine.prefix_cache`: only the
    rest of the prompt is run here, with the same result.
    """
    hooks = hooks or PromptHooks()
    head = _lm_head(backbone)
    if head is not None and hooks.prefix is None and prefix_cache.usable(backbone, enc):
        hidden, target = cached_hidden(backbone, enc, hooks)  # (B, S, H), (B, L) within the suffix
    else:
        hidden, target = prompt_hidden(backbone, enc, hooks, full_logits=head is None), enc.target_pos
    rows = torch.arange(target.shape[0], device=hidden.device).unsqueeze(1)
    picked = hidden[rows, target.to(hidden.device)]  # (B, L, ·)
    return picked if head is None else head(picked)


def cached_hidden(backbone: Backbone, enc: Encoded, hooks: PromptHooks) -> tuple[torch.Tensor, torch.Tensor]:
    """Final hidden states (B, S, H) of each row's suffix after its cached frozen prefix, and the targets in it."""
    prefixes = [enc.input_ids[i, :f].tolist() for i, f in enumerate(enc.frozen)]
    states = prefix_cache.prefix_states(backbone, prefixes)
    suffix = prefix_cache.split_encoded(enc, enc.frozen, backbone.pad_id).to(backbone.device)
    embeds = backbone.embeddings(suffix.input_ids)
    if hooks.embed is not None:
        embeds = hooks.embed(suffix, embeds)
    return prefix_cache.suffix_hidden(backbone, states, embeds, suffix.attention_mask), suffix.target_pos


def word_log_probs(logits: torch.Tensor, group: WordGroup, reduce: Reduce) -> torch.Tensor:
    """(B, L, V) logits -> (B, W_g) log-probabilities of each word (sum or mean over its tokens)."""
    logp = F.log_softmax(logits.float(), dim=-1)  # (B, L, V)
    ids = group.word_ids.to(logp.device)  # (W, L)
    pos = torch.arange(group.n_targets, device=logp.device)
    per_token = logp[:, pos.unsqueeze(0), ids]  # (B, W, L)
    return per_token.mean(-1) if reduce is Reduce.MEAN else per_token.sum(-1)


def aggregate_labels(word_scores: torch.Tensor, word_label: Sequence[int], n_labels: int) -> torch.Tensor:
    """(B, W) word log-probs -> (B, n_labels): log of the mean probability of each label's words."""
    out = []
    label_of = torch.tensor(word_label, device=word_scores.device)
    for li in range(n_labels):
        cols = word_scores[:, label_of == li]
        out.append(torch.logsumexp(cols, dim=1) - math.log(cols.shape[1]))
    return torch.stack(out, dim=1)


def batch_scores(
    backbone: Backbone,
    plan: ScoringPlan,
    records: Sequence[Mapping[str, str]],
    *,
    trigger_ids: Sequence[int] = (),
    hooks: PromptHooks | None = None,
) -> torch.Tensor:
    """(B, n_labels) label log-scores for one batch; differentiable when grad is enabled (training)."""
    n_words = len(plan.word_label)
    scores = [None] * n_words
    for gi, group in enumerate(plan.groups):
        enc = plan.encode(backbone, gi, records, trigger_ids)
        group_scores = word_log_probs(target_logits(backbone, enc, hooks), group, plan.reduce)
        for j, col in enumerate(group.columns):
            scores[col] = group_scores[:, j]
    return aggregate_labels(torch.stack(scores, dim=1), plan.word_label, plan.n_labels)


def score_records(
    backbone: Backbone,
    plan: ScoringPlan,
    records: Sequence[Mapping[str, str]],
    *,
    batch_size: int = 16,
    trigger_ids: Sequence[int] = (),
    hooks: PromptHooks | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> torch.Tensor:
    """(N, n_labels) label log-scores on CPU, computed in batches without gradients."""
    return map_batches(
        records,
        batch_size,
        lambda chunk: batch_scores(backbone, plan, chunk, trigger_ids=trigger_ids, hooks=hooks),
        plan.n_labels,
        should_stop=should_stop,
    )


def map_batches(
    records: Sequence[Mapping[str, str]],
    batch_size: int,
    fn: Callable[[list[Mapping[str, str]]], torch.Tensor],
    width: int,
    *,
    should_stop: Callable[[], bool] | None = None,
) -> torch.Tensor:
    """(N, width) = fn applied to batches of records, without gradients, rows back in the input order.

    Rows are batched by length (longest first): right padding to the longest row of a batch is then small, which
    roughly halves the work on texts of mixed length. Every scorer goes through here, so all of them get it.
    """
    order = sorted(range(len(records)), key=lambda i: -record_length(records[i]))
    out = torch.empty(len(records), width)
    with torch.inference_mode():
        for start in range(0, len(order), batch_size):
            if should_stop is not None and should_stop():
                raise Cancelled("scoring cancelled")
            idx = order[start : start + batch_size]
            out[idx] = fn([records[i] for i in idx]).float().cpu()
    return out


def record_length(record: Mapping[str, str]) -> int:
    """A cheap stand-in for a row's token count (characters of all its fields), for batching rows by length."""
    return sum(len(str(v)) for v in record.values())


def content_free_log_prior(
    backbone: Backbone,
    plan: ScoringPlan,
    fields: Sequence[str],
    *,
    trigger_ids: Sequence[int] = (),
    hooks: PromptHooks | None = None,
) -> torch.Tensor:
    """log p_cf(label): the model's label distribution for content-free inputs (Zhao et al. 2021), averaged."""
    records = [{f: value for f in fields} for value in CONTENT_FREE_INPUTS]
    return prior_from_scores(score_records(backbone, plan, records, trigger_ids=trigger_ids, hooks=hooks))


def prior_from_scores(scores: torch.Tensor) -> torch.Tensor:
    """log p_cf(label) from the label scores (n_inputs, n_labels) of the content-free inputs: their mean
    distribution, renormalised."""
    probs = F.softmax(scores.float(), dim=-1).mean(0)
    return torch.log(probs / probs.sum())


def calibrate(scores: torch.Tensor, log_prior: torch.Tensor) -> torch.Tensor:
    """Contextual calibration: renormalise, then divide by the content-free probabilities (W = diag(p_cf)^-1)."""
    return F.log_softmax(scores, dim=-1) - log_prior


def prompt_hidden(
    backbone: Backbone, enc: Encoded, hooks: PromptHooks | None = None, *, full_logits: bool = False
) -> torch.Tensor:
    """Final hidden states (B, T, H) of the base model for an encoded batch, with the method's hooks applied.

    `full_logits` runs the whole LM instead and returns (B, T, V): the fallback for a family whose LM head we do
    not know, and the reason this function is the one place that feeds a prompt to the model.
    """
    hooks = hooks or PromptHooks()
    enc = enc.to(backbone.device)
    embeds = backbone.embeddings(enc.input_ids)
    if hooks.embed is not None:
        embeds = hooks.embed(enc, embeds)
    attn = enc.attention_mask
    if not full_logits and hooks.prefix is None and prefix_cache.lead_shareable(backbone, attn, hooks.shared_lead):
        return prefix_cache.shared_lead_hidden(backbone, embeds, attn, hooks.shared_lead)
    kwargs: dict = {}
    if hooks.prefix is not None:
        past, n_prefix = hooks.prefix(enc.input_ids.shape[0])
        attn = torch.cat([attn.new_ones(attn.shape[0], n_prefix), attn], dim=1)
        model = backbone.model if full_logits else backbone.model.base_model
        kwargs[prefix_cache.cache_argument(model)] = past  # `cache` in transformers 5 (the old name logs a warning)
    if backbone.kind is LMKind.CAUSAL:
        kwargs["use_cache"] = False
    if full_logits:
        return backbone.model(inputs_embeds=embeds, attention_mask=attn, **kwargs).logits
    return backbone.model.base_model(inputs_embeds=embeds, attention_mask=attn, **kwargs)[0]
