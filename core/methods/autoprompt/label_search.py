"""Label-word search (AutoPrompt's optional step): propose verbalizer words per class from the vocabulary.

As in Shin et al. 2020, a logistic classifier is trained on the representation the LM head reads at the label
slot ([MASK] for a masked LM, the last prompt position for a causal LM), h -> softmax(h·A + b). Every vocabulary
word w is then scored by feeding its *output* embedding to that classifier, p(y | w_out), since the head's
prediction of w is exactly large when h·w_out is: words scoring high for a class are the words the model already
predicts for that class's examples. The proposals are shown to the user, who may accept them into the verbalizer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

from core.engine.backbone import Backbone, LMKind
from core.engine.scoring import ScoringPlan, map_batches, target_logits
from core.engine.templates import Template, encode_batch
from core.methods.autoprompt.trigger_search import candidate_filter


def slot_features(
    backbone: Backbone,
    template: Template,
    records: Sequence[Mapping[str, str]],
    *,
    trigger_ids: Sequence[int] = (),
    batch_size: int = 16,
    max_length: int = 256,
) -> torch.Tensor:
    """(N, H) the input of the LM head's output projection at the (first) label position."""
    head = backbone.model.get_output_embeddings()
    if head is None:
        raise ValueError(f"{backbone.name} has no output embedding layer; label-word search needs an LM head")
    fill = [backbone.mask_id] if backbone.kind is LMKind.MASKED else []
    captured: list[torch.Tensor] = []

    def features(chunk: list[Mapping[str, str]]) -> torch.Tensor:
        enc = encode_batch(backbone, template, chunk, fill, 1, trigger_ids=trigger_ids, max_length=max_length)
        captured.clear()
        target_logits(backbone, enc)
        h = captured[-1]
        if h.shape[1] != 1:  # families whose full logits were computed: pick the label position
            return h[torch.arange(h.shape[0], device=h.device), enc.target_pos[:, 0].to(h.device)]
        return h[:, 0]

    handle = head.register_forward_pre_hook(lambda _m, args: captured.append(args[0].detach()))
    try:  # batches of similar length, as every scorer's (little padding: a probe run first pays the text's states)
        return map_batches(records, batch_size, features, backbone.hidden_size)
    finally:
        handle.remove()


def train_probe(
    features: torch.Tensor,
    labels: Sequence[int],
    n_labels: int,
    *,
    steps: int = 300,
    weight_decay: float = 1e-3,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A multinomial logistic regression (A: (H, n_labels), b: (n_labels,)), full-batch L-BFGS with an L2 term."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.tensor(list(labels), dtype=torch.long)
    a = (torch.randn(features.shape[1], n_labels, generator=gen) * 0.01).requires_grad_(True)
    b = torch.zeros(n_labels, requires_grad=True)
    opt = torch.optim.LBFGS([a, b], lr=0.5, max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(features @ a + b, y) + weight_decay * (a * a).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return a.detach(), b.detach()


def propose_label_words(
    backbone: Backbone,
    plan: ScoringPlan,
    records: Sequence[Mapping[str, str]],
    labels: Sequence[int],
    *,
    trigger_ids: Sequence[int] = (),
    per_class: int = 5,
    words_only: bool = True,
    seed: int = 0,
) -> dict[str, list[tuple[str, float]]]:
    """label name -> [(word, p(label | word)), ...], the `per_class` best single-token words, best first."""
    feats = slot_features(backbone, plan.template, records, trigger_ids=trigger_ids, max_length=plan.max_length)
    scale = feats.norm(dim=1).mean().clamp_min(1e-6)  # conditioning only: the same scale applies to the words
    a, b = train_probe(feats / scale, labels, plan.n_labels, seed=seed)
    out_emb = backbone.model.get_output_embeddings().weight.detach().float().cpu()  # (V, H)
    probs = torch.softmax(out_emb / scale @ a + b, dim=-1)  # (V, n_labels)
    banned = candidate_filter(backbone, plan, words_only=words_only, ban_label_words=False)
    probs[banned[: probs.shape[0]]] = -1.0
    proposals: dict[str, list[tuple[str, float]]] = {}
    for li, name in enumerate(plan.label_names):
        top = probs[:, li].topk(per_class)
        proposals[name] = [
            (backbone.tokenizer.decode([int(i)]).strip(), round(float(p), 4))
            for i, p in zip(top.indices.tolist(), top.values.tolist(), strict=True)
            if p >= 0
        ]
    return proposals
