"""In a real browser: the answer as it lands. A comparison of a cheap method (manual) and a long learned one
(prompt tuning) on a tiny model, run by the app's own worker processes: Compare opens it while it runs and shows
the manual prompt's score as a provisional verdict before the last run ends, with tables that fit a 1,400 px
window; when the last run ends (cancelled here), the same open page turns it into the final verdict."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from core.runs.store import RunStore
from tests.test_e2e_browser import Driver, chromium, require_chromium, streamlit_server
from tests.test_workspace import tiny_csv
from tests.tiny_models import save_tiny

# streamlit + Chromium + a training worker: one such test at a time (pytest-xdist)
pytestmark = pytest.mark.xdist_group("browser")
LONG = 1_000_000  # steps: the learned run is still training whenever the page is looked at


def clipped_tables(page) -> list[dict]:
    """The data frames whose columns do not fit their frame (a horizontal scroll hides some of them)."""
    return page.evaluate(
        """() => [...document.querySelectorAll('[data-testid=stDataFrame]')].map(frame => {
            const s = frame.querySelector('.dvn-scroller');
            return {scroll: s ? s.scrollWidth : null, client: s ? s.clientWidth : null,
                    frame: frame.getBoundingClientRect().width};
        }).filter(t => t.scroll === null || t.scroll > t.client + 1)"""
    )


def test_compare_shows_a_provisional_verdict_before_the_last_run_ends(tmp_path: Path) -> None:
    require_chromium()
    model = save_tiny("gpt2", tmp_path / "tiny-gpt2")
    data = tmp_path / "reviews.csv"
    data.write_bytes(tiny_csv(30))
    home = tmp_path / "home"
    with streamlit_server(home, log=tmp_path / "streamlit.log") as url, chromium((1400, 1000)) as context:
        page = context.new_page()
        app = Driver(page, url)
        app.load_data(data, k=4)
        group = app.launch(str(model), ["manual", "prompt_tuning"], steps=LONG, patience=0)
        with RunStore(home / "runs.db") as store:
            learned = next(r for r in store.list_runs(group_id=group) if r["method"] == "prompt_tuning")
            try:
                provisional_then_final(app, store, group, learned["id"])
            except Exception:
                page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
                print(f"screenshot: {tmp_path / 'failure.png'}; server log: {tmp_path / 'streamlit.log'}")
                raise
            finally:  # the worker outlives the server: never leave it training
                store.request_cancel(learned["id"])


def provisional_then_final(app: Driver, store: RunStore, group: str, learned: str) -> None:
    page = app.page
    app.nav("Compare")
    app.shows_group(group)
    app.see(re.compile(r"Provisional — so far \(1 of 2 runs scored\): your template #1 .* \d\.\d{3} on test"))
    app.see(re.compile(r"Prompt tuning still training"))
    assert store.get_run(learned)["status"] == "running"  # seen before the last run ended
    page.get_by_test_id("stDataFrame").first.wait_for()
    assert clipped_tables(page) == []
    assert page.get_by_role("button", name="Share read-only").count() == 1
    assert store.request_cancel(learned)
    # the open page follows without a reload: the final verdict replaces the provisional one
    app.see(re.compile(r"is best \(chosen on dev"), timeout=60)
    assert page.get_by_text(re.compile("^Provisional")).count() == 0


def test_prompts_against_fine_tuning_fit_the_window(tmp_path: Path) -> None:
    """A manual prompt and a fine-tune chosen in the browser, run by the app's workers: Compare's section on
    fine-tuning (its table, the scatter) shows, and no table scrolls sideways in a 1,400 px window."""
    require_chromium()
    model = save_tiny("gpt2", tmp_path / "tiny-gpt2")
    data = tmp_path / "reviews.csv"
    data.write_bytes(tiny_csv(30))
    with streamlit_server(tmp_path / "home", log=tmp_path / "streamlit.log") as url, chromium((1400, 1000)) as ctx:
        page = ctx.new_page()
        app = Driver(page, url)
        app.load_data(data, k=4)
        group = app.launch(str(model), ["manual"], steps=4, references=["finetune"])
        app.nav("Compare")
        app.shows_group(group)
        app.see(re.compile(r"^Against fine-tuning \(Fine-tuning, chosen on dev"), timeout=180)
        app.see("Prompts against fine-tuning")
        page.get_by_test_id("stVegaLiteChart").last.wait_for()
        page.get_by_test_id("stDataFrame").first.wait_for()
        try:
            assert clipped_tables(page) == []
        finally:
            app.shoot(tmp_path / "compare-finetuning.png")
            print(f"screenshot: {tmp_path / 'compare-finetuning.png'}")
