"""In a real browser: training outlives the web server. SIGKILL `streamlit run` mid-run, start it again, and the
same run finishes with no resume; a worker killed mid-run leaves a card that says so and offers Resume, while the
server keeps serving; a clean stop says which runs go on."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from core.runs.store import RunStore
from tests.test_e2e_browser import Driver, chromium, free_port, require_chromium, streamlit_server
from tests.test_worker_processes import kill_worker_of, wait_running
from tests.test_workspace import tiny_csv
from tests.tiny_models import save_tiny

# streamlit + Chromium + a training worker: one such test at a time (pytest-xdist)
pytestmark = pytest.mark.xdist_group("browser")
STEPS = 1500  # long enough to kill the server mid-run and restart it on this 2-core machine


def test_a_run_outlives_a_killed_server_and_a_dead_worker_offers_resume(tmp_path: Path) -> None:
    require_chromium()
    model = save_tiny("gpt2", tmp_path / "tiny-gpt2")
    data = tmp_path / "reviews.csv"
    data.write_bytes(tiny_csv(30))
    home, port, first = tmp_path / "home", free_port(), []
    with chromium() as context:
        page = context.new_page()
        try:
            with streamlit_server(home, port=port, log=tmp_path / "first.log", procs=first) as url:
                app = Driver(page, url)
                app.load_data(data, k=4)
                group = app.launch(str(model), ["prompt_tuning"], steps=STEPS, patience=0)
                app.nav("Runs")
                app.see(re.compile(r"training · step \d+"))
                first[0].kill()  # SIGKILL: the server gets no chance to clean up
                first[0].wait(10)
            with RunStore(home / "runs.db") as store:
                (run,) = store.list_runs(group_id=group)
                at_kill = wait_running(store, run["id"])["progress_step"]
                wait_running(store, run["id"], min_step=at_kill + 5)  # it trains on with no server at all
                # The same port (the browser's cookies: the same private workspace) on a new server.
                with streamlit_server(home, port=port, log=tmp_path / "second.log") as url:
                    page.goto(f"{url}/Runs")
                    app = Driver(page, url)
                    app.wait_all_done(1, timeout=300)
                    (done,) = store.list_runs(group_id=group)
                    assert done["id"] == run["id"] and done["status"] == "succeeded"  # no resume, no new attempt
                    assert done["worker"] == run["worker"] or run["worker"] is None

                    later = app.launch(None, ["prompt_tuning"], steps=STEPS * 100, patience=0)
                    app.nav("Runs")
                    app.shows_group(later)
                    app.see(re.compile(r"training · step \d+"))
                    (victim,) = store.list_runs(group_id=later)
                    kill_worker_of(store, victim["id"])
                    app.see(re.compile(r"interrupted at step \d+"), timeout=60)
                    app.see("worker process running this stopped")
                    page.get_by_role("button", name="Resume", exact=True).first.click()
                    app.see(re.compile(r"training(, resumed from step \d+)? · step \d+"), timeout=120)
                    resumed = next(r for r in store.list_runs(group_id=later) if r["id"] != victim["id"])
                    wait_running(store, resumed["id"])
                # A clean stop (SIGTERM) leaves the resumed run training and says so in the log.
                time.sleep(1)
                log = (tmp_path / "second.log").read_text()
                assert "1 run(s) keep going in worker processes" in log, log[-2000:]
                assert store.get_run(resumed["id"])["status"] == "running"
                assert store.request_cancel(resumed["id"])
                deadline = time.monotonic() + 60
                while store.get_run(resumed["id"])["status"] == "running" and time.monotonic() < deadline:
                    time.sleep(0.2)
                assert store.get_run(resumed["id"])["status"] == "cancelled"
        except Exception:
            page.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
            print(f"screenshot: {tmp_path / 'failure.png'}; logs in {tmp_path}")
            raise
