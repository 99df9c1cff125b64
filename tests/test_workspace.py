"""core/app/: comparison groups on a tiny model through the real store and job manager."""

from __future__ import annotations

import enum
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from core.app.forms import HIDDEN_OPTIONS, changed_options, config_fields, default_methods
from core.app.service import ComparisonRequest, NotYours, Workspace, ptune_home
from core.app.views import (
    comparison_dev,
    comparison_table,
    confusion_frame,
    disagreements,
    finished_text,
    quick_zero_shot,
    repeated_rows,
    significance_table,
    soft_prompt_readings,
    token_preview,
)
from core.compare import Unit, method_options, prompt_spec, run_unit
from core.data import DataError, load_dataset, split_dataset
from core.engine.backbone import load_backbone
from core.engine.backbone_pool import BackbonePool, DefaultInstaller, inspect_backbone, normalize_spec
from core.engine.templates import TemplateError
from core.methods import REGISTRY, method_order
from core.methods.continuous import ContinuousMethod
from core.prompts import artifacts
from tests.tiny_models import save_tiny, tiny_backbone

ALICE = "user:alice@example.org"
BOB = "user:bob@example.org"
TIMEOUT = 120.0
POSITIVE = ["a great movie", "really good fun", "the best film", "great acting and a fine script", "i love it"]
NEGATIVE = ["a bad movie", "really awful and boring", "the worst film", "terrible acting", "i hate it"]


def tiny_csv(n_per_label: int = 20) -> bytes:
    rows = ["text,label"]
    for i in range(n_per_label):
        rows.append(f"{POSITIVE[i % len(POSITIVE)]} {i},positive")
        rows.append(f"{NEGATIVE[i % len(NEGATIVE)]} {i},negative")
    return ("\n".join(rows) + "\n").encode()


@pytest.fixture(scope="session")
def tiny_gpt2(tmp_path_factory) -> Path:
    return save_tiny("gpt2", tmp_path_factory.mktemp("models") / "tiny-gpt2")


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    workspace = Workspace(tmp_path / "home")
    yield workspace
    workspace.close()


def request(model: Path, **changes) -> ComparisonRequest:
    base = dict(
        data=tiny_csv(),
        source_name="tiny.csv",
        text_col="text",
        label_col="label",
        templates=["{text} It was [MASK]", "{text} overall [MASK]"],
        verbalizer={"positive": ["good"], "negative": ["bad"]},
        methods={"manual": {}, "baseline": {}},
        seeds=[0, 1],
        backbone=str(model),
        test_size=0.5,
        k_shot=4,
        max_steps=3,
    )
    base.update(changes)
    return ComparisonRequest(**base)


def wait_all(ws: Workspace, group: str) -> list[dict]:
    for run in ws.user(ALICE).runs(group):
        ws.jobs.wait(run["id"], TIMEOUT)
    return ws.user(ALICE).runs(group)


def test_home_follows_env(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PTUNE_HOME", str(tmp_path / "elsewhere"))
    assert ptune_home() == (tmp_path / "elsewhere").resolve()
    monkeypatch.delenv("PTUNE_HOME")
    assert ptune_home().name == ".ptune"


def test_inspect_backbone_counts_parameters_without_loading(tiny_gpt2: Path, tmp_path: Path) -> None:
    info = inspect_backbone(str(tiny_gpt2))
    loaded = load_backbone(str(tiny_gpt2), device="cpu")
    assert info.available and info.kind == "causal" and info.model_type == "gpt2"
    assert info.parameters == loaded.num_parameters()
    assert info.memory_bytes == info.parameters * 4 and info.disk_bytes > 0
    missing = inspect_backbone(str(tmp_path / "nope"))
    assert not missing.available and "does not exist" in missing.note
    not_cached = inspect_backbone("some-org/not-downloaded-model")
    assert not not_cached.available and "downloaded" in not_cached.note and not_cached.downloadable
    assert not missing.downloadable


def test_comparison_group_runs_summarises_and_saves(ws: Workspace, tiny_gpt2: Path) -> None:
    group = ws.user(ALICE).launch(request(tiny_gpt2))
    runs = wait_all(ws, group)
    assert sorted((r["method"], r["seed"], r["status"]) for r in runs) == [
        ("baseline", 0, "succeeded"),
        ("baseline", 1, "succeeded"),
        ("manual", 0, "succeeded"),
        ("manual", 1, "succeeded"),
    ]
    summary = ws.user(ALICE).summary(group)
    names = [m["name"] for m in summary["methods"]]
    assert names[0] == "Manual (best on dev)" and "Majority class" in names and len(names) == 4
    assert summary["dataset"]["seeds"] == [0, 1] and summary["dataset"]["k_shot"] == 4
    assert summary["backbone"]["spec"] == normalize_spec(str(tiny_gpt2))
    saved = json.loads((ws.group_dir(group) / "results.json").read_text())
    assert saved["methods"] == summary["methods"]
    table = comparison_table(summary)
    assert any(r.startswith("chosen on dev") for r in table["role"]) and (table["seeds"] == 2).all()
    roles = dict(zip(table["prompt"], table["role"], strict=True))
    manual = next(m for m in summary["methods"] if m["name"] == "Manual (best on dev)")
    if "Manual (best on dev)" in roles:  # a different template on each seed: none of the templates' rows is it
        assert roles["Manual (best on dev)"] == "chosen on dev per seed"
    else:  # the template it picked on both seeds: that template's row says so, and is not repeated
        (chosen,) = [p for p, r in roles.items() if r.startswith("chosen on dev")]
        assert chosen.endswith(manual["prompt"]) and len(table) == len(names) - 1
    assert roles["Majority class"] == ""  # it chose nothing
    repeated = repeated_rows(summary)  # the chosen template, where manual's answer repeats it, is tested once
    assert len(significance_table(summary)) == len(names) - 1 - len(repeated)
    assert not set(significance_table(summary)["prompt"]) & (set(repeated) | set(repeated.values()))
    conf = confusion_frame(summary)
    assert conf.groupby("prompt")["count"].sum().eq(summary["methods"][0]["n_test"]).all()
    diff = disagreements(summary, ws.user(ALICE).context(group).split.test)
    assert {"text", "gold", "prompts right"} <= set(diff.columns)
    primary = [repeated.get(m["name"], m["name"]) for m in summary["methods"] if m["primary"]]  # as shown
    assert list(diff.columns[3:]) == primary  # one column per method: the table fits the page
    every = disagreements(summary, ws.user(ALICE).context(group).split.test, every_prompt=True)
    assert list(every.columns[3:]) == [n for n in names if n not in repeated] and len(every) >= len(diff)
    files = ws.user(ALICE).artifacts(group)
    assert files and all(Path(f["path"]).is_file() and Path(f["path"]).is_relative_to(ws.home) for f in files)
    assert (ws.group_dir(group) / "data.csv").read_bytes() == tiny_csv()


def test_context_is_rebuilt_from_the_group_folder(tmp_path: Path, tiny_gpt2: Path) -> None:
    first = Workspace(tmp_path / "home")
    group = first.user(ALICE).launch(request(tiny_gpt2, seeds=[0], methods={"manual": {}}))
    wait_all(first, group)
    expected = first.user(ALICE).summary(group)
    labels = first.user(ALICE).context(group).split.test.labels
    first.close()
    second = Workspace(tmp_path / "home")  # a new process: nothing cached
    try:
        assert second.user(ALICE).summary(group)["methods"] == expected["methods"]
        assert second.user(ALICE).context(group).split.test.labels == labels
    finally:
        second.close()


@pytest.mark.parametrize(
    ("changes", "error", "words"),
    [
        ({"templates": ["{text} no mask here"]}, TemplateError, "[MASK]"),
        ({"templates": ["[MASK] {text}"]}, TemplateError, "end the template"),
        ({"templates": ["{nope} [MASK]"]}, TemplateError, "{nope}"),
        ({"verbalizer": {"positive": ["good"]}}, TemplateError, "negative"),
        ({"methods": {"manual": {"reduce": "median"}}}, ValueError, "Manual prompt"),
        ({"methods": {"manual": {"bogus": 1}}}, ValueError, "bogus"),
        ({"k_shot": 50}, DataError, "K=50"),
        ({"seeds": []}, ValueError, "seed"),
        ({"methods": {}}, ValueError, "method"),
        ({"data": b"\x89PNG\r\n\x1a\n"}, DataError, "PNG"),
        ({"backbone": "/nowhere/model"}, ValueError, "does not exist"),
        ({"methods": {"prompt_tuning": {"checkpoint_dir": "/tmp/x"}}}, ValueError, "'checkpoint_dir' is a folder"),
        ({"methods": {"autoprompt": {"checkpoint_dir": "../x"}}}, ValueError, "'checkpoint_dir' is a folder"),
    ],
)
def test_launch_validates_before_queueing(ws: Workspace, tiny_gpt2: Path, changes, error, words) -> None:
    with pytest.raises(error) as info:
        ws.user(ALICE).launch(request(tiny_gpt2, **changes))
    assert words in str(info.value) and "\n" not in str(info.value)
    assert ws.user(ALICE).groups() == [] and not (ws.home / "runs").exists()


def test_a_caller_cannot_choose_where_checkpoints_go(ws: Workspace, tiny_gpt2: Path) -> None:
    """Paths are the engine's: bob naming a folder inside alice's comparison (or outside PTUNE_HOME) is refused
    before anything is queued, and nothing is written there."""
    alice_group = ws.user(ALICE).launch(request(tiny_gpt2, seeds=[0], methods={"manual": {}}))
    wait_all(ws, alice_group)

    def files() -> list[Path]:  # the store and the temporaries of its copy (`RunStore.backup`) come and go
        return sorted(
            p.relative_to(ws.home) for p in ws.home.rglob("*") if not p.name.startswith(("runs.db", ".tmp-"))
        )

    before = files()
    for target in (ws.group_dir(alice_group) / "checkpoints" / "x", ws.home.parent / "outside"):
        options = {"checkpoint_dir": str(target), "max_steps": 2}
        with pytest.raises(ValueError, match="'checkpoint_dir' is a folder PTune Studio chooses") as info:
            ws.user(BOB).launch(request(tiny_gpt2, seeds=[0], methods={"prompt_tuning": options}))
        assert "\n" not in str(info.value) and not target.exists()
    assert ws.user(BOB).groups() == []
    assert files() == before


def test_cancelled_run_resumes_as_a_new_run_and_supersedes(tmp_path: Path, tiny_gpt2: Path) -> None:
    ws = Workspace(tmp_path / "home")
    try:
        group = ws.user(ALICE).launch(request(tiny_gpt2, seeds=[0], methods={"manual": {}, "baseline": {}}))
        # The worker process is still starting (it imports torch) and takes manual first: baseline waits queued.
        queued = next(r for r in ws.user(ALICE).runs(group) if r["method"] == "baseline")
        assert ws.user(ALICE).cancel(queued["id"])
        runs = {r["id"]: r for r in wait_all(ws, group)}
        assert runs[queued["id"]]["status"] == "cancelled" and runs[queued["id"]]["resumable"]
        assert [m["method"] for m in ws.user(ALICE).summary(group)["methods"]] == ["manual", "manual", "manual"]
        new_id = ws.user(ALICE).resume(queued["id"])
        assert ws.jobs.wait(new_id, TIMEOUT) == "succeeded"
        runs = {r["id"]: r for r in ws.user(ALICE).runs(group)}
        assert runs[queued["id"]]["superseded"] and not runs[queued["id"]]["resumable"]
        assert ws.store.get_run(new_id)["config"]["resumes"] == queued["id"]
        assert "baseline" in [m["method"] for m in ws.user(ALICE).summary(group)["methods"]]
        with pytest.raises(ValueError, match="succeeded"):
            ws.user(ALICE).resume(new_id)
        with pytest.raises(ValueError, match="already resumed"):  # a second click, or a second tab
            ws.user(ALICE).resume(queued["id"])
        assert len(ws.user(ALICE).runs(group)) == 3
    finally:
        ws.close()


def test_a_cancelled_autoprompt_run_resumes_from_its_iteration(ws: Workspace, tiny_gpt2: Path) -> None:
    """Through the job queue: cancel after a few iterations; the resumed run continues there and says so."""
    options = {"max_steps": 160, "num_candidates": 2, "batch_size": 4, "accumulation_steps": 1, "eval_every": 8}
    group = ws.user(ALICE).launch(request(tiny_gpt2, seeds=[0], methods={"autoprompt": options}))
    (run,) = ws.user(ALICE).runs(group)
    deadline = time.monotonic() + TIMEOUT
    while ws.store.get_run(run["id"])["progress_step"] < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    ws.user(ALICE).cancel(run["id"])
    assert ws.jobs.wait(run["id"], TIMEOUT) == "cancelled"
    stopped_at = ws.store.get_run(run["id"])["progress_step"]
    assert 2 <= stopped_at < 160
    new_id = ws.user(ALICE).resume(run["id"])
    assert ws.jobs.wait(new_id, TIMEOUT) == "succeeded"
    steps = [m["step"] for m in ws.store.metrics(new_id) if m["name"] == "train_loss"]
    assert steps[0] == stopped_at + 1 and steps[-1] == 160  # iterations after the stop only
    card = next(r for r in ws.user(ALICE).runs(group) if r["id"] == new_id)
    assert card[
        "resumed_from_step"
    ] == stopped_at and f"resumed after an interruption, from step {stopped_at}" in finished_text(card)


def test_trained_methods_get_a_checkpoint_folder_per_method_and_seed(ws: Workspace, tiny_gpt2: Path) -> None:
    trained = [
        n
        for n in REGISTRY
        if issubclass(REGISTRY[n], ContinuousMethod)  # soft prompts: saved as .safetensors (AutoPrompt: its own test)
        and "checkpoint_dir" in {f.name for f in REGISTRY[n].config_cls.__dataclass_fields__.values()}
    ]
    if not trained:
        pytest.skip("no registered method takes a checkpoint_dir yet")
    name = trained[0]
    group = ws.user(ALICE).launch(request(tiny_gpt2, seeds=[3], methods={name: {}}, max_steps=2))
    (run,) = wait_all(ws, group)
    config = ws.store.get_run(run["id"])["config"]
    assert config["options"]["checkpoint_dir"].endswith(f"checkpoints/{name}-seed3")
    assert config["options"]["max_steps"] == 2
    assert run["status"] == "succeeded", run["error"]
    rows = ws.store.get_run(run["id"])["result"]["rows"]
    kinds = {a["kind"]: a["path"] for a in ws.user(ALICE).artifacts(group)}
    assert Path(kinds["prompt"]).suffix == ".safetensors"
    if any(r.get("peft_export") for r in rows):  # where PEFT can express the method, its folder is offered too
        assert Path(kinds["peft"]).is_dir()
    learned = artifacts.load(kinds["prompt"])
    readings = soft_prompt_readings(ws.user(ALICE).summary(group))
    if learned.state.get("nearest_tokens"):  # the method's nearest-vocabulary reading of its soft tokens
        (lines,) = readings.values()
        assert len(lines) == len(learned.state["nearest_tokens"]) and lines[0].startswith("[P0] ")


class Colour(str, enum.Enum):  # noqa: UP042 (the methods' configs use str, Enum as DESIGN.md asks)
    RED = "red"
    BLUE = "blue"


@dataclass
class ExampleConfig:
    flag: bool = field(default=True, metadata={"help": "a switch"})
    count: int = field(default=3, metadata={"help": "how many"})
    rate: float = 0.5
    colour: Colour = Colour.BLUE
    name: str = "x"
    limit: int | None = None
    words: list[str] = field(default_factory=lambda: ["a"])
    seed: int = 0
    max_steps: int = 10


def test_config_fields_map_types_to_widgets() -> None:
    got = {f.name: f for f in config_fields(ExampleConfig)}
    assert set(got) == {"flag", "count", "rate", "colour", "name", "limit", "words"}  # seed/max_steps are global
    assert [got[n].kind for n in ("flag", "count", "rate", "colour", "name", "limit", "words")] == [
        "bool",
        "int",
        "float",
        "enum",
        "str",
        "int",
        "json",
    ]
    assert got["colour"].choices == ("red", "blue") and got["colour"].default == "blue"
    assert got["limit"].optional and got["words"].default == ["a"] and got["flag"].help == "a switch"
    assert changed_options(ExampleConfig, {"flag": True, "count": 5, "colour": "blue", "seed": 9}) == {"count": 5}


def test_autoprompt_iterations_are_its_own_field_sent_even_at_the_default() -> None:
    """The Train page's global steps no longer override AutoPrompt's search iterations (issue 15)."""
    fields_ = {f.name: f for f in config_fields(REGISTRY["autoprompt"].config_cls)}
    assert fields_["max_steps"].per_method and fields_["max_steps"].label == "search iterations"
    assert "checkpoint_dir" not in fields_ and "seed" not in fields_
    assert "max_steps" not in {f.name for f in config_fields(REGISTRY["ptuning"].config_cls)}  # the global steps
    chosen = changed_options(REGISTRY["autoprompt"].config_cls, {"max_steps": 40, "beam_size": 1})
    assert chosen == {"max_steps": 40}
    assert method_options("autoprompt", chosen, max_steps=500)["max_steps"] == 40


@pytest.mark.parametrize("name", list(REGISTRY))
def test_every_registered_method_gets_a_form(name: str) -> None:
    cls = REGISTRY[name]
    for f in config_fields(cls.config_cls):
        assert f.name not in HIDDEN_OPTIONS or f.per_method
        assert f.kind in ("bool", "int", "float", "enum", "str", "json")
        if f.kind == "enum":
            assert f.default in f.choices


def test_default_methods_put_untrained_first() -> None:
    order = method_order(REGISTRY)
    trains = [bool(getattr(REGISTRY[n], "trains", False)) for n in order]
    assert trains == sorted(trains) and order[0] == "manual"
    # the design card's comparison: manual prompts (and the majority class), a discrete search and a continuous prompt
    chosen = default_methods()
    assert chosen == ["manual", "baseline", "autoprompt", "ptuning"]
    references = [n for n, cls in REGISTRY.items() if cls.fine_tunes]
    assert references and not set(references) & set(chosen)  # on a CPU the fine-tuning references are off
    assert default_methods("cuda:0") == chosen + references  # on a GPU they are on


def test_the_quick_check_scores_the_dev_the_comparison_chooses_on() -> None:
    """The Prompts page's check on the comparison's dev (K per label, its first seed) measures each template's
    calibrated dev accuracy exactly as the comparison's manual run does: the two pages cannot disagree."""
    ds = load_dataset(tiny_csv(200), text_col="text", label_col="label")
    split = split_dataset(ds, test_size=0.5, dev_size=0.1)  # a dev share of 20 rows; the comparison's dev is 16
    spec = prompt_spec(
        ds, ["{text} It was [MASK]", "{text} All in all [MASK]"], {"positive": ["good"], "negative": ["bad"]}
    )
    backbone = tiny_backbone("gpt2")
    dev, name = comparison_dev(split, 8, 3)
    assert name == "the comparison's dev (K=8 per label, seed 3)" and len(dev) == 16 != len(split.dev)
    check = quick_zero_shot(backbone, spec, dev)
    result = run_unit(backbone, split, spec, Unit("manual", 3, {}, 8))
    measured = {r["template"]: r["calibration"]["dev_accuracy"]["calibrated"] for r in result["rows"]}
    assert result["n_dev"] == 16 and dict(zip(check["template"], check["accuracy"], strict=True)) == {
        t: measured[t] for t in spec.templates
    }


@pytest.mark.parametrize("family", ["gpt2", "bert"])
def test_token_preview_marks_every_slot(family: str) -> None:
    backbone = tiny_backbone(family)
    template = "[P*2] {text} it was [T] [MASK]" if family == "gpt2" else "[P*2] {text} it was [T] [MASK] ."
    tokens = token_preview(backbone, template, {"text": "a great movie"})
    kinds = list(tokens["kind"])
    assert kinds.count("soft [P]") == 2 and kinds.count("trigger [T]") == 1 and kinds.count("[MASK]") == 1
    assert "great" in list(tokens["token"])
    if family == "bert":
        assert kinds[0] == "special" and kinds[-1] == "special"


def test_backbone_pool_loads_each_backbone_once(tiny_gpt2: Path) -> None:
    calls = []

    def loader(spec, progress=None, device=None):
        calls.append((spec, device))
        return load_backbone(spec, device=device)

    pool = BackbonePool(loader=loader)
    results = []
    threads = [threading.Thread(target=lambda: results.append(pool.get(str(tiny_gpt2)))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [(str(tiny_gpt2), "cpu")] and len({id(b) for b in results}) == 1  # this box: the CPU
    assert pool.peek(str(tiny_gpt2)) is results[0] and pool.tokenizer_only(str(tiny_gpt2)) is results[0]


def test_default_installer_reports_progress_and_errors() -> None:
    done = threading.Event()

    def fake_install(progress):
        progress("downloading")
        progress("converting")
        done.set()
        return Path("x")

    installer = DefaultInstaller(install=fake_install)
    installer.state = "idle"
    assert installer.start()
    assert done.wait(TIMEOUT)
    for _ in range(100):
        if installer.snapshot()["state"] == "done":
            break
        threading.Event().wait(0.05)
    assert installer.snapshot() == {"state": "done", "messages": ["downloading", "converting"], "error": None}

    def broken(progress):
        raise RuntimeError("no network\nmore detail")

    failing = DefaultInstaller(install=broken)
    failing.state = "idle"
    failing.start()
    for _ in range(100):
        if failing.snapshot()["state"] == "failed":
            break
        threading.Event().wait(0.05)
    assert failing.snapshot()["error"] == "no network"


def test_a_failing_method_fails_its_run_only(tmp_path: Path, tiny_gpt2: Path, monkeypatch) -> None:
    """The worker hosted in this process (tests/worker_threads.py), so the patched method is the one it runs."""
    from core.methods.baseline import MajorityBaseline
    from core.runs.runner import RunExecutor
    from core.runs.store import RunStore
    from tests.worker_threads import ThreadLauncher

    def boom(self, *args, **kwargs):
        raise RuntimeError("the method broke")

    monkeypatch.setattr(MajorityBaseline, "fit", boom)
    home = tmp_path / "home"
    home.mkdir()
    executor = RunExecutor(home, RunStore(home / "runs.db"))
    ws = Workspace(home, launcher=ThreadLauncher(home / "runs.db", executor.job))
    group = ws.user(ALICE).launch(request(tiny_gpt2, seeds=[0]))
    runs = {r["method"]: r for r in wait_all(ws, group)}
    assert runs["baseline"]["status"] == "failed" and runs["baseline"]["error"] == "RuntimeError: the method broke"
    assert runs["manual"]["status"] == "succeeded" and runs["baseline"]["resumable"]
    assert [m["method"] for m in ws.user(ALICE).summary(group)["methods"]][0] == "manual"
    ws.close()
    executor.store.close()


def test_two_people_see_only_their_own_work_unless_shared(ws: Workspace, tiny_gpt2: Path) -> None:
    alice, bob = ws.user(ALICE), ws.user(BOB)
    group = alice.launch(request(tiny_gpt2, seeds=[0], methods={"manual": {}}))
    (run,) = wait_all(ws, group)
    assert [g["group_id"] for g in alice.groups()] == [group] and bob.groups() == []
    for look in (bob.runs, bob.summary, bob.artifacts, bob.context, bob.share, bob.results_path):
        with pytest.raises(NotYours, match="not|no comparison"):
            look(group)
    for act in (bob.cancel, bob.resume, bob.run):
        with pytest.raises(NotYours, match="no run"):
            act(run["id"])
    with pytest.raises(NotYours):
        bob.metrics_frame([run["id"]])
    with pytest.raises(NotYours) as unknown:  # the same answer for a group that does not exist at all
        bob.summary("20990101-000000-abcd")
    assert "no comparison" in str(unknown.value)

    token = alice.share(group)
    assert alice.share(group) == token and len(token) >= 20
    with pytest.raises(NotYours, match="share link"):
        bob.accept_share("not-a-token")
    assert bob.accept_share(token) == group
    (shared,) = bob.groups()
    assert shared["group_id"] == group and shared["shared"] and not alice.groups()[0]["shared"]
    assert bob.summary(group)["methods"] == alice.summary(group)["methods"]
    assert not bob.is_owner(group) and alice.is_owner(group)
    with pytest.raises(NotYours):  # read-only: sharing does not let Bob stop or restart Alice's runs
        bob.resume(run["id"])
    with pytest.raises(NotYours):
        bob.share(group)
