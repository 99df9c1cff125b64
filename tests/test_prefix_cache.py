"""The frozen-prefix key/value cache: exact against the plain path (scores and prompt gradients), shared, bounded."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from core.compare import Unit, prompt_spec, run_unit
from core.data import load_dataset, split_dataset
from core.engine import prefix_cache
from core.engine.scoring import batch_scores, build_plan
from core.engine.templates import Template, Verbalizer, encode_batch
from core.methods import create
from core.methods.autoprompt.trigger_search import TriggerScorer
from core.methods.base import PromptSpec
from tests.tiny_models import tiny_backbone

LABELS = ("pos", "neg")
# mixed lengths (padding inside a batch), multi-token label words (teacher-forced groups)
VERBALIZER = Verbalizer.from_mapping({"pos": ["great", "very good"], "neg": ["bad", "not good at all"]}, LABELS)
RECORDS = [
    {"text": "the movie was fun"},
    {"text": "a"},
    {"text": "this film is really very boring and the plot is bad but the acting is fine"},
    {"text": "good"},
    {"text": "i love the story and the characters"},
]
TEMPLATES = ["{text} It was [MASK]", "Text: {text} Label: [MASK]", "{text}[MASK]", "{text} [P*3] It was [P*2] [MASK]"]


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def backbone(request):
    bb = tiny_backbone(request.param)
    bb.model.requires_grad_(False)
    return bb


def soft_hooks(backbone, template: str):
    """A P-tuning module (LSTM encoder) for a template with [P] slots, else no hooks."""
    if "[P" not in template:
        return None, None
    method = create("ptuning", PromptSpec((template,), VERBALIZER, LABELS), {"template": template})
    torch.manual_seed(0)
    module = method.build(backbone, Template.parse(template), 2, for_training=True)
    return module, module.hooks()


def scores_and_grads(backbone, plan, records, module, hooks):
    if module is not None:
        module.zero_grad(set_to_none=True)
    scores = batch_scores(backbone, plan, records, hooks=hooks)
    grads = []
    if module is not None:
        F.cross_entropy(scores, torch.tensor([i % 2 for i in range(len(records))])).backward()
        grads = [p.grad.clone() for p in module.parameters() if p.grad is not None]
    return scores.detach(), grads


@pytest.mark.parametrize("template", TEMPLATES)
def test_cached_scores_and_prompt_gradients_equal_the_plain_path(backbone, template):
    plan = build_plan(backbone, Template.parse(template), VERBALIZER, LABELS)
    module, hooks = soft_hooks(backbone, template)
    before = prefix_cache.stats()
    cached, cached_grads = scores_and_grads(backbone, plan, RECORDS, module, hooks)
    used = prefix_cache.stats()
    assert used["hits"] + used["misses"] > before["hits"] + before["misses"]  # the cached path really ran
    with prefix_cache.bypass():
        plain, plain_grads = scores_and_grads(backbone, plan, RECORDS, module, hooks)
    assert prefix_cache.stats()["hits"] + prefix_cache.stats()["misses"] == used["hits"] + used["misses"]
    torch.testing.assert_close(cached, plain, atol=1e-5, rtol=1e-5)
    if module is not None:
        assert sum(float(g.abs().sum()) for g in plain_grads) > 0
    for a, b in zip(cached_grads, plain_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    # a second pass (the next training step) reuses every row's prefix and gives the same numbers
    again, _ = scores_and_grads(backbone, plan, RECORDS, module, hooks)
    torch.testing.assert_close(again, cached, atol=1e-6, rtol=1e-6)


def test_frozen_prefix_is_the_text_before_the_first_slot(backbone):
    record = [{"text": "the movie was fun"}]
    n_text = len(backbone.prefix_ids) + 4
    cases = {
        "{text} It was [MASK]": n_text,
        "{text} [P*3] It was [P*2] [MASK]": n_text,
        "{text} [T*2] [MASK]": n_text,
        "[P*2] {text} It was [MASK]": 0,  # a soft prompt before the text: nothing is frozen
        "{text}[MASK]": n_text - 1,  # the position predicting the label word stays in the suffix
    }
    for source, want in cases.items():
        enc = encode_batch(backbone, Template.parse(source), record, [], 1)
        assert enc.frozen == [want], source


def test_templates_and_trigger_search_share_one_cache(backbone):
    records = [{"text": f"the {w} story was fun and the acting fine"} for w in ("alpha", "beta", "gamma")]
    plan = build_plan(backbone, Template.parse("{text} It was [MASK]"), VERBALIZER, LABELS)
    batch_scores(backbone, plan, records)  # computes the three texts' prefixes (or finds them)
    before = prefix_cache.stats()
    other = build_plan(backbone, Template.parse("{text} All in all, it was [MASK]"), VERBALIZER, LABELS)
    batch_scores(backbone, other, records)
    trig_plan = build_plan(backbone, Template.parse("{text} [T*3] [MASK]"), VERBALIZER, LABELS)
    TriggerScorer(backbone, trig_plan, records).scores(range(3), torch.tensor([[10, 11, 12], [13, 14, 15]]))
    after = prefix_cache.stats()
    assert after["misses"] == before["misses"]  # nothing recomputed
    assert after["hits"] - before["hits"] >= 2 * len(records)


def test_masked_lms_prefix_methods_and_leading_soft_prompts_take_the_plain_path(backbone):
    mlm = tiny_backbone("bert")
    calls = []
    for bb, method, options in [
        (mlm, "ptuning", {"template": "{text} [P*2] It was [MASK] ."}),
        (backbone, "prompt_tuning", {"n_tokens": 4}),
        (backbone, "ptuning_v2", {"n_prefix": 4}),
    ]:
        m = create(method, PromptSpec(("{text} It was [MASK]",), VERBALIZER, LABELS), options)
        template = Template.parse(m.template_for(bb))
        plan = build_plan(bb, template, VERBALIZER, LABELS)
        module = m.build(bb, template, 2, for_training=True)
        before = prefix_cache.stats()
        module.label_scores(bb, plan, RECORDS)
        after = prefix_cache.stats()
        calls.append(after["hits"] + after["misses"] - before["hits"] - before["misses"])
    assert calls == [0, 0, 0]


def test_weight_changes_invalidate_and_the_cache_stays_within_its_budget():
    bb = tiny_backbone("llama", seed=3)
    plan = build_plan(bb, Template.parse("{text} It was [MASK]"), VERBALIZER, LABELS)
    small = prefix_cache.PrefixCache(max_mb=0.03)
    original, prefix_cache.PREFIX_CACHE = prefix_cache.PREFIX_CACHE, small
    try:
        words = ["alpha", "beta", "gamma", "delta", "zeta", "eta", "theta", "kappa"]
        many = [{"text": " ".join(["the movie"] * (i % 5 + 1) + [words[i % 8], words[i // 8]])} for i in range(40)]
        first = batch_scores(bb, plan, many)
        assert small.evictions > 0 and small.bytes <= small.max_bytes
        with torch.no_grad():
            bb.model.base_model.layers[0].mlp.up_proj.weight.mul_(1.5)  # an in-place update of the backbone
        changed = batch_scores(bb, plan, many[:3])
        with prefix_cache.bypass():
            plain = batch_scores(bb, plan, many[:3])
        torch.testing.assert_close(changed, plain, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(changed, first[:3])
    finally:
        prefix_cache.PREFIX_CACHE = original


def test_a_comparison_unit_reports_its_cache_hits_and_misses(keyword_csv):
    ds = load_dataset(keyword_csv)
    split = split_dataset(ds, test_size=0.5, dev_size=0.25, seed=0)
    spec = prompt_spec(ds, ("{text} it was [MASK]", "{text} overall the movie was [MASK]"), None)
    rows = run_unit(tiny_backbone("llama", seed=5), split, spec, Unit("manual", 0))["rows"]
    # dev: the first template computes each text's prefix, the second reuses it; test likewise
    assert all(r["prefix_cache_misses"] > 0 and r["prefix_cache_hits"] >= r["prefix_cache_misses"] for r in rows)
    with prefix_cache.bypass():
        plain = run_unit(tiny_backbone("llama", seed=5), split, spec, Unit("manual", 0))["rows"]
    assert [r["predictions"] for r in plain] == [r["predictions"] for r in rows]
    assert all(r["prefix_cache_hits"] == r["prefix_cache_misses"] == 0 for r in plain)


@pytest.mark.parametrize(
    "method, options", [("prompt_tuning", {"n_tokens": 4}), ("ptuning", {"template": "[P*3] {text} It was [MASK]"})]
)
def test_a_leading_soft_prompt_runs_once_per_batch_with_the_plain_paths_scores_and_gradients(
    backbone, method, options
):
    m = create(method, PromptSpec(("{text} It was [MASK]",), VERBALIZER, LABELS), options)
    template = Template.parse(m.template_for(backbone))
    plan = build_plan(backbone, template, VERBALIZER, LABELS)
    torch.manual_seed(0)
    module = m.build(backbone, template, 2, for_training=True)
    batch_sizes: list[int] = []
    hook = backbone.model.base_model.register_forward_pre_hook(
        lambda _m, _a, kw: batch_sizes.append(kw["inputs_embeds"].shape[0]), with_kwargs=True
    )
    try:
        shared, shared_grads = scores_and_grads(backbone, plan, RECORDS, module, module.hooks())
        assert 1 in batch_sizes  # the soft prompt ran alone, once per group of label words
        batch_sizes.clear()
        with prefix_cache.bypass():
            plain, plain_grads = scores_and_grads(backbone, plan, RECORDS, module, module.hooks())
        assert set(batch_sizes) == {len(RECORDS)}  # the plain path: every row runs its own copy
    finally:
        hook.remove()
    torch.testing.assert_close(shared, plain, atol=1e-5, rtol=1e-5)
    assert sum(float(g.abs().sum()) for g in plain_grads) > 0
    for a, b in zip(shared_grads, plain_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("mode, used", [("auto", True), ("off", False), ("on", True)])
def test_the_cache_is_used_where_it_pays(backbone, monkeypatch, mode, used):
    """auto takes the cached path on a CPU (arithmetic-bound) and would leave it on a GPU; off and on override."""
    monkeypatch.setenv("PTUNE_PREFIX_CACHE", mode)
    plan = build_plan(backbone, Template.parse("{text} It was [MASK]"), VERBALIZER, LABELS)
    before = prefix_cache.stats()
    with torch.no_grad():
        batch_scores(backbone, plan, RECORDS)
    after = prefix_cache.stats()
    assert (after["hits"] + after["misses"] > before["hits"] + before["misses"]) is used
    assert prefix_cache.pays(backbone) is used and backbone.device.type == "cpu"


def _kv(n_tokens: int, value: float = 0.0) -> prefix_cache.KV:
    """Fake states of one row: 1 layer, 1 head, n_tokens x 64 floats each for keys and values (512 B a token)."""
    return [(torch.full((1, n_tokens, 64), value), torch.full((1, n_tokens, 64), value))]


def test_a_scan_larger_than_the_cache_does_not_flush_the_rows_every_step_reads():
    cache = prefix_cache.PrefixCache(max_mb=100 * 512 / 2**20)  # room for 100 one-token rows
    train = [("train", i) for i in range(20)]
    for key in train:  # the first step computes them...
        assert cache.get(key) is None
        cache.put(key, _kv(1))
    for key in train:  # ...the second reads them: they are protected now
        assert cache.get(key) is not None
    assert cache.stats()["protected"] == 20 and cache.promotions == 20
    for epoch in range(3):  # test rows read once per method and template: a cyclic scan of 3x the budget
        for i in range(300):
            if cache.get(("test", epoch, i)) is None:
                cache.put(("test", epoch, i), _kv(1))
    assert cache.evictions > 0 and cache.bytes <= cache.max_bytes
    hits = cache.hits
    assert all(cache.get(key) is not None for key in train)  # not one recomputed after the scans
    assert cache.hits == hits + 20
    # a plain LRU (everything one segment) loses them all to the same scan
    lru = prefix_cache.PrefixCache(max_mb=100 * 512 / 2**20, protected_share=0.0)
    for key in train:
        lru.put(key, _kv(1))
        lru.get(key)
    for i in range(300):
        lru.put(("test", i), _kv(1))
    assert all(lru.get(key) is None for key in train)


def test_hits_misses_promotions_and_the_protected_share_are_counted_and_bounded():
    cache = prefix_cache.PrefixCache(max_mb=10 * 512 / 2**20, protected_share=0.5)  # 10 rows, 5 protected
    for i in range(8):
        assert cache.get(i) is None
        cache.put(i, _kv(1, float(i)))
        cache.put(i, _kv(1, -1.0))  # a second store of the same key keeps the first
    for i in range(8):
        assert float(cache.get(i)[0][0][0, 0, 0]) == i
    stats = cache.stats()
    assert (stats["hits"], stats["misses"], stats["promotions"]) == (8, 8, 8)
    assert stats["protected"] == 5 and stats["entries"] == 8  # the 3 oldest promoted dropped back to probation
    for i in range(8, 20):  # new rows evict probation first: the 5 protected stay
        cache.put(i, _kv(1))
    assert all(cache.get(i) is not None for i in range(3, 8))
    assert cache.bytes <= cache.max_bytes and cache.stats()["entries"] == 10
    cache.resize(2 * 512 / 2**20)
    assert cache.bytes <= cache.max_bytes and cache.stats()["entries"] == 2
    cache.put("big", _kv(5))  # larger than the whole budget: not kept
    assert cache.get("big") is None


def test_the_default_budget_is_sized_from_free_memory_once_and_logged(monkeypatch, caplog):
    monkeypatch.delenv("PTUNE_PREFIX_CACHE_MB", raising=False)
    monkeypatch.setattr(prefix_cache, "free_memory", lambda device: 8 * 2**30)  # 8 GB free
    cache = prefix_cache.PrefixCache()
    with caplog.at_level("INFO", logger="core.engine.prefix_cache"):
        cache.put("a", _kv(1))
        monkeypatch.setattr(prefix_cache, "free_memory", lambda device: 2**30)
        cache.put("b", _kv(1))  # decided at the first store, not again
    assert cache.max_bytes == 2048 * 2**20 and cache.stats()["max_mb"] == 2048
    assert [r.getMessage() for r in caplog.records if "budget" in r.getMessage()] == [
        "prefix cache: budget 2048 MB, from a quarter of the memory free on cpu (set PTUNE_PREFIX_CACHE_MB to choose)"
    ]
    monkeypatch.setattr(prefix_cache, "free_memory", lambda device: 2**20)
    assert prefix_cache.auto_mb(torch.device("cpu")) == prefix_cache.MIN_AUTO_MB
    monkeypatch.setenv("PTUNE_PREFIX_CACHE_MB", "3")
    chosen = prefix_cache.PrefixCache()
    chosen.put("a", _kv(1))
    assert chosen.max_bytes == 3 * 2**20
