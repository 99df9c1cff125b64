"""The production defaults ship in both .streamlit/config.toml and the Dockerfile, and Streamlit accepts them."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from streamlit import config as st_config

from core.data import Limits

ROOT = Path(__file__).resolve().parent.parent
EXPECTED = {
    "client.showErrorDetails": "none",
    "client.toolbarMode": "minimal",
    "server.enableXsrfProtection": True,
    "server.maxUploadSize": Limits().max_bytes // 2**20,
}


def test_config_toml_sets_the_production_defaults():
    data = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text(encoding="utf-8"))
    for key, value in EXPECTED.items():
        section, name = key.split(".")
        assert data[section][name] == value, key
        assert key in st_config._config_options_template  # a real Streamlit option, not a typo


def test_dockerfile_sets_the_same_defaults():
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    env = dict(re.findall(r"(STREAMLIT_[A-Z_]+)=(\S+)", text))
    for key, value in EXPECTED.items():
        var = "STREAMLIT_" + re.sub(r"(?<!^)(?=[A-Z])", "_", key.replace(".", "_")).upper()
        assert env[var] == str(value).lower(), var
