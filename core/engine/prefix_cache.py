"""Frozen-prefix key/value cache: a causal LM's states for the tokens no prompt parameter can change.

With a frozen causal LM, the key/values of the tokens before a prompt's first trainable or searched slot (usually
the special tokens and the example's text) depend on those tokens only. They are computed once and reused by every
training step, dev evaluation, test scoring, manual template and method that feeds the same tokens, through one
process-wide cache (a scan-resistant segmented LRU, `PrefixCache`) keyed by the backbone and the token ids and
bounded in megabytes. The rest of the prompt (the suffix) then runs against them with explicit position ids and a mask hiding each row's prefix padding, so
rows of different prefix lengths share a batch and the result equals the uncached forward pass: tests check scores
and gradients against it to 1e-5. Gradients flow only through the suffix.

Masked LMs (they attend both ways), per-layer prefixes (P-tuning v2), soft prompts before the text and a backbone
that is being tuned cannot use it and take the plain path. A soft prompt placed first has a cheaper trick of its
own: it is the same in every row, so it runs once per batch (`shared_lead_hidden`). Both save arithmetic, which is
what a CPU is short of; on a GPU they are off unless asked for (`pays`).
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import itertools
import logging
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass

import torch
from transformers import DynamicCache

from core.engine.backbone import Backbone, LMKind
from core.engine.templates import Encoded
from core.resources import free_memory
from core.settings import SettingError, env_float

log = logging.getLogger(__name__)

PREFIX_CHUNK = 16  # rows per forward pass when computing missing prefixes

KV = list[tuple[torch.Tensor, torch.Tensor]]  # per layer (h, P, d) keys and values of one row


CACHE_ENV = "PTUNE_PREFIX_CACHE_MB"
FREE_SHARE = 0.25  # of the memory free on the device at the first store: the default budget
MIN_AUTO_MB, MAX_AUTO_MB = 256.0, 16384.0  # the default budget's floor and ceiling
PROTECTED_SHARE = 0.8  # of the budget for entries read at least twice (train and dev rows, a test row's later reads)


def cache_mb() -> float | None:
    """``PTUNE_PREFIX_CACHE_MB``: the cache's budget; unset or blank: None (sized from free memory, `auto_mb`).
    Above 0: ``PTUNE_PREFIX_CACHE=off`` is the way to turn the cache off."""
    raw = os.environ.get(CACHE_ENV, "").strip()
    if not raw:
        return None
    try:
        return env_float(CACHE_ENV, 0.0, above=0)
    except SettingError:
        raise SettingError(
            f"{CACHE_ENV}={raw[:40]!r} cannot be used: it takes a number above 0 (default: a quarter of the free "
            "memory); set it so, or unset it"
        ) from None


def auto_mb(device: torch.device) -> float:
    """The default budget: a quarter of the memory free on `device` now, within [256 MB, 16 GB]. The states live
    where the backbone runs, so that device's memory is what they compete for."""
    return min(MAX_AUTO_MB, max(MIN_AUTO_MB, FREE_SHARE * free_memory(device) / 2**20))


def _kv_bytes(kv: KV) -> int:
    return sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in kv)


class PrefixCache:
    """Thread-safe segmented LRU map (backbone identity, compute dtype, prefix token ids) -> per-layer key/values.

    Scan-resistant: a new entry enters the *probation* segment; a hit moves it to the *protected* segment, which
    may fill `PROTECTED_SHARE` of the budget (its least recently used entries drop back to probation when it is
    full). Train and dev rows are read at every step, so they are protected after their second read; a test split
    is read once per method and template, in a loop that may be larger than the whole budget, and such a scan only
    cycles through probation: it can no longer flush the rows every training step reads, as a plain LRU did (an LRU
    over a loop larger than itself hits nothing). Eviction takes probation's oldest entry first.

    Counts hits and misses per row looked up, evictions and promotions; entries larger than the whole budget are
    computed but not kept. `max_mb` None: ``PTUNE_PREFIX_CACHE_MB`` if set, else `auto_mb` of the device the first
    stored states live on, decided at the first store (logged once), not at import.
    """

    def __init__(self, max_mb: float | None = None, *, protected_share: float = PROTECTED_SHARE):
        self._max_bytes = None if max_mb is None else int(max_mb * 2**20)
        self._share = protected_share
        self._probation: OrderedDict[Hashable, tuple[KV, int]] = OrderedDict()
        self._protected: OrderedDict[Hashable, tuple[KV, int]] = OrderedDict()
        self._protected_bytes = 0
        self._lock = threading.Lock()
        self.bytes = self.hits = self.misses = self.evictions = self.promotions = 0

    def get(self, key: Hashable) -> KV | None:
        with self._lock:
            entry = self._protected.get(key)
            if entry is not None:
                self._protected.move_to_end(key)
                self.hits += 1
                return entry[0]
            entry = self._probation.pop(key, None)
            if entry is None:
                self.misses += 1
                return None
            self.hits += 1
            self.promotions += 1
            self._protected[key] = entry
            self._protected_bytes += entry[1]
            self._demote(as_newest=True)
            return entry[0]

    @property
    def max_bytes(self) -> int:
        """The budget in bytes; before the first store sizes it, what the setting says (else the floor)."""
        if self._max_bytes is None:
            return int((cache_mb() or MIN_AUTO_MB) * 2**20)
        return self._max_bytes

    def _size_for(self, kv: KV) -> None:
        """Fix the budget at the first store when none was given: the setting, else from the device's free memory."""
        if self._max_bytes is not None:
            return
        mb, source = cache_mb(), f"{CACHE_ENV}"
        if mb is None:
            device = kv[0][0].device if kv else torch.device("cpu")
            mb = auto_mb(device)
            source = f"a quarter of the memory free on {device} (set {CACHE_ENV} to choose)"
        self._max_bytes = int(mb * 2**20)
        log.info("prefix cache: budget %.0f MB, from %s", mb, source)

    def put(self, key: Hashable, kv: KV) -> None:
        size = _kv_bytes(kv)
        with self._lock:
            self._size_for(kv)
            if size > self.max_bytes or key in self._probation or key in self._protected:
                return
            self._probation[key] = (kv, size)
            self.bytes += size
            self._evict()

    def _demote(self, *, as_newest: bool) -> None:
        """Move protected's least recently used entries back to probation until protected fits its share of the
        budget: as probation's newest after a promotion, as its oldest when the budget shrank."""
        limit = int(self._share * self.max_bytes)
        while self._protected_bytes > limit and self._protected:
            key, entry = self._protected.popitem(last=False)
            self._protected_bytes -= entry[1]
            self._probation[key] = entry
            if not as_newest:
                self._probation.move_to_end(key, last=False)

    def _evict(self) -> None:
        while self.bytes > self.max_bytes and (self._probation or self._protected):
            if self._probation:
                _, (_, old) = self._probation.popitem(last=False)
            else:
                _, (_, old) = self._protected.popitem(last=False)
                self._protected_bytes -= old
            self.bytes -= old
            self.evictions += 1

    def resize(self, max_mb: float) -> None:
        with self._lock:
            self._max_bytes = int(max_mb * 2**20)
            self._demote(as_newest=False)  # below probation's newer entries
            self._evict()

    def clear(self) -> None:
        with self._lock:
            self._probation.clear()
            self._protected.clear()
            self.bytes = self._protected_bytes = 0

    def stats(self) -> dict[str, float]:
        with self._lock:
            return {
                "hits": self.hits,
                "misses": self.misses,
                "evictions": self.evictions,
                "promotions": self.promotions,
                "entries": len(self._probation) + len(self._protected),
                "protected": len(self._protected),
                "mb": self.bytes / 2**20,
                "max_mb": (self._max_bytes or 0) / 2**20,  # 0 until the first store sizes it
            }


PREFIX_CACHE = PrefixCache()
_model_tokens: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_next_token = itertools.count()
_enabled: contextvars.ContextVar[bool] = contextvars.ContextVar("prefix_cache_enabled", default=True)


@contextlib.contextmanager
def bypass() -> Iterator[None]:
    """Take the plain path inside this block (this thread only): e.g. while the backbone's weights are tuned or
    swapped, when cached states of the frozen weights would be wrong."""
    token = _enabled.set(False)
    try:
        yield
    finally:
        _enabled.reset(token)


def pays(backbone: Backbone) -> bool:
    """Whether skipping work this way pays on the backbone's device: `PTUNE_PREFIX_CACHE` = on / off / auto (default).

    auto: on a CPU only. There the work is arithmetic, and skipping the prefix's multiply-adds made the default
    comparison 1.59x faster. On a GPU a small backbone is bound by kernel launches, and the cache's per-row
    bookkeeping and the extra pass of a shared lead cost more than they save: on an H200 the default comparison took
    74.5 s with the cache and 51.8 s without (benchmarks/RESULTS.md). `on` still helps a large backbone there
    (P-tuning on the llama-1b shape: 0.90x PEFT's step).
    """
    mode = cache_mode()
    return mode == "on" or (mode == "auto" and backbone.device.type == "cpu")


def cache_mode() -> str:
    """``PTUNE_PREFIX_CACHE``: auto (default), on or off; anything else is refused rather than read as auto."""
    raw = os.environ.get("PTUNE_PREFIX_CACHE", "").strip()
    if raw.lower() in ("", "auto", "on", "off"):
        return raw.lower() or "auto"
    raise SettingError(
        f"PTUNE_PREFIX_CACHE={raw[:40]!r} cannot be used: it takes auto, on or off; set it so, or unset it"
    )


def check_settings() -> None:
    """Read this module's settings now (a bad one raises `SettingError`), so a process can refuse them at start."""
    cache_mb()
    cache_mode()


def usable(backbone: Backbone, enc: Encoded) -> bool:
    """Whether this batch may take the cached path: a causal LM, no bypass, the device is one where it pays, and
    some row has a frozen prefix."""
    return (
        _enabled.get()
        and backbone.kind is LMKind.CAUSAL
        and bool(enc.frozen)
        and max(enc.frozen) > 0
        and pays(backbone)
    )


def lead_shareable(backbone: Backbone, attention_mask: torch.Tensor, n_lead: int) -> bool:
    """Whether a batch whose first `n_lead` inputs are the same in every row (a soft prompt placed first) may run
    them once: a causal LM (they then see only each other), in eval mode (no per-row dropout), no bypass, and
    right padding (every row really has those positions)."""
    return (
        n_lead > 0
        and _enabled.get()
        and backbone.kind is LMKind.CAUSAL
        and not backbone.model.training
        and attention_mask.shape[1] > n_lead
        and bool(attention_mask[:, :n_lead].all())
        and pays(backbone)
    )


def stats() -> dict[str, float]:
    return PREFIX_CACHE.stats()


# ---------------------------------------------------------------------------------------------------------------
# Prefix states of a batch
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class PrefixStates:
    """Right-padded key/values of a batch's prefixes: per layer (B, h, P, d), with the (B, P) mask and lengths."""

    layers: KV
    mask: torch.Tensor  # (B, P) long, 1 on real prefix tokens
    lengths: torch.Tensor  # (B,) long

    def repeat(self, n: int) -> PrefixStates:
        """The same prefixes for n candidate-major copies of the batch (B -> n*B rows)."""
        if n == 1:
            return self
        return PrefixStates(
            [(k.repeat(n, 1, 1, 1), v.repeat(n, 1, 1, 1)) for k, v in self.layers],
            self.mask.repeat(n, 1),
            self.lengths.repeat(n),
        )

    def cache(self) -> DynamicCache:
        """A fresh cache over these tensors for one forward pass. DynamicCache appends the suffix by concatenation
        (new tensors), so neither these tensors nor the cached entries they were copied from are ever modified."""
        return DynamicCache(ddp_cache_data=list(self.layers))


def _compute_key(backbone: Backbone) -> tuple:
    """What the states depend on besides the tokens: which weights (the fingerprint, this model object, and the
    version counters of its parameters, which every in-place update such as an optimizer step or a weight swap
    bumps) and which device and compute dtype."""
    model = backbone.model
    token = _model_tokens.get(model)
    if token is None:  # unique for the process's life; not an attribute, which a deepcopy of the model would share
        token = _model_tokens[model] = next(_next_token)
    version = sum(p._version for p in model.parameters())
    device = backbone.device
    autocast = torch.is_autocast_enabled(device.type)
    dtype = torch.get_autocast_dtype(device.type) if autocast else backbone.dtype
    return backbone.fingerprint, token, version, str(device), str(dtype)


def prefix_states(
    backbone: Backbone, prefixes: Sequence[Sequence[int]], *, cache: PrefixCache | None = None
) -> PrefixStates:
    """Key/values of each row's prefix token ids (rows may differ in length; an empty prefix is allowed)."""
    cache = PREFIX_CACHE if cache is None else cache
    base = _compute_key(backbone)
    keys = [(*base, tuple(int(t) for t in ids)) for ids in prefixes]
    found: dict[int, KV] = {}
    missing: list[int] = []
    for i, key in enumerate(keys):
        if not prefixes[i]:
            found[i] = []
            continue
        kv = cache.get(key)
        if kv is None:
            missing.append(i)
        else:
            found[i] = kv
    unique: dict[tuple, list[int]] = {}
    for i in missing:
        unique.setdefault(keys[i], []).append(i)
    todo = sorted(unique, key=lambda k: -len(k[-1]))  # similar lengths together: little padding
    for start in range(0, len(todo), PREFIX_CHUNK):
        chunk = todo[start : start + PREFIX_CHUNK]
        for key, kv in zip(chunk, _run_prefixes(backbone, [list(k[-1]) for k in chunk]), strict=True):
            cache.put(key, kv)
            for i in unique[key]:
                found[i] = kv
    return _stack(backbone, [found[i] for i in range(len(prefixes))])


def _run_prefixes(backbone: Backbone, prefixes: list[list[int]]) -> list[KV]:
    """One forward pass over right-padded prefixes; each row's states cut to its own length (copies)."""
    device = backbone.device
    width = max(len(p) for p in prefixes)
    ids = torch.full((len(prefixes), width), backbone.pad_id, dtype=torch.long)
    mask = torch.zeros((len(prefixes), width), dtype=torch.long)
    for i, p in enumerate(prefixes):
        ids[i, : len(p)] = torch.tensor(p)
        mask[i, : len(p)] = 1
    pos = torch.arange(width).expand(len(prefixes), -1)
    with torch.no_grad():
        out = backbone.model.base_model(
            input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=pos.to(device), use_cache=True
        )
    past = out.get("cache") if out.get("cache") is not None else out.get("past_key_values")
    layers = [(layer.keys, layer.values) for layer in past.layers]
    return [
        [(k[i, :, : len(p)].clone(), v[i, :, : len(p)].clone()) for k, v in layers] for i, p in enumerate(prefixes)
    ]


def _stack(backbone: Backbone, kvs: list[KV]) -> PrefixStates:
    lengths = torch.tensor([kv[0][0].shape[1] if kv else 0 for kv in kvs], dtype=torch.long)
    width = int(lengths.max())
    mask = (torch.arange(width).unsqueeze(0) < lengths.unsqueeze(1)).long()
    ref = next(kv for kv in kvs if kv)
    layers = []
    for li in range(len(ref)):
        k0, v0 = ref[li]
        k = torch.zeros((len(kvs), k0.shape[0], width, k0.shape[2]), dtype=k0.dtype, device=k0.device)
        v = torch.zeros((len(kvs), v0.shape[0], width, v0.shape[2]), dtype=v0.dtype, device=v0.device)
        for i, kv in enumerate(kvs):
            if kv:
                n = kv[li][0].shape[1]
                k[i, :, :n], v[i, :, :n] = kv[li]
        layers.append((k, v))
    return PrefixStates(layers, mask.to(backbone.device), lengths)


# ---------------------------------------------------------------------------------------------------------------
# The suffix against cached prefixes
# ---------------------------------------------------------------------------------------------------------------


def split_encoded(enc: Encoded, split: Sequence[int], pad_id: int) -> Encoded:
    """The part of each row from position split[i] on, right-padded, with slot masks and targets shifted."""
    n = len(split)
    split_t = torch.as_tensor(list(split), dtype=torch.long)
    lengths = torch.as_tensor(enc.lengths, dtype=torch.long) if enc.lengths else enc.attention_mask.sum(1).cpu()
    rest = lengths - split_t
    width = int(rest.max())
    idx = split_t.unsqueeze(1) + torch.arange(width).unsqueeze(0)  # (B, S) absolute positions
    valid = torch.arange(width).unsqueeze(0) < rest.unsqueeze(1)
    idx = idx.clamp(max=enc.input_ids.shape[1] - 1).to(enc.input_ids.device)
    valid = valid.to(enc.input_ids.device)

    def take(t: torch.Tensor, fill) -> torch.Tensor:
        return torch.where(valid, t.gather(1, idx), torch.full_like(idx, fill, dtype=t.dtype))

    return Encoded(
        take(enc.input_ids, pad_id),
        valid.long(),
        take(enc.soft_mask, False),
        take(enc.trigger_mask, False),
        enc.target_pos - split_t.to(enc.target_pos.device).unsqueeze(1),
        rest.tolist(),
        [0] * n,
    )


def suffix_hidden(
    backbone: Backbone, prefix: PrefixStates, embeds: torch.Tensor, suffix_mask: torch.Tensor
) -> torch.Tensor:
    """(B, S, H) final hidden states of the suffix inputs `embeds` (B, S, H) after each row's cached prefix."""
    device = embeds.device
    attn = torch.cat([prefix.mask.to(device), suffix_mask.to(device)], dim=1)
    pos = prefix.lengths.to(device).unsqueeze(1) + torch.arange(embeds.shape[1], device=device).unsqueeze(0)
    base = backbone.model.base_model
    return base(
        inputs_embeds=embeds,
        attention_mask=attn,
        position_ids=pos,
        use_cache=True,
        **{cache_argument(base): prefix.cache()},
    )[0]


def cache_argument(module: torch.nn.Module) -> str:
    """transformers 5.x renamed `past_key_values` to `cache`; accept both spellings."""
    return "cache" if "cache" in inspect.signature(module.forward).parameters else "past_key_values"


def shared_lead_hidden(
    backbone: Backbone, embeds: torch.Tensor, attention_mask: torch.Tensor, n_lead: int
) -> torch.Tensor:
    """(B, T, H) final hidden states when the first `n_lead` input vectors are the same in every row.

    A causal LM's states for those positions depend on them alone, so they run once (batch of one) and every row
    continues from their key/values: the prompt-tuning step then costs the text, not the text plus 20 soft tokens
    per row. Gradients flow through the shared key/values into the soft prompt; the result equals the plain
    forward pass (tests check scores and gradients to 1e-5).
    """
    base = backbone.model.base_model
    batch, width = embeds.shape[0], embeds.shape[1]
    lead = base(inputs_embeds=embeds[:1, :n_lead], attention_mask=attention_mask[:1, :n_lead], use_cache=True)
    past = lead.get("cache") if lead.get("cache") is not None else lead.get("past_key_values")
    layers = [(lay.keys.expand(batch, -1, -1, -1), lay.values.expand(batch, -1, -1, -1)) for lay in past.layers]
    pos = torch.arange(n_lead, width, device=embeds.device).unsqueeze(0).expand(batch, -1)
    rest = base(
        inputs_embeds=embeds[:, n_lead:],
        attention_mask=attention_mask,
        position_ids=pos,
        use_cache=True,
        **{cache_argument(base): DynamicCache(ddp_cache_data=layers)},
    )[0]
    return torch.cat([lead[0].expand(batch, -1, -1), rest], dim=1)
