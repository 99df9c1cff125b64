"""PTune Studio: the Streamlit entry point — page config, the sidebar's backbone status, and the navigation.

Run with `streamlit run app.py`. Every page is a thin view over `core/` (see DESIGN.md).
"""

import streamlit as st

from core.runs.store import StoreDamaged
from ui.common import NAVIGATION, page
from ui.offline import reword_connection_errors
from ui.session import open_share_link, workspace
from ui.sidebar import sidebar_status

st.set_page_config(page_title="PTune Studio", page_icon=":material/tune:", layout="wide")
reword_connection_errors()  # before the gate: a page showing only the token form loses the server too
try:
    ws = workspace()  # lets the session in first: a login or token form stops here until it is answered
    navigation = st.navigation([page(name) for name in NAVIGATION])
    if open_share_link(ws):  # a shared comparison, just accepted: its Compare page, not the default one
        st.switch_page(page("compare"))
    sidebar_status(ws)
    navigation.run()
except StoreDamaged as err:  # every page needs the store: say which file is damaged and how to restore it
    st.error(str(err), icon=":material/database:")
