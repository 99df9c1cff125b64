"""The headless CLI: compare writes results.json, predict writes a safe CSV, bad input exits 2 with one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from core.cli import main
from tests.tiny_models import save_tiny

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> str:
    return str(save_tiny("gpt2", tmp_path_factory.mktemp("tiny") / "gpt2"))


def test_compare_then_predict_end_to_end(tiny_folder, keyword_csv, tmp_path):
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "core",
        "compare",
        "--data",
        str(keyword_csv),
        "--methods",
        "manual,baseline",
        "--backbone",
        tiny_folder,
        "--template",
        "{text} it was [MASK]",
        "--template",
        "{text} great or not [MASK]",
        "--verbalizer",
        '{"positive": ["great"], "negative": ["terrible"]}',
        "--seeds",
        "0,1",
        "--out",
        str(out),
    ]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["dataset"]["rows"] == 40 and results["dataset"]["seeds"] == [0, 1]
    assert results["backbone"]["kind"] == "causal"
    by_name = {m["name"]: m for m in results["methods"]}
    assert set(by_name) == {
        "Manual (best on dev)",
        "Majority class",
        "Manual #1: {text} it was [MASK]",
        "Manual #2: {text} great or not [MASK]",
    }
    assert by_name["Majority class"]["accuracy"] == pytest.approx(0.5)

    new = tmp_path / "new.csv"
    new.write_text('text\n=HYPERLINK("x")\na great movie\n', encoding="utf-8")
    preds = tmp_path / "preds.csv"
    assert (
        main(
            [
                "predict",
                "--prompt",
                by_name["Manual (best on dev)"]["artifact"],
                "--data",
                str(new),
                "--out",
                str(preds),
            ]
        )
        == 0
    )
    df = pd.read_csv(preds)
    assert list(df.columns) == ["text", "predicted_label", "p_negative", "p_positive"]
    assert df["text"][0].startswith("'=") and set(df["predicted_label"]) <= {"positive", "negative"}
    assert (df["p_negative"] + df["p_positive"]).round(3).tolist() == [1.0, 1.0]


@pytest.mark.parametrize(
    "override, extra, fragment",
    [
        ({"--data": "missing.csv"}, [], "file not found"),
        ({"--methods": "manual,telepathy"}, [], "unknown method 'telepathy'"),
        ({}, ["--label-col", "nope"], "nope"),
        ({}, ["--template", "{text} no mask here"], "[MASK]"),
        ({}, ["--template", "{title} [MASK]"], "{title}"),
        ({}, ["--verbalizer", "{bad json"], "not valid JSON"),
        ({}, ["--seeds", "a,b"], "seeds must be"),
        ({}, ["--option", "manual.colour=1"], "unknown option 'colour'"),
        ({}, ["--option", "justtext"], "METHOD.NAME=VALUE"),
    ],
)
def test_bad_compare_input_exits_2_with_one_line(
    tiny_folder, keyword_csv, tmp_path, capsys, override, extra, fragment
):
    args = {
        "--data": str(keyword_csv),
        "--backbone": tiny_folder,
        "--methods": "manual",
        "--out": str(tmp_path / "o"),
        **override,
    }
    assert main(["compare", *[x for kv in args.items() for x in kv], *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and fragment in err[-1]
    assert not (tmp_path / "o" / "results.json").exists()


def test_compare_warns_when_steps_are_fewer_than_the_dev_interval(tiny_folder, keyword_csv, tmp_path, capsys):
    args = ["compare", "--data", str(keyword_csv), "--backbone", tiny_folder, "--methods", "prompt_tuning"]
    args += ["--max-steps", "2", "--option", "prompt_tuning.eval_every=5", "--out", str(tmp_path / "o")]
    assert main(args) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: ")]
    assert warnings == [
        "warning: Prompt tuning runs 2 steps but evaluates on dev every 5, so dev is scored only at the last step "
        "(no dev curve); set eval_every to 2 or less (0 = about 10 times a run) or raise the steps"
    ]


def test_bad_predict_input_exits_2(tmp_path, capsys, keyword_csv):
    bogus = tmp_path / "prompt.safetensors"
    bogus.write_bytes(b"\x80\x04not a safetensors file")
    assert main(["predict", "--prompt", str(bogus), "--data", str(keyword_csv), "--out", str(tmp_path / "p.csv")]) == 2
    assert "not a readable learned-prompt file" in capsys.readouterr().err
    pickle = tmp_path / "prompt.pt"
    pickle.write_bytes(b"\x80\x04")
    assert (
        main(["predict", "--prompt", str(pickle), "--data", str(keyword_csv), "--out", str(tmp_path / "p.csv")]) == 2
    )
    assert "expected .safetensors or .json" in capsys.readouterr().err


def test_subprocess_error_has_no_traceback(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "core", "compare", "--data", str(tmp_path / "none.csv")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
