"""core/app/access.py: how a deployment admits people and how their work is labelled."""

from __future__ import annotations

import os
import stat

import pytest

from core.app.access import (
    TOKEN_FILE,
    AccessMode,
    access_mode,
    access_token,
    new_workspace_key,
    owner_id,
    token_matches,
    valid_workspace_key,
)


@pytest.mark.parametrize(
    ("oidc", "address", "env", "mode"),
    [
        (True, None, False, AccessMode.OIDC),  # a login provider always wins
        (True, "localhost", True, AccessMode.OIDC),
        (False, "localhost", False, AccessMode.OPEN),  # loopback only: nobody else can reach it
        (False, "127.0.0.1", False, AccessMode.OPEN),
        (False, "::1", False, AccessMode.OPEN),
        (False, "localhost", True, AccessMode.TOKEN),  # an explicit token is always asked for
        (False, None, False, AccessMode.TOKEN),  # Streamlit's default binds every interface
        (False, "0.0.0.0", False, AccessMode.TOKEN),
        (False, "192.168.1.5", False, AccessMode.TOKEN),
    ],
)
def test_access_mode(oidc, address, env, mode):
    assert access_mode(oidc_configured=oidc, bind_address=address, token_from_env=env) is mode


def test_generated_token_is_stored_once_owner_only(tmp_path, monkeypatch):
    monkeypatch.delenv("PTUNE_TOKEN", raising=False)
    token = access_token(tmp_path)
    assert len(token) >= 30 and access_token(tmp_path) == token
    mode = stat.S_IMODE(os.stat(tmp_path / TOKEN_FILE).st_mode)
    assert mode == 0o600
    monkeypatch.setenv("PTUNE_TOKEN", "from-the-environment")
    assert access_token(tmp_path) == "from-the-environment"


def test_token_comparison():
    assert token_matches("abc", "abc")
    assert not token_matches("abd", "abc") and not token_matches("", "abc") and not token_matches(None, "abc")


def test_workspace_keys_and_owner_ids():
    key = new_workspace_key()
    assert valid_workspace_key(key) and key != new_workspace_key()
    for bad in ("", None, "short", "../../etc/passwd-aaaaaaaaaaaaaaaaaa", "a" * 65, "ключ" * 8):
        assert not valid_workspace_key(bad)
    assert owner_id(user="Alice@Example.org ") == "user:alice@example.org"
    assert owner_id(workspace_key=key) == f"key:{key}"
    with pytest.raises(ValueError):
        owner_id(workspace_key="forged")
