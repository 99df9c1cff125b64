"""Who is using this browser session: OIDC login, the access token, or open on a loopback-only server.

The decisions are `core/app/access.py`'s; this module asks Streamlit for the inputs (secrets, bind address,
cookies, query parameters), shows the login or token form when needed, and remembers the answer in the session
(and in cookies, so a reload or a second tab of the same browser is the same person). Streamlit's upload endpoint
answers outside any page, so it is gated here too: it takes files only from sessions let in (`guard_uploads`).
"""

from __future__ import annotations

import json
import os
import sys

import streamlit as st
from streamlit.runtime import Runtime
from streamlit.runtime.scriptrunner import get_script_run_ctx

from core.app.access import (
    KEY_COOKIE,
    TOKEN_COOKIE,
    TOKEN_ENV,
    AccessMode,
    access_mode,
    access_token,
    new_workspace_key,
    owner_id,
    token_matches,
    valid_workspace_key,
)
from core.app.service import ptune_home

OWNER = "ptune-owner"
COOKIE_DAYS = 30
_admitted: set[str] = set()  # ids of the sessions let in: only these may upload files (set ops are atomic)


def deployment_mode() -> AccessMode:
    return access_mode(
        oidc_configured=_oidc_configured(),
        bind_address=st.get_option("server.address"),
        token_from_env=bool(os.environ.get(TOKEN_ENV, "").strip()),
    )


@st.cache_resource(show_spinner=False)
def announce(mode: AccessMode) -> str:
    """Say once, in the server's log, how people get in (the token with the URL, as Jupyter does)."""
    port = st.get_option("server.port")
    if mode is AccessMode.OPEN:
        line = f"PTune Studio: open to this machine only (bound to {st.get_option('server.address')}), no login"
    elif mode is AccessMode.TOKEN:
        line = f"PTune Studio: every browser needs the access token: http://<this host>:{port}/?token={access_token(ptune_home())}"
    else:
        line = "PTune Studio: sign-in through the OIDC provider configured in .streamlit/secrets.toml"
    print(line, file=sys.stderr, flush=True)
    return line


def admit() -> str:
    """This session's owner id; stops the page behind a login or token form until the person is let in."""
    guard_uploads()
    if OWNER not in st.session_state:
        st.session_state[OWNER] = _let_in()
    ctx = get_script_run_ctx()
    if ctx is not None:  # on every run: a session that reconnects after its upload right lapsed gets it back
        _admitted.add(ctx.session_id)
    return st.session_state[OWNER]


def _let_in() -> str:
    """The owner id once the person passed the deployment's gate (the page stops at its form until then)."""
    mode = deployment_mode()
    announce(mode)
    if mode is AccessMode.OIDC:
        if not st.user.is_logged_in:
            _login_form()
        return owner_id(user=str(st.user.get("email") or st.user.get("sub")))
    if mode is AccessMode.TOKEN and not _token_accepted():
        _token_form()
    return owner_id(workspace_key=_workspace_key())


@st.cache_resource(show_spinner=False)
def guard_uploads() -> bool:
    """Once per server: `PUT /_stcore/upload_file/<session>/<file>` is refused (400, before any of the body is read)
    for a session not let in. Streamlit accepted a file for any live session, one showing only the token form too,
    and kept it in memory; its upload route asks `Runtime.is_active_session` first (and nothing else asks it), so
    that question also asks whether the session was let in. False where no server runs (AppTest)."""
    if not Runtime.exists():
        return False
    runtime = Runtime.instance()
    is_active = runtime.is_active_session

    def active_and_admitted(session_id: str) -> bool:
        if not is_active(session_id):
            _admitted.discard(session_id)
            return False
        return session_id in _admitted

    runtime.is_active_session = active_and_admitted
    return True


def _oidc_configured() -> bool:
    try:
        return "auth" in st.secrets
    except (FileNotFoundError, KeyError, st.errors.StreamlitSecretNotFoundError):
        return False


def _login_form() -> None:
    st.title("PTune Studio")
    st.write("Sign in to see your comparisons.")
    st.button("Sign in", on_click=st.login, type="primary")
    st.stop()


def _token_accepted() -> bool:
    expected = access_token(ptune_home())
    for given in (st.query_params.get("token"), st.context.cookies.get(TOKEN_COOKIE), st.session_state.get("token")):
        if token_matches(given, expected):
            _remember(TOKEN_COOKIE, expected)
            if "token" in st.query_params:  # out of the address bar (and history, bookmarks), as Jupyter does
                del st.query_params["token"]
            return True
    return False


def _token_form() -> None:
    st.title("PTune Studio")
    st.write(
        "This server needs its access token. It is printed in the server's log once a browser has connected "
        "(or set with the PTUNE_TOKEN environment variable)."
    )
    st.text_input("Access token", type="password", key="token", help="Paste it and press Enter.")
    if st.session_state.get("token"):
        st.error("That token is not right; copy it again from the server's log.")
    elif st.query_params.get("token"):
        st.error("The token in this link is not right; copy the link again from the server's log.")
    st.stop()


def _workspace_key() -> str:
    """This browser's private workspace key: from its cookie, else a new one (remembered in a cookie)."""
    key = st.context.cookies.get(KEY_COOKIE)
    if not valid_workspace_key(key):
        key = new_workspace_key()
    _remember(KEY_COOKIE, key)
    return key


def _remember(name: str, value: str) -> None:
    """Set a first-party cookie from the page (Streamlit has no server-side API for it)."""
    cookie = f"{name}={value}; path=/; max-age={COOKIE_DAYS * 86400}; SameSite=Strict"
    st.html(f"<script>document.cookie = {json.dumps(cookie)};</script>", unsafe_allow_javascript=True)
