"""Trainable prompt modules: virtual-token encoders (P-tuning v1, prompt tuning) and per-layer prefixes (v2).

Their parameter layouts mirror PEFT's `PromptEncoder` and `PrefixEncoder` (same sub-module roles, same flattening of
the prefix into keys/values), so a learned prompt exports to a folder `peft.PeftModel.from_pretrained` loads by
writing the encoder's *output* as PEFT's `prompt_embeddings` (what PEFT itself saves).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

import torch
from torch import nn

from core.engine.backbone import Backbone


class EncoderKind(str, Enum):
    LSTM = "lstm"
    MLP = "mlp"
    NONE = "none"


def word_list(text: str) -> list[str]:
    """The words of a comma-separated option such as `init_words` ("great, terrible" -> ["great", "terrible"])."""
    return [w.strip() for w in text.split(",") if w.strip()]


def init_vectors(
    backbone: Backbone,
    n: int,
    *,
    words: Sequence[str] = (),
    generator: torch.Generator | None = None,
    sample_from: int = 5000,
) -> torch.Tensor:
    """(n, H) starting vectors: the embeddings of `words`' tokens (cycled), else of randomly sampled vocabulary tokens.

    Sampling draws from the first `sample_from` ids after the special tokens (frequent tokens in BPE vocabularies),
    as Lester et al. recommend over random-uniform initialisation.
    """
    emb = backbone.embeddings.weight.detach().float().cpu()
    ids: list[int] = []
    for word in words:
        ids.extend(backbone.tokenizer(word, add_special_tokens=False)["input_ids"])
    if ids:
        idx = torch.tensor([ids[i % len(ids)] for i in range(n)])
    else:
        special = set(getattr(backbone.tokenizer, "all_special_ids", []) or [])
        pool = torch.tensor([i for i in range(min(emb.shape[0], sample_from + len(special))) if i not in special])
        idx = pool[torch.randint(len(pool), (n,), generator=generator)]
    return emb[idx].clone()


class PromptEncoder(nn.Module):
    """Virtual-token embeddings, optionally reparameterised (P-tuning, Liu et al. 2021).

    Input: nothing. Output: (n_tokens, H) vectors for the [P] slots, in template order.
    - lstm: embedding (n, H) -> 2-layer bidirectional LSTM (hidden h per direction) -> Linear(2h, 2h)-ReLU-Linear(2h, H)
      (the paper's encoder; the same shape as PEFT's LSTM PromptEncoder).
    - mlp: embedding -> Linear(H, h)-ReLU-Linear(h, h)-ReLU-Linear(h, H) (PEFT's MLP PromptEncoder).
    - none: the embedding itself (prompt tuning, Lester et al. 2021).
    With `residual`, the encoder's output is added to the embedding and its last layer starts at zero, so training
    starts exactly from the initial vectors (given words or sampled tokens) instead of from the random output of
    an untrained encoder, which inserted mid-sentence derails a frozen LM before it has learned anything.
    `dropout` also applies to the encoder's output (training only), and `anchor` weighs `penalty()`, the mean
    squared distance of the output from the initial vectors relative to their norm: on a few dozen examples an
    encoder otherwise drifts into vectors no real token resembles and fits the train set by heart.
    """

    def __init__(
        self,
        n_tokens: int,
        dim: int,
        kind: EncoderKind = EncoderKind.LSTM,
        *,
        hidden: int | None = None,
        dropout: float = 0.0,
        init: torch.Tensor | None = None,
        residual: bool = False,
        anchor: float = 0.0,
    ):
        super().__init__()
        self.kind = EncoderKind(kind)
        self.n_tokens, self.dim = n_tokens, dim
        hidden = hidden or dim
        self.embedding = nn.Embedding(n_tokens, dim)
        if init is not None:
            with torch.no_grad():
                self.embedding.weight.copy_(init)
        self.anchor = float(anchor)
        # the starting vectors, for `penalty` only: not saved (scoring never needs them)
        self.register_buffer("start", self.embedding.weight.detach().clone(), persistent=False)
        self.out_dropout = nn.Dropout(dropout if self.kind is not EncoderKind.NONE else 0.0)
        if self.kind is EncoderKind.LSTM:
            self.lstm_head = nn.LSTM(dim, hidden, num_layers=2, dropout=dropout, bidirectional=True, batch_first=True)
            self.mlp_head = nn.Sequential(nn.Linear(2 * hidden, 2 * hidden), nn.ReLU(), nn.Linear(2 * hidden, dim))
        elif self.kind is EncoderKind.MLP:
            self.mlp_head = nn.Sequential(
                nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, dim)
            )
        self.residual = residual and self.kind is not EncoderKind.NONE
        if self.residual:
            nn.init.zeros_(self.mlp_head[-1].weight)
            nn.init.zeros_(self.mlp_head[-1].bias)

    def forward(self) -> torch.Tensor:
        e = self.embedding.weight  # (n, H)
        if self.kind is EncoderKind.LSTM:
            x = self.mlp_head(self.lstm_head(e.unsqueeze(0))[0]).squeeze(0)  # (1, n, 2h) -> (n, H)
        elif self.kind is EncoderKind.MLP:
            x = self.mlp_head(e)
        else:
            return e
        x = self.out_dropout(x)
        return e + x if self.residual else x

    def penalty(self) -> torch.Tensor:
        """`anchor` x mean ||output - start||^2 / mean ||start||^2: a pull back towards real token embeddings."""
        if not self.anchor:
            return torch.zeros((), device=self.embedding.weight.device)
        out = self()
        scale = self.start.pow(2).sum(-1).mean().clamp_min(1e-6)
        return self.anchor * (out - self.start).pow(2).sum(-1).mean() / scale


def attention_shape(config) -> tuple[int, int, int]:
    """(layers, key/value heads, head dim) of a decoder or encoder stack, for the families we support."""
    cfg = config.get_text_config() if hasattr(config, "get_text_config") else config
    layers = cfg.num_hidden_layers
    heads = cfg.num_attention_heads
    kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    return layers, kv_heads, head_dim


class PrefixEncoder(nn.Module):
    """Per-layer key/value prefixes (P-tuning v2, Liu et al. 2022; prefix tuning, Li & Liang 2021).

    Input: batch size B. Output: one (key, value) pair per layer, each (B, kv_heads, P, head_dim).
    The flat prefix is (P, layers * 2 * kv_heads * head_dim) and is split exactly as PEFT's prefix tuning does
    (view (P, 2L, heads, d); layer i takes rows 2i (keys) and 2i+1 (values)). With `projection` it is produced by
    Embedding(P, H) -> Linear(H, h)-Tanh-Linear(h, flat) (the reparameterisation), otherwise it is a parameter.
    """

    def __init__(
        self,
        n_prefix: int,
        hidden_size: int,
        layers: int,
        kv_heads: int,
        head_dim: int,
        *,
        projection: bool = False,
        projection_hidden: int = 512,
        dropout: float = 0.0,
        init_std: float = 0.02,
    ):
        super().__init__()
        self.n_prefix, self.layers, self.kv_heads, self.head_dim = n_prefix, layers, kv_heads, head_dim
        flat = layers * 2 * kv_heads * head_dim
        self.projection = projection
        if projection:
            self.embedding = nn.Embedding(n_prefix, hidden_size)
            self.transform = nn.Sequential(
                nn.Linear(hidden_size, projection_hidden), nn.Tanh(), nn.Linear(projection_hidden, flat)
            )
        else:
            self.embedding = nn.Embedding(n_prefix, flat)
            nn.init.normal_(self.embedding.weight, std=init_std)
        self.dropout = nn.Dropout(dropout)

    def flat(self) -> torch.Tensor:
        """(P, layers * 2 * kv_heads * head_dim): the prefix as PEFT stores it."""
        x = self.embedding.weight
        return self.transform(x) if self.projection else x

    def forward(self, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        x = self.dropout(self.flat())  # (P, F)
        x = x.view(self.n_prefix, 2 * self.layers, self.kv_heads, self.head_dim).permute(1, 2, 0, 3)  # (2L, h, P, d)
        x = x.unsqueeze(1).expand(-1, batch_size, -1, -1, -1)  # (2L, B, h, P, d)
        return [(x[2 * i], x[2 * i + 1]) for i in range(self.layers)]


def nearest_tokens(backbone: Backbone, vectors: torch.Tensor, *, k: int = 3) -> list[list[tuple[str, float]]]:
    """For each learned vector (n, H): the k vocabulary tokens with the most similar input embedding (cosine).

    For display only: soft tokens usually sit far from every real token, which is the point of learning them.
    """
    emb = backbone.embeddings.weight.detach().float()
    vecs = vectors.detach().float().to(emb.device)
    sims = nn.functional.normalize(vecs, dim=-1) @ nn.functional.normalize(emb, dim=-1).T  # (n, V)
    top = sims.topk(min(k, emb.shape[0]), dim=-1)
    tok = backbone.tokenizer
    return [
        [(tok.convert_ids_to_tokens(int(i)), round(float(s), 4)) for s, i in zip(row_s, row_i, strict=True)]
        for row_s, row_i in zip(top.values, top.indices, strict=True)
    ]
