"""Runs: every run of a comparison with live status, progress, ETA, loss/dev-accuracy curves, cancel and resume.

The live part is a fragment that reruns itself every second while a run is queued or running; it reads only the
run store (workers write progress there), so a reload or a second tab shows the same runs.
"""

import altair as alt
import streamlit as st

from core.methods import REGISTRY
from pages.common import STATUS_ICONS, fmt_seconds, group_page, plain, workspace

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
    help="Runs that were resumed as a newer run of the same method and seed.",
)
initially_active = any(r["active"] for r in ws.runs(group))
mine = ws.is_owner(group)
if not mine:
    st.caption(":material/visibility: Shared with you, read-only.")


def act(action, run_id: str) -> None:
    """A Cancel/Resume click; a refusal (already resumed in another tab, say) is one line, not a traceback."""
    try:
        action(run_id)
    except (ValueError, LookupError) as err:
        st.toast(plain(err), icon=":material/error:")


def run_card(run: dict) -> None:
    with st.container(border=True):
        c1, c2, c3 = st.columns([3, 4, 2])
        c1.markdown(
            f"{STATUS_ICONS.get(run['status'], '')} **{run['label']}**  \n"
            f"`{run['id']}` · {run['status']}"
            + (f" · {run['device']}" if run.get("device") else "")  # where the job manager placed it
            + (" · superseded" if run["superseded"] else "")
        )
        step, total = run["progress_step"], run["progress_total"]
        if total:
            eta = f" · ETA {fmt_seconds(run['eta_seconds'])}" if run["active"] and run["eta_seconds"] else ""
            c2.progress(min(step / total, 1.0), text=f"step {step}/{total}{eta}")
        else:
            c2.progress(0.0, text="waiting for a worker" if run["status"] == "queued" else "no progress recorded")
        # Callbacks run before the (fragment) rerun that the click starts, so the cards already show the change.
        if run["active"] and mine:
            c3.button("Cancel", key=f"cancel-{run['id']}", on_click=act, args=(ws.cancel, run["id"]))
        if run["resumable"] and mine:
            c3.button(
                "Resume",
                key=f"resume-{run['id']}",
                on_click=act,
                args=(ws.resume, run["id"]),
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


def curve(part, name: str) -> None:
    chart = (
        alt.Chart(part)
        .mark_line(point=part["step"].nunique() < 40)
        .encode(
            x=alt.X("step:Q", title="step", axis=alt.Axis(format="d", tickMinStep=1)),
            y=alt.Y("value:Q", title=name, scale=alt.Scale(zero=False)),
            color=alt.Color("run:N", title="run", legend=alt.Legend(orient="bottom")),
            tooltip=["run", "step", alt.Tooltip("value:Q", format=".4g")],
        )
    )
    st.altair_chart(chart.properties(title=name), width="stretch", height=280)


@st.fragment(run_every=1.0 if initially_active else None)
def live(group_id: str) -> None:
    runs = [r for r in ws.runs(group_id) if show_old or not r["superseded"]]
    active = [r for r in runs if r["active"]]
    done = sum(r["status"] == "succeeded" for r in runs)
    st.caption(
        f"{len(runs)} runs · {len(active)} active · {done} succeeded" + (" · updating every second" if active else "")
    )
    for run in reversed(runs):  # launch order: manual and baseline first
        run_card(run)
    trained = {r["id"]: r["label"] for r in runs if r["method"] in REGISTRY and REGISTRY[r["method"]].trains}
    metrics = ws.metrics_frame(list(trained))
    metrics = metrics[metrics["value"].notna()]
    if not metrics.empty:
        metrics["run"] = metrics["run"].map(trained)
        names = sorted(metrics["name"].unique())
        main = [n for n in names if "loss" in n or "accuracy" in n]
        st.subheader("Curves")
        columns = st.columns(2)
        for i, name in enumerate(main):
            with columns[i % 2]:
                curve(metrics[metrics["name"] == name], name)
        if other := [n for n in names if n not in main]:
            with st.expander("Other metrics: " + ", ".join(other)):
                for name in other:
                    curve(metrics[metrics["name"] == name], name)
    if bool(active) != initially_active:
        st.rerun()  # polling must start (a resumed run) or stop (all finished): a full rerun sets run_every


live(group)
