"""The Runs, Compare and Predict pages' words: phase progress, honest times, queue ETA, stable card order, the
verdict, file sizes."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from core.app.views import (
    card_order,
    curve_frame,
    finished_text,
    fmt_bytes,
    path_bytes,
    phase_progress,
    provisional_verdict,
    queue_eta,
    spread_text,
    steps_text,
    verdict,
)
from core.compare import tuning
from core.progress import CONTINUED_METRIC, TRIAL_METRIC


def run(status: str, **kw) -> dict:
    base = {"status": status, "phase": "", "progress_step": 0, "progress_total": 0, "eta_seconds": None}
    return {**base, "method": "m", "seed": 0, "created": 0.0, "started": None, "finished": None, **kw}


def test_a_card_says_which_phase_a_run_is_in_with_its_own_count() -> None:
    assert phase_progress(run("queued")) == (None, "waiting for a worker")
    frac, text = phase_progress(run("running", phase="training", progress_step=20, progress_total=200, eta_seconds=95))
    assert frac == 0.1 and text == "training · step 20/200 · ETA 1 min 35 s"
    frac, text = phase_progress(run("running", phase="scoring the test split", progress_step=600, progress_total=2400))
    assert frac == 0.25 and text == "scoring the test split · rows 600/2,400"
    _, text = phase_progress(
        run("running", phase="training, resumed from step 40", progress_step=41, progress_total=50)
    )
    assert text.startswith("training, resumed from step 40 · step 41/50")
    _, text = phase_progress(run("running", phase="evaluating on dev", progress_step=30, progress_total=30))
    assert text == "evaluating on dev after step 30/30"  # not a bar sitting at 100 % without saying why
    trial = "tuning on dev, trial 2 of 5: lr 0.01, encoder lstm"  # core.compare.tuning: each trial's own phases
    frac, text = phase_progress(run("running", phase=f"{trial} · training", progress_step=6, progress_total=60))
    assert frac == 0.1 and text == f"{trial} · training · step 6/60"
    _, text = phase_progress(run("running", phase=f"{trial} · evaluating on dev", progress_step=9, progress_total=60))
    assert text == f"{trial} · evaluating on dev after step 9/60"
    _, text = phase_progress(run("running", phase="training", progress_step=3, progress_total=9, stopping=True))
    assert text == "stopping after this step…"


def test_a_finished_card_reports_wall_training_and_scoring_time_apart() -> None:
    done = run("succeeded", started=100.0, finished=790.0, train_seconds=93.1, test_seconds=590.0)
    assert finished_text(done) == "took 11 min 30 s · training 1 min 33 s · scoring the test split 9 min 50 s"
    resumed = {**done, "resumed_from_step": 12}
    assert finished_text(resumed).endswith(" · resumed after an interruption, from step 12")  # a real resume
    tuned = {**done, "continued_from_step": 17, "resumed_from_step": 0}  # tuning went on with its best trial
    assert finished_text(tuned).endswith(" · continued from its best trial at step 17")
    assert "resumed" not in finished_text(tuned)


def test_while_tuning_the_bar_moves_on_across_trials_and_the_verdict_names_the_trial_as_the_card_does() -> None:
    """Each trial counts its steps from 1 again; the bar shows the whole unit's plan, so it never restarts."""
    stages = [{"kind": "trial", "seconds": 10.0, "start": 0, "end": 10}] * 3 + [
        {"kind": "continue", "seconds": 20.0, "start": 10, "end": 30},
        {"kind": "test", "seconds": 10.0, "start": 0, "end": 100},
    ]
    fills, texts = [], []
    phases = [(f"tuning on dev, {tuning.trial_words(n, 3)}: lr 0.01 · training", s) for n in (1, 2, 3) for s in (1, 9)]
    phases += [(f"tuning on dev: {tuning.continuing_words(2, 10, 'lr 0.01')} · training", s) for s in (11, 29)]
    for phase, step in phases:
        total = 30 if "continuing" in phase else 10
        card = run("running", phase=phase, progress_step=step, progress_total=total, estimate={"stages": stages})
        fill, text = phase_progress(card)
        fills.append(fill)
        texts.append(text)
    assert fills == sorted(fills) and fills[0] < 0.05 and fills[-1] > 0.8  # one bar over every trial
    assert texts[2] == "tuning on dev, trial 2 of 3: lr 0.01 · training · step 1/10"  # the trial's own count
    assert (
        texts[-1] == "tuning on dev: continuing its best trial (trial 2: lr 0.01) from step 10 · training · step 29/30"
    )
    busy = run("running", method="ptuning", phase=phases[2][0], started=0.0)
    words = provisional_verdict(None, [busy], 10.0)
    assert "P-tuning still tuning on dev (trial 2 of 3)" in words  # the card's words
    going_on = {**busy, "phase": phases[-1][0]}
    assert "P-tuning still tuning on dev (continuing its best trial)" in provisional_verdict(None, [going_on], 10.0)
    assert "P-tuning still training" in provisional_verdict(None, [{**busy, "phase": "training"}], 10.0)


def test_curves_draw_one_line_per_tuning_trial_and_the_continued_winner() -> None:
    """Metric rows as the store keeps them (run, step, t, name, value): a trial's tags share its measurements'
    step and time, so each measurement is named by its trial; the tags themselves are not curves."""
    rows = []
    for t, (trial, step, continued) in enumerate([(1, 1, 0), (1, 2, 0), (2, 1, 0), (2, 2, 0), (2, 3, 1), (2, 4, 1)]):
        rows += [("r1", step, float(t), "loss", 1.0 / (t + 1)), ("r1", step, float(t), TRIAL_METRIC, trial)]
        rows += [("r1", step, float(t), CONTINUED_METRIC, 1)] if continued else []
    rows += [("r1", 2, 1.0, "dev_accuracy", 0.5), ("r1", 2, 3.0, "dev_accuracy", 0.75)]  # one dev score per trial
    rows += [("r2", 1, 9.0, "loss", 0.3)]  # an untuned run: one line, no trial
    metrics = pd.DataFrame(rows, columns=["run", "step", "t", "name", "value"])
    runs = {"r1": {"label": "P-tuning · seed 0"}, "r2": {"label": "Prompt tuning · seed 0"}}
    frame = curve_frame(metrics, runs)
    assert set(frame["name"]) == {"loss", "dev_accuracy"}
    loss = frame[(frame["name"] == "loss") & (frame["run"] == "P-tuning · seed 0")]
    assert loss.groupby("part")["step"].apply(list).to_dict() == {
        "trial 1": [1, 2],
        "trial 2, continued": [1, 2, 3, 4],
    }
    dev = frame[frame["name"] == "dev_accuracy"]
    assert list(dev["part"]) == ["trial 1", "trial 2, continued"] and dev["point"].all()  # points, not a bar
    assert list(frame[frame["run"] == "Prompt tuning · seed 0"]["part"]) == [""] and not loss["point"].any()


def test_queue_eta_uses_finished_runs_of_the_same_method() -> None:
    runs = [
        run("succeeded", method="a", started=0.0, finished=100.0),
        run("running", method="a", started=1000.0, eta_seconds=10.0),
        run("queued", method="a"),
        run("queued", method="b"),
    ]
    eta, unknown = queue_eta(runs, now=1030.0)
    assert eta == (100 - 30) + 100 + 100 and unknown == 0  # b: no finished b yet, so the mean of every finished run
    assert queue_eta([run("queued", method="a")], now=0.0) == (None, 1)


def test_a_run_that_outran_its_estimate_is_unknown_not_about_0_s() -> None:
    runs = [run("succeeded", method="a", started=0.0, finished=100.0), run("running", method="a", started=1000.0)]
    assert queue_eta(runs, now=1300.0) == (None, 1)  # 300 s in, estimate 100 s, no phase ETA: not "0 s"
    with_phase = [runs[0], {**runs[1], "eta_seconds": 42.0}]
    assert queue_eta(with_phase, now=1300.0) == (42.0, 0)
    runs.append(run("queued", method="a"))
    assert queue_eta(runs, now=1300.0) == (100.0, 1)  # the queued one still has its estimate


def test_cards_keep_their_place_when_a_run_is_resumed() -> None:
    a, b = run("cancelled", method="a", created=1.0), run("succeeded", method="b", created=2.0)
    again = run("running", method="a", created=3.0)
    assert card_order([again, b, a]) == [a, again, b]


def summary(winner_dev: float, p: float) -> dict:
    def row(name, method, template, acc, dev, primary=True):
        return {
            "name": name,
            "method": method,
            "template": template,
            "accuracy": acc,
            "dev_accuracy": dev,
            "primary": primary,
        }

    return {
        "templates": ["{text} It was [MASK]", "{text} Overall [MASK]"],
        "methods": [
            row("Manual (best on dev)", "manual", "{text} Overall [MASK]", 0.60, 0.70),
            row("Manual #1: {text} It was [MASK]", "manual", "{text} It was [MASK]", 0.66, 0.50, primary=False),
            row("Prompt tuning", "prompt_tuning", "[P*4] {text} [MASK]", 0.64, winner_dev),
        ],
        "reference": "Manual (best on dev)",
        "significance": [
            {
                "method": "Prompt tuning",
                "versus": "Manual (best on dev)",
                "mcnemar": {"p_value": p},
                "bootstrap": {"diff": 0.04},
            },
        ],
    }


def test_the_verdict_names_the_prompt_chosen_on_dev_and_the_p_value() -> None:
    words = verdict(summary(winner_dev=0.65, p=0.21))
    assert words["headline"] == (
        "Your template #2 “{text} Overall [MASK]” is best (chosen on dev: dev 0.700, test 0.600); no method is "
        "significantly better than the manual prompt chosen on dev (your template #2 “{text} Overall [MASK]”) "
        "(smallest p = 0.210, Prompt tuning)."
    )
    assert "Manual #1" in words["test_best"] and "0.660" in words["test_best"]  # the test-best, labelled apart
    words = verdict(summary(winner_dev=0.80, p=0.01))
    assert words["headline"].startswith("Prompt tuning is best (chosen on dev: dev 0.800, test 0.640); +0.040")
    assert "significantly (p = 0.010)" in words["headline"] and "not significantly" not in words["headline"]


def test_a_provisional_verdict_while_runs_are_active_then_none() -> None:
    manual = run("succeeded", method="manual", started=0.0, finished=90.0)
    training = run("running", method="prompt_tuning", started=100.0, eta_seconds=250.0)
    queued = run("queued", method="ptuning")
    partial = summary(winner_dev=0.65, p=0.21)
    partial["methods"] = partial["methods"][:2]  # only the manual run has landed: no significance test yet
    partial["significance"] = []
    words = provisional_verdict(partial, [manual, training, queued], now=130.0)
    assert words == (
        "Provisional — so far (1 of 3 runs scored): your template #2 “{text} Overall [MASK]” 0.600 on test "
        "(dev-chosen, dev 0.700); no other method beats the manual prompt chosen on dev (your template #2 “{text} "
        "Overall [MASK]”) on test; Prompt tuning still training; P-tuning queued, about 6 min."
    )  # 250 s left for prompt tuning (its phase ETA), 90 s for P-tuning (the mean of finished runs): 340 s
    # the learned method landed first, the manual reference is still to come: no significance is claimed
    learned_only = {**partial, "methods": summary(0.65, 0.21)["methods"][2:], "reference": None}
    done = run("succeeded", method="prompt_tuning", started=0.0, finished=60.0)
    words = provisional_verdict(learned_only, [done, run("running", method="manual", started=70.0)], now=80.0)
    assert words.startswith("Provisional — so far (1 of 2 runs scored): Prompt tuning 0.640 on test (dev-chosen")
    assert "no significance test until the manual reference is scored; Manual prompt still scoring" in words
    assert words.endswith("under a minute.")  # 60 s estimate, 10 s elapsed
    nothing = provisional_verdict(None, [run("queued", method="manual"), run("queued", method="ptuning")], 0.0)
    assert nothing == (
        "Provisional — nothing scored yet; Manual prompt, P-tuning queued, time left not known yet (no finished run to "
        "estimate it from)."
    )
    assert provisional_verdict(summary(0.65, 0.21), [manual, {**training, "status": "succeeded"}], 500.0) is None


def test_one_seed_has_no_spread_and_each_seed_says_its_steps() -> None:
    assert spread_text(0.0, 1) == "n/a (1 seed)" and spread_text(0.0123, 3) == "± 0.012"
    assert steps_text({"steps_per_seed": [None], "n_seeds": 1}) == "–"  # a manual prompt takes no steps
    assert steps_text({"steps_per_seed": [60], "n_seeds": 1}) == "60"
    assert steps_text({"steps_per_seed": [48, 60, 60], "n_seeds": 3}) == "48, 60, 60"
    assert steps_text({"steps_per_seed": [10, 20, 30, 40, 50, 60], "n_seeds": 6}) == "mean 35 (10–60)"
    assert steps_text({"steps": 24, "n_seeds": 3}) == "24 (first seed)"  # a summary stored before per-seed steps


def test_curves_are_thinned_per_series_and_labelled_by_run() -> None:
    long = pd.DataFrame({"run": "r1", "name": "loss", "step": range(1, 1001), "value": 1.0})
    dev = pd.DataFrame({"run": "r1", "name": "dev_accuracy", "step": range(100, 1001, 100), "value": 0.5})
    old = pd.DataFrame({"run": "r0", "name": "loss", "step": [1, 2, 3], "value": [3.0, None, 2.0]})
    runs = {
        "r1": {"label": "P-tuning · seed 0", "superseded": False},
        "r0": {"label": "P-tuning · seed 0 (old)", "superseded": True},
    }
    frame = curve_frame(pd.concat([long, dev, old]), runs, max_points=100)
    loss = frame[(frame["name"] == "loss") & (frame["attempt"] == "current")]
    assert 90 <= len(loss) <= 101 and loss["step"].iloc[0] == 1 and loss["step"].iloc[-1] == 1000  # ends kept
    assert list(frame[frame["name"] == "dev_accuracy"]["step"]) == list(range(100, 1001, 100))  # short: untouched
    assert list(frame[frame["attempt"] == "superseded"]["step"]) == [1, 3]  # missing values dropped
    assert set(frame["method"]) == {"P-tuning"} and set(frame["run"]) == {r["label"] for r in runs.values()}
    assert curve_frame(old.iloc[:0], runs).empty


def test_file_sizes_read_as_a_download_list_shows_them(tmp_path: Path) -> None:
    sizes = [0, 812, 11_520, 999_499, 999_500, 18_612_345, 123_456_789, 4_300_000_000]
    assert [fmt_bytes(n) for n in sizes] == [
        "0 B",
        "812 B",
        "12 KB",
        "999 KB",
        "1.0 MB",
        "18.6 MB",
        "123 MB",
        "4.3 GB",
    ]
    (tmp_path / "prompt.safetensors").write_bytes(b"x" * 1234)
    peft = tmp_path / "prompt-peft"
    (peft / "sub").mkdir(parents=True)
    (peft / "adapter_config.json").write_bytes(b"y" * 100)
    (peft / "sub" / "more.bin").write_bytes(b"z" * 50)
    assert path_bytes(tmp_path / "prompt.safetensors") == 1234 and path_bytes(peft) == 150  # a folder: every file
    assert path_bytes(tmp_path / "gone.safetensors") == 0  # deleted meanwhile: the page still draws


def estimated(seconds: float, stages: list[tuple[str, float, int, int]]) -> dict:
    return {
        "seconds": seconds,
        "stages": [dict(zip(("kind", "seconds", "start", "end"), s, strict=True)) for s in stages],
    }


def simulate(slowdown: float, report_every: float = 5.0) -> list[tuple[float, float]]:
    """(time, queue ETA) each second of a comparison run one unit after another: manual (estimated 60 s), then a
    tuned learned method (estimated 300 s: 3 trials to step 10, continued to 30, test), each `slowdown` times
    slower than estimated, progress written every `report_every` seconds as a worker writes it."""
    plans = [
        (
            "manual",
            estimated(60, [("choose", 20, 0, 2), ("test", 40, 0, 200)]),
            [("choosing on dev", 2), ("scoring the test split", 200)],
        ),
        (
            "ptuning",
            estimated(300, [("trial", 50, 0, 10)] * 3 + [("continue", 100, 10, 30), ("test", 50, 0, 100)]),
            [(f"tuning on dev, trial {i}/3: lr 0.003 · training", 10) for i in (1, 2, 3)]
            + [
                ("tuning on dev: continuing lr 0.003 to the full budget · training", 30),
                ("scoring the test split", 100),
            ],
        ),
    ]
    rows = [run("queued", method=m, estimate=e, created=float(i)) for i, (m, e, _) in enumerate(plans)]
    out, t = [], 0.0
    for index, (_, est, phases) in enumerate(plans):
        started = t
        rows[index] = {**rows[index], "status": "running", "started": started, "updated": started}
        length = est["seconds"] * slowdown

        while t < started + length:
            t += 1.0
            if (t - started) % report_every == 0:
                phase, step, total = phase_at(t - started, phases, est["stages"], slowdown)
                rows[index] = {
                    **rows[index],
                    "phase": phase,
                    "progress_step": step,
                    "progress_total": total,
                    "updated": t,
                }
            if t < started + length:
                out.append((t, queue_eta(rows, t)[0]))
        rows[index] = {**rows[index], "status": "succeeded", "finished": t}
    return out


def phase_at(x: float, phases: list, stages: list[dict], slowdown: float) -> tuple[str, int, int]:
    """The phase, step and total a run reports `x` seconds in: each stage's steps spread evenly over its time."""
    for (phase, end), stage in zip(phases, stages, strict=True):
        secs = stage["seconds"] * slowdown
        if x < secs:
            return phase, stage["start"] + int((stage["end"] - stage["start"]) * x / secs), end
        x -= secs
    return phases[-1][0], phases[-1][1], phases[-1][1]


@pytest.mark.parametrize("slowdown", [0.6, 1.0, 1.8])
def test_queue_eta_moves_down_with_time_and_never_jumps_past_2x(slowdown: float) -> None:
    """A comparison whose runs are slower or faster than estimated: the ETA is there from the first second, never
    stands still while time passes, and never changes by more than 2x from one second to the next."""
    seq = simulate(slowdown)
    etas = [eta for _, eta in seq]
    assert all(eta is not None and eta > 0 for eta in etas)
    for (t0, a), (t1, b) in zip(seq, seq[1:], strict=False):
        assert a != b, f"the ETA stood still at {a:.1f} s from t={t0} to t={t1}"
        assert 0.5 <= b / a <= 2.0, f"the ETA jumped from {a:.1f} s to {b:.1f} s at t={t1}"
    actual = seq[-1][0] + 1.0
    assert etas[0] == pytest.approx(359.0)  # one second in: the estimates (360 s), less the second gone
    late = [eta + t for t, eta in seq if t > actual / 2]  # past half-way, the projected end is near the true one
    assert all(abs(end - actual) / actual < 0.3 for end in late), (actual, late[:3])


def test_queue_eta_uses_the_launch_estimate_before_any_run_finished() -> None:
    rows = [run("queued", method="manual", estimate=estimated(40, [("choose", 40, 0, 3)])), run("queued", method="b")]
    eta, unknown = queue_eta(rows, now=0.0)
    assert eta == 40.0 and unknown == 1  # the old run without an estimate is said to be unknown
