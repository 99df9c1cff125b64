"""A prompt file is checked against the backbone already loaded, by fingerprint and then by the exact tensors its
method builds there; the backbone it names is never loaded, and messages do not show server paths."""

from __future__ import annotations

import json

import pytest
import torch

from core.cli import main
from core.engine.backbone import wrap
from core.methods import create, method_for
from core.methods.base import LearnedPrompt, backbone_identity
from core.prompts import artifacts
from tests.tiny_models import build_model, build_tokenizer, save_tiny

VERBALIZER = {"positive": ["great"], "negative": ["terrible"]}


@pytest.fixture(scope="module")
def server_backbone():
    """A tiny GPT-2 registered under a server path, as an app deployment would load it."""
    return wrap(
        build_model("gpt2", len(build_tokenizer("gpt2", ())), seed=0),
        build_tokenizer("gpt2", ()),
        "/srv/secret/models/gpt2-small",
    )


def _prompt(backbone, method: str, template: str, config: dict | None = None) -> LearnedPrompt:
    """A prompt of `method` whose tensors are exactly what the method expects on `backbone` (zeros)."""
    learned = LearnedPrompt(
        method=method,
        template=template,
        verbalizer=VERBALIZER,
        label_names=["negative", "positive"],
        backbone=backbone_identity(backbone),
        config=config or {},
    )
    expected = method_for(learned).expected_tensors(backbone, learned)
    learned.tensors = {k: torch.zeros(shape, dtype=dtype) for k, (shape, dtype) in expected.items()}
    return learned


def test_fingerprint_mismatch_names_no_server_path(server_backbone, tmp_path):
    learned = _prompt(server_backbone, "manual", "{text} It was [MASK]")
    learned.backbone = {**learned.backbone, "name": "/home/alice/private/model", "spec": "/home/alice/private/model"}
    learned.backbone["fingerprint"] = "0" * 16
    loaded = artifacts.load(artifacts.save(learned, tmp_path, "m"))
    with pytest.raises(artifacts.ArtifactError) as err:
        artifacts.check_backbone(loaded, server_backbone)
    message = str(err.value)
    assert len(message.splitlines()) == 1 and "learned on 'model'" in message and "'gpt2-small'" in message
    assert "/srv" not in message and "/home" not in message


@pytest.mark.parametrize(
    ("method", "template", "config"),
    [
        ("prompt_tuning", "[P*2] {text} It was [MASK]", {}),
        ("ptuning", "{text} [P*2] It was [MASK]", {"encoder": "mlp"}),
        ("ptuning_v2", "{text} It was [MASK]", {"head": "linear"}),
        ("linear_probe", "{text} It was [MASK]", {}),
    ],
)
def test_tensors_must_be_exactly_what_the_method_builds(server_backbone, tmp_path, method, template, config):
    learned = _prompt(server_backbone, method, template, config)
    artifacts.check_backbone(artifacts.load(artifacts.save(learned, tmp_path, "ok")), server_backbone)
    name = sorted(learned.tensors)[0]
    good = learned.tensors[name]
    for bad, fragment in [
        (torch.zeros(*good.shape[:-1], good.shape[-1] + 1), "expects"),  # wrong shape
        (good.double(), "float64"),  # wrong dtype
    ]:
        learned.tensors[name] = bad
        loaded = artifacts.load(artifacts.save(learned, tmp_path, "bad"))
        with pytest.raises(artifacts.ArtifactError, match=fragment):
            artifacts.check_backbone(loaded, server_backbone)
    learned.tensors[name] = good
    learned.tensors["prompt.smuggled"] = torch.zeros(1)
    with pytest.raises(artifacts.ArtifactError, match="unexpected tensor 'prompt.smuggled'"):
        artifacts.check_backbone(artifacts.load(artifacts.save(learned, tmp_path, "extra")), server_backbone)


def test_a_tuned_backbone_tensor_cannot_broadcast_into_the_weights(server_backbone, tmp_path):
    learned = _prompt(server_backbone, "prompt_tuning", "[P*2] {text} It was [MASK]", {"tune_backbone": True})
    key = next(k for k in learned.tensors if k.startswith("backbone."))
    learned.tensors[key] = torch.zeros(1)  # copy_ would broadcast this over the whole weight
    before = {k: p.detach().clone() for k, p in server_backbone.model.named_parameters()}
    with pytest.raises(artifacts.ArtifactError, match=f"tensor '{key}' is \\[1\\]"):
        artifacts.check_backbone(artifacts.load(artifacts.save(learned, tmp_path, "tuned")), server_backbone)
    assert all(torch.equal(p, before[k]) for k, p in server_backbone.model.named_parameters())


def test_trigger_ids_outside_the_vocabulary_are_refused(server_backbone, tmp_path):
    learned = _prompt(server_backbone, "autoprompt", "{text} [T*2] It was [MASK]")
    learned.state = {"trigger_ids": [1, 10**6]}
    with pytest.raises(artifacts.ArtifactError, match="outside this backbone's vocabulary"):
        artifacts.check_backbone(artifacts.load(artifacts.save(learned, tmp_path, "ap")), server_backbone)


def test_cli_predict_refuses_another_backbone_without_echoing_its_path(tmp_path, capsys):
    folder = save_tiny("gpt2", tmp_path / "deep" / "models" / "tiny-gpt2")
    other = wrap(build_model("gpt2", len(build_tokenizer("gpt2", ())), seed=3), build_tokenizer("gpt2", ()), "x")
    prompt = artifacts.save(_prompt(other, "manual", "{text} It was [MASK]"), tmp_path, "p")
    data = tmp_path / "new.csv"
    data.write_text("text\na great movie\n", encoding="utf-8")
    args = ["predict", "--prompt", str(prompt), "--data", str(data), "--out", str(tmp_path / "o.csv")]
    assert main([*args, "--backbone", str(folder)]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: this prompt was learned on 'x'") and "'tiny-gpt2'" in last
    assert str(tmp_path) not in last and not (tmp_path / "o.csv").exists()


def test_manifest_spec_is_only_used_after_validation(tmp_path, capsys):
    """Without --backbone the CLI may load the manifest's spec, but a file failing validation loads nothing."""
    learned = _prompt(
        wrap(build_model("gpt2", len(build_tokenizer("gpt2", ())), seed=0), build_tokenizer("gpt2", ()), "t"),
        "manual",
        "{text} It was [MASK]",
    )
    learned.backbone["spec"] = str(tmp_path / "would-be-loaded")
    learned.label_names = ["negative", "negative"]
    path = artifacts.save(learned, tmp_path, "p")
    assert main(["predict", "--prompt", str(path), "--data", str(path), "--out", str(tmp_path / "o.csv")]) == 2
    assert capsys.readouterr().err.splitlines() == ["error: p.json names a label twice; its label order is broken"]


def test_the_tiny_method_checks_are_real_on_a_trained_prompt(tmp_path):
    """A prompt fitted for real passes the same exact-tensor check (no false refusals)."""
    from tests.ptuning_helpers import keyword_data, learnable_backbone, spec_for

    backbone = learnable_backbone("gpt2")
    method = create("ptuning_v2", spec_for(backbone, None), {"max_steps": 1, "eval_every": 1, "projection": True})
    learned = method.fit(
        backbone, keyword_data(4, 0), keyword_data(4, 1), progress=lambda *a: None, should_stop=lambda: False
    )
    artifacts.check_backbone(artifacts.load(artifacts.save(learned, tmp_path, "v2")), backbone)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_a_prompt_tensor_that_is_not_finite_is_refused_at_load(server_backbone, tmp_path, value):
    """A NaN or infinite soft prompt would label every row the same with empty probabilities: refused on reading,
    naming the tensor."""
    learned = _prompt(server_backbone, "prompt_tuning", "[P*2] {text} It was [MASK]")
    name = sorted(learned.tensors)[0]
    learned.tensors[name][0, 0] = value
    path = artifacts.save(learned, tmp_path, "diverged")
    with pytest.raises(artifacts.ArtifactError) as err:
        artifacts.load(path)
    assert str(err.value).startswith(f"diverged.safetensors: tensor {name!r} holds NaN or infinite values")


def test_predict_refuses_scores_that_overflow_to_nan(server_backbone, tmp_path):
    """Finite tensors can still overflow inside the model: prediction refuses NaN probabilities, never writes them."""
    from core.prompts.predict import predict_records

    learned = _prompt(server_backbone, "prompt_tuning", "[P*2] {text} It was [MASK]")
    learned.tensors = {k: torch.full_like(v, 3e38) for k, v in learned.tensors.items()}
    loaded = artifacts.load(artifacts.save(learned, tmp_path, "huge"))  # finite: loads
    with pytest.raises(artifacts.ArtifactError, match="NaN or infinite scores"):
        predict_records(server_backbone, loaded, [{"text": "a great movie"}, {"text": "terrible"}])


def test_an_uploaded_prompt_is_named_by_the_name_its_owner_gave(tmp_path):
    """The app saves an upload under a fresh server name; every message names the person's own file instead."""
    stored = tmp_path / "116dd993-random.safetensors"
    stored.write_bytes(b"\x80\x04not a safetensors file")
    with pytest.raises(artifacts.ArtifactError) as err:
        artifacts.load(stored, shown_as="my prompt.safetensors")
    message = str(err.value)
    assert message.startswith("my prompt.safetensors is not a readable learned-prompt file")
    assert "116dd993" not in message and "SafetensorError" not in message


def rewrite_header(path, make_header) -> None:
    """Replace a safetensors file's JSON header by `make_header(header dict)` (text: JSON readers cannot write a key
    twice), keeping its tensor bytes."""
    raw = path.read_bytes()
    size = int.from_bytes(raw[:8], "little")
    text = make_header(json.loads(raw[8 : 8 + size]))
    text += " " * (-len(text.encode()) % 8)
    path.write_bytes(len(text.encode()).to_bytes(8, "little") + text.encode() + raw[8 + size :])


def _twice(header: dict, where: str) -> str:
    """The header with a second `ptune_manifest` (label order reversed) in `__metadata__`, or a tensor's entry twice
    at the top level."""
    meta = header.pop("__metadata__")
    tensors = json.dumps(header)[1:-1]
    first = json.dumps(meta["ptune_manifest"])
    if where == "__metadata__":
        manifest = json.loads(meta["ptune_manifest"])
        manifest["label_names"] = manifest["label_names"][::-1]
        return f'{{"__metadata__": {{"ptune_manifest": {first}, "ptune_manifest": {json.dumps(json.dumps(manifest))}}}, {tensors}}}'
    entry = next(iter(header))
    return f'{{"__metadata__": {{"ptune_manifest": {first}}}, {tensors}, {json.dumps(entry)}: {json.dumps(header[entry])}}}'


@pytest.mark.parametrize("where", ["__metadata__", "top level"])
def test_a_header_that_gives_a_key_twice_is_refused(server_backbone, tmp_path, capsys, where):
    """Two manifests (the second with the labels reversed) predicted with exit 0 and the other labels: which one
    counts is ambiguous, so the file is refused in one line, by the CLI's predict too."""
    path = artifacts.save(_prompt(server_backbone, "prompt_tuning", "[P*2] {text} It was [MASK]"), tmp_path, "p")
    rewrite_header(path, lambda header: _twice(header, where))
    with pytest.raises(artifacts.ArtifactError) as err:
        artifacts.load(path)
    key = "'ptune_manifest'" if where == "__metadata__" else "'"
    assert str(err.value).startswith(f"p.safetensors's header gives {key}") and "twice" in str(err.value)
    rows = tmp_path / "rows.csv"
    rows.write_text("text\na great movie\n", encoding="utf-8")
    assert main(["predict", "--prompt", str(path), "--data", str(rows), "--out", str(tmp_path / "o.csv")]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "twice, so it is ambiguous" in lines[0] and not (tmp_path / "o.csv").exists()


def test_a_manifest_that_gives_a_field_twice_is_refused(server_backbone, tmp_path):
    path = artifacts.save(_prompt(server_backbone, "manual", "{text} It was [MASK]"), tmp_path, "m")
    text = path.read_text(encoding="utf-8")
    path.write_text(text[:-1] + ', "label_names": ["positive", "negative"]}', encoding="utf-8")
    with pytest.raises(artifacts.ArtifactError, match=r"^m.json's manifest gives 'label_names' twice"):
        artifacts.load(path)
