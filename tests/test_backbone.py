"""Backbone loading from folders, family detection, special-token layout and clear errors."""

from __future__ import annotations

import inspect

import pytest
from transformers import AutoConfig

from core.engine.backbone import BackboneError, LMKind, install_default, lm_kind, load_backbone, special_layout
from tests.tiny_models import build_tokenizer, save_tiny


@pytest.mark.parametrize(
    "family, kind",
    [("bert", LMKind.MASKED), ("roberta", LMKind.MASKED), ("gpt2", LMKind.CAUSAL), ("llama", LMKind.CAUSAL)],
)
def test_load_saved_folder_detects_family(tmp_path, family, kind):
    folder = save_tiny(family, tmp_path / family)
    assert lm_kind(AutoConfig.from_pretrained(folder)) is kind
    first = load_backbone(str(folder), device="cpu")
    again = load_backbone(str(folder), device="cpu")
    assert first.kind is kind and first.spec == str(folder)
    assert first.fingerprint == again.fingerprint and len(first.fingerprint) == 16
    assert first.describe()["parameters"] == first.num_parameters() > 0
    other = load_backbone(str(save_tiny(family, tmp_path / "other", seed=1)), device="cpu")
    assert other.fingerprint != first.fingerprint  # different weights, different identity


def test_special_layout_per_family():
    bert = build_tokenizer("bert")
    assert special_layout(bert) == ([bert.cls_token_id], [bert.sep_token_id])
    llama = build_tokenizer("llama")
    assert special_layout(llama) == ([llama.bos_token_id], [])
    assert special_layout(build_tokenizer("gpt2")) == ([], [])


def test_bad_backbones_give_one_line_errors(tmp_path):
    with pytest.raises(BackboneError, match="does not exist"):
        load_backbone(str(tmp_path / "nope" / "deeper"), device="cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BackboneError, match="no config.json"):
        load_backbone(str(tmp_path / "empty"), device="cpu")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json")
    with pytest.raises(BackboneError) as err:
        load_backbone(str(broken), device="cpu")
    assert "\n" not in str(err.value)


def test_remote_code_is_off_unless_asked():
    assert inspect.signature(load_backbone).parameters["trust_remote_code"].default is False


def test_install_default_is_idempotent_when_present(tmp_path):
    target = tmp_path / "smollm2-135m"
    target.mkdir()
    (target / "model.safetensors").write_bytes(b"x")
    messages = []
    assert install_default(tmp_path, progress=messages.append) == target
    assert messages == []  # nothing downloaded or converted again
