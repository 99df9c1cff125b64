"""The headless CLI: compare writes results.json, predict writes a safe CSV, bad input exits 2 with one line."""

from __future__ import annotations

import json
import os
import resource
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
    new.write_text('text\n=HYPERLINK("x")\na great movie\n@great fun\n', encoding="utf-8")
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
    assert list(df.columns) == ["input_row", "text", "predicted_label", "p_negative", "p_positive"]
    assert df["text"][0].startswith("'=") and set(df["predicted_label"]) <= {"positive", "negative"}
    assert (df["p_negative"] + df["p_positive"]).round(3).tolist() == [1.0, 1.0, 1.0]
    # guarded texts no longer equal the input's, so rows join back by input_row (1 = the first row below the header)
    source = pd.read_csv(new, dtype=str)
    joined = df.merge(source, left_on=df["input_row"] - 1, right_index=True, suffixes=("", "_input"))
    assert joined["text_input"].tolist() == ['=HYPERLINK("x")', "a great movie", "@great fun"]
    assert df["text"].tolist() != joined["text_input"].tolist()  # the guard did alter texts


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
        ({}, ["--k-shot", "²"], "K-shot '²' is not a whole number; give whole numbers"),
        ({}, ["--k-shot", "8,٣"], "K-shot '٣' is not a whole number; give whole numbers"),
        (
            {},
            ["--test-size", "1.0"],
            "the test share must be a fraction below 1 such as 0.5, or a whole row count without a decimal point such as 20; 1.0 would be 100% of the rows",
        ),
        ({}, ["--test-size", "20.0"], "or a whole row count without a decimal point such as 20"),
        ({}, ["--test-size", "half"], "--test-size: 'half' is neither a fraction such as 0.5 nor a row count"),
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


def _predict(prompt: Path | str, data: Path | str, out: Path) -> list[str]:
    return ["predict", "--prompt", str(prompt), "--data", str(data), "--out", str(out)]


def test_a_prompt_path_that_is_not_a_file_says_what_it_is(tmp_path, capsys, keyword_csv):
    """A link to a device, a broken link, a pipe, a folder and the PEFT folder written beside a prompt file: each
    is named for what it is, with the file to give instead; nothing is opened."""
    (tmp_path / "movie.safetensors").write_bytes(b"")
    (tmp_path / "movie-peft").mkdir()
    (tmp_path / "movie-peft" / "adapter_config.json").write_text("{}")
    (tmp_path / "to-zero.safetensors").symlink_to("/dev/zero")
    (tmp_path / "dangling.safetensors").symlink_to(tmp_path / "gone.safetensors")
    os.mkfifo(tmp_path / "pipe.safetensors")
    expected = {
        "movie-peft": "is a PEFT adapter folder (for peft.PeftModel.from_pretrained); give the learned-prompt file "
        "saved beside it instead: movie.safetensors",
        "to-zero.safetensors": "(a link) is a device, not a regular file; give a learned-prompt file",
        "dangling.safetensors": "is a link to something that does not exist",
        "pipe.safetensors": "is a pipe, not a regular file; give a learned-prompt file",
    }
    for name, words in expected.items():
        assert main(_predict(tmp_path / name, keyword_csv, tmp_path / "p.csv")) == 2
        err = capsys.readouterr().err.splitlines()
        assert len(err) == 1 and words in err[0] and "does not exist; check the path" not in err[0], err
    assert not (tmp_path / "p.csv").exists()


def _cli_bounded(*args: str) -> subprocess.CompletedProcess:
    """The CLI in a process with a deadline and 2 GiB of heap: reading /dev/zero, the bug these tests guard
    against, then fails with MemoryError (or a pipe times out) instead of hanging the suite or eating the box."""

    def bound() -> None:
        resource.setrlimit(resource.RLIMIT_DATA, (2 * 2**30, 2 * 2**30))

    return subprocess.run(
        [sys.executable, "-m", "core", *args], cwd=ROOT, capture_output=True, text=True, timeout=60, preexec_fn=bound
    )


@pytest.mark.parametrize("kind", ["link to /dev/zero", "pipe"])
def test_a_data_path_that_is_not_a_file_is_refused_at_once(tmp_path, kind):
    """Reading /dev/zero never ends and a pipe waits for a writer: both are refused before any read."""
    data = tmp_path / "data.csv"
    if kind == "pipe":
        os.mkfifo(data)
    else:
        data.symlink_to("/dev/zero")
    done = _cli_bounded("compare", "--data", str(data), "--out", str(tmp_path / "o"))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"error: {str(data)!r} (a link) is a device, not a regular file; give the path of a CSV file"
        if kind != "pipe"
        else f"error: {str(data)!r} is a pipe, not a regular file; give the path of a CSV file"
    ]


def test_predict_refuses_new_rows_that_are_not_a_file(tiny_folder, keyword_csv, tmp_path):
    out = tmp_path / "run"
    args = ["compare", "--data", str(keyword_csv), "--methods", "manual", "--backbone", tiny_folder]
    assert main([*args, "--out", str(out)]) == 0
    prompt = next(p for p in out.glob("*.json") if p.name != "results.json")
    zero = tmp_path / "rows.csv"
    zero.symlink_to("/dev/zero")
    done = _cli_bounded(*_predict(prompt, zero, tmp_path / "p.csv"))
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        f"error: {str(zero)!r} (a link) is a device, not a regular file; give the path of a CSV file"
    ]


def test_an_option_for_a_method_not_run_is_checked_and_said_to_be_ignored(tiny_folder, keyword_csv, tmp_path, capsys):
    args = ["compare", "--data", str(keyword_csv), "--methods", "manual", "--backbone", tiny_folder]
    assert main([*args, "--option", "ptuning.lr=0.01", "--out", str(tmp_path / "o")]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: ")]
    assert warnings == ["warning: --option ptuning.lr is for ptuning, which --methods does not run"]


@pytest.mark.parametrize(
    "argv",
    [["compare", "--max-steps", "1e9"], ["compare", "--data", "x.csv", "--seeds"], [], ["predict"], ["fly"]],
    ids=["max-steps-float", "missing-value", "no-command", "missing-required", "unknown-command"],
)
def test_usage_errors_are_one_line_naming_help(argv):
    """argparse's own errors too: exit 2, one line, no usage block (a real process, as a person sees it)."""
    done = subprocess.run([sys.executable, "-m", "core", *argv], cwd=ROOT, capture_output=True, text=True, timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ") and lines[0].endswith(" --help") and "usage:" not in done.stderr


def test_a_failed_rerun_keeps_the_earlier_results(tiny_folder, keyword_csv, tmp_path):
    """The second run into the same folder cannot write results.json (a file-size limit below its size): it exits 2
    naming the file, and the first run's results.json is still there, whole, with no temporary file beside it."""
    out = tmp_path / "run"
    args = ["compare", "--data", str(keyword_csv), "--methods", "baseline", "--backbone", tiny_folder]
    assert main([*args, "--out", str(out)]) == 0
    before = (out / "results.json").read_bytes()
    limit = len(before) // 2  # above every prompt file of the run, below results.json

    def bound() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    assert max(p.stat().st_size for p in out.iterdir() if p.name != "results.json") < limit
    done = subprocess.run(
        [sys.executable, "-m", "core", *args, "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=bound,
    )
    assert done.returncode == 2, done.stderr
    assert (
        done.stderr.strip().splitlines()[-1] == "error: File too large (results.json); check the paths and permissions"
    )
    assert (out / "results.json").read_bytes() == before and json.loads(before)
    assert not [p.name for p in out.iterdir() if p.name.startswith(".tmp-")]


def test_a_path_holding_a_newline_is_quoted_whole(tmp_path, capsys):
    """The message is one line whatever the path holds, and still says what the path is."""
    folder = tmp_path / "data\nset.csv"
    folder.mkdir()
    assert main(["compare", "--data", str(folder), "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: {str(folder)!r} is a folder, not a file; give the path of a CSV file"
    ]


def test_a_test_row_count_is_a_count(tiny_folder, keyword_csv, tmp_path):
    out = tmp_path / "o"
    args = ["compare", "--data", str(keyword_csv), "--methods", "baseline", "--backbone", tiny_folder]
    assert main([*args, "--test-size", "20", "--dev-size", "4", "--out", str(out)]) == 0
    split = json.loads((out / "results.json").read_text())["dataset"]["split"]
    assert (split["test"], split["dev"], split["train"]) == (20, 4, 16), split
