"""Learned-prompt files of the continuous methods, the PEFT export, and the CLI end to end on a tiny model."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from core.cli import main
from core.engine.prompt_encoders import attention_shape
from core.engine.scoring import build_plan
from core.engine.templates import Template, encode_batch
from core.methods import create
from core.progress import never_stop, no_progress
from core.prompts import artifacts
from core.prompts.peft_export import PeftExportError, export_peft, peft_type
from core.prompts.predict import predict_records
from tests.ptuning_helpers import keyword_data, learnable_backbone, spec_for
from tests.tiny_models import save_tiny

TRAIN, DEV, TEST = keyword_data(16, 0), keyword_data(8, 1), keyword_data(24, 2)
CASES = [
    ("ptuning", "bert", {}),
    ("ptuning", "llama", {"encoder": "mlp"}),
    ("prompt_tuning", "gpt2", {}),
    ("ptuning_v2", "bert", {"head": "linear"}),
    ("ptuning_v2", "llama", {"projection": True}),
]


def fit(backbone, method, template=None, **options):
    m = create(method, spec_for(backbone, template), {"max_steps": 3, "eval_every": 3, **options})
    return m, m.fit(backbone, TRAIN, DEV, progress=no_progress, should_stop=never_stop)


@pytest.mark.parametrize(("method", "family", "options"), CASES)
def test_save_load_predict_round_trip(tmp_path, method, family, options):
    backbone = learnable_backbone(family)
    m, learned = fit(backbone, method, **options)
    path = artifacts.save(learned, tmp_path, f"{method}-seed0")
    assert path.suffix == ".safetensors" and [p.name for p in tmp_path.iterdir()] == [path.name]  # atomic, no temp
    with safe_open(str(path), framework="pt") as f:
        manifest = json.loads(f.metadata()[artifacts.MANIFEST_KEY])
    assert manifest["method"] == method and manifest["backbone"]["fingerprint"] == backbone.fingerprint
    assert manifest["format_version"] == artifacts.FORMAT_VERSION and manifest["template"] == learned.template
    loaded = artifacts.load(path)
    assert torch.equal(m.scores(backbone, learned, TEST.records), m.scores(backbone, loaded, TEST.records))
    probs = predict_records(backbone, loaded, list(TEST.records))  # the generic predict path (config from JSON)
    assert torch.equal(probs.argmax(1), m.scores(backbone, learned, TEST.records).argmax(1))


def test_wrong_backbone_and_wrong_version_are_refused(tmp_path):
    backbone = learnable_backbone("gpt2")
    _, learned = fit(backbone, "prompt_tuning")
    path = artifacts.save(learned, tmp_path, "pt")
    other = learnable_backbone("gpt2", seed=1)
    with pytest.raises(artifacts.ArtifactError, match="was learned on .* load 'tiny-gpt2-learnable-0'"):
        predict_records(other, artifacts.load(path), list(TEST.records))
    data = artifacts.manifest(learned)
    with pytest.raises(artifacts.ArtifactError, match="format version 99"):
        artifacts._from_manifest({**data, "format_version": 99}, learned.tensors, "pt.safetensors")


def peft_scores(peft_model, backbone, learned, records):
    """Label scores from PEFT's own forward: our encoding minus the virtual-token slots, PEFT adds its own."""
    template = Template.parse(learned.template)
    plan = build_plan(backbone, template, learned.verbalizer_obj(), learned.label_names)
    group = plan.groups[0]
    enc = encode_batch(backbone, template, records, group.fill, group.n_targets)
    keep = ~enc.soft_mask
    ids = enc.input_ids[keep].view(len(records), -1)
    attn = enc.attention_mask[keep].view(len(records), -1)
    with torch.no_grad():
        logits = peft_model(input_ids=ids, attention_mask=attn).logits  # (B, P + T, V) or (B, T, V)
    # our layout is PEFT's ([virtual tokens] + input); PEFT may drop the virtual positions from the logits
    pos = enc.target_pos[:, 0] - (enc.input_ids.shape[1] - logits.shape[1])
    rows = torch.arange(len(records))
    word_ids = group.word_ids[:, 0]
    return torch.log_softmax(logits[rows, pos].float(), -1)[:, word_ids]


@pytest.mark.parametrize(
    ("method", "family", "template", "options"),
    [
        ("prompt_tuning", "llama", None, {"n_tokens": 4}),
        ("prompt_tuning", "bert", None, {"n_tokens": 4}),
        ("ptuning", "gpt2", "[P*3] {text} It was [MASK]", {}),
        ("ptuning_v2", "llama", None, {"n_prefix": 4}),
        ("ptuning_v2", "gpt2", None, {"n_prefix": 4}),
    ],
)
def test_peft_export_loads_and_predicts_the_same(tmp_path, method, family, template, options):
    from peft import PeftModel

    backbone = learnable_backbone(family)
    m, learned = fit(backbone, method, template, lr=0.05, **options)
    folder = export_peft(backbone, learned, tmp_path / "peft")
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in folder.iterdir()}
    ours = m.scores(backbone, learned, TEST.records[:6])
    base = learnable_backbone(family).model  # a fresh copy: PEFT wraps and freezes the model it is given
    peft_model = PeftModel.from_pretrained(base, str(folder)).eval()
    theirs = peft_scores(peft_model, backbone, learned, list(TEST.records[:6]))
    assert torch.allclose(ours, theirs, atol=1e-4), (ours, theirs)


def test_peft_export_refuses_what_peft_cannot_express():
    backbone = learnable_backbone("gpt2")
    _, learned = fit(backbone, "ptuning")  # [P] slots after the text
    with pytest.raises(PeftExportError, match="only prepends"):
        peft_type(learned, backbone)
    _, head = fit(backbone, "ptuning_v2", head="linear")
    with pytest.raises(PeftExportError, match="head"):
        peft_type(head, backbone)


def test_cli_compare_and_predict_end_to_end(tmp_path, capsys):
    model_dir = save_tiny("gpt2", tmp_path / "tiny-gpt2", extra_words=("alpha", "omega"))
    rows = [
        {"text": r["text"], "label": TRAIN.label_names[y]}
        for r, y in zip(keyword_data(40, 3).records, keyword_data(40, 3).labels, strict=True)
    ]
    pd.DataFrame(rows).to_csv(tmp_path / "data.csv", index=False)
    new = pd.DataFrame({"text": ["=cmd|' /C calc'!A0 alpha the", "omega movie"]})
    new.to_csv(tmp_path / "new.csv", index=False)
    out = tmp_path / "run"
    code = main(
        [
            "compare",
            "--data",
            str(tmp_path / "data.csv"),
            "--backbone",
            str(model_dir),
            "--methods",
            "ptuning,ptuning_v2,prompt_tuning",
            "--no-tune",  # fixed recipes: this test is about the files (tuning: tests/test_tuning.py)
            "--seeds",
            "0,1",
            "--max-steps",
            "2",
            "--k-shot",
            "4",
            "--test-size",
            "10",
            "--verbalizer",
            '{"positive": ["good"], "negative": ["bad"]}',
            "--out",
            str(out),
        ]
    )
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    names = {m["method"] for m in results["methods"]}
    assert names == {"ptuning", "ptuning_v2", "prompt_tuning"}
    assert all(m["n_seeds"] == 2 and m["trainable_params"] > 0 for m in results["methods"])
    artifact = next(m["artifact"] for m in results["methods"] if m["method"] == "ptuning")
    assert not (out / "checkpoints").exists()  # finished runs leave no checkpoint (nor its empty folders) behind
    assert list(out.glob("prompt_tuning-*-peft"))  # PEFT folder next to the prompt-tuning file
    capsys.readouterr()
    code = main(
        ["predict", "--prompt", artifact, "--data", str(tmp_path / "new.csv"), "--out", str(tmp_path / "preds.csv")]
    )
    assert code == 0
    preds = pd.read_csv(tmp_path / "preds.csv")
    assert list(preds["predicted_label"].isin(["positive", "negative"])) == [True, True]
    assert preds["text"][0].startswith("'=")  # formula injection neutralised


def fit_keeping_module(backbone, method, **options):
    """Fit as `fit` does, and also hand back the trained module itself (encoder included), which the prompt file
    no longer holds: the module that format 1 saved whole and scored from."""
    base = create(method, spec_for(backbone), {"max_steps": 3, "eval_every": 3, **options})
    trained = []

    class Keeping(type(base)):
        def build(self, *args, for_training, **kw):
            module = super().build(*args, for_training=for_training, **kw)
            trained.extend([module] if for_training else [])
            return module

    m = Keeping(base.spec, base.config)
    learned = m.fit(backbone, TRAIN, DEV, progress=no_progress, should_stop=never_stop)
    return m, learned, trained[-1]


def save_format_1(learned, module_state, path):
    """A prompt file as PTune Studio wrote it before format 2: the trained module's whole state, version 1."""
    tensors = {f"prompt.{k}": v.contiguous() for k, v in module_state.items()}
    tensors.update({k: v for k, v in learned.tensors.items() if k.startswith("backbone.")})
    manifest = {**artifacts.manifest(learned), "format_version": 1, "tensors": sorted(tensors)}
    save_file(tensors, str(path), metadata={artifacts.MANIFEST_KEY: json.dumps(manifest)})
    return path


def flat_prefix(backbone) -> int:
    layers, kv_heads, head_dim = attention_shape(backbone.model.config)
    return layers * 2 * kv_heads * head_dim


LAYOUT_CASES = [  # the tensors each file holds: (name, shape as a function of the backbone)
    ("ptuning", "llama", {"encoder": "lstm"}, {"prompt.encoder.embedding.weight": lambda b: (5, b.hidden_size)}),
    ("ptuning", "bert", {"encoder": "mlp"}, {"prompt.encoder.embedding.weight": lambda b: (5, b.hidden_size)}),
    (
        "ptuning_v2",
        "llama",
        {"projection": True, "n_prefix": 4},
        {"prompt.prefix.embedding.weight": lambda b: (4, flat_prefix(b))},
    ),
    (
        "ptuning_v2",
        "bert",
        {"projection": True, "n_prefix": 4, "head": "linear"},
        {
            "prompt.prefix.embedding.weight": lambda b: (4, flat_prefix(b)),
            "prompt.head.weight": lambda b: (2, b.hidden_size),
            "prompt.head.bias": lambda b: (2,),
        },
    ),
    ("prompt_tuning", "gpt2", {"n_tokens": 4}, {"prompt.encoder.embedding.weight": lambda b: (4, b.hidden_size)}),
]


@pytest.mark.parametrize(("method", "family", "options", "shapes"), LAYOUT_CASES)
def test_prompt_file_holds_what_scoring_needs_and_old_files_predict_the_same(
    tmp_path, method, family, options, shapes
):
    backbone = learnable_backbone(family)
    m, learned, module = fit_keeping_module(backbone, method, **options)
    new = artifacts.save(learned, tmp_path, "new")
    with safe_open(str(new), framework="pt") as f:
        held = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 (safe_open is no dict)
    assert held == {k: shape(backbone) for k, shape in shapes.items()}  # no encoder, no MLP
    old = save_format_1(learned, module.state_dict(), tmp_path / "old.safetensors")
    if method != "prompt_tuning":  # its file was already just the vectors
        assert old.stat().st_size > 2 * new.stat().st_size
    # what scoring from a format-1 file computed: the trained module, encoder and all, on the same rows
    plan = m._plan(backbone, Template.parse(learned.template), learned.verbalizer_obj(), learned.label_names)
    with torch.no_grad():
        reference = torch.softmax(m._score(backbone, module.eval(), plan, TEST.records).float(), dim=-1)
    from_new = predict_records(backbone, artifacts.load(new), list(TEST.records))
    from_old = predict_records(backbone, artifacts.load(old), list(TEST.records))
    torch.testing.assert_close(from_new, reference)  # float rounding only
    torch.testing.assert_close(from_old, reference)
    assert torch.equal(from_new.argmax(1), reference.argmax(1)) and torch.equal(from_old.argmax(1), from_new.argmax(1))


def test_a_broken_format_1_file_is_refused_in_one_line(tmp_path):
    backbone = learnable_backbone("llama")
    _, learned, module = fit_keeping_module(backbone, "ptuning", encoder="lstm")
    state = module.state_dict()
    state["encoder.mlp_head.2.weight"] = state["encoder.mlp_head.2.weight"][:, :3]  # a width its config never builds
    path = save_format_1(learned, state, tmp_path / "old.safetensors")
    with pytest.raises(
        artifacts.ArtifactError, match=r"^old.safetensors: .*'prompt.encoder.mlp_head.2.weight' is \[32, 3\]"
    ):
        artifacts.load(path)
    del state["encoder.lstm_head.weight_hh_l0"]
    path = save_format_1(learned, state, tmp_path / "old.safetensors")
    with pytest.raises(artifacts.ArtifactError, match="lacks tensor 'prompt.encoder.lstm_head.weight_hh_l0'"):
        artifacts.load(path)
