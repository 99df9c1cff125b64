"""Batched scoring of AutoPrompt's trigger candidates: label scores and trigger-embedding gradients for a fixed
set of records under varying trigger tokens (`TriggerScorer`).

Why its own module: this is the search's hot path and the only part that touches the model, while
`core.methods.autoprompt.trigger_search` holds the vocabulary filter and the search loop that decides what to try.

Re-scoring every candidate (step 3 of a search iteration, see `trigger_search`) is where the reference
implementation spends its time, one forward pass per candidate. `TriggerScorer` scores all candidates of an
iteration as large (candidates × examples) batches instead, with the prompts tokenised once and the candidates
written into the trigger positions as a tensor operation. For a causal LM it also never recomputes what the
triggers cannot change: the example text before the first trigger comes from the process-wide
`core.engine.prefix_cache` (run once per example, shared with manual prompts and P-tuning), so candidates — and
the gradient pass — only run the few tokens from the first trigger on. Masked LMs attend both ways, so for them
only the batching applies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from core.engine import prefix_cache as prefix_cache_mod
from core.engine.backbone import Backbone, LMKind
from core.engine.scoring import PromptHooks, ScoringPlan, aggregate_labels, target_logits, word_log_probs
from core.engine.templates import Encoded, TemplateError, encode_batch


@dataclass
class _GroupEnc:
    """One verbalizer word group's encoding of every record (tokenised once, triggers as placeholders)."""

    enc: Encoded
    trig_pos: torch.Tensor  # (N, n_trig)
    lengths: torch.Tensor  # (N,)


class TriggerScorer:
    """Label scores and trigger-embedding gradients for a fixed set of records under varying trigger tokens.

    `scores(rows, cands)` gives (C, B, n_labels) label log-scores for C candidate trigger sequences on the B
    records `rows`; `batched=False` runs the reference loop (one full forward per candidate) and gives the same
    numbers. For causal LMs with `prefix_cache`, the text before the first trigger comes from `core.engine.prefix_cache`
    (computed once per record and process, shared with every other scorer) and only the tokens after it are run.
    """

    def __init__(
        self,
        backbone: Backbone,
        plan: ScoringPlan,
        records: Sequence[Mapping[str, str]],
        *,
        max_rows: int = 256,
        prefix_cache: bool = True,
    ):
        if plan.template.n_trigger == 0:
            raise TemplateError("the template has no trigger slot; add [T] or [T*k] where trigger words go")
        if not records:
            raise ValueError("trigger search needs at least one example; give a non-empty train (and dev) set")
        self.backbone, self.plan, self.records = backbone, plan, list(records)
        self.max_rows = max(1, max_rows)
        self.n_trig = plan.template.n_trigger
        placeholder = [backbone.mask_id if backbone.mask_id is not None else backbone.pad_id] * self.n_trig
        self.groups: list[_GroupEnc] = []
        for g in plan.groups:
            enc = encode_batch(
                backbone,
                plan.template,
                self.records,
                g.fill,
                g.n_targets,
                trigger_ids=placeholder,
                max_length=plan.max_length,
            )
            trig_pos = enc.trigger_mask.nonzero()[:, 1].reshape(len(self.records), self.n_trig)
            self.groups.append(_GroupEnc(enc, trig_pos, torch.tensor(enc.lengths)))
        self.split = torch.tensor(self.groups[0].enc.frozen)  # (N,) the frozen prefix: the text before any trigger
        self.use_cache = prefix_cache and backbone.kind is LMKind.CAUSAL and bool((self.split > 0).any())
        word_label = torch.tensor(plan.word_label)
        self.log_counts = torch.log(torch.bincount(word_label, minlength=plan.n_labels).float())  # (n_labels,)

    def __len__(self) -> int:
        return len(self.records)

    # --- public -------------------------------------------------------------------------------------------------

    def scores(self, rows: Sequence[int], cands: torch.Tensor, *, batched: bool = True) -> torch.Tensor:
        """(C, B, n_labels) label log-scores of candidate trigger sequences `cands` (C, n_trig) on `rows`."""
        cands = torch.as_tensor(cands, dtype=torch.long).reshape(-1, self.n_trig)
        rows = torch.as_tensor(list(rows), dtype=torch.long)
        with torch.inference_mode():
            if not batched:  # the reference loop: one candidate, one full forward pass
                return torch.stack([self._full_scores(rows, cands[c : c + 1])[0] for c in range(len(cands))])
            per_chunk = max(1, self.max_rows // max(1, len(rows)))
            chunks = [cands[c : c + per_chunk] for c in range(0, len(cands), per_chunk)]
            fn = self._cached_scores if self.use_cache else self._full_scores
            return torch.cat([fn(rows, chunk) for chunk in chunks])

    def losses(self, scores: torch.Tensor, rows: Sequence[int], labels: torch.Tensor) -> torch.Tensor:
        """(C, B) −log Σ_{w ∈ words(y)} p(w) from (C, B, n_labels) scores (aggregate_labels averages the words)."""
        y = labels[torch.as_tensor(list(rows), dtype=torch.long)].to(scores.device)
        picked = scores.gather(-1, y.expand(scores.shape[0], -1).unsqueeze(-1)).squeeze(-1)
        return -(picked + self.log_counts.to(scores.device)[y])

    def gradient(self, rows: Sequence[int], triggers: Sequence[int], labels: torch.Tensor) -> torch.Tensor:
        """(n_trig, H) gradient of the mean loss on `rows` w.r.t. the trigger tokens' input embeddings."""
        rows_t = torch.as_tensor(list(rows), dtype=torch.long)
        cand = torch.as_tensor(list(triggers), dtype=torch.long).reshape(1, self.n_trig)
        with torch.enable_grad():
            leaves: list[tuple[torch.Tensor, torch.Tensor]] = []  # (embedding leaf, its trigger positions)
            fn = self._cached_scores if self.use_cache else self._full_scores
            scores = fn(rows_t, cand, leaves=leaves)
            loss = self.losses(scores, rows, labels).mean()
            grads = torch.autograd.grad(loss, [leaf for leaf, _ in leaves])
        total = torch.zeros(self.n_trig, self.backbone.hidden_size, device=grads[0].device)
        for grad, (_, pos) in zip(grads, leaves, strict=True):
            r = torch.arange(pos.shape[0], device=grad.device).unsqueeze(1)
            total += grad[r, pos.to(grad.device)].sum(0).float()  # (n_trig, H), summed over rows of this group
        return total

    # --- internals ----------------------------------------------------------------------------------------------

    def _with_triggers(self, ids: torch.Tensor, trig_pos: torch.Tensor, cands: torch.Tensor) -> torch.Tensor:
        """(B, T) ids -> (C*B, T), candidate-major, with each candidate's tokens written at the trigger slots."""
        n_c, n_b = cands.shape[0], ids.shape[0]
        out = ids.repeat(n_c, 1)
        r = torch.arange(n_c * n_b).unsqueeze(1)
        out[r, trig_pos.repeat(n_c, 1)] = cands.repeat_interleave(n_b, dim=0)
        return out

    def _assemble(self, per_group: list[torch.Tensor], n_c: int, n_b: int) -> torch.Tensor:
        cols: list[torch.Tensor | None] = [None] * len(self.plan.word_label)
        for g, s in zip(self.plan.groups, per_group, strict=True):
            for j, col in enumerate(g.columns):
                cols[col] = s[:, j]
        flat = aggregate_labels(torch.stack(cols, dim=1), self.plan.word_label, self.plan.n_labels)
        return flat.reshape(n_c, n_b, -1)

    def _full_scores(self, rows: torch.Tensor, cands: torch.Tensor, leaves: list | None = None) -> torch.Tensor:
        """Whole prompts through the model (masked LMs; causal LMs without the prefix cache; the reference)."""
        with prefix_cache_mod.bypass():
            return self._plain_scores(rows, cands, leaves)

    def _plain_scores(self, rows: torch.Tensor, cands: torch.Tensor, leaves: list | None) -> torch.Tensor:
        per_group = []
        for g, ge in zip(self.plan.groups, self.groups, strict=True):
            width = int(ge.lengths[rows].max())
            ids = self._with_triggers(ge.enc.input_ids[rows, :width], ge.trig_pos[rows], cands)
            n = ids.shape[0]
            enc = Encoded(
                ids,
                ge.enc.attention_mask[rows, :width].repeat(len(cands), 1),
                torch.zeros_like(ids, dtype=torch.bool),
                torch.zeros_like(ids, dtype=torch.bool),
                ge.enc.target_pos[rows].repeat(len(cands), 1),
            )
            hooks = None
            if leaves is not None:
                pos = ge.trig_pos[rows].repeat(len(cands), 1)

                def capture(_enc, embeds, _pos=pos):
                    leaf = embeds.detach().requires_grad_(True)
                    leaves.append((leaf, _pos))
                    return leaf

                hooks = PromptHooks(embed=capture)
            logits = target_logits(self.backbone, enc, hooks)  # (n, L, V)
            assert logits.shape[0] == n
            per_group.append(word_log_probs(logits, g, self.plan.reduce))
        return self._assemble(per_group, len(cands), len(rows))

    def _cached_scores(self, rows: torch.Tensor, cands: torch.Tensor, leaves: list | None = None) -> torch.Tensor:
        """Causal LM: the text's key/values from `core.engine.prefix_cache`, then only the tokens after it."""
        device = self.backbone.device
        n_c, n_b = len(cands), len(rows)
        split = self.split[rows]
        ids0 = self.groups[0].enc.input_ids
        states = prefix_cache_mod.prefix_states(
            self.backbone, [ids0[r, : int(f)].tolist() for r, f in zip(rows.tolist(), split.tolist(), strict=True)]
        )
        states = states.repeat(n_c)
        head = self.backbone.model.get_output_embeddings()
        per_group = []
        for g, ge in zip(self.plan.groups, self.groups, strict=True):
            width = int(ge.lengths[rows].max())
            sub = Encoded(
                ge.enc.input_ids[rows, :width],
                ge.enc.attention_mask[rows, :width],
                ge.enc.soft_mask[rows, :width],
                ge.enc.trigger_mask[rows, :width],
                ge.enc.target_pos[rows],
                ge.lengths[rows].tolist(),
            )
            suffix = prefix_cache_mod.split_encoded(sub, split.tolist(), self.backbone.pad_id)
            rel_trig = ge.trig_pos[rows] - split.unsqueeze(1)  # (B, n_trig)
            ids = self._with_triggers(suffix.input_ids, rel_trig, cands).to(device)  # (C*B, S)
            embeds = self.backbone.embeddings(ids)
            if leaves is not None:
                embeds = embeds.detach().requires_grad_(True)
                leaves.append((embeds, rel_trig.repeat(n_c, 1)))
            hidden = prefix_cache_mod.suffix_hidden(
                self.backbone, states, embeds, suffix.attention_mask.repeat(n_c, 1)
            )
            r = torch.arange(n_c * n_b, device=device).unsqueeze(1)
            logits = head(hidden[r, suffix.target_pos.repeat(n_c, 1).to(device)])  # (C*B, L, V)
            per_group.append(word_log_probs(logits, g, self.plan.reduce))
        return self._assemble(per_group, n_c, n_b)
