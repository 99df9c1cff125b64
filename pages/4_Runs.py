"""Runs: every run of a comparison with live status, progress, ETA, loss/dev-accuracy curves, cancel and resume.

The live part is a fragment that reruns itself every second while a run is queued or running; it reads only the
run store (workers write progress there), so a reload or a second tab shows the same runs.
"""

import altair as alt
import streamlit as st

from pages.common import STATUS_ICONS, fmt_seconds, pick_group, workspace

ws = workspace()
st.title("📈 Runs")
group = pick_group(ws, key="runs-group")
if group is None:
    st.info("No runs yet: launch a comparison on the **Train** page.")
    st.page_link("pages/3_Train.py", label="Go to Train", icon="🏋️")
    st.stop()
show_old = st.toggle(
    "Show superseded attempts",
    value=False,
    key="show-superseded",
    help="Runs that were resumed as a newer run of the same method and seed.",
)
initially_active = any(r["active"] for r in ws.runs(group))


def run_card(run: dict) -> None:
    with st.container(border=True):
        c1, c2, c3 = st.columns([3, 4, 2])
        c1.markdown(
            f"{STATUS_ICONS.get(run['status'], '')} **{run['label']}**  \n"
            f"`{run['id']}` · {run['status']}" + (" · superseded" if run["superseded"] else "")
        )
        step, total = run["progress_step"], run["progress_total"]
        if total:
            eta = f" · ETA {fmt_seconds(run['eta_seconds'])}" if run["active"] and run["eta_seconds"] else ""
            c2.progress(min(step / total, 1.0), text=f"step {step}/{total}{eta}")
        else:
            c2.progress(0.0, text="waiting for a worker" if run["status"] == "queued" else "no progress recorded")
        if run["active"] and c3.button("Cancel", key=f"cancel-{run['id']}"):
            ws.cancel(run["id"])
            st.rerun()
        if run["resumable"] and c3.button(
            "Resume", key=f"resume-{run['id']}", help="Start this method and seed again with the same settings."
        ):
            ws.resume(run["id"])
            st.rerun()
        if run["status"] == "failed" and run["error"]:
            st.error(run["error"])
        if run["status"] == "interrupted":
            st.warning("The app stopped while this run was queued or running; resume it to run it again.")


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
    labels = {r["id"]: r["label"] for r in runs}
    metrics = ws.metrics_frame(list(labels))
    metrics = metrics[metrics["value"].notna()]
    if not metrics.empty:
        metrics["run"] = metrics["run"].map(labels)
        st.subheader("Curves")
        for name, part in metrics.groupby("name", sort=True):
            chart = (
                alt.Chart(part)
                .mark_line(point=len(part) < 60)
                .encode(
                    x=alt.X("step:Q", title="step"),
                    y=alt.Y("value:Q", title=str(name), scale=alt.Scale(zero=False)),
                    color=alt.Color("run:N", title="run"),
                    tooltip=["run", "step", "value"],
                )
            )
            st.altair_chart(chart.properties(height=220, title=str(name)), width="stretch")
    if initially_active and not active:
        st.rerun()  # everything finished: a full rerun turns polling off


live(group)
