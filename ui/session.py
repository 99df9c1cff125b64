"""Who this session is and what they are working on: the process-wide `Workspace` (one per server, shared by every
session), this person's view of it, their current choices kept across page switches and saved on the server as a
draft for their next visit, and the share links that open a comparison read-only for someone else.
"""

from __future__ import annotations

import atexit
import json
import sys
from typing import Any

import streamlit as st

from core.app.service import NotYours, UserWorkspace, Workspace, ptune_home
from core.runs.cluster import ClusterError
from core.settings import SettingError
from ui.gate import admit


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


_SHARED = "ptune-share-opened"


def open_share_link(ws: UserWorkspace) -> bool:
    """A `?share=TOKEN` link adds that comparison to this person's list, read-only, and selects it; True when it did
    (the caller then opens Compare on it). The link waits out the token form (the parameter stays in the address
    until the person is let in), so a browser without the token lands on the comparison once it is given."""
    token = st.query_params.get("share")
    if not token:
        if st.session_state.pop(_SHARED, False):  # said on the page the link opened, after the switch to it
            st.toast(
                "A shared comparison was added to your list (read-only).",
                icon=":material/visibility:",
                duration="long",
            )
        return False
    del st.query_params["share"]
    try:
        app_state()["last_group"] = ws.accept_share(token)
    except NotYours as err:
        st.error(str(err))
        return False
    save_draft()
    st.session_state[_SHARED] = True
    return True


def share_link(ws: UserWorkspace, group_id: str) -> str:
    """The address that opens this comparison read-only for whoever has it."""
    base = (st.context.url or "").split("?")[0]
    return f"{base}?share={ws.share(group_id)}"
