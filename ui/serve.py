"""Start the app as `streamlit run app.py` does, with the pages' imports warmed from the first second.

    python -m ui.serve [streamlit run options]      # e.g. --server.address 0.0.0.0 --server.port 8501

Streamlit runs `app.py` only when the first browser connects, so with plain `streamlit run app.py` that first
visitor waits while torch, transformers, pandas and the engine are imported (about 3 s of a 2-core CPU with the
files in the OS cache, far more without). Here they are imported before the server listens (as Jupyter does its
set-up before it prints its URL): the server answers a few seconds later, and its first page then loads as fast
as any other. `--warm-in-background` starts listening at once and imports in a thread instead (a visitor who
arrives in the meantime waits only for the rest); the thread imports in the order `app.py` does, so the script
thread and it never hold import locks in opposite orders. Nothing but imports happens either way: no workspace,
no store, nothing per person.
"""

from __future__ import annotations

import importlib
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# What the first page (app.py, then Data) imports, in app.py's order; then what the other pages add.
WARM_MODULES = (
    "core.runs.store",
    "ui.common",
    "ui.offline",
    "ui.session",
    "ui.sidebar",
    "pandas",
    "core.app.views",
    "core.data",
    "ui.charts",
    "ui.formatting",
    "ui.uploads",
    "pyarrow",  # st.dataframe's first table
    "altair",  # Compare's charts
    "core.app.forms",
    "core.runs.estimate",
    "core.engine.backbone_pool",
    "core.prompts.artifacts",
    "core.prompts.export",
    "core.prompts.predict",
    "ui.widgets",
)
# transformers imports its classes on first use: the ones inspecting and loading a backbone need.
WARM_TRANSFORMERS = ("AutoConfig", "AutoTokenizer", "AutoModelForCausalLM", "AutoModelForMaskedLM")


def warm(modules: tuple[str, ...] = WARM_MODULES, names: tuple[str, ...] = WARM_TRANSFORMERS) -> list[str]:
    """Import `modules` (then touch transformers' `names`); returns those that failed, which are left for the
    page that needs them to report (an import error is the page's to show, not this thread's)."""
    failed = []
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # noqa: BLE001 (the page importing it says what is wrong)
            failed.append(name)
    try:
        transformers = importlib.import_module("transformers")
        for attr in names:
            getattr(transformers, attr)
    except Exception:  # noqa: BLE001
        failed.append("transformers")
    return failed


def _warm_and_say() -> None:
    start = time.perf_counter()
    failed = warm()
    note = f"; not importable: {', '.join(failed)}" if failed else ""
    print(f"PTune Studio: pages' imports warmed in {time.perf_counter() - start:.1f} s{note}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    if str(ROOT) not in sys.path:  # the pages import `core` and `ui` from the checkout, as under streamlit run
        sys.path.insert(0, str(ROOT))
    from streamlit.web import cli  # first: the thread below then finds streamlit whole, never half-imported

    given = list(sys.argv[1:] if argv is None else argv)
    if "--warm-in-background" in given:
        given.remove("--warm-in-background")
        threading.Thread(target=_warm_and_say, name="ptune-warm-imports", daemon=True).start()
    elif "--help" not in given:
        _warm_and_say()
    args = ["run", str(ROOT / "app.py"), *given]
    return cli.main(args, prog_name="streamlit", standalone_mode=True) or 0


if __name__ == "__main__":
    raise SystemExit(main())
