"""The Prompts page's previews: the prompt as the model sees it token by token, how each label word is
tokenised in the [MASK] slot, a template's slots, and a quick zero-shot check on the comparison's own dev rows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd

from core.data import LabeledDataset, Split, few_shot_split
from core.engine.backbone import Backbone, LMKind
from core.engine.templates import SlotKind, Template, mask_has_space, render_ids, tokenize_word
from core.methods import create
from core.methods.base import PromptSpec


def readable_tokens(tokenizer: Any, ids: Sequence[int]) -> list[str]:
    """Each token as text a person can read: byte-level BPE pieces decoded (no 'Ġ'), a leading space as '·'."""
    out = []
    for tok in tokenizer.convert_ids_to_tokens(list(ids)):
        try:
            text = tokenizer.convert_tokens_to_string([tok])
        except (KeyError, ValueError, TypeError):
            text = tok
        if text and not text.strip():  # a token that is only whitespace
            text = text.replace(" ", "·").replace("\n", "↵").replace("\t", "⇥")
        elif text.startswith(" "):
            text = "·" + text[1:]
        out.append(text or tok)
    return out


def token_preview(backbone: Backbone, template: str, record: Mapping[str, str]) -> pd.DataFrame:
    """The prompt as the model sees it: one row per token with its kind (special, text, field, soft, trigger, mask)."""
    parsed = Template.parse(template)
    mask_fill = [backbone.mask_id] if backbone.kind is LMKind.MASKED and backbone.mask_id is not None else []
    row = render_ids(backbone, parsed, record, mask_fill, 1)
    soft, trig, target = set(row.soft), set(row.trigger), set(row.target)
    n_prefix = len(backbone.prefix_ids)
    n_suffix = len(backbone.suffix_ids) if backbone.kind is LMKind.MASKED else 0
    tokens = readable_tokens(backbone.tokenizer, row.ids)
    out = []
    for i, (tid, tok) in enumerate(zip(row.ids, tokens, strict=True)):
        if i < n_prefix or i >= len(row.ids) - n_suffix:
            kind = "special"
        elif i in soft:
            kind, tok = "soft [P]", "[P]"
        elif i in trig:
            kind, tok = "trigger [T]", "[T]"
        elif backbone.kind is LMKind.MASKED and i in target:
            kind = "[MASK]"
        else:
            kind = "text"
        out.append({"position": i, "token": tok, "id": int(tid), "kind": kind})
    if backbone.kind is LMKind.CAUSAL:
        out.append({"position": len(row.ids), "token": "[MASK] → label word", "id": -1, "kind": "[MASK]"})
    return pd.DataFrame(out)


def label_word_tokens(backbone: Backbone, template: str, verbalizer: Mapping[str, Sequence[str]]) -> pd.DataFrame:
    """How each verbalizer word is tokenised in the [MASK] slot (multi-token words are scored as a whole)."""
    space = mask_has_space(Template.parse(template))
    rows = []
    for label, words in verbalizer.items():
        for word in words:
            ids = tokenize_word(backbone, word, space_before=space)
            rows.append(
                {
                    "label": label,
                    "word": word,
                    "tokens": " ".join(readable_tokens(backbone.tokenizer, ids)),
                    "n_tokens": len(ids),
                }
            )
    return pd.DataFrame(rows)


def slot_summary(template: str) -> dict[str, int]:
    """How many input fields, soft tokens, trigger tokens and [MASK] slots a template has."""
    parsed = Template.parse(template)
    return {
        "fields": len(parsed.fields),
        "soft [P]": parsed.n_soft,
        "trigger [T]": parsed.n_trigger,
        "[MASK]": sum(p.kind is SlotKind.MASK for p in parsed.pieces),
    }


QUICK_CHECK_ROWS = 200  # dev rows the Prompts page's zero-shot check scores at most: enough to rank templates


def comparison_dev(split: Split, k_shot: int | None, seed: int) -> tuple[LabeledDataset, str]:
    """The dev rows a comparison launched with these settings chooses templates, calibrates and tunes on (its first
    seed's, `few_shot_split`), and their name as the Data and Prompts pages say it. With K that is not the dev
    share: K per label drawn from it and the training rows the K-shot sample leaves, so a check scored on the dev
    share would disagree with what Compare reports."""
    _, dev = few_shot_split(split, k_shot, seed)
    if k_shot is None:
        return dev, "the comparison's dev (the dev share)"
    return dev, f"the comparison's dev (K={k_shot} per label, seed {seed})"


def quick_zero_shot(
    backbone: Backbone,
    spec: PromptSpec,
    rows: LabeledDataset,
    *,
    progress: Callable[[int, int], None] | None = None,
    chunk: int = 32,
) -> pd.DataFrame:
    """Each manual template scored zero-shot (calibrated) on `rows` (dev, up to `QUICK_CHECK_ROWS`): its accuracy
    on them, how many were scored, and the first answers. `progress(done, total)` after every chunk of rows, over
    all templates, so the page can show a bar while a few hundred rows are scored."""
    method = create("manual", spec, {"calibrate": True})
    total, done = len(spec.templates) * len(rows), 0
    out = []
    for template in spec.templates:
        Template.parse(template).validate(rows.columns, backbone.kind)
        prompt = method.prompt_for(backbone, template, rows.columns)
        pred: list[int] = []
        for lo in range(0, len(rows), chunk):
            pred += method.scores(backbone, prompt, rows.records[lo : lo + chunk]).argmax(1).tolist()
            done += min(chunk, len(rows) - lo)
            if progress is not None:
                progress(done, total)
        right = sum(int(p == y) for p, y in zip(pred, rows.labels, strict=True))
        out.append(
            {
                "template": template,
                "accuracy": right / max(len(rows), 1),
                "rows": len(rows),
                "answers": ", ".join(spec.label_names[p] for p in pred[:8]) + (" …" if len(pred) > 8 else ""),
            }
        )
    return pd.DataFrame(out)
