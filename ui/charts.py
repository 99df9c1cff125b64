"""Vega-Lite chart specs as plain dicts for `st.vega_lite_chart`.

Built by hand rather than with altair: altair validates every chart against the Vega-Lite JSON schema, which cost
~0.1-0.2 s per chart on every rerun (the Runs page redraws its curves every second while a run trains).
"""

from __future__ import annotations

from typing import Any

Spec = dict[str, Any]


def field(name: str, kind: str, **extra: Any) -> Spec:
    """One encoding channel: a data field, its Vega-Lite type (quantitative|nominal) and any extra properties."""
    return {"field": name, "type": kind, **extra}


def legend_below() -> Spec:
    return {"orient": "bottom", "columns": 2, "labelLimit": 520}  # long run labels wrap into columns, never cut


def metric_lines(title: str, y_title: str, runs: list[str], *, dash: bool, points: bool) -> Spec:
    """A metric over steps (columns run, series, step, value, attempt): one colour per run, the same in every
    chart (`runs` is the colour domain), a y scale of its own, superseded attempts dimmed."""
    encoding = {
        "x": field("step", "quantitative", title="step", axis={"format": "d", "tickMinStep": 1}),
        "y": field("value", "quantitative", title=y_title, scale={"zero": False}),
        "color": field("run", "nominal", title="run", scale={"domain": runs}, legend=legend_below()),
        "opacity": field(
            "attempt", "nominal", scale={"domain": ["current", "superseded"], "range": [1.0, 0.35]}, legend=None
        ),
        "tooltip": [
            field("run", "nominal"),
            field("series", "nominal"),
            field("step", "quantitative"),
            field("value", "quantitative", format=".4g"),
        ],
    }
    if dash:
        dashes = {
            "orient": "bottom",
            "symbolType": "stroke",
            "symbolStrokeColor": "#555",
            "symbolStrokeWidth": 2,
            "symbolSize": 300,
        }
        encoding["strokeDash"] = field("series", "nominal", title=None, legend=dashes)  # legend shows the dashes
    # No point markers where the dash tells the series apart: with them the dash legend draws empty symbols.
    return {"title": title, "mark": {"type": "line", "point": points and not dash}, "encoding": encoding}


def trial_curves(title: str, y_title: str, runs: list[str], *, dash: bool) -> Spec:
    """`metric_lines` (columns run, series, step, value, attempt) with one line per tuning trial (column `part`:
    "trial 2", "trial 3, continued", "" outside tuning) and every dev evaluation (column `point` true) drawn as a
    point. Each trial counts its steps from 1 again and is scored on dev once, at its rung: one line per run
    would saw-tooth back over the steps and join the trials' dev scores into a vertical bar."""
    lines = metric_lines(title, y_title, runs, dash=dash, points=False)
    encoding = {**lines["encoding"], "detail": field("part", "nominal")}
    encoding["tooltip"] = [*encoding["tooltip"], field("part", "nominal", title="trial")]
    dots = {k: v for k, v in encoding.items() if k != "strokeDash"}  # a dash legend drawn from lines only
    return {
        "title": title,
        "layer": [
            {"mark": lines["mark"], "encoding": encoding},
            {
                "mark": {"type": "point", "filled": True, "size": 36},
                "transform": [{"filter": "datum.point"}],
                "encoding": dots,
            },
        ],
    }


def label_bars() -> Spec:
    """Rows per label (columns label, rows), the most frequent first, one 32-pixel band per label."""
    return {
        "mark": {"type": "bar"},
        "height": {"step": 32},
        "encoding": {
            "x": field("rows", "quantitative", title="rows"),
            "y": field("label", "nominal", sort="-x"),
            "tooltip": [field("label", "nominal"), field("rows", "quantitative")],
        },
    }


def cost_accuracy(x: str, x_title: str) -> Spec:
    """Accuracy against a cost on a log axis (columns prompt, method, kind, accuracy, low, high, spread,
    trainable_params, train_seconds and the plotted `x`): a point per method, filled squares for fine-tuning rows,
    an error bar of ± one std over seeds where there are several (one seed's low/high are null: not drawn)."""
    x_enc = field(x, "quantitative", title=x_title, scale={"type": "log", "padding": 24})  # no point on an edge
    y_title = "test accuracy (mean ± std over seeds)"
    tooltip = [
        field("prompt", "nominal"),
        field("kind", "nominal"),
        field("accuracy", "quantitative", format=".3f"),
        field("spread", "nominal", title="± std over seeds"),
        field("trainable_params", "quantitative", title="trainable params", format=","),
        field("train_seconds", "quantitative", title="train s", format=".1f"),
    ]
    points = {
        "mark": {"type": "point", "filled": True, "size": 140},
        "encoding": {
            "x": x_enc,
            "y": field("accuracy", "quantitative", title=y_title, scale={"zero": False, "padding": 24}),
            "color": field("method", "nominal", title="method", legend=legend_below()),
            "shape": field(
                "kind",
                "nominal",
                title=None,
                scale={"domain": ["prompt", "fine-tuning"], "range": ["circle", "square"]},
                legend={"orient": "bottom"},  # the right edge is for the points' labels
            ),
            "tooltip": tooltip,
        },
    }
    errors = {
        "mark": {"type": "errorbar", "ticks": True},
        "encoding": {"x": x_enc, "y": field("low", "quantitative", title=y_title), "y2": {"field": "high"}},
    }
    labels = {
        "mark": {"type": "text", "align": "left", "dx": 9, "fontSize": 11},
        "encoding": {"x": x_enc, "y": field("accuracy", "quantitative"), "text": field("method", "nominal")},
    }
    return {"height": 360, "layer": [errors, points, labels]}
