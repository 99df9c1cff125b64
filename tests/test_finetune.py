"""The fine-tuning reference rows (finetune, prompt_finetune, lora) on tiny masked and causal models: they train,
save, reload and predict identically; LoRA's folder loads with peft; bad options and backbones are refused in one
line before anything trains; the CLI gives the in-process accuracies."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from core.cli import main
from core.compare import Unit, prompt_spec, run_unit
from core.data import load_dataset, split_dataset
from core.engine.templates import Template, encode_batch
from core.methods import create, method_class
from core.methods.finetune import check_fits, memory_needed
from core.prompts import artifacts
from core.prompts.predict import predict_records
from tests.tiny_models import save_tiny, tiny_backbone

ROOT = Path(__file__).resolve().parent.parent
FINE_TUNES = ("finetune", "prompt_finetune", "lora")
TEMPLATES = ["{text} it was [MASK]", "{text} . overall [MASK]"]
VERBALIZER = {"positive": ["great"], "negative": ["terrible"]}


def _split(csv: Path):
    dataset = load_dataset(csv)
    return dataset, split_dataset(dataset, test_size=0.5, dev_size=0.1, seed=0)


@pytest.mark.parametrize("family", ["bert", "llama"])
@pytest.mark.parametrize("method", FINE_TUNES)
def test_each_fine_tune_trains_saves_reloads_and_predicts_identically(tiny, keyword_csv, tmp_path, family, method):
    backbone = tiny(family)
    before = {k: v.clone() for k, v in backbone.model.state_dict().items()}
    dataset, split = _split(keyword_csv)
    spec = prompt_spec(dataset, TEMPLATES, VERBALIZER)
    result = run_unit(backbone, split, spec, Unit(method, 0, {"max_steps": 4}, 4), out_dir=tmp_path)
    row = result["rows"][0]
    assert method_class(method).fine_tunes and row["trainable_params"] > 0
    learned = artifacts.load(row["artifact"])
    probs = predict_records(backbone, learned, split.test.records)
    assert probs.argmax(1).tolist() == row["predictions"]  # the file predicts what the run scored
    after = backbone.model.state_dict()  # the shared backbone is never changed: each trains a private copy
    assert all(torch.equal(before[k], after[k]) for k in before)
    backbone_weights = sum(p.numel() for p in backbone.model.parameters())
    if method == "lora":
        assert row["trainable_params"] < backbone_weights / 10  # adapters only
        assert not any(k.startswith("backbone.") for k in learned.tensors)
    else:
        assert row["trainable_params"] >= backbone_weights  # every weight (and finetune's head)
    if method != "finetune":  # trained through the chosen manual template and the verbalizer
        assert learned.template in TEMPLATES and learned.verbalizer == VERBALIZER


def test_tuning_searches_the_backbone_rate_and_loras_rank_on_dev(tiny, keyword_csv, tmp_path):
    backbone = tiny("llama")
    dataset, split = _split(keyword_csv)
    spec = prompt_spec(dataset, TEMPLATES, VERBALIZER)
    dims = {m: [d.name for d in create(m, spec).search_space(())] for m in FINE_TUNES}
    assert dims == {"finetune": ["backbone_lr"], "prompt_finetune": ["backbone_lr"], "lora": ["lr", "rank"]}
    assert create("lora", spec).search_space({"rank"})[-1].name == "lr"  # a rank the user set is not searched
    tuned = run_unit(backbone, split, spec, Unit("lora", 0, {"max_steps": 6}, 4, tune=True), out_dir=tmp_path)
    trials = tuned["rows"][0]["tuning"]["trials"]
    assert {"rank"} <= {k for t in trials for k in t["options"]}


def test_the_lora_folder_loads_with_peft_and_scores_as_the_prompt_does(tiny, keyword_csv, tmp_path):
    from peft import PeftModel

    backbone = tiny("llama")
    dataset, split = _split(keyword_csv)
    spec = prompt_spec(dataset, TEMPLATES, VERBALIZER)
    row = run_unit(backbone, split, spec, Unit("lora", 0, {"max_steps": 4, "lr": 0.05}, 4), out_dir=tmp_path)["rows"][
        0
    ]
    folder = Path(row["peft_export"])
    assert (folder / "adapter_config.json").is_file() and (folder / "adapter_model.safetensors").is_file()
    learned = artifacts.load(row["artifact"])
    ours = create("lora", spec, learned.config).scoring_backbone(backbone, learned)
    peft_model = PeftModel.from_pretrained(copy.deepcopy(backbone.model), str(folder)).eval()
    enc = encode_batch(backbone, Template.parse(learned.template), split.test.records[:4], [], 1)
    with torch.no_grad():
        mine = ours.model(input_ids=enc.input_ids, attention_mask=enc.attention_mask).logits
        theirs = peft_model(input_ids=enc.input_ids, attention_mask=enc.attention_mask).logits
        plain = backbone.model(input_ids=enc.input_ids, attention_mask=enc.attention_mask).logits
    assert torch.allclose(mine, theirs, atol=1e-5)
    assert not torch.allclose(mine, plain, atol=1e-4)  # the adapters are in it: it is not the bare backbone


def test_a_fine_tuned_file_is_refused_on_another_backbone(tiny, keyword_csv, tmp_path):
    dataset, split = _split(keyword_csv)
    spec = prompt_spec(dataset, TEMPLATES, VERBALIZER)
    row = run_unit(tiny("llama"), split, spec, Unit("finetune", 0, {"max_steps": 2}, 4), out_dir=tmp_path)["rows"][0]
    other = tiny_backbone("llama", seed=1)  # the same architecture, other weights
    with pytest.raises(artifacts.ArtifactError, match="this prompt was learned on"):
        predict_records(other, artifacts.load(row["artifact"]), split.test.records)


@pytest.mark.parametrize(
    ("method", "options", "message"),
    [
        ("lora", {"rank": 0}, "rank must be a whole number from 1 to 256, not 0"),
        ("lora", {"lr": -1.0}, "lr must be a positive number"),
        ("lora", {"target_modules": "q_proj;v"}, "target_modules names layers by name"),
        ("lora", {"tune_backbone": True}, "option 'tune_backbone' is fixed at False"),
        ("finetune", {"tune_backbone": False}, "option 'tune_backbone' is fixed at True"),
        ("finetune", {"backbone_lr": 0}, "backbone_lr must be a positive number"),
        ("prompt_finetune", {"lr": 0.5}, "option 'lr' is fixed"),
    ],
)
def test_bad_options_are_one_line_naming_the_field(keyword_csv, method, options, message):
    dataset, _ = _split(keyword_csv)
    with pytest.raises(ValueError, match=message) as err:
        create(method, prompt_spec(dataset, TEMPLATES, VERBALIZER), options)
    assert "\n" not in str(err.value)


def test_a_lora_layer_the_backbone_lacks_is_refused_with_the_layers_it_has(tiny, keyword_csv):
    dataset, _ = _split(keyword_csv)
    method = create("lora", prompt_spec(dataset, TEMPLATES, VERBALIZER), {"target_modules": "q_proj,query"})
    with pytest.raises(ValueError, match="lora target_modules 'query' is not a layer of this backbone") as err:
        method.check_backbone(tiny("llama"))
    assert "q_proj" in str(err.value) and "v_proj" in str(err.value)  # what the user can choose from


def test_a_full_fine_tune_that_would_not_fit_is_refused_naming_lora(tiny):
    backbone = tiny("llama")
    n = sum(p.numel() for p in backbone.model.parameters())
    assert memory_needed(n, 4) > n * 16  # the copy, its gradients and AdamW's two moments, with headroom
    check_fits("finetune", backbone, available=memory_needed(n, 4))  # exactly enough: accepted
    with pytest.raises(ValueError, match="finetune needs about .* GiB free on cpu.*run lora instead"):
        check_fits("finetune", backbone, available=memory_needed(n, 4) - 1)


def test_the_cli_refuses_a_missing_lora_layer_before_any_unit_runs(tmp_path, keyword_csv, capsys):
    folder = save_tiny("gpt2", tmp_path / "gpt2")
    code = main(
        ["compare", "--data", str(keyword_csv), "--backbone", str(folder), "--methods", "manual,lora",
         "--option", "lora.target_modules=q_proj", "--out", str(tmp_path / "out")]
    )  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("error: lora target_modules 'q_proj' is not a layer of this backbone")
    assert "c_attn" in err[-1] and not any("running manual" in line for line in err)  # refused before manual ran
    assert not (tmp_path / "out" / "results.json").exists()


def test_the_cli_gives_the_in_process_accuracies(tmp_path, keyword_csv):
    folder = save_tiny("gpt2", tmp_path / "gpt2")
    args = [
        sys.executable, "-m", "core", "compare", "--data", str(keyword_csv), "--backbone", str(folder),
        "--methods", "finetune,lora", "--k-shot", "4", "--max-steps", "3", "--no-tune", "--template", TEMPLATES[0],
        "--verbalizer", json.dumps(VERBALIZER), "--out", str(tmp_path / "out"),
    ]  # fmt: skip
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    dataset, split = _split(keyword_csv)
    spec = prompt_spec(dataset, [TEMPLATES[0]], VERBALIZER)
    from core.engine.backbone import load_backbone

    backbone = load_backbone(str(folder), device="cpu")
    for name in ("finetune", "lora"):
        local = run_unit(backbone, split, spec, Unit(name, 0, {"max_steps": 3, "seed": 0}, 4))["rows"][0]
        cli = next(m for m in results["methods"] if m["method"] == name)
        assert cli["accuracy"] == local["accuracy"] and cli["predictions"] == [local["predictions"]]


def test_the_app_refuses_a_fine_tune_too_big_for_this_machine_before_launch(tmp_path):
    """A 70B Llama (its config, a stub weights file: sized without loading) cannot be fully fine-tuned in this box's
    memory; the Train page's launch is refused in one line naming LoRA, and nothing is queued or written."""
    from safetensors.torch import save_file
    from transformers import LlamaConfig

    from core.app.service import Workspace
    from tests.test_workspace import ALICE, request

    folder = tmp_path / "huge-llama"
    LlamaConfig(
        hidden_size=8192, intermediate_size=28672, num_hidden_layers=80, num_attention_heads=64,
        num_key_value_heads=8, vocab_size=128256,
    ).save_pretrained(folder)  # fmt: skip
    save_file({"stub": torch.zeros(1)}, str(folder / "model.safetensors"))
    ws = Workspace(tmp_path / "home")
    try:
        me = ws.user(ALICE)
        with pytest.raises(ValueError, match=r"Fine-tuning: finetune needs about [\d.]+ GiB free on cpu .*run lora"):
            me.launch(request(folder, methods={"manual": {}, "finetune": {}}))
        assert me.groups() == [] and not list((tmp_path / "home").rglob("data.csv"))
        ws.validate(request(folder, methods={"manual": {}, "lora": {}}))  # LoRA's few weights are not refused
    finally:
        ws.close()
