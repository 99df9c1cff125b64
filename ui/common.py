"""What every page shares to find its way: the six pages (listed once, in `NAVIGATION`: `app.py` gives them to
`st.navigation`, so the helper modules beside them in `ui/` are never pages), links between them, and the preambles
of a page about the chosen dataset or about one comparison, which stop the page with a link when there is none.

Only view code lives in `ui/`; everything that computes is in `core/` (the app's service layer is `core/app/`).
The other helpers: `ui/session.py` (the workspace, the person's state and draft, share links), `ui/uploads.py`
(the CSV uploader, uploads parsed once, the samples, K-shot checks), `ui/widgets.py` (option forms, token chips, the comparison picker),
`ui/formatting.py` (text for Markdown, sizes and counts), `ui/sidebar.py`, `ui/charts.py`, `ui/gate.py`,
`ui/offline.py`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from core.app.service import UserWorkspace
from core.data import DataError, LabeledDataset, Split, split_dataset
from ui.formatting import plain
from ui.session import app_state, workspace
from ui.uploads import dataset
from ui.widgets import pick_group

PAGES_DIR = Path(__file__).resolve().parent
NAVIGATION = {  # name -> (file in ui/, title, icon): the one place a page's file name is written
    "data": ("1_Data.py", "Data", ":material/table:"),
    "prompts": ("2_Prompts.py", "Prompts", ":material/edit_note:"),
    "train": ("3_Train.py", "Train", ":material/model_training:"),
    "runs": ("4_Runs.py", "Runs", ":material/monitoring:"),
    "compare": ("5_Compare.py", "Compare", ":material/balance:"),
    "predict": ("6_Predict.py", "Predict & download", ":material/download:"),
}


def page(name: str) -> st.Page:
    """The page called `name` (see NAVIGATION); st.navigation and every link use these objects."""
    file, title, icon = NAVIGATION[name]
    return st.Page(PAGES_DIR / file, title=title, icon=icon, default=name == "data")


def link(name: str, label: str) -> None:
    """A link to another page, with that page's icon."""
    st.page_link(page(name), label=label, icon=NAVIGATION[name][2])


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
