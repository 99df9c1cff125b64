"""PTune Studio: the Streamlit entry point — page config, the sidebar's backbone status, and the navigation.

Run with `streamlit run app.py`. Every page is a thin view over `core/` (see DESIGN.md).
"""

import streamlit as st

from pages.common import NAVIGATION, page, sidebar_status, workspace

st.set_page_config(page_title="PTune Studio", page_icon=":material/tune:", layout="wide")
navigation = st.navigation([page(name) for name in NAVIGATION])
sidebar_status(workspace())
navigation.run()
