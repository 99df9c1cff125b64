"""`python -m ui.serve`: `streamlit run app.py` with the pages' imports warmed in a background thread."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from ui import serve

ROOT = Path(__file__).resolve().parent.parent


def test_every_warmed_module_imports():
    assert serve.warm() == []


def test_warms_in_app_py_order():
    """The thread imports what app.py imports, in app.py's order (never two import locks taken in opposite
    orders by the script thread and the warming one)."""
    tree = ast.parse((ROOT / "app.py").read_text())
    app_imports = [n.module for n in tree.body if isinstance(n, ast.ImportFrom)]
    assert app_imports == list(serve.WARM_MODULES[: len(app_imports)])


def test_starts_streamlit_run_on_app_py():
    out = subprocess.run(
        [sys.executable, "-m", "ui.serve", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "streamlit run" in out.stdout.lower() or "Usage" in out.stdout
