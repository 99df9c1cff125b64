"""`compare` under torchrun with 2 CPU processes and a real gloo group: units split, results merged, data parallel.

Each launch costs a few seconds of process start-up, so one module fixture runs the three comparisons the tests
read (one process; two processes splitting units; two processes training each prompt-tuning unit together).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from core.compare import Unit, assign
from core.prompts import artifacts
from tests.conftest import write_csv
from tests.tiny_models import save_tiny

ROOT = Path(__file__).resolve().parent.parent
# one worker runs the module: its three torchrun launches happen once (pytest-xdist)
pytestmark = pytest.mark.xdist_group("torchrun")
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
# differ run to run, or by what else ran in the same process (its prefix cache), not by the results
TIMING = {
    "train_seconds",
    "peak_memory_mb",
    "examples_per_second",
    "test_seconds",
    "prefix_cache_hits",
    "prefix_cache_misses",
}


def test_assign_deals_each_unit_to_one_process_and_shares_trained_units_with_all():
    units = [Unit(m, s) for m in ("manual", "prompt_tuning", "baseline") for s in (0, 1, 2)]
    split = [assign(units, r, 2) for r in range(2)]
    ran = [(u.method, u.seed) for share in split for u, _ in share]
    assert sorted(ran) == sorted((u.method, u.seed) for u in units)  # every unit exactly once
    assert all(len(share) >= 4 and not any(shared for _, shared in share) for share in split)

    dp = [assign(units, r, 2, data_parallel=True) for r in range(2)]
    for share in dp:  # prompt tuning trained by both processes, first and in the same order; the rest dealt out
        assert [(u.method, u.seed, s) for u, s in share[:3]] == [("prompt_tuning", seed, True) for seed in (0, 1, 2)]
    alone = [(u.method, u.seed) for share in dp for u, shared in share if not shared]
    assert sorted(alone) == sorted((u.method, u.seed) for u in units if u.method != "prompt_tuning")
    assert assign(units, 0, 1, data_parallel=True) == [(u, False) for u in units]  # one process: nothing to share


def _compare(args: list[str], out: Path, *, launcher: list[str] | None = None) -> subprocess.CompletedProcess:
    cmd = [*(launcher or [sys.executable]), "-m", "core", "compare", *args, "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # torchrun's default; the same for the one-process run
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240, env=env)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("dist")
    folder = save_tiny("gpt2", tmp / "gpt2")
    words = ["a great movie", "great fun film", "the acting was great", "a terrible movie", "terrible boring film"]
    rows = [(f"{w}{s}", "positive" if "great" in w else "negative") for w in words for s in ("", " indeed", " !", ".")]
    data = write_csv(tmp / "reviews.csv", rows * 2)
    args = [
        "--data", str(data), "--backbone", str(folder), "--methods", "manual,prompt_tuning,finetune",
        "--seeds", "0,1", "--max-steps", "6", "--option", "prompt_tuning.eval_every=3",
        "--option", "prompt_tuning.batch_size=5", "--option", "finetune.eval_every=3",
        "--option", "finetune.batch_size=5", "--no-tune", "--template", "{text} it was [MASK]",
        "--verbalizer", '{"positive": ["great"], "negative": ["terrible"]}',
    ]  # fmt: skip
    done = {
        "one": _compare(args, tmp / "one"),
        "two": _compare(args, tmp / "two", launcher=TORCHRUN),
        "dp": _compare([*args, "--data-parallel"], tmp / "dp", launcher=TORCHRUN),
    }
    for name, proc in done.items():
        assert proc.returncode == 0, f"{name}: {_why(proc.stderr)}"
    return {name: (json.loads((tmp / name / "results.json").read_text()), proc.stderr) for name, proc in done.items()}


def _why(stderr: str) -> str:
    """The lines that say why a process died (torchrun's summary alone names only the signal), then the tail."""
    keys = ("error", "terminate", "abort", "exception", "what()")
    causes = [line for line in stderr.splitlines() if any(k in line.lower() for k in keys)]
    return "\n".join(causes[:20]) + "\n...\n" + stderr[-1500:]


def _comparable(results: dict) -> dict:
    """results.json without what differs run to run (timings) or by folder (artifact paths) or by launch."""

    def row(r: dict) -> dict:
        out = {k: v for k, v in r.items() if k not in TIMING | {"artifact", "artifacts"}}
        return {**out, "artifact_files": [Path(a).name for a in r["artifacts"]]}

    def against(section: dict) -> dict:  # the fine-tuning comparison less its training-time ratios
        rows = [{k: v for k, v in r.items() if k != "time_ratio"} for r in section["rows"]]
        return {"reference": {k: v for k, v in section["reference"].items() if k not in TIMING}, "rows": rows}

    out = {**{k: v for k, v in results.items() if k != "processes"}, "methods": [row(r) for r in results["methods"]]}
    if "versus_finetuning" in out:
        out["versus_finetuning"] = against(out["versus_finetuning"])
    return out


def test_two_processes_split_the_units_and_merge_to_the_one_process_results(runs):
    one, _ = runs["one"]
    two, stderr = runs["two"]
    assert one["processes"] == {"count": 1, "data_parallel": False, "units": one["processes"]["units"]}
    units = two["processes"]["units"]
    assert two["processes"]["count"] == 2
    assert sorted((u["method"], u["seed"]) for u in units) == [
        (m, s) for m in ("finetune", "manual", "prompt_tuning") for s in (0, 1)
    ]
    assert {u["process"] for u in units} == {0, 1}  # both processes ran units; each unit once (above)
    assert "[process 1/2] running manual (seed 1)" in stderr and "[process 0/2] running manual (seed 0)" in stderr
    assert _comparable(two) == _comparable(one)  # same accuracies, predictions, significance, artifact names
    assert [m["accuracy"] for m in two["methods"]] == [m["accuracy"] for m in one["methods"]]


def test_data_parallel_training_matches_the_one_process_loss_curve(runs):
    one, _ = runs["one"]
    dp, stderr = runs["dp"]
    shared = [u for u in dp["processes"]["units"] if u["process"] == "all"]
    assert sorted((u["method"], u["seed"]) for u in shared) == [
        (m, s) for m in ("finetune", "prompt_tuning") for s in (0, 1)
    ]
    assert "[prompt_tuning seed 0, process 1] 6/6" in stderr and "[prompt_tuning seed 0, process 0] 6/6" in stderr
    for seed in (0, 1):
        ref = _prompt(one, seed)
        got = _prompt(dp, seed)
        assert len(got.state["losses"]) == 6
        assert got.state["losses"] == pytest.approx(ref.state["losses"], abs=1e-5)  # same steps, summed in 2 halves
        assert got.state["losses"][0] != pytest.approx(got.state["losses"][-1], abs=1e-6)  # it did train
        for name, tensor in ref.tensors.items():
            assert torch.allclose(got.tensors[name], tensor, atol=1e-5), name
    names = lambda r: sorted(Path(a).name for m in r["methods"] for a in m["artifacts"])  # noqa: E731
    assert names(dp) == names(one)  # each learned prompt saved once, by the main process
    assert [m["accuracy"] for m in dp["methods"]] == [m["accuracy"] for m in one["methods"]]


def _prompt(results: dict, seed: int):
    row = next(m for m in results["methods"] if m["method"] == "prompt_tuning")
    return artifacts.load(next(a for a in row["artifacts"] if a.endswith(f"seed{seed}.safetensors")))


def test_a_failing_process_ends_the_whole_run_with_one_line(tmp_path):
    folder = save_tiny("gpt2", tmp_path / "gpt2")
    rows = [(f"{w} {i}", lab) for i in ("one", "two") for w, lab in (("a great movie", "pos"), ("a bad movie", "neg"))]
    data = write_csv(tmp_path / "d.csv", rows * 10)
    args = [
        "--data", str(data), "--backbone", str(folder), "--methods", "manual,prompt_tuning", "--seeds", "0",
        "--dev-size", "0.3", "--option", "prompt_tuning.template={text} it was [MASK]", "--dist-timeout", "600",
    ]  # fmt: skip
    start = time.monotonic()
    done = _compare(args, tmp_path / "out", launcher=TORCHRUN)  # process 1 gets prompt_tuning, whose template fails
    elapsed = time.monotonic() - start
    assert done.returncode != 0
    errors = {line for line in done.stderr.splitlines() if line.startswith("error: ")}
    cause = (
        "error: process 1 of 2, prompt_tuning seed 0: the prompt-tuning template '{text} it was [MASK]' has no [P] "
        "slot; start it with [P*20]"
    )
    waiting = "error: process 0 stopped while exchanging results: another process stopped (see its error)"
    assert cause in errors and errors - {cause} <= {waiting}  # the cause, and at most process 0 saying it stopped
    assert elapsed < 120  # ended by the failure, not by the 600 s collective timeout
    assert not (tmp_path / "out" / "results.json").exists()
