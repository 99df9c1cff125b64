"""Compare reads clean (issue 31): no "None"/"nan" cell in any of its tables, no row twice (manual's answer is the
template it picked on dev: that template's row is marked, not repeated), and honest roles."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from core.app.views import repeated_rows
from tests import test_app
from tests.test_app import TIMEOUT, go, start, texts, workspace
from tests.test_workspace import request

home, tiny_gpt2 = test_app.home, test_app.tiny_gpt2  # the same fixtures: a fresh PTUNE_HOME, the tiny model

OWNER = "user:reader@example.org"


def shown_frames(at) -> list[pd.DataFrame]:
    """Every table and data frame the page drew, as their values."""
    return [t.value for t in at.table] + [d.value for d in at.dataframe]


def test_compare_tables_have_no_none_cells_and_no_duplicate_rows(home: Path, tiny_gpt2: Path) -> None:
    mine = workspace().user(OWNER)
    group = mine.launch(request(tiny_gpt2, seeds=[0]))  # two templates, one seed: manual's answer is one of them
    for run in mine.runs(group):
        assert workspace().jobs.wait(run["id"], TIMEOUT) == "succeeded"
    summary = mine.summary(group)
    assert "Manual (best on dev)" in [m["name"] for m in summary["methods"]]  # results.json keeps its row

    at = go(start(OWNER), "ui/5_Compare.py")
    assert not at.error, texts(at.error)
    frames = shown_frames(at)
    assert len(frames) >= 3
    for frame in frames:
        assert not frame.isna().any().any(), frame
        assert not frame.astype(str).isin(["None", "nan", "NaN", "<NA>"]).any().any(), frame
    results = at.table[0].value
    prompts = list(results["prompt"])
    assert len(prompts) == len(set(prompts)) == 3, prompts  # majority class and the two templates, once each
    assert "Manual (best on dev)" not in prompts
    roles = dict(zip(results["prompt"], results["role"], strict=True))
    chosen = [p for p, r in roles.items() if "chosen on dev" in r]
    assert len(chosen) == 1 and chosen[0].startswith("Manual #"), roles
    best = next(m for m in summary["methods"] if m["primary"] and m["method"] == "manual")
    assert chosen[0].endswith(best["prompt"])  # the template it picked on dev
    assert "chosen on dev" not in roles["Majority class"]  # the majority class chooses nothing
    calibration = at.table[1].value
    majority = calibration.loc[calibration["prompt"] == "Majority class"].iloc[0]
    assert majority["calibration chosen on dev"] == "none: no prompt to calibrate"
    assert majority["acc. calibrated"] == "—"


def test_no_table_repeats_the_template_manual_chose(home: Path, tiny_gpt2: Path) -> None:
    """Significance, disagreements and the confusion picker name the chosen template once, by its own name."""
    mine = workspace().user(OWNER)
    group = mine.launch(request(tiny_gpt2, seeds=[0]))
    for run in mine.runs(group):
        assert workspace().jobs.wait(run["id"], TIMEOUT) == "succeeded"
    summary = mine.summary(group)
    repeated = repeated_rows(summary)
    assert list(repeated) == ["Manual (best on dev)"] and repeated["Manual (best on dev)"].startswith("Manual #")

    at = go(start(OWNER), "ui/5_Compare.py")
    assert not at.error, texts(at.error)
    assert f"Significance against {repeated['Manual (best on dev)']} (chosen on dev)" in texts(at.subheader)
    for frame in shown_frames(at):
        assert "Manual (best on dev)" not in frame.to_string(), frame
    prompts = texts(at.markdown)  # "The prompts": each prompt once, the chosen template marked
    assert "Manual (best on dev)" not in prompts
    assert f"**{repeated['Manual (best on dev)']}** (chosen on dev)" in prompts
    sig = next(d.value for d in at.dataframe if "mcnemar_p" in d.value.columns)
    assert repeated["Manual (best on dev)"] not in set(sig["prompt"])  # not tested against its own repeat
    assert "versus" not in sig.columns  # one reference for all, named in the heading above
    picker = at.multiselect(key="confusion-prompts")
    assert "Manual (best on dev)" not in picker.options and repeated["Manual (best on dev)"] in picker.options
    at.toggle(key="disagree-every").set_value(True).run()
    for frame in shown_frames(at):
        assert "Manual (best on dev)" not in list(frame.columns), list(frame.columns)
