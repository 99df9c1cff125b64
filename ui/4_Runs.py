"""Runs: every run of a comparison with live status, phase, progress and ETA, loss/dev curves, cancel and resume.

The live part is a fragment that reruns itself every second while a run is queued or running; it reads only the
run store (workers write progress there), so a reload or a second tab shows the same runs.
"""

import time

import streamlit as st

from core.app.views import (
    card_order,
    curve_frame,
    finished_text,
    fmt_seconds,
    phase_progress,
    provisional_verdict,
    queue_eta,
    stopped_text,
    verdict,
)
from core.methods import REGISTRY
from ui.charts import trial_curves
from ui.common import group_page
from ui.formatting import STATUS_ICONS, plain
from ui.session import workspace

CURVES_EVERY = 3.0  # seconds between curve redraws while a run is active (the cards update every second)
ws = workspace()
group = group_page(
    "Runs",
    key="runs-group",
    need_success=False,
    empty="No runs yet: launch a comparison on the **Train** page.",
    go_to="train",
    label="Go to Train",
)
show_old = st.toggle(
    "Show superseded attempts",
    value=False,
    key="show-superseded",
    help="Runs that were resumed as a newer run of the same method and seed (their curves are drawn dimmed).",
)
mine = ws.is_owner(group)
if not mine:
    st.caption(":material/visibility: Shared with you, read-only.")


def statuses(runs: list[dict]) -> tuple:
    """What the comparison picker's label says; the page reruns whole when it changes, so the label stays live."""
    return tuple(sorted((r["id"], r["status"]) for r in runs))


initial = ws.runs(group)
initially_active = any(r["active"] for r in initial)


def act(action, run_id: str) -> None:
    """A Cancel/Resume click; a refusal (already resumed in another tab, say) is one line, not a traceback."""
    try:
        action(run_id)
    except (ValueError, LookupError) as err:
        st.toast(plain(err), icon=":material/error:")


def run_card(run: dict) -> None:
    with st.container(border=True):
        c1, c2, c3 = st.columns([3, 4, 2], vertical_alignment="center")
        resumed = f" · resumes `{run['config_resumes']}`" if run.get("config_resumes") else ""
        c1.markdown(
            f"{STATUS_ICONS.get(run['status'], '')} **{plain(run['label'])}**  \n"
            f"`{run['id']}` · {run['status']}"
            + (f" · {run['device']}" if run.get("device") else "")  # where the job manager placed it
            + (" · superseded" if run["superseded"] else "")
            + resumed
        )
        fraction, text = phase_progress(run)
        if run["status"] == "succeeded":
            text = finished_text(run)
        elif not run["active"]:
            text = stopped_text(run)
        c2.progress(fraction or 0.0, text=text or " ")
        # One button slot per card, always drawn, so a run that finishes never moves another run's button.
        # Callbacks run before the (fragment) rerun that the click starts, so the cards already show the change.
        if run["active"] and mine:
            c3.button(
                "Stopping…" if run["stopping"] else "Cancel",
                key=f"cancel-{run['id']}",
                on_click=act,
                args=(ws.cancel, run["id"]),
                disabled=run["stopping"],
                width="stretch",
                help="Stops after the current step (a trained method keeps a checkpoint to resume from).",
            )
        elif run["resumable"] and mine:
            c3.button(
                "Resume",
                key=f"resume-{run['id']}",
                on_click=act,
                args=(ws.resume, run["id"]),
                width="stretch",
                help="Start this method and seed again with the same settings (a trained method continues "
                "from its last checkpoint).",
            )
        if run["status"] == "failed" and run["error"]:
            st.error(run["error"])
            trace = (ws.run(run["id"])["result"] or {}).get("traceback")
            if trace:
                with st.expander("Technical details (for a bug report)"):
                    st.code(trace, language=None)
        if run["status"] == "interrupted":
            st.warning(
                "The worker process running this stopped (killed, out of memory, or its machine went away); "
                + ("**Resume** continues it from its last checkpoint." if run["resumable"] else "it was resumed.")
            )


def curves(runs: list[dict]) -> None:
    trained = {r["id"]: r for r in runs if r["method"] in REGISTRY and REGISTRY[r["method"]].trains}
    metrics = curve_frame(ws.metrics_frame(list(trained)), trained)
    if metrics.empty:
        return
    labels = sorted(metrics["run"].unique())
    st.subheader("Curves")
    st.caption("Each method has its own y scale (AutoPrompt's losses are on another scale than soft prompts').")
    losses = metrics[metrics["name"].isin(["loss", "dev_loss"])].copy()
    losses["series"] = losses["name"].map({"loss": "train loss", "dev_loss": "dev loss"})
    for method, part in losses.groupby("method", sort=False):
        draw(part, f"{method}: loss", "loss", labels, dash=True)
    acc = metrics[metrics["name"] == "dev_accuracy"].assign(series="dev accuracy")
    if not acc.empty:
        draw(acc, "dev accuracy", "accuracy", labels)
    other = sorted(set(metrics["name"]) - {"loss", "dev_loss", "dev_accuracy"})
    if other:
        with st.expander("Other metrics: " + ", ".join(other)):
            for name in other:
                draw(metrics[metrics["name"] == name].assign(series=name), name, name, labels, height=220)


def draw(part, title: str, y: str, runs: list[str], *, dash: bool = False, height: int = 260) -> None:
    """One metric over steps, one colour per run (the same in every chart), a y scale of its own, one line per
    tuning trial, dev evaluations as points."""
    spec = trial_curves(title, y, runs, dash=dash)
    columns = ["run", "series", "step", "value", "attempt", "part", "point"]
    st.vega_lite_chart(part[columns], spec, width="stretch", height=height)


def verdict_header(group_id: str, runs: list[dict]) -> None:
    """What the comparison says so far (provisional while a run is active), then its verdict; details on Compare."""
    summary = ws.summary(group_id)  # cached per set of succeeded runs: cheap on every refresh
    words = provisional_verdict(summary, runs, time.time())
    if words is not None and summary is not None:
        st.info(plain(words), icon=":material/hourglass_top:")
    elif words is None and summary is not None:
        st.success(plain(verdict(summary)["headline"]), icon=":material/emoji_events:")


@st.fragment(run_every=1.0 if initially_active else None)
def live(group_id: str) -> None:
    every = ws.runs(group_id)
    runs = [r for r in every if show_old or not r["superseded"]]
    for r in runs:
        r["config_resumes"] = ws.run(r["id"])["config"].get("resumes") if r["active"] else None
    active = [r for r in runs if r["active"]]
    done = sum(r["status"] == "succeeded" for r in runs)
    line = f"{len(runs)} run{'' if len(runs) == 1 else 's'} · {len(active)} active · {done} succeeded"
    if active:
        eta, unknown = queue_eta(runs, time.time())
        line += f" · queue done in about {fmt_seconds(eta)}" if eta is not None else " · queue ETA after the first run"
        line += f" ({unknown} without an estimate yet)" if unknown and eta is not None else ""
        line += " · updating every second"
    st.caption(line)
    verdict_header(group_id, every)
    for run in card_order(runs):
        run_card(run)
    if statuses(every) != statuses(initial):
        st.rerun()  # a run started, finished or was resumed: the picker's label and polling follow (full rerun)


@st.fragment(run_every=CURVES_EVERY if initially_active else None)
def live_curves(group_id: str) -> None:
    """The curves on their own, slower clock: redrawing charts every second kept the server and the browser busy
    (page switches waited for it), while a curve gains little from a second's new points."""
    curves([r for r in ws.runs(group_id) if show_old or not r["superseded"]])


live(group)
live_curves(group)
