"""PTune Studio: the Streamlit entry point — page config, the sidebar's backbone status, and the navigation.

Run with `streamlit run app.py`. Every page is a thin view over `core/` (see DESIGN.md).
"""

import streamlit as st

from pages.common import sidebar_status, workspace

st.set_page_config(page_title="PTune Studio", page_icon=":material/tune:", layout="wide")

PAGES = [
    st.Page("pages/1_Data.py", title="Data", icon=":material/table:", default=True),
    st.Page("pages/2_Prompts.py", title="Prompts", icon=":material/edit_note:"),
    st.Page("pages/3_Train.py", title="Train", icon=":material/model_training:"),
    st.Page("pages/4_Runs.py", title="Runs", icon=":material/monitoring:"),
    st.Page("pages/5_Compare.py", title="Compare", icon=":material/balance:"),
    st.Page("pages/6_Predict.py", title="Predict & download", icon=":material/download:"),
]

navigation = st.navigation(PAGES)
sidebar_status(workspace())
navigation.run()
