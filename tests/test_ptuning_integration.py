"""Continuous prompts on the real default backbone (SmolLM2-135M): a few steps each, end to end (CPU-cheap)."""

from __future__ import annotations

import hashlib

import pytest
import torch

from core.data import LabeledDataset
from core.engine.templates import Verbalizer
from core.methods import create
from core.methods.base import PromptSpec
from core.progress import never_stop, no_progress
from core.prompts import artifacts
from core.prompts.peft_export import export_peft
from core.prompts.predict import predict_records
from tests.test_artifacts_continuous import peft_scores

pytestmark = pytest.mark.integration
LABELS = ("negative", "positive")
TEXTS = ["A dull, lifeless film.", "A wonderful, moving story.", "Boring and far too long.", "Funny and warm."]
DATA = LabeledDataset(tuple({"text": t} for t in TEXTS), (0, 1, 0, 1), LABELS, "text", "label")
SPEC = PromptSpec(
    ("{text} It was [MASK]",), Verbalizer.from_mapping({"negative": "terrible", "positive": "great"}, LABELS), LABELS
)
SMALL = {"max_steps": 2, "batch_size": 2, "eval_every": 2, "max_length": 32}


def digest(backbone) -> str:
    h = hashlib.sha256()
    for p in backbone.model.parameters():
        h.update(p.detach().cpu().numpy().tobytes())
    return h.hexdigest()


@pytest.mark.parametrize("method", ["ptuning", "ptuning_v2"])
def test_fit_save_load_predict_on_default_backbone(default_backbone, tmp_path, method):
    torch.set_num_threads(2)
    before = digest(default_backbone)
    m = create(method, SPEC, SMALL)
    learned = m.fit(default_backbone, DATA, DATA, progress=no_progress, should_stop=never_stop)
    assert digest(default_backbone) == before  # frozen: bit-identical
    loaded = artifacts.load(artifacts.save(learned, tmp_path, method))
    probs = predict_records(default_backbone, loaded, list(DATA.records))
    assert probs.shape == (4, 2) and torch.allclose(probs.sum(1), torch.ones(4))
    assert torch.equal(probs.argmax(1), m.scores(default_backbone, learned, DATA.records).argmax(1))
    if method == "ptuning":
        assert len(learned.state["nearest_tokens"]) == 5 and learned.template == "{text} [P*3] It was [P*2] [MASK]"


def test_prompt_tuning_peft_export_matches_on_default_backbone(default_backbone, tmp_path):
    from peft import PeftModel

    from core.engine.backbone import load_backbone

    m = create("prompt_tuning", SPEC, {**SMALL, "n_tokens": 4})
    learned = m.fit(default_backbone, DATA, DATA, progress=no_progress, should_stop=never_stop)
    folder = export_peft(default_backbone, learned, tmp_path / "peft")
    fresh = load_backbone("default", device="cpu")
    peft_model = PeftModel.from_pretrained(fresh.model, str(folder)).eval()
    ours = m.scores(default_backbone, learned, DATA.records)
    theirs = peft_scores(peft_model, default_backbone, learned, list(DATA.records))
    assert torch.allclose(ours, theirs, atol=1e-3), (ours, theirs)
