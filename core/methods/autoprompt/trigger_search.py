"""Gradient-guided discrete trigger search (AutoPrompt, Shin et al. 2020) with batched candidate scoring.

The template's `[T]` slots hold real vocabulary tokens. One search iteration:

1. the gradient of the loss (−log of the summed probability of each example's label words) with respect to the
   trigger tokens' input embeddings, averaged over a few batches (a hook on the embedding output);
2. for the position(s) searched, the top-k replacement tokens by the first-order estimate −e_w · g, with special
   tokens, label-word tokens and (optionally) non-word pieces filtered out;
3. every candidate is re-scored on a fresh batch and a swap is accepted only if that batch's loss really drops.

Step 3 is where the reference implementation spends its time, one forward pass per candidate; `TriggerScorer`
(`core.methods.autoprompt.trigger_scorer`, re-exported here) scores all of an iteration's candidates in batches.

After every iteration the search can hand out a `SearchState` (JSON: beam, best-on-dev, the random generators'
states and the history); a search started from it continues exactly as the uninterrupted one would have.
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from core.engine.backbone import Backbone
from core.engine.calibration import UNCALIBRATED, choose
from core.engine.scoring import ScoringPlan, prior_from_scores
from core.methods.autoprompt.trigger_scorer import TriggerScorer

WORD_MARKERS = ("Ġ", "▁")  # byte-level BPE / SentencePiece: a token that starts a new word


# ---------------------------------------------------------------------------------------------------------------
# Vocabulary filter
# ---------------------------------------------------------------------------------------------------------------


def label_token_ids(plan: ScoringPlan) -> set[int]:
    """Every token of every verbalizer word (a trigger that *is* the answer would be cheating)."""
    return {int(i) for g in plan.groups for i in g.word_ids.flatten().tolist()}


def word_like(token: str | None, text: str, uses_markers: bool) -> bool:
    """A whole alphabetic word: not a WordPiece continuation ('##ing'), byte piece, digit, space or punctuation.

    `token` is the vocabulary entry, `text` what it decodes to: byte-level BPE spells bytes as letters ('ĠĊ' is a
    space and a newline), so alphabetic-ness is judged on the decoded text.
    """
    if not token or token.startswith("##"):
        return False
    word = text.strip()
    if not word.isalpha():
        return False
    if uses_markers:  # a word-start piece, not the middle of a word
        return token.startswith(WORD_MARKERS) and len(word) > 1
    return True


def candidate_filter(
    backbone: Backbone,
    plan: ScoringPlan,
    *,
    words_only: bool = True,
    ban_label_words: bool = True,
    extra_banned: Sequence[int] = (),
) -> torch.Tensor:
    """(V,) bool, True where a token may NOT be proposed as a trigger."""
    tokenizer = backbone.tokenizer
    n_rows = backbone.embeddings.weight.shape[0]
    n_tok = min(len(tokenizer), n_rows)
    banned = torch.zeros(n_rows, dtype=torch.bool)
    banned[n_tok:] = True  # embedding rows the tokenizer never produces (padded vocabularies)
    special = set(tokenizer.all_special_ids) | {backbone.pad_id}
    if backbone.mask_id is not None:
        special.add(backbone.mask_id)
    for tid in special | (label_token_ids(plan) if ban_label_words else set()) | set(extra_banned):
        if 0 <= tid < n_rows:
            banned[tid] = True
    if words_only:
        tokens = tokenizer.convert_ids_to_tokens(list(range(n_tok)))
        texts = tokenizer.batch_decode([[i] for i in range(n_tok)])
        uses_markers = sum(bool(t) and t.startswith(WORD_MARKERS) for t in tokens) > 0.1 * n_tok
        for tid, (tok, text) in enumerate(zip(tokens, texts, strict=True)):
            if not word_like(tok, text, uses_markers):
                banned[tid] = True
    return banned


def trigger_words(backbone: Backbone, ids: Sequence[int]) -> list[str]:
    """Readable trigger words (the token text without its word-start marker)."""
    return [
        backbone.tokenizer.decode([int(i)]).strip() or backbone.tokenizer.convert_ids_to_tokens(int(i)) for i in ids
    ]


# ---------------------------------------------------------------------------------------------------------------
# The search
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class SearchSettings:
    """Knobs of one search (the method config maps onto these)."""

    iterations: int = 50
    num_candidates: int = 10
    batch_size: int = 16
    accumulation_steps: int = 2
    all_positions: bool = False
    beam_size: int = 1
    eval_every: int = 1
    batched: bool = True
    seed: int = 0


@dataclass
class SearchEvent:
    """One iteration: what was tried and whether the best trigger sequence changed (losses on its scoring batch)."""

    iteration: int
    positions: list[int]
    before: list[int]
    after: list[int]
    loss_before: float
    loss_after: float
    accepted: bool
    dev_accuracy: float | None = None
    dev_loss: float | None = None
    n_candidates: int = 0
    rows: list[int] = field(default_factory=list)  # the scoring batch


@dataclass
class SearchResult:
    triggers: list[int]  # best on dev (or the last accepted when there is no dev)
    last: list[int]
    dev_accuracy: float | None
    dev_loss: float | None
    history: list[SearchEvent] = field(default_factory=list)
    seconds: float = 0.0
    iterations: int = 0


class RowSampler:
    """Fresh batches of row indices: shuffled epochs, reproducible from the seed."""

    def __init__(self, n: int, batch_size: int, seed: int):
        self.n, self.batch_size = n, max(1, min(batch_size, n))
        self.rng = random.Random(seed)
        self.queue: list[int] = []

    def __call__(self) -> list[int]:
        if len(self.queue) < self.batch_size:
            order = list(range(self.n))
            self.rng.shuffle(order)
            self.queue += order
        out, self.queue = self.queue[: self.batch_size], self.queue[self.batch_size :]
        return out


def _rng_state(rng: random.Random) -> list:
    version, internal, gauss = rng.getstate()
    return [version, list(internal), gauss]


def _set_rng_state(rng: random.Random, state: Sequence) -> None:
    version, internal, gauss = state
    rng.setstate((version, tuple(internal), gauss))


@dataclass
class SearchState:
    """Where a search stands after `iteration`: enough to continue it exactly, as JSON (never pickle)."""

    iteration: int
    beam: list[list[int]]
    best: list[int]
    best_dev: tuple[float, float | None]  # (dev accuracy, dev loss); (-1, None) before any dev score
    rngs: list[list]  # states of the position choice and of the gradient and scoring row samplers
    queues: list[list[int]]  # rows the two samplers still hold for their next batches
    history: list[dict]  # SearchEvent fields, one per iteration so far

    def to_json(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def from_json(cls, text: str) -> SearchState:
        return cls(**json.loads(text))


def _snapshot(
    it: int,
    beam: list[list[int]],
    best: list[int],
    best_dev: tuple[float, float],
    rng: random.Random,
    samplers: Sequence[RowSampler],
    history: list[SearchEvent],
) -> SearchState:
    return SearchState(
        iteration=it,
        beam=[list(b) for b in beam],
        best=list(best),
        best_dev=(best_dev[0], best_dev[1] if math.isfinite(best_dev[1]) else None),
        rngs=[_rng_state(rng)] + [_rng_state(s.rng) for s in samplers],
        queues=[list(s.queue) for s in samplers],
        history=[dict(e.__dict__) for e in history],
    )


def _resume(
    state: SearchState, rng: random.Random, samplers: Sequence[RowSampler]
) -> tuple[list[list[int]], list[int], tuple[float, float], list[SearchEvent]]:
    """(beam, best, best_dev, history) of `state`, with the generators and samplers set where it left them."""
    for r, saved in zip([rng] + [s.rng for s in samplers], state.rngs, strict=True):
        _set_rng_state(r, saved)
    for sampler, queue in zip(samplers, state.queues, strict=True):
        sampler.queue = list(queue)
    loss = state.best_dev[1]
    best_dev = (state.best_dev[0], math.inf if loss is None else loss)
    history = [SearchEvent(**e) for e in state.history]
    return [list(b) for b in state.beam], list(state.best), best_dev, history


def top_candidates(
    grad: torch.Tensor, embedding: torch.Tensor, banned: torch.Tensor, k: int, current: Sequence[int] = ()
) -> torch.Tensor:
    """(n_pos, k) token ids whose swap most lowers the first-order loss estimate −e_w · g at each position."""
    estimate = -(grad.to(embedding.dtype) @ embedding.T).float()  # (n_pos, V)
    estimate[:, banned.to(estimate.device)] = -math.inf
    for p, tid in enumerate(current):
        estimate[p, int(tid)] = -math.inf  # not a change
    k = max(1, min(k, int((~banned).sum())))
    return estimate.topk(k, dim=-1).indices.cpu()


def trigger_scores(scorer: TriggerScorer, triggers: Sequence[int], *, batch_size: int = 64) -> torch.Tensor:
    """(N, n_labels) label log-scores of one trigger sequence on all of the scorer's records."""
    cand = torch.tensor([list(triggers)])
    parts = [
        scorer.scores(range(s, min(len(scorer), s + batch_size)), cand)[0] for s in range(0, len(scorer), batch_size)
    ]
    return torch.cat(parts).cpu().float()


def evaluate_triggers(
    scorer: TriggerScorer,
    labels: torch.Tensor,
    triggers: Sequence[int],
    *,
    content_free: TriggerScorer | None = None,
    batch_size: int = 64,
) -> tuple[float, float]:
    """(accuracy, mean loss) of one trigger sequence on all of the scorer's records.

    With `content_free` (the content-free inputs through the same prompt), the better of calibrated and raw on
    these records, as `core.engine.calibration.choose` picks for the final report: the search then keeps the triggers
    that win the way they will be reported, instead of ranking by raw scores a calibrated start would beat."""
    scores = trigger_scores(scorer, triggers, batch_size=batch_size)
    if content_free is None:
        rows = range(len(scorer))
        correct = int((scores.argmax(-1) == labels).sum())
        loss = float(scorer.losses(scores.unsqueeze(0), rows, labels).sum())
        return correct / max(1, len(scorer)), loss / max(1, len(scorer))
    prior = prior_from_scores(trigger_scores(content_free, triggers))
    choice = choose(scores, prior, labels.tolist(), UNCALIBRATED)
    return choice.dev_accuracy[choice.chosen], choice.dev_loss[choice.chosen]


def search_triggers(
    train: TriggerScorer,
    train_labels: Sequence[int],
    init: Sequence[int],
    banned: torch.Tensor,
    settings: SearchSettings,
    *,
    dev: TriggerScorer | None = None,
    dev_labels: Sequence[int] = (),
    content_free: TriggerScorer | None = None,
    on_iteration: Callable[[SearchEvent, list[int]], None] | None = None,
    should_stop: Callable[[], bool] = lambda: False,
    resume: SearchState | None = None,
    on_state: Callable[[SearchState], None] | None = None,
) -> SearchResult:
    """AutoPrompt's search loop; `should_stop` is polled every iteration (the caller decides what a stop means).

    `on_state` receives the state after every iteration; `resume` (such a state, of the same search) continues
    from it instead of starting over. `content_free` ranks dev checkpoints by the better of calibrated and raw
    (`evaluate_triggers`)."""
    start_time = time.perf_counter()
    y_train = torch.tensor(list(train_labels), dtype=torch.long)
    y_dev = torch.tensor(list(dev_labels), dtype=torch.long)
    n_trig = train.n_trig
    rng = random.Random(settings.seed)
    grad_batches = RowSampler(len(train), settings.batch_size, settings.seed)
    score_batches = RowSampler(len(train), settings.batch_size, settings.seed + 1)
    embedding = train.backbone.embeddings.weight.detach()
    beam: list[list[int]] = [list(init)]
    best_dev = (-1.0, math.inf)
    best = list(init)
    history: list[SearchEvent] = []
    dev_scores: dict[tuple[int, ...], tuple[float, float]] = {}  # a rejected swap leaves the triggers as they were

    def dev_score(triggers: list[int]) -> tuple[float, float]:
        key = tuple(triggers)
        if key not in dev_scores:
            dev_scores[key] = evaluate_triggers(dev, y_dev, triggers, content_free=content_free)
        return dev_scores[key]

    if resume is not None:
        beam, best, best_dev, history = _resume(resume, rng, (grad_batches, score_batches))
    elif dev is not None and len(dev):
        best_dev = dev_score(best)
    it = first = resume.iteration if resume is not None else 0
    for it in range(first + 1, settings.iterations + 1):
        if should_stop():
            it -= 1
            break
        positions = list(range(n_trig)) if settings.all_positions else [rng.randrange(n_trig)]
        proposals: list[list[int]] = []
        for state in beam:
            grad = sum(train.gradient(grad_batches(), state, y_train) for _ in range(settings.accumulation_steps))
            grad = grad / settings.accumulation_steps  # (n_trig, H)
            cands = top_candidates(
                grad[positions], embedding, banned, settings.num_candidates, [state[p] for p in positions]
            )
            for pi, p in enumerate(positions):
                for tid in cands[pi].tolist():
                    proposals.append([*state[:p], tid, *state[p + 1 :]])
        seen = {tuple(s) for s in beam}
        proposals = [s for s in proposals if tuple(s) not in seen and not seen.add(tuple(s))]
        rows = score_batches()
        everyone = beam + proposals
        scores = train.scores(rows, torch.tensor(everyone), batched=settings.batched)
        losses = train.losses(scores, rows, y_train).mean(1).cpu()  # (C,)
        order = sorted(range(len(everyone)), key=lambda i: (float(losses[i]), i))  # ties keep the current beam
        before, loss_before = beam[0], float(losses[0])
        beam = [everyone[i] for i in order[: settings.beam_size]]
        loss_after = float(losses[order[0]])
        accepted = beam[0] != before and loss_after < loss_before
        if not accepted:  # the best sequence never changes without a real improvement on this batch
            beam = [before] + [s for s in beam if s != before][: settings.beam_size - 1]
            loss_after = loss_before
        event = SearchEvent(
            it,
            positions,
            before,
            list(beam[0]),
            loss_before,
            loss_after,
            accepted,
            n_candidates=len(proposals),
            rows=list(rows),
        )
        if dev is not None and len(dev) and (it % settings.eval_every == 0 or it == settings.iterations):
            acc, dloss = dev_score(beam[0])
            event.dev_accuracy, event.dev_loss = acc, dloss
            if (acc, -dloss) > (best_dev[0], -best_dev[1]):
                best_dev, best = (acc, dloss), list(beam[0])
        elif dev is None or not len(dev):
            best = list(beam[0])
        history.append(event)
        if on_state is not None:
            on_state(_snapshot(it, beam, best, best_dev, rng, (grad_batches, score_batches), history))
        if on_iteration is not None:
            on_iteration(event, list(beam[0]))
    return SearchResult(
        triggers=best,
        last=list(beam[0]),
        dev_accuracy=best_dev[0] if best_dev[0] >= 0 else None,
        dev_loss=best_dev[1] if math.isfinite(best_dev[1]) else None,
        history=history,
        seconds=time.perf_counter() - start_time,
        iterations=it,
    )
