"""A real `streamlit run app.py`, driven over its websocket as a browser is: what the first visit of a fresh server
shows, before and after the access token.

AppTest cannot show this: Streamlit decides once per server process whether a `pages/` folder beside the entry
script is an old-style page list, and until `st.navigation` has run it lists every file there (helper modules
too) and serves them as pages. So each case here starts its own server and lands on its URL first.
"""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from http.cookies import SimpleCookie
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


def _xsrf_cookie(url: str) -> str:
    """The `_streamlit_xsrf` cookie the health check (the page's first request) hands to any visitor."""
    with urllib.request.urlopen(url + "/_stcore/health") as response:
        cookies = SimpleCookie()
        for header in response.headers.get_all("Set-Cookie") or []:
            cookies.load(header)
    return cookies["_streamlit_xsrf"].value


def _put_file(url: str, session_id: str, xsrf: str) -> int:
    """`PUT /_stcore/upload_file/<session>/<file>` with one small file, the XSRF cookie echoed as its header."""
    boundary = "ptune-test-boundary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="rows.csv"\r\n'
        f"Content-Type: text/csv\r\n\r\ntext,label\r\na great movie,positive\r\n--{boundary}--\r\n"
    ).encode()
    request = urllib.request.Request(
        f"{url}/_stcore/upload_file/{session_id}/file-1",
        data=body,
        method="PUT",
        headers={
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "X-Xsrftoken": xsrf,
            "Cookie": f"_streamlit_xsrf={xsrf}",
        },
    )
    try:
        with urllib.request.urlopen(request) as response:
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


def upload_from_a_session(url: str, query: str, *, session: str | None = None) -> tuple[int, str]:
    """Open a session as a browser does (`query` in its address), then, while it is open, PUT a file for it (or
    for the id `session`) as anyone who read its id could: the HTTP status, and what the session's page said."""

    async def run() -> tuple[int, str]:
        xsrf = await asyncio.to_thread(_xsrf_cookie, url)
        async with connect(url.replace("http", "ws") + "/_stcore/stream", subprotocols=["streamlit"]) as ws:
            msg = BackMsg()
            msg.rerun_script.query_string = query
            await ws.send(msg.SerializeToString())
            session_id, texts = "", []
            while True:
                fm = ForwardMsg()
                fm.ParseFromString(await asyncio.wait_for(ws.recv(), 60))
                kind = fm.WhichOneof("type")
                if kind == "new_session":
                    session_id = fm.new_session.initialize.session_id
                elif kind == "delta" and fm.delta.WhichOneof("type") == "new_element":
                    element = fm.delta.new_element
                    texts.append(str(getattr(getattr(element, element.WhichOneof("type")), "body", "")))
                elif kind == "script_finished":
                    break
            return await asyncio.to_thread(_put_file, url, session or session_id, xsrf), " ".join(texts)

    return asyncio.run(run())


def test_no_file_is_accepted_from_a_session_before_its_token(tmp_path: Path, monkeypatch):
    """Streamlit's upload endpoint answered 204 (and kept the file in memory) for a session showing only the token
    form; now only a session that presented the token may upload."""
    monkeypatch.setenv("PTUNE_TOKEN", TOKEN)
    with streamlit_server(tmp_path / "home") as url:
        status, page = upload_from_a_session(url, "")
        assert "needs its access token" in page and status == 400
        status, page = upload_from_a_session(url, "token=wrong")
        assert "The token in this link is not right" in page and status == 400
        status, page = upload_from_a_session(url, f"token={TOKEN}")
        assert "needs its access token" not in page and status == 204
