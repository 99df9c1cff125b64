"""Compare: every prompt on the same test split — accuracy (mean ± std over seeds), macro-F1, cost, significance
against the best manual template, the prompts themselves, rows where prompts disagree, confusion matrices."""

import json
import time

import altair as alt
import pandas as pd
import streamlit as st

from core.app.views import (
    comparison_table,
    confusion_frame,
    cost_points,
    disagreements,
    finetuning_phrase,
    finetuning_table,
    fmt_bytes,
    fmt_seconds,
    learning_curve_frames,
    phase_progress,
    provisional_verdict,
    repeated_rows,
    settings_note,
    shown_cells,
    shown_reference,
    significance_table,
    soft_prompt_readings,
    tuning_trials,
    verdict,
)
from core.prompts.export import to_safe_csv
from ui.charts import cost_accuracy
from ui.common import group_page, link
from ui.formatting import fmt_count, k_words, plain
from ui.session import share_link, workspace


@st.cache_data(show_spinner=False, max_entries=32)
def accuracy_spec(plot: pd.DataFrame, order: list[str]) -> dict:
    """Bars with mean ± std and the value; built once per table (altair's schema checks are slow per rerun)."""
    base = alt.Chart(plot).encode(y=alt.Y("label:N", sort=order, title=None, axis=alt.Axis(labelLimit=420)))
    bars = base.mark_bar().encode(
        x=alt.X("accuracy:Q", scale=alt.Scale(domain=[0, 1]), title="accuracy (mean ± std over seeds)"),
        color=alt.Color("method:N", title="method"),
        tooltip=[
            "prompt",
            "method",
            alt.Tooltip("accuracy:Q", format=".3f"),
            alt.Tooltip("spread:N", title="± std over seeds"),
            alt.Tooltip("macro_f1:Q", format=".3f"),
            "seeds",
        ],
    )
    # error bars only where there is a spread to show: one seed's low/high are null, and null marks are not drawn
    errors = base.mark_errorbar(ticks=True).encode(
        x=alt.X("low:Q", title="accuracy (mean ± std over seeds)"), x2="high:Q"
    )
    labels = base.mark_text(align="left", dx=4).encode(x="end:Q", text=alt.Text("accuracy:Q", format=".3f"))
    return (bars + errors + labels).properties(height=34 * len(plot) + 30).to_dict()


@st.cache_data(show_spinner=False, max_entries=32)
def confusion_spec(conf: pd.DataFrame, labels_order: list[str], picked: list[str]) -> dict:
    """One heat map per picked prompt, in the order picked; dark cells get white text."""
    heat = alt.Chart(conf).encode(x=alt.X("predicted:N", sort=labels_order), y=alt.Y("gold:N", sort=labels_order))
    cells = heat.mark_rect().encode(
        color=alt.Color("share:Q", scale=alt.Scale(scheme="blues", domain=[0, 1]), title="share of gold row"),
        tooltip=["prompt", "gold", "predicted", "count", alt.Tooltip("share:Q", format=".0%")],
    )
    text = heat.mark_text(fontSize=13).encode(
        text="count:Q", color=alt.condition("datum.share > 0.5", alt.value("white"), alt.value("black"))
    )
    facet = alt.Facet("prompt:N", title=None, sort=picked, header=alt.Header(labelLimit=300))
    return (cells + text).properties(width=200, height=200).facet(facet=facet, columns=3).to_dict()


VERDICT_EVERY = 2.0  # seconds between verdict refreshes while runs are active (the rows below redraw when one lands)
ws = workspace()
group = group_page(
    "Compare",
    key="compare-group",
    need_success=True,
    or_active=True,
    empty="No comparison yet: launch one on **Train**; it shows here as soon as its runs are queued.",
    go_to="train",
    label="Go to Train",
)
initial = ws.runs(group)
initially_active = any(r["active"] for r in initial)
summary = ws.summary(group)


def landed(runs: list[dict]) -> tuple:
    """What changes the page below the verdict: a run that succeeded (a new row) or the last run ending."""
    return tuple(sorted(r["id"] for r in runs if r["status"] == "succeeded")), any(r["active"] for r in runs)


def dataset_caption() -> None:
    """The comparison's data, split, K, seeds and backbone: from its results, else from what was launched."""
    if summary is not None:
        data, backbone_name = summary["dataset"], summary["backbone"].get("name", "?")
    else:
        ctx = ws.context(group)
        data = {**ctx.dataset.summary(), "source": ctx.settings.get("source_name", ""), "split": ctx.split.summary()}
        data.update({k: ctx.settings.get(k) for k in ("k_shot", "k_shots", "seeds")})
        backbone_name = ctx.settings.get("backbone", "?")
    split = data["split"]
    st.caption(
        f"**{plain(data.get('source', ''))}** · {data['rows']:,} rows, labels {plain(', '.join(data['labels']))} · "
        f"test {split['test']:,} rows (split seed {split['seed']}) · "
        f"{k_words(data)} · "
        f"seeds {', '.join(map(str, data['seeds']))} · backbone {plain(backbone_name)}"
    )


@st.fragment(run_every=VERDICT_EVERY if initially_active else None)
def live_verdict(group_id: str) -> None:
    """The verdict: provisional (what the finished runs say so far, what is still to come) while runs are active,
    refreshed on its own clock; the final one after the last run. A landed run reruns the whole page for its row."""
    runs = ws.runs(group_id)
    now_summary = ws.summary(group_id)
    words = provisional_verdict(now_summary, runs, time.time())
    if words is not None:
        st.info(plain(words), icon=":material/hourglass_top:")
        st.caption(
            "Under way: "
            + "; ".join(
                f"{plain(r['label'])} — {plain(phase_progress(r)[1] or r['status'])}" for r in runs if r["active"]
            )
            + ". The rows below are the finished runs; they change as runs land, so does this verdict."
        )
    elif now_summary is not None:
        final = verdict(now_summary)
        st.success(plain(final["headline"]), icon=":material/emoji_events:")
        if "finetuning" in final:
            st.success(plain(final["finetuning"]), icon=":material/balance:")
        st.caption(plain(final["test_best"]) + " The headline prompt is chosen on dev, as a user would choose.")
    if landed(runs) != landed(initial):
        st.rerun()


dataset_caption()
if ws.is_owner(group):
    with st.popover("Share read-only", icon=":material/share:"):
        st.caption("Whoever opens this link sees this comparison (results, runs, files) but cannot change it.")
        st.code(share_link(ws, group), language=None)
live_verdict(group)
if summary is None:
    if not initially_active:
        st.info("No run of this comparison succeeded: see why on **Runs**.")
    link("runs", "Watch the runs")
    st.stop()

data, backbone = summary["dataset"], summary["backbone"]
table = comparison_table(summary)
best = table.loc[table["accuracy"].idxmax()]
c1, c2, c3 = st.columns(3)
c1.metric("Best test accuracy", f"{best['accuracy']:.3f}", help=best["prompt"])
c2.metric("Best on test", best["method"], help="Picked after seeing the test split; the headline is chosen on dev.")
c3.metric("Prompts compared", len(table))

points, references = learning_curve_frames(summary)
if not points.empty or not references.empty:
    st.subheader("Accuracy against K (learning curve)")
    ks = data.get("k_shots") or sorted(points["k_shot"].unique())
    x = alt.X(
        "k_shot:Q", scale=alt.Scale(type="log", base=2), axis=alt.Axis(values=ks), title="K (examples per label)"
    )
    y_title = "test accuracy (mean ± std over seeds)"
    y = alt.Y("accuracy:Q", scale=alt.Scale(domain=[0, 1]), title=y_title)
    color = alt.Color("method:N", title="method")
    tips = ["method", "k_shot", alt.Tooltip("accuracy:Q", format=".3f"), alt.Tooltip("accuracy_std:Q", format=".3f")]
    curve = alt.Chart(points).encode(x=x, color=color)
    band = curve.mark_area(opacity=0.18).encode(y=alt.Y("low:Q", title=y_title), y2="high:Q")
    lines = curve.mark_line(point=True).encode(y=y, tooltip=[*tips, "n_seeds"])
    rule = alt.Chart(references).mark_rule(strokeDash=[6, 4], size=2).encode(y=y, color=color, tooltip=tips)
    st.altair_chart((band + lines + rule).properties(height=360), width="stretch", key="learning-curve")
    st.caption(
        "One line per method: test accuracy against K, the band ± one standard deviation over seeds; the dashed "
        "line is the zero-shot manual prompt (chosen on dev), which learns nothing from the K examples. "
        f"The table below is the largest K ({data['k_shot']})."
    )

st.subheader("Accuracy on the test split")
several = table["seeds"] > 1
plot = table.assign(
    low=(table["accuracy"] - table["accuracy_std"]).where(several),
    high=(table["accuracy"] + table["accuracy_std"]).where(several),
    end=table["accuracy"] + table["accuracy_std"].where(several, 0.0),
    label=[p if len(p) <= 60 else p[:57] + "…" for p in table["prompt"]],
)
order = list(plot.sort_values("accuracy", ascending=False)["label"])
st.vega_lite_chart(spec=accuracy_spec(plot, order), width="stretch")

TABLE_COLUMNS = ["prompt", "method", "role", "accuracy", "spread", "macro_f1", "seeds", "steps"]
CALIBRATION_COLUMNS = ["prompt", "settings", "calibration", "acc_calibrated", "acc_uncalibrated"]
COST_COLUMNS = ["prompt", "trainable_params", "train_seconds", "test_seconds", "peak_memory_mb"]
HEADERS = {  # column -> (header, format of its numbers)
    "accuracy": ("accuracy", "{:.3f}"),
    "spread": ("± std over seeds", None),
    "macro_f1": ("macro-F1", "{:.3f}"),
    "steps": ("steps used", None),
    "settings": ("settings chosen on dev", None),
    "calibration": ("calibration chosen on dev", None),
    "acc_calibrated": ("acc. calibrated", "{:.3f}"),
    "acc_uncalibrated": ("acc. uncalibrated", "{:.3f}"),
    "trainable_params": ("trainable params", "{:,}"),
    "train_seconds": ("train s", "{:.1f}"),
    "test_seconds": ("test scoring s", "{:.1f}"),
    "peak_memory_mb": ("peak MB", "{:,.0f}"),
}
# Tables of a row per prompt: how well each prompt did, calibrated or not, at what cost. Drawn as HTML tables, not
# data frames: their cells wrap, so every word (a long template, "chosen on dev, best on test") is seen in a
# 1,400 px window, and a missing value reads as an em dash (tests/test_e2e_provisional.py checks both).


def prompt_table(columns: list[str]) -> None:
    """One of the tables above: a row per prompt, the prompt first, each cell as text a reader reads."""
    cells = shown_cells(table[columns], {c: HEADERS[c][1] for c in columns if c in HEADERS})
    st.table(cells.rename(columns={c: HEADERS[c][0] for c in columns if c in HEADERS}), hide_index=True)


prompt_table(TABLE_COLUMNS)
st.caption(
    "± std is over seeds (one seed has no spread). Steps used: the training steps (AutoPrompt: search iterations) "
    'each seed\'s run took. A role "chosen on dev" marks the prompt a method picked on dev among its own '
    "candidates (the headline's choice), never on test."
)
st.markdown("**Chosen on dev**: each method's settings (tuning) and calibration")
prompt_table(CALIBRATION_COLUMNS)
st.caption("Content-free calibration is tried for every prompt; the way that scores better on dev is reported.")
st.markdown("**Cost**")
prompt_table(COST_COLUMNS)
st.caption(
    f"Training and test-scoring times are per seed (a manual prompt trains nothing: its training time is the "
    f"scoring of its candidates on dev); peak memory is the largest over seeds "
    f"({'GPU allocator peak' if 'cuda' in str(backbone.get('device', '')) else 'process RSS on the CPU'})."
)

st.subheader(f"Significance against {shown_reference(summary) or 'the reference'}")
sig = significance_table(summary)
if sig.empty:
    st.caption("Needs the manual method in the comparison.")
else:
    st.dataframe(
        sig,
        hide_index=True,
        width="stretch",
        column_config={
            c: st.column_config.NumberColumn(format="%.3f")
            for c in ("accuracy_diff", "ci_low", "ci_high", "bootstrap_p", "mcnemar_p")
        },
    )
    st.caption(
        "Paired on the same test rows (and seeds): McNemar's test and a paired bootstrap of the accuracy "
        "difference with its 95% interval."
    )


def against_finetuning() -> None:
    """The papers' question: each prompt's accuracy as a share of the best fine-tuning row's, at what cost, with the
    paired significance of the difference; and the same as a cost/accuracy scatter."""
    against = summary.get("versus_finetuning")
    if not against:
        return
    ref = against["reference"]
    st.subheader("Prompts against fine-tuning")
    st.caption(
        f"Against **{plain(ref['name'])}** (test {ref['accuracy']:.3f}, {fmt_count(ref['trainable_params'])} "
        f"trainable parameters, {fmt_seconds(ref['train_seconds'])} training per seed): the fine-tuning row with the "
        "best dev accuracy, never chosen on test. Paired on the same test rows and seeds (McNemar's test; the paired "
        "bootstrap is in results.json)."
    )
    for row in against["rows"]:
        if row["primary"] and not row["fine_tunes"]:
            st.markdown(f"- {plain(finetuning_phrase(row))}")
    st.dataframe(
        finetuning_table(summary),
        hide_index=True,
        width="stretch",
        column_config={
            "prompt": st.column_config.TextColumn("prompt", width=200),
            "accuracy": st.column_config.NumberColumn(format="%.3f", width=70),
            "accuracy_share": st.column_config.TextColumn("of its accuracy", width=95),
            "params_share": st.column_config.TextColumn("of its params", width=90),
            "time_ratio": st.column_config.TextColumn("train time", width=80),
            "difference": st.column_config.TextColumn("difference", width=80),
            "mcnemar_p": st.column_config.NumberColumn("p (McNemar)", format="%.3f", width=95),
            "significance": st.column_config.TextColumn("p < 0.05?", width=140),
        },
    )
    axes = {
        "trainable parameters": ("params_x", "trainable parameters (log)"),
        "training seconds": ("seconds_x", "training seconds per seed (log)"),
    }
    pick = st.radio("Cost axis", list(axes), horizontal=True, key="cost-axis")
    st.vega_lite_chart(cost_points(summary), cost_accuracy(*axes[pick]), width="stretch")
    st.caption(
        "One point per method (its prompt chosen on dev); squares are fine-tuning rows; bars ± one std over seeds. "
        "Up and to the left is better. A row that trains nothing is drawn at 1 parameter (0.01 s); the tooltip "
        "gives its true cost."
    )


against_finetuning()

st.subheader("The prompts")
repeated = repeated_rows(summary)
for m in summary["methods"]:
    if m["name"] in repeated:
        continue  # manual's answer that is one of its templates: shown once, under that template's name
    chosen = " (chosen on dev)" if m["name"] in repeated.values() else ""
    st.markdown(
        f"**{m['name']}**{chosen} — {fmt_count(m['trainable_params'])} trainable parameters, "
        f"{fmt_seconds(m['train_seconds'])} training and {fmt_seconds(m.get('test_seconds'))} test scoring per seed"
    )
    if m.get("prompt"):
        st.code(m["prompt"], language=None, wrap_lines=True)
    if note := settings_note(m):
        st.caption(note)
    trials = tuning_trials(m)
    if not trials.empty:
        with st.expander(f"{plain(m['name'])}: every configuration tried on dev"):
            st.dataframe(trials, hide_index=True, width="stretch")
readings = soft_prompt_readings(summary)
if readings:
    with st.expander("Nearest-vocabulary reading of the learned soft tokens", expanded=True):
        st.caption(
            "For each learned soft token, the nearest input embeddings of the vocabulary (cosine similarity). "
            "Soft prompts usually sit far from every word, so this is a reading, not their meaning."
        )
        for name, lines in readings.items():
            st.markdown(f"**{plain(name)}**")
            st.code("\n".join(lines[:64]), language=None)

st.subheader("Where the prompts disagree")
test = ws.context(group).split.test
every = st.toggle("Every prompt (each manual template and variant), not one per method", key="disagree-every")
diff = disagreements(summary, test, every_prompt=every)
st.caption(f"{len(diff)} test rows (first seed; up to 200 shown) where not every prompt gives the same label.")
if not diff.empty:
    answers = {c: st.column_config.TextColumn(c, width="small") for c in diff.columns if c not in ("text",)}
    st.dataframe(
        diff,
        hide_index=True,
        width="stretch",
        height=300,
        column_config={**answers, "text": st.column_config.TextColumn("text", width="large")},
    )

st.subheader("Confusion matrices")
conf = confusion_frame(summary)
names = list(dict.fromkeys(conf["prompt"]))
picked = st.multiselect(
    "Prompts", names, default=[n for n in names if not n.startswith("Manual #")][:4], key="confusion-prompts"
)
if picked:
    shown_conf = conf[conf["prompt"].isin(picked)].copy()
    # share of each gold row, so the colour reads the same whatever the class sizes; dark cells get white text
    shown_conf["share"] = shown_conf["count"] / shown_conf.groupby(["prompt", "gold"])["count"].transform("sum")
    labels_order = summary["dataset"]["labels"]
    st.vega_lite_chart(spec=confusion_spec(shown_conf, labels_order, picked))

st.subheader("Download")
c1, c2 = st.columns(2)
results_json = json.dumps(summary, indent=2)
csv_columns = [*TABLE_COLUMNS[:4], "accuracy_std", *TABLE_COLUMNS[5:], *COST_COLUMNS[1:]]
table_csv = to_safe_csv(table.assign(accuracy_std=table["accuracy_std"].where(several))[csv_columns])
c1.download_button(
    f"results.json · {fmt_bytes(len(results_json.encode()))}",
    results_json,
    file_name=f"results-{group}.json",
    mime="application/json",
    key="dl-results-json",
)
c2.download_button(
    f"Comparison table (CSV) · {fmt_bytes(len(table_csv))}",
    table_csv,
    file_name=f"comparison-{group}.csv",
    mime="text/csv",
    key="dl-results-csv",
)
link("predict", "Learned prompt files and predictions")
