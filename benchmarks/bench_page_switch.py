"""First page on a fresh server, and page-switch time idle and while a run trains: headless Chromium against
`streamlit run app.py`.

    python benchmarks/bench_page_switch.py                          # this checkout, 24 clicks
    python benchmarks/bench_page_switch.py --before /work/main     # another checkout first, then this one, and ratios
    python benchmarks/bench_page_switch.py --out after.json --against before.json   # ratios against a saved run
    python benchmarks/bench_page_switch.py --first-page-only        # only the server starts
    python benchmarks/bench_page_switch.py --backbone models_cache/smollm2-135m --data data/samples/movie_reviews.csv --k 32

First page, per checkout: the server is started as production starts it (the checkout's own
`.streamlit/config.toml`, file watcher included) three times on a new PTUNE_HOME, with Chromium already open:
`fresh` (the first start of this command: the OS file cache as the machine left it), `restart` (the same again),
and `pause` (the page opened `--pause` seconds after the server answers health, as a person arrives some time after
a restart). Each says the seconds from the process start to health, from health to the first page rendered (its
heading shown and its script run finished), and from the start to that page.

Page switch, per checkout: a fresh PTUNE_HOME, a tiny GPT-2 (random weights) as the backbone, a small CSV, then a long
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


def production(root: Path) -> dict:
    """How the checkout's Makefile and Dockerfile start the server: its own config (file watcher included), and
    `python -m ui.serve` where the checkout has it."""
    return {"watcher": None, "serve": (root / "ui" / "serve.py").exists()}


def first_page(root: Path, work: Path, pause: float) -> dict:
    """Seconds from `streamlit run` to health and to the first page rendered: a fresh start, a restart, and a
    restart whose page is opened `pause` seconds after health (see the module docstring)."""
    result: dict = {"loadavg_before": [round(x, 2) for x in os.getloadavg()]}
    with chromium() as context:
        tab = context.new_page()
        tab.goto("about:blank")  # the browser is up before the clock starts
        for case, wait in (("fresh", 0.0), ("restart", 0.0), ("pause", pause)):
            start = time.perf_counter()
            with streamlit_server(work / "home", root=root, log=work / f"first-{case}.log", **production(root)) as url:
                healthy = time.perf_counter()
                time.sleep(wait)
                opened = time.perf_counter()
                tab.goto(url)
                tab.get_by_role("heading", name="Data", exact=True).first.wait_for()
                tab.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for()
                shown = time.perf_counter()
                tab.goto("about:blank")
            result[case] = {
                "start_to_health_s": round(healthy - start, 3),
                "health_to_page_s": round(shown - opened, 3),
                "start_to_page_s": round(shown - start - wait, 3),  # less the pause: the server's own time
            }
    result["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    return result


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
    with (
        streamlit_server(work / "home", root=root, log=work / "streamlit.log", **production(root)) as url,
        chromium() as context,
    ):
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
    parser.add_argument("--against", type=Path, help="a saved --out file: ratios of this run's numbers to its last")
    parser.add_argument("--pause", type=float, default=10.0, help="seconds after health before the `pause` page")
    parser.add_argument("--first-page-only", action="store_true", help="only the first-page measurement")
    args = parser.parse_args(argv)
    results = []
    for root in [args.before, ROOT] if args.before else [ROOT]:
        result: dict = {"checkout": str(root.resolve())}
        with tempfile.TemporaryDirectory() as tmp:
            result["first_page"] = first_page(root.resolve(), Path(tmp), args.pause)
        print(json.dumps(result), flush=True)
        if not args.first_page_only:
            with tempfile.TemporaryDirectory() as tmp:
                result |= measure(
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
    peer = json.loads(args.against.read_text())[-1] if args.against else results[0] if args.before else None
    if peer is not None:
        print(json.dumps({"ratio_this_to_peer": ratios(peer, results[-1]), "peer": peer["checkout"]}), flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    return 0


def ratios(peer: dict, this: dict) -> dict[str, float]:
    """This run's number over the peer's, for every timing both have (below 1: this one is faster)."""

    def flat(result: dict) -> dict[str, float]:
        out = {k: v for k, v in result.items() if k in ("idle_median_s", "idle_max_s", "median_s", "max_s")}
        for case, times in result.get("first_page", {}).items():
            if isinstance(times, dict):
                out |= {f"first_page.{case}.{k}": v for k, v in times.items()}
        return out

    mine, theirs = flat(this), flat(peer)
    return {k: round(mine[k] / theirs[k], 2) for k in mine if theirs.get(k)}


if __name__ == "__main__":
    raise SystemExit(main())
