"""Who may use the app, and whose work is whose: the decisions, kept free of Streamlit so they are unit-tested.

Three ways in, chosen once per deployment (Jupyter's habits, with Streamlit's own login on top):
- **OIDC login** (`st.login`) when `.streamlit/secrets.toml` configures an `[auth]` provider: a person is their
  e-mail address (or subject id), the same in every browser and tab;
- **an access token** otherwise, whenever the server listens beyond this machine: `PTUNE_TOKEN` from the
  environment, else one generated at first start, stored in `<home>/access_token` (mode 0600) and printed with the
  URL; every browser session must present it (`?token=...` once, then a cookie);
- **open**, with no configuration and the server bound to a loopback address only (`make app` does that):
  nobody else can reach it, as with a local Jupyter.

Without a login, each browser gets a private workspace key (a random id kept in a cookie), and everything it
makes is owned by that key. The `Workspace` API takes the owner on every call (core/app/service.py).
"""

from __future__ import annotations

import hmac
import os
import re
import secrets
from enum import Enum
from pathlib import Path

TOKEN_ENV = "PTUNE_TOKEN"
TOKEN_FILE = "access_token"
TOKEN_COOKIE = "ptune_token"
KEY_COOKIE = "ptune_workspace"
LOOPBACK = ("localhost", "127.0.0.1", "::1")
_KEY = re.compile(r"[A-Za-z0-9_-]{22,64}")


class AccessMode(str, Enum):
    OIDC = "oidc"
    TOKEN = "token"
    OPEN = "open"


def access_mode(*, oidc_configured: bool, bind_address: str | None, token_from_env: bool) -> AccessMode:
    """How this deployment admits people: a login provider wins, then an explicit token, then loopback-only."""
    if oidc_configured:
        return AccessMode.OIDC
    if token_from_env or (bind_address or "").strip() not in LOOPBACK:
        return AccessMode.TOKEN
    return AccessMode.OPEN


def access_token(home: Path) -> str:
    """The deployment's token: `$PTUNE_TOKEN`, else the one stored under `home` (created once, owner-only)."""
    given = os.environ.get(TOKEN_ENV, "").strip()
    if given:
        return given
    path = home / TOKEN_FILE
    if path.exists():
        stored = path.read_text(encoding="utf-8").strip()
        if stored:
            return stored
    home.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(token)
    return token


def token_matches(given: str | None, expected: str) -> bool:
    """Constant-time comparison, so the token cannot be guessed a character at a time."""
    return isinstance(given, str) and bool(given) and hmac.compare_digest(given.encode(), expected.encode())


def new_workspace_key() -> str:
    return secrets.token_urlsafe(24)


def valid_workspace_key(key: str | None) -> bool:
    """A key this app could have made (random, URL-safe, long enough not to be guessed)."""
    return isinstance(key, str) and bool(_KEY.fullmatch(key))


def owner_id(*, user: str | None = None, workspace_key: str | None = None) -> str:
    """The owner recorded with a user's work: `user:<login>` when logged in, else `key:<private key>`."""
    if user:
        return f"user:{user.strip().lower()}"
    if valid_workspace_key(workspace_key):
        return f"key:{workspace_key}"
    raise ValueError("a session needs a login or a private workspace key")
