"""Page-switch time, idle and while a run trains: sidebar clicks in headless Chromium against `streamlit run app.py`.

    python benchmarks/bench_page_switch.py                          # this checkout, 24 clicks
    python benchmarks/bench_page_switch.py --before /work/main     # another checkout first, then this one
    python benchmarks/bench_page_switch.py --backbone models_cache/smollm2-135m --data data/samples/movie_reviews.csv --k 32

Per checkout: a fresh PTUNE_HOME, a tiny GPT-2 (random weights) as the backbone, a small CSV, then a long
prompt-tuning run is launched and, while it trains, the sidebar is clicked from page to page (Runs → Data →
Prompts → Train → Compare → Predict → Runs …); the same clicks are timed before the launch (idle). A click counts
until the new page's heading is shown and its script run has finished. Prints the medians and max per checkout,
with the load average before and after. The run is stopped at the end (a worker process outlives the server).
Uses the same server and browser helpers as tests/test_e2e_browser.py.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.test_e2e_browser import Driver, chromium, streamlit_server  # noqa: E402
from tests.test_workspace import tiny_csv  # noqa: E402
from tests.tiny_models import save_tiny  # noqa: E402

CYCLE = ("Data", "Prompts", "Train", "Compare", "Predict & download", "Runs")


def switch_times(app: Driver, clicks: int) -> dict[str, list[float]]:
    """Seconds per sidebar click, by the page clicked to, cycling through every page."""
    page = app.page
    times: dict[str, list[float]] = {}
    app.nav("Runs")
    for i in range(clicks):
        title = CYCLE[i % len(CYCLE)]
        start = time.perf_counter()
        page.get_by_test_id("stSidebarNav").get_by_text(title, exact=True).click()
        page.get_by_role("heading", name=title, exact=True).first.wait_for()
        page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for()
        times.setdefault(title, []).append(time.perf_counter() - start)
    return times


def measure(
    root: Path, clicks: int, steps: int, work: Path, backbone: Path | None = None, data: Path | None = None, k: int = 4
) -> dict:
    """Launch a long run on `root`'s app and time `clicks` page switches while it trains (a tiny GPT-2 on a tiny
    CSV unless a backbone folder and a CSV are given: the comparison's own scale)."""
    model = backbone or save_tiny("gpt2", work / "tiny-gpt2")
    if data is None:
        data = work / "reviews.csv"
        data.write_bytes(tiny_csv(30))
    load_before = os.getloadavg()
    with streamlit_server(work / "home", root=root, log=work / "streamlit.log") as url, chromium() as context:
        app = Driver(context.new_page(), url)
        app.load_data(data, k=k)
        idle = switch_times(app, clicks)
        app.launch(str(model), ["prompt_tuning"], steps=steps, patience=0)
        app.nav("Runs")
        app.see(re.compile(r"training · step \d+"), timeout=300)
        times = switch_times(app, clicks)
        still_training = app.page.get_by_text(re.compile(r"training · step \d+")).count() > 0
    stop_workers(work / "home" / "runs.db")
    every, idle_every = [t for v in times.values() for t in v], [t for v in idle.values() for t in v]
    return {
        "checkout": str(root),
        "clicks": len(every),
        "idle_median_s": round(statistics.median(idle_every), 3),
        "idle_max_s": round(max(idle_every), 3),
        "median_s": round(statistics.median(every), 3),
        "max_s": round(max(every), 3),
        "median_by_page_s": {k: round(statistics.median(v), 3) for k, v in times.items()},
        "still_training_at_end": still_training,
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }


def stop_workers(db: Path) -> None:
    """Kill the worker processes of this store (a checkout that trains in the server has none: its run ended
    with the server)."""
    try:
        with sqlite3.connect(db) as conn:
            pids = [row[0] for row in conn.execute("SELECT pid FROM workers")]
    except sqlite3.OperationalError:  # a store from before worker processes
        return
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, help="another checkout (e.g. main) measured first, for comparison")
    parser.add_argument("--clicks", type=int, default=24, help="sidebar clicks per checkout (>= 20)")
    parser.add_argument("--steps", type=int, default=60_000, help="training steps (long enough to outlast the clicks)")
    parser.add_argument("--out", type=Path, help="also write the numbers here as JSON")
    parser.add_argument("--backbone", type=Path, help="a model folder to train on (default: a tiny random GPT-2)")
    parser.add_argument("--data", type=Path, help="a labelled CSV (default: 30 tiny rows)")
    parser.add_argument("--k", type=int, default=4, help="K-shot examples per label")
    args = parser.parse_args(argv)
    results = []
    for root in [args.before, ROOT] if args.before else [ROOT]:
        with tempfile.TemporaryDirectory() as tmp:
            result = measure(
                root.resolve(),
                args.clicks,
                args.steps,
                Path(tmp),
                args.backbone and args.backbone.resolve(),
                args.data and args.data.resolve(),
                args.k,
            )
        print(json.dumps(result), flush=True)
        results.append(result)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
