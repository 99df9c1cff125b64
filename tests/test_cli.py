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
        ({}, ["--k-shot", "8,abc"], "K-shot 'abc' is not a whole number; give whole numbers"),
        ({}, ["--k-shot", "4,4"], "K-shot lists a value twice"),
        ({}, ["--k-shot", "0"], "K-shot 0 is below 1"),
        ({}, ["--k-shot", "2,50"], "K=50"),
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


def test_learning_curve_runs_every_method_and_seed_at_each_k(tiny_folder, keyword_csv, tmp_path, capsys):
    common = ["compare", "--data", str(keyword_csv), "--backbone", tiny_folder, "--seeds", "0,1", "--max-steps", "2"]
    common += ["--verbalizer", '{"positive": ["great"], "negative": ["terrible"]}']
    out = tmp_path / "curve"
    assert main([*common, "--methods", "manual,baseline,prompt_tuning", "--k-shot", "4,2", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    curve = results["learning_curve"]
    assert curve["k_shots"] == [2, 4] and results["dataset"]["k_shots"] == [2, 4]
    got = {(p["method"], p["k_shot"]): p for p in curve["points"]}
    assert set(got) == {(m, k) for m in ("baseline", "prompt_tuning") for k in (2, 4)}
    assert all(p["n_seeds"] == 2 and p["accuracy_std"] >= 0 for p in got.values())
    (reference,) = curve["references"]  # the zero-shot manual prompt: one run per seed, a flat line
    assert reference["method"] == "manual" and reference["n_seeds"] == 2
    # the table is the largest K's (with manual's one run); every unit scored the same test rows
    assert results["dataset"]["k_shot"] == 4 and {m["n_test"] for m in results["methods"]} == {20}
    ran = results["processes"]["units"]
    assert sorted((r["method"], r["k_shot"]) for r in ran if r["seed"] == 0) == [
        ("baseline", 2),
        ("baseline", 4),
        ("manual", 2),
        ("prompt_tuning", 2),
        ("prompt_tuning", 4),
    ]
    single = tmp_path / "single"  # one K: the plain comparison, as before
    assert main([*common, "--methods", "baseline", "--k-shot", "4", "--out", str(single)]) == 0
    plain = json.loads((single / "results.json").read_text())
    assert "learning_curve" not in plain and plain["dataset"]["k_shot"] == 4 and "k_shots" not in plain["dataset"]
