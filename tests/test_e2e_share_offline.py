"""In a real browser, Jupyter's habits (issue 31): a share link opened by a browser that has no access token yet
asks for it and then lands on the shared comparison's Compare page; a server that stops answering is said to be
down in PTune Studio's words, not Streamlit's, and the page comes back by itself when it is up again."""

from __future__ import annotations

import re
from pathlib import Path

from core.app.service import Workspace
from tests.test_e2e_browser import Driver, chromium, free_port, require_chromium, streamlit_server
from tests.test_workspace import request
from tests.tiny_models import save_tiny
from ui.offline import STREAMLIT_WORDS, WORDS

TOKEN = "the-servers-token"


def shared_comparison(home: Path, model: Path) -> tuple[str, str]:
    """A finished comparison of someone else's in `home`, and the token of its share link."""
    ws = Workspace(home)
    try:
        owner = ws.user("user:owner@example.org")
        group = owner.launch(request(model, seeds=[0], methods={"manual": {}, "baseline": {}}))
        for run in owner.runs(group):
            assert ws.jobs.wait(run["id"], 120) == "succeeded"
        return group, owner.share(group)
    finally:
        ws.close()


def clipped_cells(page) -> list[str]:
    """The text of every cell of the page's HTML tables that is cut off (wider than its cell), and of any table
    that scrolls sideways (wider than its frame)."""
    return page.evaluate(
        """() => [...document.querySelectorAll('[data-testid=stTable]')].flatMap(frame => [
            ...[...frame.querySelectorAll('th, td')].filter(c => c.scrollWidth > c.clientWidth + 1),
            ...[frame, ...frame.querySelectorAll('div')].filter(d => d.scrollWidth > d.clientWidth + 1),
        ].map(e => e.textContent.slice(0, 80)))"""
    )


def test_a_share_link_asks_for_the_token_then_opens_the_shared_comparison(tmp_path: Path, monkeypatch) -> None:
    require_chromium()
    monkeypatch.setenv("PTUNE_TOKEN", TOKEN)
    home = tmp_path / "home"
    group, share = shared_comparison(home, save_tiny("gpt2", tmp_path / "tiny-gpt2"))
    with streamlit_server(home, log=tmp_path / "streamlit.log") as url, chromium((1400, 900)) as context:
        page = context.new_page()
        app = Driver(page, url)
        try:
            page.goto(f"{url}/?share={share}")
            app.fill("Access token", TOKEN)  # a browser new to this server: the token form first
            page.get_by_role("heading", name=re.compile("^Compare")).first.wait_for()
            page.get_by_text("A shared comparison was added to your list (read-only).").first.wait_for()  # a toast
            app.wait_idle()
            app.shows_group(group)
            app.see("Accuracy on the test split")
            tables = page.get_by_test_id("stTable")
            tables.first.wait_for()
            assert tables.count() == 3  # how each prompt did, calibration, cost: each cell read whole at 1,400 px
            page.get_by_text("none: no prompt to calibrate").first.wait_for()  # the majority row, in words
            assert tables.locator("td").count() >= 3 * 2 * 4  # the cells measured: 3 tables, 2 rows, 4+ columns
            assert clipped_cells(page) == []
            app.shoot(tmp_path / "compare-shared.png")
            assert not page.get_by_test_id("stTable").get_by_text(re.compile(r"^(None|nan)$")).count()
            assert page.get_by_role("heading", name=re.compile("^Data")).count() == 0
            assert "share=" not in page.url and "token=" not in page.url
        except Exception:
            page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
            print(f"screenshot: {tmp_path / 'failure.png'}; server log: {tmp_path / 'streamlit.log'}")
            raise


def test_a_server_that_stops_answering_says_so_in_our_words(tmp_path: Path) -> None:
    require_chromium()
    home, port, first = tmp_path / "home", free_port(), []
    with chromium((1400, 900)) as context:
        page = context.new_page()
        try:
            with streamlit_server(home, port=port, log=tmp_path / "first.log", procs=first) as url:
                page.goto(url)
                page.get_by_test_id("stSidebarNav").wait_for()
                Driver(page, url).wait_idle()
                first[0].kill()  # down, as a crash or a restart leaves it
                first[0].wait(10)
                page.get_by_text(WORDS).first.wait_for(timeout=90_000)
                for theirs in (*STREAMLIT_WORDS, "Are you connected to the internet?", "streamlit run"):
                    assert page.get_by_text(theirs).count() == 0, theirs
            with streamlit_server(home, port=port, log=tmp_path / "second.log") as url:  # up again: it reconnects
                page.get_by_text(WORDS).first.wait_for(state="detached", timeout=90_000)
                page.get_by_test_id("stSidebarNav").wait_for()
        except Exception:
            page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
            print(f"screenshot: {tmp_path / 'failure.png'}; logs in {tmp_path}")
            raise
