"""Runs on a Ray cluster: a real local cluster (`ray start --head`, 2 CPUs), the CLI and the app sending the same
comparison to it; results equal to the local executor's."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.runs import cluster
from tests.test_distributed import _comparable, _compare
from tests.test_e2e_browser import free_port
from tests.test_workspace import ALICE, request, tiny_csv
from tests.tiny_models import save_tiny

ROOT = Path(__file__).resolve().parent.parent
# one worker runs the module: its cluster starts once, not once per worker (pytest-xdist)
pytestmark = pytest.mark.xdist_group("ray")
TIMEOUT = 300.0
pytest.importorskip("ray") if not os.environ.get("CI") else None  # CI installs it: there a missing ray fails


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory) -> Iterator[str]:
    """`ray start --head` with 2 CPUs on a free port; its address. Stopped (with its workers) afterwards."""
    ray_bin = shutil.which("ray", path=str(Path(sys.executable).parent))
    assert ray_bin, "the ray CLI is not installed beside this Python"
    port = free_port()
    temp = tmp_path_factory.mktemp("ray")
    # Ray's token authentication is Ray's own business (its docs say how to share the token); off for this cluster.
    os.environ["RAY_AUTH_MODE"] = "disabled"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1"}
    cmd = [ray_bin, "start", "--head", "--num-cpus", "2", "--num-gpus", "0", "--port", str(port)]
    cmd += ["--include-dashboard", "false", "--temp-dir", str(temp), "--disable-usage-stats"]
    started = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env, cwd=ROOT)
    assert started.returncode == 0, started.stderr[-2000:]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        import ray

        ray.shutdown()
        subprocess.run([ray_bin, "stop", "--force"], capture_output=True, timeout=120, env=env)
        os.environ.pop("RAY_AUTH_MODE", None)


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory) -> Path:
    return save_tiny("gpt2", tmp_path_factory.mktemp("models") / "tiny-gpt2")


def test_the_cli_sends_units_to_ray_with_the_local_results(ray_cluster: str, tiny_gpt2: Path, tmp_path: Path):
    data = tmp_path / "reviews.csv"
    data.write_bytes(tiny_csv(20))
    args = [
        "--data", str(data), "--backbone", str(tiny_gpt2), "--methods", "manual,prompt_tuning,baseline,finetune",
        "--seeds", "0,1", "--max-steps", "4", "--option", "prompt_tuning.eval_every=2", "--no-tune", "--k-shot", "4",
        "--template", "{text} it was [MASK]", "--verbalizer", '{"positive": ["good"], "negative": ["bad"]}',
    ]  # fmt: skip
    local = _compare(args, tmp_path / "local")
    on_ray = _compare([*args, "--ray-address", ray_cluster], tmp_path / "ray")
    assert local.returncode == 0, local.stderr[-2000:]
    assert on_ray.returncode == 0, on_ray.stderr[-2000:]
    one = json.loads((tmp_path / "local" / "results.json").read_text())
    ray_results = json.loads((tmp_path / "ray" / "results.json").read_text())
    assert ray_results["processes"]["ray"] == ray_cluster
    assert {u["process"] for u in ray_results["processes"]["units"]} == {"ray"}
    assert f"sending 8 unit(s) to the Ray cluster at {ray_cluster}" in on_ray.stderr
    assert "finetune" in {row["method"] for row in ray_results["methods"]}  # a fine-tuning row runs there like any
    assert _comparable(ray_results) == _comparable(one)  # accuracies, predictions, significance, artifact names
    for row in ray_results["methods"]:  # the prompt files land in --out, written by the cluster's workers
        assert all(Path(a).is_file() and Path(a).is_relative_to(tmp_path / "ray") for a in row["artifacts"])


def test_the_app_sends_runs_to_ray_and_gets_the_local_results(ray_cluster: str, tiny_gpt2: Path, tmp_path: Path):
    from core.app.service import Workspace

    methods = {"manual": {}, "prompt_tuning": {"eval_every": 2}, "baseline": {}, "finetune": {"eval_every": 2}}
    req = dict(seeds=[0], methods=methods, max_steps=4)
    summaries = {}
    for name, address in (("local", ""), ("ray", ray_cluster)):
        ws = Workspace(tmp_path / name, ray_address=address)
        try:
            group = ws.user(ALICE).launch(request(tiny_gpt2, tune=False, **req))
            runs = ws.user(ALICE).runs(group)
            assert [ws.jobs.wait(r["id"], TIMEOUT) for r in runs] == ["succeeded"] * 4
            if address:
                assert {r["device"] for r in ws.user(ALICE).runs(group)} == {"ray"}
                assert all(ws.store.metrics(r["id"]) for r in runs if r["method"] == "prompt_tuning")  # progress
                assert all(Path(f["path"]).is_relative_to(ws.home) for f in ws.user(ALICE).artifacts(group))
            summaries[name] = ws.user(ALICE).summary(group)
        finally:
            ws.close()

    def same(summary: dict) -> list:
        return [(m["name"], m["accuracy"], m["macro_f1"], m.get("predictions")) for m in summary["methods"]]

    assert same(summaries["ray"]) == same(summaries["local"])
    shares = {
        name: [(r["name"], r["accuracy_share"]) for r in s["versus_finetuning"]["rows"]]
        for name, s in summaries.items()
    }
    assert shares["ray"] == shares["local"] and shares["ray"]  # the prompts read against the fine-tune alike


def test_without_a_ray_address_nothing_of_ray_is_imported(tiny_gpt2: Path, tmp_path: Path):
    script = (
        "import sys; from core.app.service import Workspace; from tests.test_workspace import ALICE, request;"
        f"ws = Workspace({str(tmp_path / 'home')!r});"
        f"g = ws.user(ALICE).launch(request({str(tiny_gpt2)!r}, seeds=[0], methods={{'manual': {{}}}}));"
        "[ws.jobs.wait(r['id'], 120) for r in ws.user(ALICE).runs(g)];"
        "print('ray' in sys.modules)"
    )
    env = {k: v for k, v in os.environ.items() if k != "PTUNE_RAY_ADDRESS"}
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"


def test_a_queued_run_whose_actor_is_gone_says_so_and_is_resumable(
    ray_cluster: str, tiny_gpt2: Path, tmp_path: Path, monkeypatch
):
    """The run's actor is lost before it starts (here: it waits for CPUs the cluster lacks and is killed, as a lost
    or restarted cluster loses it): the run does not stay queued forever but becomes interrupted, saying why."""
    import ray

    from core.app.service import Workspace
    from core.runs.ray_launcher import NAMESPACE, actor_name

    monkeypatch.setenv("PTUNE_RAY_CPUS", "64")  # more than the cluster has: the actor stays pending
    ws = Workspace(tmp_path / "home", ray_address=ray_cluster)
    try:
        group = ws.user(ALICE).launch(request(tiny_gpt2, seeds=[0], methods={"manual": {}}, tune=False))
        (run,) = ws.user(ALICE).runs(group)
        ws.jobs.launcher.grace_s = 0.0
        assert ws.jobs.check(force=True) == [] and ws.store.get_run(run["id"])["status"] == "queued"  # pending
        ray.kill(ray.get_actor(actor_name(run["id"]), namespace=NAMESPACE), no_restart=True)
        ws.jobs.check(force=True)
        (card,) = ws.user(ALICE).runs(group)
        assert card["status"] == "interrupted" and card["resumable"] and "Ray actor is gone" in card["error"]
    finally:
        ws.close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_address_nothing_answers_at_is_one_line_from_the_cli(tiny_gpt2: Path, keyword_csv: Path, tmp_path: Path):
    """Ray itself retried for 30 s and more, logged INFO lines, then said only ConnectionError: now the TCP port is
    tried first, with a bounded timeout, and the line names the address."""
    address = f"127.0.0.1:{_closed_port()}"
    args = ["--data", str(keyword_csv), "--methods", "baseline", "--backbone", str(tiny_gpt2)]
    done = _compare([*args, "--ray-address", address], tmp_path / "o")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: the Ray cluster at {address!r} cannot be reached (connection refused within 5 s); give the address "
        "`ray start --head` printed on the head node, and check that its port is open here"
    )


@pytest.mark.parametrize("address", ["10.0.0.5:port", "10.0.0.5:99999", "ray://:10001"])
def test_an_address_that_is_not_host_and_port_is_refused(address):
    with pytest.raises(cluster.ClusterError, match="is not HOST:PORT"):
        cluster.check_reachable(address)  # what connect asks first (here Ray may be joined already)


def test_an_address_where_something_else_answers_fails_with_rays_message(
    tiny_gpt2: Path, keyword_csv: Path, tmp_path: Path
):
    """A port that accepts connections but is no Ray cluster (a proxy, another service): Ray's own retries took
    minutes; with its connect settings bounded it gives up after one attempt (about 10 s) and we say so in one line
    with Ray's message. No faster case exists: Ray's client waits that long before it calls an attempt failed."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        args = ["--data", str(keyword_csv), "--methods", "baseline", "--backbone", str(tiny_gpt2)]
        done = _compare([*args, "--ray-address", address], tmp_path / "o")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: the Ray cluster at {address!r} cannot be reached (Ray: Failed to connect to Ray")
    assert last.endswith(
        "give the address `ray start --head` printed on the head node, and check that its port is open here"
    )
    assert "INFO" not in done.stderr
