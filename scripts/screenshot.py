"""Screenshots of the app for the README, taken in headless Chromium on a real comparison.

    python scripts/screenshot.py                       # embedded default backbone, movie_reviews sample
    python scripts/screenshot.py --backbone /path/model --steps 40 --out docs

Starts `streamlit run app.py` with a fresh PTUNE_HOME, uploads the sample CSV, launches manual + baseline +
trained methods, and saves docs/{data,prompts,train,runs,compare,predict}.png. It also writes the page response
times measured while training ran (docs/timings.json). Uses the same driver as tests/test_e2e_browser.py.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.methods import REGISTRY  # noqa: E402
from tests.test_e2e_browser import Driver, Timings, chromium, streamlit_server  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", help="local model folder (default: the embedded SmolLM2-135M)")
    parser.add_argument("--data", default=str(ROOT / "data/samples/movie_reviews.csv"))
    parser.add_argument("--methods", default="manual,baseline,ptuning,prompt_tuning")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--test-share", type=float, default=0.3)
    parser.add_argument(
        "--words",
        default="negative=terrible,positive=great",
        help="label words to type on the Prompts page, LABEL=WORD,... ('' keeps the defaults)",
    )
    parser.add_argument("--out", default=str(ROOT / "docs"))
    args = parser.parse_args(argv)
    methods = [m for m in args.methods.split(",") if m in REGISTRY]
    from playwright.sync_api import expect

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    timings = Timings()
    with (
        tempfile.TemporaryDirectory() as tmp,
        streamlit_server(Path(tmp) / "home", log=Path(tmp) / "log") as url,
        chromium(viewport=(1400, 1000)) as context,
    ):
        page = context.new_page()
        app = Driver(page, url)
        app.load_data(Path(args.data), k=args.k)
        test_rows = (
            page.get_by_test_id("stMetric").filter(has_text=re.compile("^Test")).get_by_test_id("stMetricValue")
        )
        before = test_rows.inner_text()
        slider = page.get_by_test_id("stSlider").filter(has_text="Test share").get_by_role("slider")
        slider.focus()
        for _ in range(round((0.5 - args.test_share) / 0.05)):
            slider.press("ArrowLeft")
        app.wait_idle()
        if args.test_share != 0.5:  # the slider sends its value a moment later: wait until the split follows it
            expect(test_rows).not_to_have_text(before, timeout=30_000)
            app.wait_idle()
        app.see("Dataset ready")
        app.shoot(out / "data.png")
        app.nav("Prompts")
        app.see("Live preview")
        for pair in filter(None, args.words.split(",")):
            label, word = pair.split("=")
            box = page.get_by_role("textbox", name=re.compile(rf"Words for.*{re.escape(label)}"))
            box.fill(word)
            box.press("Enter")
            app.wait_idle()
        app.shoot(out / "prompts.png")
        app.launch(args.backbone, methods, steps=args.steps, seeds=args.seeds)
        app.shoot(out / "train.png")
        n_runs = len(methods) * len(args.seeds.split(","))
        app.nav("Runs")
        start = time.monotonic()
        shot = False
        while time.monotonic() - start < 1800:
            texts = app.progress_text()
            steps = [int(m.group(1)) for t in texts if (m := re.search(rf"step (\d+)/{args.steps}\b", t))]
            if not shot and steps and max(steps) >= args.steps // 2:  # half-way: the curves have some points
                app.shoot(out / "runs.png")
                shot = True
                app.watch_progress(timings, args.steps, timeout=120)
            if page.get_by_text(re.compile(rf"{n_runs} succeeded")).count():
                break
            page.wait_for_timeout(2000)
        app.wait_all_done(n_runs, timeout=60)
        app.nav("Compare")
        app.see("Best test accuracy")
        page.wait_for_timeout(1500)  # vega charts draw after the page settles
        app.shoot(out / "compare.png", full=False)
        app.shoot(out / "compare-full.png")
        app.nav("Predict & download")
        app.see("Download learned prompts")
        app.shoot(out / "predict.png")
    (out / "timings.json").write_text(json.dumps(timings.report(), indent=2))
    print(json.dumps(timings.report(), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
