"""A real `streamlit run app.py`, driven over its websocket as a browser is: what the first visit of a fresh server
shows, before and after the access token.

AppTest cannot show this: Streamlit decides once per server process whether a `pages/` folder beside the entry
script is an old-style page list, and until `st.navigation` has run it lists every file there (helper modules
too) and serves them as pages. So each case here starts its own server and lands on its URL first.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from websockets.asyncio.client import connect

from tests.test_e2e_browser import streamlit_server

TOKEN = "the-right-token-for-tests"
PAGES = ["Data", "Prompts", "Train", "Runs", "Compare", "Predict & download"]


def visit(url: str, page: str, query: str = "") -> dict:
    """One browser visit of `url/page?query`: the page lists the server sent and the texts it drew."""

    async def run() -> dict:
        stream = url.replace("http", "ws") + "/_stcore/stream"
        async with connect(stream, subprotocols=["streamlit"], max_size=None) as ws:
            msg = BackMsg()
            msg.rerun_script.query_string, msg.rerun_script.page_name = query, page
            await ws.send(msg.SerializeToString())
            navigation, texts = [], []
            while True:
                fm = ForwardMsg()
                fm.ParseFromString(await asyncio.wait_for(ws.recv(), 60))
                kind = fm.WhichOneof("type")
                if kind == "navigation":
                    navigation.append([p.page_name for p in fm.navigation.app_pages])
                elif kind == "delta" and fm.delta.WhichOneof("type") == "new_element":
                    element = fm.delta.new_element
                    body = getattr(element, element.WhichOneof("type"))
                    texts.append(str(getattr(body, "body", "") or getattr(body, "label", "")))
                elif kind == "script_finished":
                    return {"navigation": navigation, "texts": " ".join(texts)}

    return asyncio.run(run())


@pytest.mark.parametrize("first", ["common", "gate", "Runs"])
def test_a_fresh_server_lists_no_pages_before_the_token_and_only_the_six_after(tmp_path: Path, monkeypatch, first):
    monkeypatch.setenv("PTUNE_TOKEN", TOKEN)
    with streamlit_server(tmp_path / "home") as url:
        before = visit(url, first)
        assert before["navigation"] == [] and "needs its access token" in before["texts"]
        wrong = visit(url, "", "token=wrong")
        assert wrong["navigation"] == [] and "The token in this link is not right" in wrong["texts"]
        after = visit(url, first, f"token={TOKEN}")
        assert after["navigation"] == [PAGES] and "needs its access token" not in after["texts"]
        assert "PTune Studio" in after["texts"]  # a real page (Data for a helper module's URL), never a blank one
