"""Runs: every run of a comparison with live status, phase, progress and ETA, loss/dev curves, cancel and resume.

The live part is a fragment that reruns itself every second while a run is queued or running; it reads only the
run store (workers write progress there), so a reload or a second tab shows the same runs.
"""

import time

import altair as alt
import pandas as pd
import streamlit as st

from core.app.views import card_order, finished_text, fmt_seconds, phase_progress, queue_eta
from core.methods import REGISTRY
from pages.common import STATUS_ICONS, group_page, plain, workspace

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
        elif not run["active"] and not text:
            text = run["status"] + (
                f" after {fmt_seconds(run['finished'] - run['started'])}" if run["started"] else ""
            )
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
            st.warning("The app stopped while this run was queued or running; resume it to run it again.")


def chart(part: pd.DataFrame, title: str, y: str, runs: list[str], *, dash: bool = False) -> alt.Chart:
    """One metric over steps, one colour per run (the same in every chart), a y scale of its own."""
    encoding = {
        "x": alt.X("step:Q", title="step", axis=alt.Axis(format="d", tickMinStep=1)),
        "y": alt.Y("value:Q", title=y, scale=alt.Scale(zero=False)),
        "color": alt.Color("run:N", title="run", scale=alt.Scale(domain=runs), legend=alt.Legend(orient="bottom")),
        "opacity": alt.Opacity(
            "attempt:N", scale=alt.Scale(domain=["current", "superseded"], range=[1.0, 0.35]), legend=None
        ),
        "tooltip": ["run", "series", "step", alt.Tooltip("value:Q", format=".4g")],
    }
    if dash:
        encoding["strokeDash"] = alt.StrokeDash("series:N", title=None, legend=alt.Legend(orient="bottom"))
    return alt.Chart(part, title=title).mark_line(point=part["step"].nunique() < 40).encode(**encoding)


def curves(runs: list[dict]) -> None:
    trained = {r["id"]: r for r in runs if r["method"] in REGISTRY and REGISTRY[r["method"]].trains}
    metrics = ws.metrics_frame(list(trained))
    metrics = metrics[metrics["value"].notna()]
    if metrics.empty:
        return
    metrics["run"] = metrics["run"].map(lambda rid: trained[rid]["label"])
    metrics["method"] = metrics["run"].str.split(" · ").str[0]
    attempt = {trained[rid]["label"]: "superseded" if trained[rid]["superseded"] else "current" for rid in trained}
    metrics["attempt"] = metrics["run"].map(attempt)
    labels = sorted(metrics["run"].unique())
    st.subheader("Curves")
    st.caption("Each method has its own y scale (AutoPrompt's losses are on another scale than soft prompts').")
    losses = metrics[metrics["name"].isin(["loss", "dev_loss"])].copy()
    losses["series"] = losses["name"].map({"loss": "train loss", "dev_loss": "dev loss"})
    for method, part in losses.groupby("method", sort=False):
        st.altair_chart(chart(part, f"{method}: loss", "loss", labels, dash=True), width="stretch", height=260)
    acc = metrics[metrics["name"] == "dev_accuracy"].assign(series="dev accuracy")
    if not acc.empty:
        st.altair_chart(chart(acc, "dev accuracy", "accuracy", labels), width="stretch", height=260)
    other = sorted(set(metrics["name"]) - {"loss", "dev_loss", "dev_accuracy"})
    if other:
        with st.expander("Other metrics: " + ", ".join(other)):
            for name in other:
                part = metrics[metrics["name"] == name].assign(series=name)
                st.altair_chart(chart(part, name, name, labels), width="stretch", height=220)


@st.fragment(run_every=1.0 if initially_active else None)
def live(group_id: str) -> None:
    every = ws.runs(group_id)
    runs = [r for r in every if show_old or not r["superseded"]]
    for r in runs:
        r["config_resumes"] = ws.run(r["id"])["config"].get("resumes") if r["active"] else None
    active = [r for r in runs if r["active"]]
    done = sum(r["status"] == "succeeded" for r in runs)
    line = f"{len(runs)} runs · {len(active)} active · {done} succeeded"
    if active:
        eta, unknown = queue_eta(runs, time.time())
        line += f" · queue done in about {fmt_seconds(eta)}" if eta is not None else " · queue ETA after the first run"
        line += f" ({unknown} without an estimate yet)" if unknown and eta is not None else ""
        line += " · updating every second"
    st.caption(line)
    for run in card_order(runs):
        run_card(run)
    curves(runs)
    if statuses(every) != statuses(initial):
        st.rerun()  # a run started, finished or was resumed: the picker's label and polling follow (full rerun)


live(group)
