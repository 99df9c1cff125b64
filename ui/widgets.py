"""Reusable widgets the pages draw: a method's option form generated from its config dataclass, a prompt's
tokens as coloured chips, and the comparison picker that remembers the one chosen last on any page.
"""

from __future__ import annotations

import html
import json
import zlib
from typing import Any

import pandas as pd
import streamlit as st

from core.app.forms import OptionField, config_fields
from core.app.service import UserWorkspace
from core.methods import REGISTRY
from ui.session import app_state, save_draft


def method_label(name: str) -> str:
    """A method as the pages name it: its label and its id, "Prompt tuning (prompt_tuning)"."""
    cls = REGISTRY.get(name)
    return f"{cls.label} ({name})" if cls else name


def option_form(method: str, saved: dict[str, Any], columns: list | None = None) -> dict[str, Any]:
    """Widgets generated from the method's config dataclass (spread over `columns`, choices and switches
    first); returns every field's current value."""
    cls = REGISTRY[method]
    values: dict[str, Any] = {}
    specs = sorted(config_fields(cls.config_cls), key=lambda f: f.kind not in ("enum", "bool"))
    if not specs:
        st.caption("This method has no options.")
    columns = columns or [st.container()]
    for i, f in enumerate(specs):
        with columns[i % len(columns)]:
            values[f.name] = _field_widget(method, f, saved.get(f.name, f.default))
    return values


def _field_widget(method: str, f: OptionField, value: Any) -> Any:
    key = f"opt-{method}-{f.name}"
    label = f.label
    helptext = f"{f.help} (`{f.name}`)" if f.help else f"`{f.name}`"
    if f.kind == "bool":
        return st.checkbox(label, value=bool(value), help=helptext, key=key)
    if f.kind == "int":
        return st.number_input(label, value=None if value is None else int(value), step=1, help=helptext, key=key)
    if f.kind == "float":
        return st.number_input(
            label, value=None if value is None else float(value), format="%g", help=helptext, key=key
        )
    if f.kind == "enum":
        index = f.choices.index(value) if value in f.choices else 0
        return st.selectbox(label, f.choices, index=index, help=helptext, key=key)
    if f.kind == "str":
        return st.text_input(label, value="" if value is None else str(value), help=helptext, key=key)
    text = st.text_input(f"{label} (JSON)", value=json.dumps(value), help=helptext, key=key)
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        st.error(f"{label}: not valid JSON; write it like {json.dumps(f.default)}")
        return f.default


KIND_COLORS = {
    "special": "#d0d0d0",
    "text": "#eef2f7",
    "soft [P]": "#ffd8a8",
    "trigger [T]": "#c3fae8",
    "[MASK]": "#ffc9c9",
}


def token_chips(tokens: pd.DataFrame) -> None:
    """Tokens as coloured chips (escaped: the text comes from the user's data)."""
    chips = "".join(
        f'<span title="{html.escape(row.kind)} · id {row.id}" style="background:{KIND_COLORS.get(row.kind, "#eee")};'
        f"border-radius:4px;padding:1px 4px;margin:1px;display:inline-block;font-family:monospace;"
        f'font-size:0.85em">{html.escape(str(row.token))}</span>'
        for row in tokens.itertuples()
    )
    legend = " ".join(
        f'<span style="background:{c};border-radius:4px;padding:1px 4px">{html.escape(k)}</span>'
        for k, c in KIND_COLORS.items()
    )
    st.markdown(
        f"<div style='line-height:1.9'>{chips}</div><div style='font-size:0.8em'>{legend}</div>",
        unsafe_allow_html=True,
    )


def group_label(group: dict) -> str:
    """A comparison in the picker: its id, how many runs it has, and how many of them are in each status."""
    counts = ", ".join(f"{n} {status}" for status, n in sorted(group["statuses"].items()))
    runs = "run" if group["n_runs"] == 1 else "runs"
    return f"{group['group_id']} · {group['n_runs']} {runs} ({counts})"


def pick_group(ws: UserWorkspace, *, key: str, need_success: bool = False, or_active: bool = False) -> str | None:
    """A selectbox of comparison groups, newest first, showing the one chosen last (launched, opened from a share
    link, or picked on any page). Only a person's own pick changes that choice: a page whose list leaves it out
    (Predict lists only comparisons with finished runs) shows its newest one without forgetting it. `need_success`
    lists only comparisons with a succeeded run, and with `or_active` also those with runs queued or running
    (Compare shows a comparison as its runs land)."""
    groups = ws.groups()
    if need_success:
        wanted = ("succeeded", "queued", "running") if or_active else ("succeeded",)
        groups = [g for g in groups if any(g["statuses"].get(s) for s in wanted)]
    if not groups:
        return None
    ids = [g["group_id"] for g in groups]
    last = app_state().get("last_group")
    wanted = last if last in ids else (st.session_state.get(key) if st.session_state.get(key) in ids else ids[0])
    labels = {g["group_id"]: group_label(g) for g in groups}
    # The browser keeps showing a selectbox's old option text while its value stays the same, so the widget is
    # keyed by its labels too: when a count changes ("1 queued" -> "1 succeeded") a fresh one shows the new text.
    widget = f"{key}-{zlib.crc32(json.dumps(labels, sort_keys=True).encode()):08x}"
    if st.session_state.get(widget) != wanted:
        st.session_state[widget] = wanted
    st.session_state[key] = st.selectbox(
        "Comparison", ids, format_func=labels.get, key=widget, on_change=_picked, args=(widget,)
    )
    return st.session_state[key]


def _picked(widget: str) -> None:
    app_state()["last_group"] = st.session_state[widget]
    save_draft()
