"""AutoPrompt on tiny models: batched scoring = reference loop, search invariants, a planted trigger, artifacts."""

from __future__ import annotations

import functools
import json
import random
from pathlib import Path

import pandas as pd
import pytest
import torch

from core.cli import main as cli_main
from core.compare import readable_prompt
from core.data import LabeledDataset
from core.engine import calibration
from core.engine.backbone import LMKind, load_backbone
from core.engine.scoring import batch_scores, build_plan, content_free_log_prior, score_records
from core.engine.templates import Template, Verbalizer
from core.methods import create
from core.methods.autoprompt import STATE_FILE, AutoPromptConfig, SearchCheckpoint, triggers_from
from core.methods.autoprompt.label_search import propose_label_words
from core.methods.autoprompt.trigger_search import (
    SearchSettings,
    SearchState,
    TriggerScorer,
    candidate_filter,
    label_token_ids,
    search_triggers,
    top_candidates,
    trigger_words,
    word_like,
)
from core.methods.base import PromptSpec, config_from_dict, config_to_dict
from core.methods.manual import discrete_scores
from core.progress import Cancelled, no_progress
from core.prompts import artifacts
from core.prompts.predict import predict_records
from tests.tiny_models import save_tiny, tiny_backbone

torch.set_num_threads(1)
# one worker runs the module: the planted model (300 training steps) is trained once, not once per worker
# (pytest-xdist)
pytestmark = pytest.mark.xdist_group("planted")

FILLER = [
    "the",
    "a",
    "movie",
    "film",
    "story",
    "plot",
    "acting",
    "script",
    "director",
    "characters",
    "one",
    "two",
    "three",
]
DECOYS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "zeta",
    "eta",
    "theta",
    "lambda",
    "sigma",
    "omega",
    "red",
    "green",
    "blue",
    "cyan",
]
SECRET = "kappa"
LABELS = ["pos", "neg"]
RECORDS = [
    {"text": t}
    for t in (
        "the movie was great fun",
        "bad",
        "a terrible boring plot with awful acting and a bad script that is not fun at all",
        "i love it",
        "it is fine",
    )
]


def template_for(backbone, n: int = 3) -> str:
    return f"{{text}} [T*{n}] [MASK]" + (" ." if backbone.kind is LMKind.MASKED else "")


def plan_for(backbone, verbalizer: dict, n: int = 3):
    return build_plan(
        backbone,
        Template.parse(template_for(backbone, n)),
        Verbalizer.from_mapping(verbalizer, list(verbalizer)),
        list(verbalizer),
    )


def planted_task(n: int, seed: int) -> tuple[list[dict[str, str]], list[int]]:
    """Texts with 'good' (label 0) or 'bad' (label 1) among filler words."""
    rng = random.Random(seed)
    records, labels = [], []
    for _ in range(n):
        y = rng.randrange(2)
        words = [*rng.sample(FILLER, 3), "good" if y == 0 else "bad"]
        rng.shuffle(words)
        records.append({"text": " ".join(words)})
        labels.append(y)
    return records, labels


@pytest.fixture(scope="module")
def planted():
    return planted_model()


@functools.cache
def planted_model():
    """A tiny Llama trained so that the label word follows the text's sentiment only after the token 'kappa'.

    After any other trigger word the training answer was a coin flip, so the loss of '{text} [T] [MASK]' is low
    exactly when the trigger is 'kappa': the search has one right answer to find.
    """
    backbone = tiny_backbone("llama", seed=0)
    tok, model = backbone.tokenizer, backbone.model
    rng = random.Random(0)
    yes, no = tok.convert_tokens_to_ids(["yes", "no"])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for step in range(300):
        records, labels = planted_task(32, 1000 + step)
        seqs, targets = [], []
        for rec, y in zip(records, labels, strict=True):
            trigger = SECRET if rng.random() < 0.5 else rng.choice(DECOYS + FILLER)
            answer = (yes if y == 0 else no) if trigger == SECRET else rng.choice([yes, no])
            seqs.append(tok(rec["text"] + " " + trigger)["input_ids"] + [answer])
            targets.append(answer)
        width = max(map(len, seqs))
        ids = torch.full((len(seqs), width), backbone.pad_id)
        attn = torch.zeros_like(ids)
        for i, s in enumerate(seqs):
            ids[i, : len(s)], attn[i, : len(s)] = torch.tensor(s), 1
        logits = model(input_ids=ids, attention_mask=attn).logits
        at = logits[torch.arange(len(seqs)), torch.tensor([len(s) - 2 for s in seqs])]
        loss = torch.nn.functional.cross_entropy(at, torch.tensor(targets))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    model.requires_grad_(False)
    plan = build_plan(
        backbone,
        Template.parse("{text} [T] [MASK]"),
        Verbalizer.from_mapping({"p": ["yes"], "n": ["no"]}, ["p", "n"]),
        ["p", "n"],
    )
    return backbone, plan


# --- batched candidate scoring ------------------------------------------------------------------------------------


@pytest.mark.parametrize("family", ["llama", "gpt2", "bert", "roberta"])
def test_batched_and_one_at_a_time_scoring_agree(family):
    backbone = tiny_backbone(family)
    plan = plan_for(backbone, {"pos": ["great", "very good"], "neg": ["bad", "not good at all"]})
    scorer = TriggerScorer(backbone, plan, RECORDS, max_rows=7)  # forces several chunks
    assert scorer.use_cache == (backbone.kind is LMKind.CAUSAL)
    cands = torch.tensor([[10, 11, 12], [13, 14, 15], [20, 21, 22], [30, 31, 32]])
    rows = [0, 1, 2, 3, 4]
    batched = scorer.scores(rows, cands)
    one_at_a_time = scorer.scores(rows, cands, batched=False)
    engine = torch.stack([batch_scores(backbone, plan, RECORDS, trigger_ids=c.tolist()).detach() for c in cands])
    assert batched.shape == (4, 5, 2)
    torch.testing.assert_close(batched, one_at_a_time, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(one_at_a_time, engine, atol=1e-5, rtol=1e-5)
    # a subset of rows in another order gives the same numbers (the prefix cache is per row)
    torch.testing.assert_close(scorer.scores([3, 0], cands), batched[:, [3, 0]], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("template", ["[T*2] {text} It was [MASK]", "{text} [T] It was [T] [MASK]", "{text}[T][MASK]"])
def test_prefix_cache_is_exact_wherever_the_triggers_are(template):
    backbone = tiny_backbone("llama")
    verbalizer = Verbalizer.from_mapping({"pos": ["great", "very good"], "neg": ["bad"]}, LABELS)
    plan = build_plan(backbone, Template.parse(template), verbalizer, LABELS)
    scorer = TriggerScorer(backbone, plan, RECORDS, max_rows=6)
    n = plan.template.n_trigger
    cands = torch.tensor([[10 + i] * n for i in range(3)])
    engine = torch.stack([batch_scores(backbone, plan, RECORDS, trigger_ids=c.tolist()).detach() for c in cands])
    torch.testing.assert_close(scorer.scores(range(5), cands), engine, atol=1e-5, rtol=1e-5)
    full = TriggerScorer(backbone, plan, RECORDS, prefix_cache=False)
    y = torch.tensor([0, 1, 1, 0, 0])
    torch.testing.assert_close(
        scorer.gradient([0, 2], cands[0], y), full.gradient([0, 2], cands[0], y), atol=1e-5, rtol=1e-4
    )


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_gradient_with_prefix_cache_equals_full_backward(family):
    backbone = tiny_backbone(family)
    plan = plan_for(backbone, {"pos": ["great", "very good"], "neg": ["bad"]})
    labels = torch.tensor([0, 1, 1, 0, 0])
    cached = TriggerScorer(backbone, plan, RECORDS)
    full = TriggerScorer(backbone, plan, RECORDS, prefix_cache=False)
    g1 = cached.gradient([0, 2, 4], [10, 11, 12], labels)
    g2 = full.gradient([0, 2, 4], [10, 11, 12], labels)
    assert g1.shape == (3, backbone.hidden_size) and g1.abs().sum() > 0
    torch.testing.assert_close(g1, g2, atol=1e-5, rtol=1e-4)


# --- search invariants --------------------------------------------------------------------------------------------


def test_filter_bans_specials_label_words_and_non_words():
    backbone = tiny_backbone("bert")
    plan = plan_for(backbone, {"pos": ["great", "very good"], "neg": ["bad"]})
    banned = candidate_filter(backbone, plan)
    tok = backbone.tokenizer
    for tid in [*tok.all_special_ids, *label_token_ids(plan), *tok.convert_tokens_to_ids([".", ",", "!", "?"])]:
        assert banned[tid], tok.convert_ids_to_tokens(tid)
    assert set(label_token_ids(plan)) == set(tok.convert_tokens_to_ids(["great", "very", "good", "bad"]))
    assert not banned[tok.convert_tokens_to_ids("movie")]
    assert not candidate_filter(backbone, plan, words_only=False)[tok.convert_tokens_to_ids(".")]


def test_word_like_judges_the_decoded_text():
    # byte-level BPE spells a space as 'Ġ' and a newline as 'Ċ', both "letters" to str.isalpha
    assert word_like("Ġgreat", " great", uses_markers=True)
    assert not word_like("ĠĊĠĠĠ", " \n   ", uses_markers=True)
    assert not word_like("great", "great", uses_markers=True)  # a piece inside a word
    assert not word_like("Ġ2010", " 2010", uses_markers=True) and not word_like("Ġ...", " ...", uses_markers=True)
    assert word_like("movie", "movie", uses_markers=False)
    assert not word_like("##ing", "ing", uses_markers=False) and not word_like("[UNK]", "[UNK]", uses_markers=False)


@pytest.mark.parametrize("family", ["llama", "bert"])
def test_search_never_accepts_a_worse_swap_and_never_uses_filtered_tokens(family):
    backbone = tiny_backbone(family, seed=3)
    plan = plan_for(backbone, {"pos": ["great", "good"], "neg": ["bad", "awful"]}, n=2)
    records, labels = planted_task(24, 5)
    scorer = TriggerScorer(backbone, plan, records)
    banned = candidate_filter(backbone, plan)
    tok = backbone.tokenizer
    banned[tok.convert_tokens_to_ids(["movie", "film", "the", "alpha"])] = True  # extra bans must hold too
    settings = SearchSettings(iterations=8, num_candidates=6, batch_size=8, accumulation_steps=1, beam_size=2, seed=1)
    init = tok.convert_tokens_to_ids(["one", "two"])
    result = search_triggers(scorer, labels, init, banned, settings)
    assert len(result.history) == 8 and any(e.n_candidates for e in result.history)
    y = torch.tensor(labels)
    for event in result.history:
        for tid in set(event.after) - set(init):
            assert not banned[tid], tok.convert_ids_to_tokens(tid)
        if event.accepted:  # re-scored independently through the engine's own scoring path
            recs = [records[i] for i in event.rows]

            def loss(trig, recs=recs, event=event):
                s = batch_scores(backbone, plan, recs, trigger_ids=trig).detach()
                return -(s[torch.arange(len(recs)), y[event.rows]] + torch.log(torch.tensor(2.0))).mean()

            assert event.loss_after < event.loss_before
            assert loss(event.after) < loss(event.before) + 1e-6
        else:
            assert event.after == event.before
    assert all(
        not banned[t]
        for t in top_candidates(
            torch.randn(2, backbone.hidden_size), backbone.embeddings.weight.detach(), banned, 20
        ).flatten()
    )


def test_search_finds_the_planted_trigger(planted):
    backbone, plan = planted
    tok = backbone.tokenizer
    secret = tok.convert_tokens_to_ids(SECRET)
    records, labels = planted_task(32, 99)
    dev_records, dev_labels = planted_task(16, 98)
    scorer = TriggerScorer(backbone, plan, records)
    banned = candidate_filter(backbone, plan)
    init = tok.convert_tokens_to_ids(["the"])
    # the gradient estimate ranks the planted token among the very best of ~120 allowed words
    grad = scorer.gradient(list(range(16)), init, torch.tensor(labels))
    assert secret in top_candidates(grad, backbone.embeddings.weight.detach(), banned, 3, init)[0].tolist()
    settings = SearchSettings(iterations=3, num_candidates=3, batch_size=8, accumulation_steps=1, seed=0)
    result = search_triggers(
        scorer, labels, init, banned, settings, dev=TriggerScorer(backbone, plan, dev_records), dev_labels=dev_labels
    )
    assert trigger_words(backbone, result.triggers) == [SECRET]
    assert result.dev_accuracy == 1.0
    # the dev set is scored once per distinct trigger sequence: a rejected swap reuses the score it already has
    dev = TriggerScorer(backbone, plan, dev_records)
    seen: list[tuple] = []
    score = dev.scores
    dev.scores = lambda rows, cand, **kw: seen.append(tuple(cand[0].tolist())) or score(rows, cand, **kw)
    again = search_triggers(scorer, labels, init, banned, settings, dev=dev, dev_labels=dev_labels)
    assert [e.dev_accuracy for e in again.history] == [e.dev_accuracy for e in result.history]
    distinct = {tuple(init), *(tuple(e.after) for e in again.history)}
    assert sorted(set(seen)) == sorted(distinct) and len(seen) == len(distinct) * -(-len(dev_records) // 64)
    assert len(distinct) < 1 + len(again.history)  # some swap was rejected, so something was saved
    # and when the planted token is filtered out, it is never chosen
    banned[secret] = True
    blocked = search_triggers(scorer, labels, init, banned, settings)
    assert secret not in blocked.triggers and all(secret not in e.after for e in blocked.history)


def test_calibrated_search_ranks_dev_checkpoints_as_the_comparison_reports_them(planted):
    """With the content-free inputs through each checkpoint, a dev score is the better of calibrated and raw, the
    same number `core.engine.calibration.choose` gives from the ordinary scoring path for those triggers."""
    backbone, plan = planted
    records, labels = planted_task(32, 99)
    dev_records, dev_labels = planted_task(16, 98)
    scorer, dev = TriggerScorer(backbone, plan, records), TriggerScorer(backbone, plan, dev_records)
    content_free = TriggerScorer(backbone, plan, calibration.content_free_records(["text"]))
    init = backbone.tokenizer.convert_tokens_to_ids(["alpha"])
    settings = SearchSettings(iterations=3, num_candidates=3, batch_size=8, accumulation_steps=1, seed=0)
    banned = candidate_filter(backbone, plan)
    result = search_triggers(
        scorer, labels, init, banned, settings, dev=dev, dev_labels=dev_labels, content_free=content_free
    )
    raw_only = search_triggers(scorer, labels, init, banned, settings, dev=dev, dev_labels=dev_labels)
    for event, plain in zip(result.history, raw_only.history, strict=True):
        raw = score_records(backbone, plan, dev_records, trigger_ids=event.after)
        prior = content_free_log_prior(backbone, plan, ["text"], trigger_ids=event.after)
        choice = calibration.choose(raw, prior, dev_labels, calibration.UNCALIBRATED)
        assert event.dev_accuracy == pytest.approx(choice.dev_accuracy[choice.chosen])
        assert event.dev_accuracy >= choice.dev_accuracy[calibration.UNCALIBRATED]
        assert plain.dev_accuracy == pytest.approx(choice.dev_accuracy[calibration.UNCALIBRATED])
    assert result.dev_accuracy >= max(e.dev_accuracy for e in result.history)


# --- the method behind the interface ------------------------------------------------------------------------------


def yes_no_spec(*templates: str) -> PromptSpec:
    """The planted task's spec: these templates, "yes" for p and "no" for n."""
    return PromptSpec(templates, Verbalizer.from_mapping({"p": ["yes"], "n": ["no"]}, ["p", "n"]), ("p", "n"))


def dataset(records, labels, names=("p", "n")) -> LabeledDataset:
    return LabeledDataset(
        records=tuple(records), labels=tuple(labels), label_names=tuple(names), text_col="text", label_col="label"
    )


def test_method_fit_progress_save_load_predict(planted, tmp_path):
    backbone, _ = planted
    records, labels = planted_task(32, 7)
    dev_records, dev_labels = planted_task(16, 8)
    spec = yes_no_spec("{text} It was [MASK]", "{text} [T] [MASK]")
    events = []
    method = create(
        "autoprompt",
        spec,
        {"max_steps": 3, "num_candidates": 3, "batch_size": 8, "accumulation_steps": 1, "template_selection": True},
    )
    learned = method.fit(
        backbone,
        dataset(records, labels),
        dataset(dev_records, dev_labels),
        progress=lambda s, t, m: events.append((s, t, dict(m))),
        should_stop=lambda: False,
    )
    assert learned.template == "{text} [T] [MASK]"  # the user's template with trigger slots
    assert learned.state["trigger_words"] == [SECRET] and learned.metrics["trigger_tokens"] == SECRET
    assert readable_prompt(learned) == "{text} kappa [MASK]" == learned.state["filled_template"]
    assert [e[0] for e in events] == [1, 2, 3] and all(e[1] == 3 for e in events)
    assert all(isinstance(v, float) for _, _, m in events for v in m.values()) and "dev_accuracy" in events[-1][2]
    assert method.current_triggers == [SECRET]
    [variant] = learned.variants
    assert variant.method == "manual" and variant.display_name.startswith("Template selection")
    assert method.scores(backbone, variant, dev_records).shape == (16, 2)

    path = artifacts.save(learned, tmp_path, "autoprompt")
    assert path.suffix == ".json"
    loaded = artifacts.load(path)
    assert config_from_dict(AutoPromptConfig, loaded.config) == method.config
    before = method.scores(backbone, learned, dev_records)
    after = predict_records(backbone, loaded, dev_records)
    torch.testing.assert_close(torch.softmax(before, -1), after)
    assert (after.argmax(1) == torch.tensor(dev_labels)).all()


def test_config_accepts_strings_and_refuses_bad_values():
    cfg = config_from_dict(AutoPromptConfig, {"scoring": "sequential", "template": "{text} [T*2] [MASK]"})
    assert config_to_dict(cfg)["scoring"] == "sequential"
    assert json.loads(json.dumps(config_to_dict(cfg)))["scoring"] == "sequential"
    with pytest.raises(ValueError, match="no trigger slot"):
        AutoPromptConfig(template="{text} It was [MASK]")
    with pytest.raises(ValueError, match="num_candidates"):
        AutoPromptConfig(num_candidates=0)
    with pytest.raises(ValueError):
        AutoPromptConfig(scoring="sideways")


def test_cancel_raises_cancelled_and_default_templates(planted):
    backbone, _ = planted
    records, labels = planted_task(8, 1)
    spec = yes_no_spec("{text} It was [MASK]")
    method = create("autoprompt", spec, {"max_steps": 50, "batch_size": 4, "num_candidates": 2, "n_triggers": 2})
    assert method.trigger_template(LMKind.CAUSAL, ["text"]) == "{text} [T*2] [MASK]"
    assert method.trigger_template(LMKind.MASKED, ["text"]) == "{text} [T*2] [MASK] ."
    calls = iter(range(100))
    with pytest.raises(Cancelled):
        method.fit(
            backbone,
            dataset(records, labels),
            dataset(records, labels),
            progress=lambda *_: None,
            should_stop=lambda: next(calls) >= 2,
        )


def test_masked_lm_fit_with_multi_token_words_and_sequential_scoring():
    backbone = tiny_backbone("roberta")
    records, labels = planted_task(12, 2)
    spec = PromptSpec(
        templates=("{text} It was [MASK] .",),
        verbalizer=Verbalizer.from_mapping({"p": ["very good", "great"], "n": ["bad"]}, ["p", "n"]),
        label_names=("p", "n"),
    )
    opts = {"max_steps": 2, "batch_size": 4, "num_candidates": 3, "n_triggers": 2, "all_positions": True}
    fits = []
    for scoring in ("batched", "sequential"):
        method = create("autoprompt", spec, {**opts, "scoring": scoring})
        fits.append(
            method.fit(
                backbone,
                dataset(records, labels),
                dataset(records, labels),
                progress=lambda *_: None,
                should_stop=lambda: False,
            )
        )
    assert fits[0].template == "{text} [T*2] [MASK] ."
    assert fits[0].state["trigger_ids"] == fits[1].state["trigger_ids"]  # same search, only faster
    assert all(len(h["tokens"]) == 2 for h in fits[0].state["history"])


def test_cli_compare_and_predict_with_autoprompt(tmp_path):
    folder = save_tiny("llama", tmp_path / "tiny")
    rng = random.Random(0)
    rows = [
        {"text": " ".join(rng.sample(FILLER, 3) + [w]), "label": lab}
        for w, lab in [("good", "positive"), ("bad", "negative")] * 20
    ]
    pd.DataFrame(rows).to_csv(tmp_path / "d.csv", index=False)
    out = tmp_path / "out"
    code = cli_main(
        [
            "compare",
            "--data",
            str(tmp_path / "d.csv"),
            "--methods",
            "manual,autoprompt",
            "--backbone",
            str(folder),
            "--k-shot",
            "4",
            "--seeds",
            "0",
            "--max-steps",
            "2",
            "--option",
            "autoprompt.num_candidates=3",
            "--option",
            "autoprompt.batch_size=4",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    row = next(r for r in results["methods"] if r["method"] == "autoprompt")
    assert Template.parse(row["template"]).n_trigger and "[T" not in row["prompt"]  # started from a manual one
    prompt_file = Path(row["artifact"])
    assert prompt_file.suffix == ".json"
    new = tmp_path / "new.csv"
    pd.DataFrame({"text": [r["text"] for r in rows[:6]]}).to_csv(new, index=False)
    assert (
        cli_main(["predict", "--prompt", str(prompt_file), "--data", str(new), "--out", str(tmp_path / "p.csv")]) == 0
    )
    preds = pd.read_csv(tmp_path / "p.csv")
    assert len(preds) == 6 and set(preds["predicted_label"]) <= {"positive", "negative"}
    # the same prompt through the library gives the same probabilities
    learned = artifacts.load(prompt_file)
    from core.data import texts_from_frame

    probs = predict_records(
        load_backbone(str(folder)), learned, list(texts_from_frame(pd.read_csv(new), text_col="text").records)
    )
    assert probs.argmax(1).tolist() == [learned.label_names.index(p) for p in preds["predicted_label"]]


def test_label_search_proposes_the_planted_label_words(planted):
    backbone, plan = planted
    records, labels = planted_task(32, 11)
    kappa = backbone.tokenizer.convert_tokens_to_ids([SECRET])
    proposals = propose_label_words(backbone, plan, records, labels, trigger_ids=kappa, per_class=3)
    assert list(proposals) == ["p", "n"]
    assert proposals["p"][0][0] == "yes" and proposals["n"][0][0] == "no"
    assert all(0.0 <= p <= 1.0 for words in proposals.values() for _, p in words)
    assert all(w.isalpha() for words in proposals.values() for w, _ in words)  # no specials or punctuation


class PhaseLog(list):
    """A progress callback that also records the phases it is told about (as the job runner's does)."""

    def __init__(self):
        super().__init__()
        self.phases: list[str] = []

    def __call__(self, step, total, metrics):
        self.append(step)

    def phase(self, name: str) -> None:
        self.phases.append(name)


def test_cancelled_search_resumes_from_its_iteration_and_ends_as_an_uninterrupted_one(tmp_path):
    """Cancel after 3 iterations, resume from the state file: iterations 4.. only, and the same search result."""
    backbone = tiny_backbone("gpt2", seed=3)
    records, labels = planted_task(24, 5)
    dev_records, dev_labels = planted_task(12, 6)
    train_set, dev = dataset(records, labels), dataset(dev_records, dev_labels)
    spec = yes_no_spec("{text} [T*3] [MASK]")
    options = {"max_steps": 7, "num_candidates": 4, "batch_size": 6, "accumulation_steps": 1, "eval_every": 2}

    def fit(checkpoint_dir: str, progress=no_progress, stop=lambda: False):
        method = create("autoprompt", spec, {**options, "checkpoint_dir": checkpoint_dir})
        return method.fit(backbone, train_set, dev, progress=progress, should_stop=stop)

    full = fit("")
    polls = iter(range(100))
    with pytest.raises(Cancelled, match="after 3 of 7"):
        fit(str(tmp_path), stop=lambda: next(polls) >= 3)
    assert (tmp_path / STATE_FILE).is_file()
    log = PhaseLog()
    resumed = fit(str(tmp_path), progress=log)
    assert log[0] == 3 and log[1:] == [4, 5, 6, 7]  # shows where it resumed, then only the remaining iterations
    assert "training, resumed from iteration 3" in log.phases
    assert resumed.metrics["resumed_from_step"] == 3 and full.metrics["resumed_from_step"] == 0
    assert resumed.state["trigger_ids"] == full.state["trigger_ids"]
    assert resumed.state["history"] == full.state["history"]  # every iteration, before and after the stop
    assert resumed.metrics["dev_accuracy"] == full.metrics["dev_accuracy"]
    assert sum(h["accepted"] for h in full.state["history"]) >= 1  # the search did move
    assert not (tmp_path / STATE_FILE).exists()  # finished: a rerun searches afresh


def test_search_state_of_another_search_is_ignored(tmp_path):
    backbone = tiny_backbone("gpt2", seed=3)
    records, labels = planted_task(12, 5)
    spec = yes_no_spec("{text} [T*2] [MASK]")
    options = {"max_steps": 2, "num_candidates": 2, "batch_size": 4, "accumulation_steps": 1}
    SearchCheckpoint(str(tmp_path), "another run").save(SearchState(5, [[1, 2]], [1, 2], (0.5, 0.7), [], [], []))
    log = PhaseLog()
    method = create("autoprompt", spec, {**options, "checkpoint_dir": str(tmp_path)})
    learned = method.fit(
        backbone, dataset(records, labels), dataset(records, labels), progress=log, should_stop=lambda: False
    )
    assert log == [1, 2] and learned.metrics["resumed_from_step"] == 0


def test_searched_label_words_are_used_for_the_search_and_scoring(planted):
    """With use_label_words the verbalizer becomes the searched one: the planted model answers yes/no after
    'kappa', so the user's unrelated words ("red"/"blue") give way to yes/no and the prompt solves the task."""
    backbone, _ = planted
    records, labels = planted_task(32, 21)
    dev_records, dev_labels = planted_task(16, 22)
    spec = PromptSpec(
        templates=("{text} [T] [MASK]",),
        verbalizer=Verbalizer.from_mapping({"p": ["red"], "n": ["blue"]}, ["p", "n"]),
        label_names=("p", "n"),
    )
    options = {"max_steps": 1, "num_candidates": 2, "batch_size": 8, "accumulation_steps": 1, "init_token": SECRET}
    train, dev = dataset(records, labels), dataset(dev_records, dev_labels)
    used = create("autoprompt", spec, {**options, "use_label_words": 1})
    learned = used.fit(backbone, train, dev, progress=lambda *a: None, should_stop=lambda: False)
    assert learned.verbalizer == {"p": ["yes"], "n": ["no"]} == learned.state["searched_label_words"]
    assert readable_prompt(learned).endswith("(label words: p: yes; n: no)")
    scores = used.scores(backbone, learned, dev_records)
    assert float((scores.argmax(1) == torch.tensor(dev_labels)).float().mean()) >= 0.9
    assert learned.metrics["dev_accuracy"] >= 0.9  # the search itself was scored with the searched words
    kept = create("autoprompt", spec, options).fit(
        backbone, train, dev, progress=lambda *a: None, should_stop=lambda: False
    )
    assert kept.verbalizer == {"p": ["red"], "n": ["blue"]} and "searched_label_words" not in kept.state
    with pytest.raises(ValueError, match="use_label_words must be 0"):
        create("autoprompt", spec, {"use_label_words": -1})


@pytest.mark.parametrize(
    "manual, expected",
    [
        ("{text} It was [MASK]", "{text} [T*2] [MASK]"),
        ("review : {text} so it was [MASK] !", "review : {text} [T*3] [MASK] !"),
        ("{text}. It was [MASK]", "{text}[T*3] [MASK]"),
        ("{text}[MASK]", None),  # no words before the label slot: the default template instead
    ],
)
def test_a_manual_template_becomes_triggers_that_start_where_it_is(manual, expected):
    backbone = tiny_backbone("gpt2")
    start = triggers_from(backbone, Template.parse(manual))
    if expected is None:
        assert start is None
        return
    source, ids = start
    assert source == expected
    records = [{"text": "the movie was fun"}, {"text": "a bad plot"}]
    verb = Verbalizer.from_mapping({"p": ["great"], "n": ["not good"]}, ["p", "n"])
    as_manual = build_plan(backbone, Template.parse(manual), verb, ["p", "n"]).encode(backbone, 1, records, ())
    plan = build_plan(backbone, Template.parse(source), verb, ["p", "n"])
    as_triggers = plan.encode(backbone, 1, records, ids)
    assert as_manual.input_ids.tolist() == as_triggers.input_ids.tolist()  # the very same first prompt


def test_the_search_starts_from_the_best_manual_template_and_keeps_it_unless_dev_says_better(planted):
    backbone, _ = planted
    records, labels = planted_task(16, 3)
    dev_records, dev_labels = planted_task(16, 4)
    spec = yes_no_spec("{text} It was [MASK]", "{text} so the movie was [MASK]")
    method = create("autoprompt", spec, {"max_steps": 2, "num_candidates": 2, "batch_size": 8})
    dev = dataset(dev_records, dev_labels)
    best = method.best_manual(backbone, dev, lambda: False).template
    learned = method.fit(backbone, dataset(records, labels), dev, progress=no_progress, should_stop=lambda: False)
    source, init = triggers_from(backbone, Template.parse(best))
    assert learned.template == source and learned.state["history"][0]["tokens"] != []
    start = discrete_scores(
        backbone, method.learned(backbone, source, state={"trigger_ids": init}), dev_records
    ).argmax(1)
    start_acc = float((start == torch.tensor(dev_labels)).float().mean())
    assert learned.metrics["dev_accuracy"] >= start_acc  # the manual start is kept unless dev says better
    off = create(
        "autoprompt", spec, {"max_steps": 1, "num_candidates": 2, "init_from_template": False, "n_triggers": 3}
    )
    assert not off.starts_from_template(backbone, ["text"])
    assert off.starting_point(backbone, ["text"], None)[0] == "{text} [T*3] [MASK]"
