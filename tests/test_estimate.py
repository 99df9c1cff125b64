"""The expected-cost model (core/runs/estimate.py): units costed as the engine runs them, rates remembered in the real
store after real runs, the probe on a tiny real model, cheapest-first launch, and progress placed in the plan."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.app.service import Workspace
from core.compare import Unit, method_options, prompt_spec, run_unit, tuning
from core.data import load_dataset, split_dataset
from core.engine.templates import Template
from core.methods import create
from core.runs import estimate
from core.runs.estimate_tokens import CACHED_TEXT, ROW_TOKENS
from core.runs.runner import RunExecutor
from core.runs.store import RunStore
from tests.test_workspace import ALICE, request, tiny_csv, wait_all
from tests.tiny_models import save_tiny, tiny_backbone
from tests.worker_threads import ThreadLauncher

METHODS = ["manual", "baseline", "linear_probe", "autoprompt", "ptuning", "ptuning_v2", "prompt_tuning"]


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory) -> Path:
    return save_tiny("gpt2", tmp_path_factory.mktemp("models") / "tiny-gpt2")


def tiny_split():
    """A 30-row two-label split and two templates."""
    dataset = load_dataset(tiny_csv(30), text_col="text", label_col="label")
    split = split_dataset(dataset, test_size=0.5, dev_size=0.2, seed=0)
    spec = prompt_spec(dataset, ["{text} It was [MASK]", "{text} overall [MASK]"], None)
    return split, spec


@pytest.fixture(scope="module")
def data():
    return tiny_split()


def units(methods=METHODS, *, tune: bool = True, max_steps: int = 30, k_shot: int | None = 4) -> list[Unit]:
    return [Unit(m, 0, method_options(m, {}, max_steps=max_steps), k_shot, tune) for m in methods]


def test_a_unit_costs_what_its_phases_do_and_tuning_counts_the_tuners_trials(data) -> None:
    split, spec = data
    rates = estimate.rates_for(METHODS)
    tuned = estimate.estimate_comparison(units(), spec, split, rates)
    plain = estimate.estimate_comparison(units(tune=False), spec, split, rates)
    assert tuned.total == pytest.approx(sum(u.seconds for u in tuned.units)) and tuned.source == estimate.PRIOR
    by = {u.method: u for u in tuned.units}
    # P-tuning searches the learning rate (3 values) then the encoder (2 more): 5 trials to their rung, the grid's
    # expected extensions (one stage), then one continued
    ptuning = create("ptuning", spec, units(["ptuning"])[0].options)
    trials = [s for s in by["ptuning"].stages if s.kind == estimate.TRIAL]
    assert len(trials) == 2 + sum(len(d.choices) - 1 for d in ptuning.search_space({})) == 6
    assert {s.end for s in trials[:-1]} == {tuning.rung(ptuning.config)}
    assert trials[-1].end == 2 * tuning.rung(ptuning.config)  # the two extensions there can be, sharing one stage
    (cont,) = [s for s in by["ptuning"].stages if s.kind == estimate.CONTINUE]
    assert (cont.start, cont.end) == (tuning.rung(ptuning.config), 30)
    untuned = {u.method: u for u in plain.units}
    for m in ("autoprompt", "ptuning", "ptuning_v2", "prompt_tuning"):
        assert by[m].seconds > untuned[m].seconds  # tuning costs more than one fit, never less
    for m in ("manual", "baseline", "linear_probe"):  # nothing to tune
        assert by[m].seconds == pytest.approx(untuned[m].seconds)
    # manual scores every template on dev and test; the majority class costs next to nothing
    (test,) = [s for s in by["manual"].stages if s.kind == estimate.TEST]
    assert test.end == len(spec.templates) * len(split.test)
    assert by["baseline"].seconds < by["linear_probe"].seconds < by["manual"].seconds
    more_steps = estimate.estimate_comparison(units(["ptuning"], max_steps=90), spec, split, rates)
    assert more_steps.total > 2 * by["ptuning"].seconds  # steps cost in proportion


def test_cheapest_first_puts_the_quick_answers_before_the_learned_methods(data) -> None:
    split, spec = data
    plan = units()
    expected = estimate.estimate_comparison(plan, spec, split, estimate.rates_for(METHODS))
    order = [u.method for u in estimate.cheapest_first(plan, expected)]
    assert order[:3] == ["baseline", "manual", "linear_probe"]  # the reference first, then by expected cost
    seconds = {u.method: u.seconds for u in expected.units}
    assert seconds["linear_probe"] < seconds["manual"]  # cheaper alone, but it would pay for the texts' states
    assert [seconds[m] for m in order[2:]] == sorted(seconds[m] for m in order[2:])


def test_fine_tuning_references_run_after_every_prompt_method(data) -> None:
    """However cheap a fine-tune is estimated (3 steps, against the prompt methods' 60), it runs last: the
    provisional verdict on the prompts never waits for the yardstick. What each reference adds is its units' part."""
    split, spec = data
    references = ["finetune", "prompt_finetune", "lora"]
    plan = units(references, max_steps=3) + units(METHODS, max_steps=60)
    expected = estimate.estimate_comparison(plan, spec, split, estimate.rates_for(METHODS + references))
    seconds = {u.method: u.seconds for u in expected.units}
    assert min(seconds[m] for m in references) < max(seconds[m] for m in METHODS)  # estimated cheaper than some
    order = [u.method for u in estimate.cheapest_first(plan, expected)]
    assert order[:2] == ["baseline", "manual"] and sorted(order[-3:]) == sorted(references)
    assert [seconds[m] for m in order[-3:]] == sorted(seconds[m] for m in references)  # cheapest first among them
    added = expected.only(references)
    assert added.total == pytest.approx(sum(seconds[m] for m in references)) and len(added.units) == 3
    assert expected.only(METHODS).total + added.total == pytest.approx(expected.total)


def test_store_remembers_and_blends_throughput(tmp_path: Path) -> None:
    with RunStore(tmp_path / "runs.db") as store:
        assert store.throughput("default", "cpu") == {}
        store.record_throughput("default", "cpu", "ptuning", work_seconds=0.02, example_seconds=0.01)
        store.record_throughput("default", "cpu", "ptuning", work_seconds=0.04, example_seconds=0.03)
        store.record_throughput("default", "cpu", "manual", work_seconds=None, example_seconds=0.05)
        store.record_throughput("default", "cuda:0", "manual", work_seconds=None, example_seconds=0.001)
        got = store.throughput("default", "cpu")
    assert got["ptuning"] == {"work_seconds": pytest.approx(0.03), "example_seconds": pytest.approx(0.02), "runs": 2}
    assert got["manual"]["work_seconds"] is None and set(got) == {"ptuning", "manual"}
    rates = estimate.rates_for(["ptuning", "manual", "prompt_tuning"], remembered=got)
    assert rates["ptuning"].source == rates["manual"].source == estimate.MEASURED
    assert rates["ptuning"].work_seconds == pytest.approx(0.03)
    assert rates["prompt_tuning"].source == estimate.DERIVED  # scaled from the measured methods by the priors
    scale = estimate.PRIORS["prompt_tuning"].work / estimate.PRIORS["ptuning"].work  # per token, by the priors
    assert rates["prompt_tuning"].work_seconds == pytest.approx(0.03 * scale)
    assert rates["prompt_tuning"].runs == 3  # the finished runs it rests on: ptuning's two and manual's one


def test_a_methods_own_runs_are_drawn_toward_the_probe_less_the_more_there_are(tmp_path: Path) -> None:
    """One run's time moves by 20 % between identical runs here, so its rates are drawn toward the probe's (times
    the method's prior), the probe weighing as `PROBE_RUNS` runs; with many runs the method's own rates rule. A
    probe the store remembers serves when none was taken in this process, and is never read as a method."""
    probed = estimate.Probe(example_seconds=0.002, work_seconds=0.004, seconds=1.0)
    prior = estimate.PRIORS["ptuning"]
    from_probe = (prior.work * probed.work_seconds, prior.example * probed.example_seconds)
    for runs in (1, 9):
        mine = {"ptuning": {"work_seconds": 0.02, "example_seconds": 0.01, "runs": runs}}
        rate = estimate.rates_for(["ptuning"], remembered=mine, probed=probed)["ptuning"]
        weight = runs / (runs + estimate.PROBE_RUNS)
        assert rate.source == estimate.MEASURED and rate.runs == runs
        assert rate.work_seconds == pytest.approx(0.02**weight * from_probe[0] ** (1 - weight))
        assert rate.example_seconds == pytest.approx(0.01**weight * from_probe[1] ** (1 - weight))
        alone = estimate.rates_for(["ptuning"], remembered=mine)["ptuning"]  # no probe: its own rates as measured
        assert (alone.work_seconds, alone.example_seconds) == (0.02, 0.01)
    with RunStore(tmp_path / "runs.db") as store:
        store.record_throughput("m", "cpu", estimate.PROBE_KEY, work_seconds=0.004, example_seconds=0.002)
        kept = store.throughput("m", "cpu")
    rates = estimate.rates_for(["prompt_tuning", "manual"], remembered=kept)
    assert {r.source for r in rates.values()} == {estimate.PROBED}  # not "measured (other methods)"
    assert rates["prompt_tuning"].work_seconds == pytest.approx(estimate.PRIORS["prompt_tuning"].work * 0.004)


def test_the_probe_times_a_real_model_once_per_backbone_and_device(data) -> None:
    split, spec = data
    backbone = tiny_backbone("gpt2")
    first = estimate.probe(backbone, split.dev.records, spec.templates[0])
    assert first.example_seconds > 0 and first.work_seconds > 0
    assert estimate.probe(backbone, split.dev.records, spec.templates[0]) is first  # cached: no second timing
    assert estimate.cached_probe(backbone) is first
    rates = estimate.rates_for(["manual", "ptuning"], probed=first)
    assert rates["manual"].source == estimate.PROBED
    assert rates["manual"].example_seconds == pytest.approx(first.example_seconds * estimate.PRIORS["manual"].example)
    words = estimate.estimate_comparison(units(["manual"]), spec, split, rates).words("cpu")
    assert words.startswith("about ") and "on this CPU, from a probe of this machine" in words


def test_the_probe_times_the_same_work_whatever_the_datas_length() -> None:
    """The probe a server takes on its first dataset sets every later estimate there, so it times rows of the data's
    words cut to one length: 10-word and 200-word datasets give rows of the same tokens, and the probe of each
    counts the same tokens a row (timed on the rows as they were, long uneven ones read 1.4x slower per token)."""
    from core.runs.estimate_rates import PROBE_TOKENS, SCORE_ROWS, _probe_rows, _probes  # noqa: PLC0415

    backbone = tiny_backbone("gpt2")
    counted = []
    for words in (10, 200):
        split, spec = dataset_of(words)
        rows = _probe_rows(backbone.tokenizer, split.train.records)
        lengths = [len(backbone.tokenizer(r["text"], add_special_tokens=False)["input_ids"]) for r in rows]
        assert len(rows) == SCORE_ROWS and all(abs(n - PROBE_TOKENS) <= 2 for n in lengths), lengths
        assert set(rows[0]) == set(split.train.records[0])
        _probes.clear()
        counted.append(estimate.probe(backbone, split.train.records, spec.templates[0]).tokens)
    assert counted[0] == pytest.approx(counted[1], abs=2)
    _probes.clear()


def test_a_finished_unit_measures_its_own_rates(data) -> None:
    split, spec = data
    backbone = tiny_backbone("gpt2")
    unit = Unit("prompt_tuning", 0, method_options("prompt_tuning", {"n_tokens": 2}, max_steps=6), 4, True)
    result = run_unit(backbone, split, spec, unit)
    rates = estimate.measured(result, unit.options)
    assert rates["work_seconds"] > 0 and rates["example_seconds"] > 0
    manual_unit = Unit("manual", 0, {}, 4)
    manual = run_unit(backbone, split, spec, manual_unit)
    tokens = estimate.measure_tokens(backbone.tokenizer, split.train.records, spec.templates)
    own = estimate.measured(manual, {}, tokens=tokens)
    assert own["work_seconds"] is None  # nothing trained: scoring only
    # its rate, put back into the model, gives the very run it came from (every template, dev and test)
    took = manual["train_seconds"] + manual["test_seconds"] + manual["calibration_seconds"]
    again = estimate.estimate_unit(
        manual_unit,
        spec,
        manual["n_train"],
        manual["n_dev"],
        len(split.test),
        estimate.Throughput(0.0, own["example_seconds"], estimate.MEASURED),
        tokens,
    )
    assert again.seconds - estimate.UNIT_OVERHEAD_S == pytest.approx(took, rel=0.01)
    assert estimate.measured(result, unit.options, resumed=True) is None  # a resumed run's time covers part only


def test_launch_queues_cheapest_first_with_estimates_and_remembers_speed(tmp_path: Path, tiny_gpt2: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    executor = RunExecutor(home, RunStore(home / "runs.db"))
    ws = Workspace(home, launcher=ThreadLauncher(home / "runs.db", executor.job), devices=["cpu"])
    methods = {"prompt_tuning": {"n_tokens": 2}, "manual": {}, "linear_probe": {}, "baseline": {}}
    req = request(tiny_gpt2, methods=methods, seeds=[0], max_steps=4)
    group = ws.user(ALICE).launch(req)
    runs = sorted(wait_all(ws, group), key=lambda r: r["created"])
    assert all(r["status"] == "succeeded" for r in runs)
    assert [r["method"] for r in runs[:2]] == ["baseline", "manual"]  # what trains nothing first
    seconds = [r["estimate"]["seconds"] for r in runs[2:]]
    assert seconds == sorted(seconds)  # then created, so claimed, in order of expected cost
    assert [r["started"] for r in runs] == sorted(r["started"] for r in runs)  # claimed in that order
    assert all(r["estimate"]["seconds"] > 0 and r["estimate"]["stages"] for r in runs)
    remembered = ws.store.throughput(str(tiny_gpt2), "cpu")
    assert {"manual", "linear_probe", "prompt_tuning"} <= set(remembered)
    ctx = ws.user(ALICE).context(group)
    again = ws.user(ALICE).estimate(req, ctx.split, ctx.spec)
    assert {u.method: u.source for u in again.units}["prompt_tuning"] == estimate.MEASURED
    ws.close()
    executor.store.close()


def test_the_probe_is_remembered_for_a_restarted_server(tmp_path: Path, tiny_gpt2: Path, data) -> None:
    """A server with the backbone loaded probes it once and keeps the probe in the store: after a restart, with the
    backbone not loaded, the estimate still rests on that probe of this machine, not on a guess from its size."""
    split, spec = data
    req = request(tiny_gpt2, methods={"manual": {}, "prompt_tuning": {}}, seeds=[0], max_steps=4)
    ws = Workspace(tmp_path / "home")
    ws.pool.get(str(tiny_gpt2))
    first = ws.user(ALICE).estimate(req, split, spec)
    assert first.source == estimate.PROBED and estimate.PROBE_KEY in ws.store.throughput(str(tiny_gpt2), "cpu")
    ws.close()
    again = Workspace(tmp_path / "home")
    assert again.pool.peek(str(tiny_gpt2)) is None
    after = again.user(ALICE).estimate(req, split, spec)
    assert after.source == estimate.PROBED and "from a probe of this machine" in after.words("cpu")
    assert after.total == pytest.approx(first.total, rel=1e-6)
    again.close()


def test_progress_is_placed_in_the_plan_and_only_moves_forward(data) -> None:
    split, spec = data
    (unit,) = estimate.estimate_comparison(
        units(["ptuning"], max_steps=30), spec, split, estimate.rates_for(["ptuning"])
    ).units
    stages = unit.to_json()["stages"]
    at = tuning.rung(create("ptuning", spec, {"max_steps": 30}).config)
    seen = [("tuning on dev, trial 1 of 5: lr 0.003 · training", 0, 30)]
    for trial in range(1, 6):
        label = f"tuning on dev, {tuning.trial_words(trial, 5)}: lr 0.003"
        seen += [(f"{label} · training", s, 30) for s in range(1, at + 1)]
        seen.append((f"{label} · evaluating on dev", at, 30))
    going_on = f"tuning on dev: {tuning.continuing_words(5, at, 'lr 0.003')} · training"
    seen += [(going_on, s, 30) for s in range(at, 31)]
    seen += [("scoring the test split", n, 60) for n in range(0, 61, 15)]
    seen.append(("saving the prompt files", 60, 60))
    shares = [estimate.progress_fraction(stages, *row) for row in seen]
    assert all(s is not None for s in shares)
    assert shares == sorted(shares) and shares[0] == 0.0 and shares[-1] == pytest.approx(1.0)
    assert estimate.progress_fraction(stages, "", 0, 0) is None


# -- tokens (issue 31) -----------------------------------------------------------------------------------------


def dataset_of(words: int, n: int = 40):
    """A two-label dataset whose rows are `words` words long, split as the app splits."""
    import pandas as pd  # noqa: PLC0415

    from core.data import dataset_from_frame  # noqa: PLC0415

    texts = [" ".join(["great" if i % 2 else "awful"] + [f"w{j}" for j in range(words - 1)]) for i in range(n)]
    frame = pd.DataFrame({"text": texts, "label": ["pos" if i % 2 else "neg" for i in range(n)]})
    dataset = dataset_from_frame(frame, text_col="text", label_col="label")
    return split_dataset(dataset, test_size=0.5, dev_size=0.2, seed=0), prompt_spec(
        dataset, ["{text} It was [MASK]"], None
    )


def test_rows_are_measured_with_the_backbones_tokenizer() -> None:
    backbone = tiny_backbone("gpt2")
    split, spec = dataset_of(30)
    tokens = estimate.measure_tokens(backbone.tokenizer, split.train.records, spec.templates)
    assert tokens.measured and tokens.causal
    direct = len(backbone.tokenizer(split.train.records[0]["text"], add_special_tokens=False)["input_ids"])
    assert tokens.text == pytest.approx(direct, abs=2)  # every row alike: the mean is any row's count
    assert 2 <= tokens.templates[0] <= 6  # " It was" and the label slot
    assert "tokens a row" in tokens.words() and "guessed" not in tokens.words()
    assert "guessed" in estimate.guess_tokens(split.train.records, spec.templates).words()


def test_longer_rows_cost_proportionally_more_where_the_whole_text_runs_every_pass() -> None:
    backbone = tiny_backbone("gpt2")
    rates = estimate.rates_for(["manual", "prompt_tuning", "ptuning"])
    seconds = {}
    for words in (10, 40):
        split, spec = dataset_of(words)
        tokens = estimate.measure_tokens(backbone.tokenizer, split.train.records, spec.templates)
        plan = units(["manual", "prompt_tuning", "ptuning"], max_steps=30)
        got = estimate.estimate_comparison(plan, spec, split, rates, tokens)
        seconds[words] = {u.method: u.seconds - estimate.UNIT_OVERHEAD_S for u in got.units}
        seconds[words]["tokens"] = tokens.prompt(0)
    ratio = seconds[40]["tokens"] / seconds[10]["tokens"]
    assert ratio > 2.5
    # every pass runs the whole prompt: cost in proportion to its tokens (manual's rows cost `row` tokens more)
    assert seconds[40]["prompt_tuning"] / seconds[10]["prompt_tuning"] == pytest.approx(ratio, rel=0.15)
    row = estimate.PRIORS["manual"].row
    manual = (seconds[40]["tokens"] + row) / (seconds[10]["tokens"] + row)
    assert seconds[40]["manual"] / seconds[10]["manual"] == pytest.approx(manual, rel=0.15) and manual < ratio
    # P-tuning reuses the text's key/values: the text is paid once, its steps run the tokens after it only
    assert 1.0 < seconds[40]["ptuning"] / seconds[10]["ptuning"] < ratio / 2


def test_autoprompt_is_counted_by_its_triggers_and_a_tenth_of_its_cached_text() -> None:
    """Each AutoPrompt candidate pass runs its triggers and label slot and reads the cached text: the same search
    took 62 s with 6 triggers and 40 s with 2 on rows of the same length (`bench_estimate.py`). Its estimate follows
    the trigger count, and grows with the text, but far less than prompt tuning's, which runs the whole prompt."""
    backbone = tiny_backbone("gpt2")
    rates = estimate.rates_for(["autoprompt", "prompt_tuning"])
    seconds = {}
    for words in (10, 40):
        split, spec = dataset_of(words)
        tokens = estimate.measure_tokens(backbone.tokenizer, split.train.records, spec.templates)
        got = estimate.estimate_comparison(units(["autoprompt", "prompt_tuning"]), spec, split, rates, tokens)
        seconds[words] = [u.seconds - estimate.UNIT_OVERHEAD_S for u in got.units]
    grown = [long / short for long, short in zip(seconds[40], seconds[10], strict=True)]
    assert 1.0 < grown[0] < 0.7 * grown[1] and grown[1] > 2.5

    split, spec = dataset_of(10)
    tokens = estimate.measure_tokens(backbone.tokenizer, split.train.records, spec.templates)
    assert tokens.anchors == (2.0,)  # "{text} It was [MASK]": AutoPrompt starts from 2 triggers, "It was"

    def searched(template: str) -> float:
        unit = Unit("autoprompt", 0, method_options("autoprompt", {"template": template}, max_steps=30), 4, False)
        got = estimate.estimate_comparison([unit], spec, split, rates, tokens)
        return got.units[0].seconds - estimate.UNIT_OVERHEAD_S

    per_row = [n + ROW_TOKENS + CACHED_TEXT * tokens.text for n in (6, 2)]
    assert searched("{text} [T*6] [MASK]") / searched("{text} [T*2] [MASK]") == pytest.approx(
        per_row[0] / per_row[1], rel=0.02
    )
    assert searched("{text} [T*2] [MASK]") == pytest.approx(
        estimate.estimate_comparison(units(["autoprompt"], tune=False), spec, split, rates, tokens).units[0].seconds
        - estimate.UNIT_OVERHEAD_S,
        rel=0.02,
    )  # starting from the user's one template: its 2 words are the triggers


def test_autoprompts_rate_is_learned_at_the_triggers_it_searched(tmp_path) -> None:
    """A finished AutoPrompt run teaches its rate with the trigger count it actually searched (its template, kept in
    the result), not the mean of the user's templates that the estimate before the run had to assume."""
    backbone = tiny_backbone("gpt2")
    split, spec = dataset_of(10)
    spec = prompt_spec(split.train, ["{text} It was [MASK]", "{text} All in all, it was [MASK]"], None)
    tokens = estimate.measure_tokens(backbone.tokenizer, split.train.records, spec.templates)
    assert tokens.anchors[0] < tokens.anchors[1]
    unit = Unit("autoprompt", 0, method_options("autoprompt", {}, max_steps=2), 4, False)
    result = run_unit(backbone, split, spec, unit)
    searched = result["rows"][0]["template"]
    learned = estimate.measured(result, unit.options, tokens=tokens)
    named = estimate.measured(result, {**unit.options, "template": searched}, tokens=tokens)
    assert learned == named  # the result's template counts, whatever the options said
    blind = {**result, "rows": [{**result["rows"][0], "template": None}]}
    assumed = estimate.measured(blind, unit.options, tokens=tokens)  # the mean of both templates' words
    n = Template.parse(searched).n_trigger
    ratio = (n + ROW_TOKENS + CACHED_TEXT * tokens.text) / (
        sum(tokens.anchors) / 2 + ROW_TOKENS + CACHED_TEXT * tokens.text
    )
    assert assumed["work_seconds"] / learned["work_seconds"] == pytest.approx(ratio, rel=0.05)


TWO_ANCHORS = ["{text} It was [MASK]", "{text} All in all, it was [MASK]"]  # 2 and 6 words before the label slot


def test_autoprompt_is_also_estimated_as_if_dev_picks_each_template() -> None:
    """AutoPrompt starts from the manual template best on dev, which the launch cannot know: its estimate keeps what
    it costs if dev picks each template (each as dear as a search fixed at that template's trigger count), its
    range spans them, and `as_chosen` swaps in the one manual picked. Other methods keep one number."""
    backbone = tiny_backbone("gpt2")
    split, _ = dataset_of(10)
    spec = prompt_spec(split.train, TWO_ANCHORS, None)
    tokens = estimate.measure_tokens(backbone.tokenizer, split.train.records, spec.templates)
    assert tokens.anchors == (2.0, 6.0)
    rates = estimate.rates_for(["autoprompt", "ptuning"])
    got = estimate.estimate_comparison(units(["autoprompt", "ptuning"]), spec, split, rates, tokens)
    ap, pt = got.units
    assert pt.by_template == {} and "by_template" not in pt.to_json()
    alternatives = ap.to_json()["by_template"]
    assert list(alternatives) == list(spec.templates)
    short, long = (alternatives[t]["seconds"] for t in TWO_ANCHORS)
    assert short < ap.seconds < long  # the launch's number assumes the mean of the two
    for template, n in zip(TWO_ANCHORS, (2, 6), strict=True):
        fixed = Unit(
            "autoprompt",
            0,
            method_options("autoprompt", {"template": f"{{text}} [T*{n}] [MASK]"}, max_steps=30),
            4,
            True,
        )
        alone = estimate.estimate_comparison([fixed], spec, split, rates, tokens).units[0]
        assert alternatives[template]["seconds"] == pytest.approx(alone.seconds, rel=0.01)
        assert [s["kind"] for s in alternatives[template]["stages"]] == [s.kind for s in ap.stages]
    assert ap.low <= alternatives[TWO_ANCHORS[0]]["low"] and ap.high >= alternatives[TWO_ANCHORS[1]]["high"]
    stored = ap.to_json()
    chosen = estimate.as_chosen(stored, TWO_ANCHORS[0])
    assert chosen["seconds"] == short and chosen["chosen"] == TWO_ANCHORS[0] and chosen["stages"] != stored["stages"]
    assert estimate.as_chosen(stored, None) is stored and estimate.as_chosen(stored, "{text} Other [MASK]") is stored
    assert estimate.as_chosen(pt.to_json(), TWO_ANCHORS[0]) == pt.to_json()
    words = got.added_words()  # the Train page's "What each method adds"
    spread = f"({estimate.fmt_minutes(short)} to {estimate.fmt_minutes(long)}, by the template dev picks)"
    assert f"AutoPrompt about {estimate.fmt_minutes(ap.seconds)} {spread}" in words
    assert f"P-tuning about {estimate.fmt_minutes(pt.seconds)}" in words and words.count("dev picks") == 1


def test_once_manual_has_chosen_the_pages_show_autoprompts_estimate_for_that_template(
    tmp_path: Path, tiny_gpt2: Path
) -> None:
    """A real comparison of manual and AutoPrompt: the run rows the pages read carry AutoPrompt's estimate for the
    template the manual run picked on dev (the same seed and K), not the launch's mean of the templates."""
    home = tmp_path / "home"
    home.mkdir()
    executor = RunExecutor(home, RunStore(home / "runs.db"))
    ws = Workspace(home, launcher=ThreadLauncher(home / "runs.db", executor.job), devices=["cpu"])
    methods = {"manual": {}, "autoprompt": {"num_candidates": 2}}
    group = ws.user(ALICE).launch(request(tiny_gpt2, methods=methods, seeds=[0], max_steps=2, templates=TWO_ANCHORS))
    runs = {r["method"]: r for r in wait_all(ws, group)}
    assert {r["status"] for r in runs.values()} == {"succeeded"}
    picked = ws.store.get_run(runs["manual"]["id"])["result"]["rows"][0]["template"]
    launched = ws.store.get_run(runs["autoprompt"]["id"])["config"]["estimate"]
    shown = runs["autoprompt"]["estimate"]
    assert shown["chosen"] == picked and shown["seconds"] == launched["by_template"][picked]["seconds"]
    assert shown["seconds"] != launched["seconds"]
    ws.close()
    executor.store.close()


def test_per_token_rates_measured_on_short_rows_transfer_to_long_ones() -> None:
    """A finished run on short rows leaves per-token rates; the estimate of the same unit on rows four times longer
    from them is the measured rate times the new tokens, not the short run's seconds."""
    backbone = tiny_backbone("gpt2")
    short, spec = dataset_of(8)
    tokens = estimate.measure_tokens(backbone.tokenizer, short.train.records, spec.templates)
    unit = Unit("prompt_tuning", 0, method_options("prompt_tuning", {"n_tokens": 2}, max_steps=6), 4, False)
    result = run_unit(backbone, short, spec, unit)
    rates = estimate.measured(result, unit.options, tokens=tokens)
    naive = estimate.measured(result, unit.options, tokens=estimate.TokenStats(tokens.text * 4, tokens.templates))
    assert rates["work_seconds"] == pytest.approx(4 * naive["work_seconds"], rel=0.35)  # per token: 4x the tokens
    remembered = {"prompt_tuning": {**rates, "runs": 1}}
    known = estimate.rates_for(["prompt_tuning"], remembered=remembered)
    long, _ = dataset_of(32)
    long_tokens = estimate.measure_tokens(backbone.tokenizer, long.train.records, spec.templates)
    at_short = estimate.estimate_comparison([unit], spec, short, known, tokens).total
    at_long = estimate.estimate_comparison([unit], spec, long, known, long_tokens).total
    overhead = estimate.UNIT_OVERHEAD_S
    assert (at_long - overhead) / (at_short - overhead) == pytest.approx(
        long_tokens.prompt(0) / tokens.prompt(0), rel=0.15
    )


def test_the_range_narrows_once_runs_are_measured_and_the_words_say_what_it_rests_on(data) -> None:
    split, spec = data
    plan = units(["manual", "ptuning"])
    prior = estimate.estimate_comparison(plan, spec, split, estimate.rates_for(["manual", "ptuning"]))
    probe = estimate.Probe(example_seconds=0.002, work_seconds=0.002, seconds=1.0, tokens=30)
    probed = estimate.estimate_comparison(plan, spec, split, estimate.rates_for(["manual", "ptuning"], probed=probe))
    one = {
        "manual": {"work_seconds": None, "example_seconds": 0.001, "runs": 1},
        "ptuning": {"work_seconds": 0.002, "example_seconds": 0.001, "runs": 1},
    }
    four = {m: {**r, "runs": 4} for m, r in one.items()}
    after_one = estimate.estimate_comparison(
        plan, spec, split, estimate.rates_for(["manual", "ptuning"], remembered=one)
    )
    after_four = estimate.estimate_comparison(
        plan, spec, split, estimate.rates_for(["manual", "ptuning"], remembered=four)
    )

    def width(e):
        assert e.low < e.total < e.high
        return (e.high - e.low) / e.total

    assert width(prior) > width(probed) > width(after_one) > width(after_four)
    assert "rough guess" in prior.words("cpu") and " to " in prior.words("cpu")  # a range while uncertain
    assert "from a probe of this machine" in probed.words("cpu")
    assert "from 2 finished runs on this machine" in after_one.words("cpu")
    assert "from 8 finished runs on this machine" in after_four.words("cpu")
    assert " to " not in after_four.range_words()  # narrow enough: the one number
    derived = estimate.estimate_comparison(
        units(["prompt_tuning"]), spec, split, estimate.rates_for(["prompt_tuning"], remembered=one)
    )
    assert "from 2 finished runs of other methods" in derived.words("cpu")
    stored = after_one.units[0].to_json()  # the Runs page keeps the very number (and range) the Train page showed
    assert stored["seconds"] == after_one.units[0].seconds and stored["low"] < stored["seconds"] < stored["high"]


def test_a_later_unit_reads_what_an_earlier_one_left_in_the_prefix_cache(data) -> None:
    """Two seeds of P-tuning share the test split's texts: the second pays for them no more; manual's templates
    leave the linear probe's first-template rows cached. The order is the queue's (`cheapest_first`)."""
    split, spec = data
    rates = estimate.rates_for(["ptuning", "manual", "linear_probe"])
    two = [Unit("ptuning", s, method_options("ptuning", {}, max_steps=30), 4, False) for s in (0, 1)]
    got = estimate.estimate_comparison(two, spec, split, rates)
    test = [next(s.seconds for s in u.stages if s.kind == estimate.TEST) for u in got.units]
    assert test[1] < test[0]
    alone = estimate.estimate_comparison(units(["linear_probe"]), spec, split, rates).total
    after_manual = estimate.estimate_comparison(units(["linear_probe", "manual"]), spec, split, rates)
    assert after_manual.units[0].seconds < alone


def test_a_methods_seeds_keep_their_order_though_the_later_one_is_estimated_cheaper(data) -> None:
    """The second seed is cheaper only for the texts the first leaves cached: ranking it first would undo the order
    its estimate assumed (and deal torchrun's processes other units than the plan said)."""
    split, spec = data
    plan = [Unit(m, s, method_options(m, {}, max_steps=30), 4, False) for m in ("manual", "ptuning") for s in (0, 1)]
    expected = estimate.estimate_comparison(plan, spec, split, estimate.rates_for(["manual", "ptuning"]))
    assert expected.units[1].seconds < expected.units[0].seconds  # manual seed 1 reads seed 0's cached texts
    order = [(u.method, u.seed) for u in estimate.cheapest_first(plan, expected)]
    assert order == [("manual", 0), ("manual", 1), ("ptuning", 0), ("ptuning", 1)]
