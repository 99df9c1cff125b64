"""The tables and previews the pages show, computed from summaries, datasets and tokenizers (pandas in, out).

Comparison views (`comparison_table`, significance, confusion, disagreements, soft-prompt readings) and prompt
views (the token preview, label-word tokenisation, a quick zero-shot check). No Streamlit here, so every view is
unit-tested on plain inputs.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from core import artifacts
from core.backbone import Backbone, LMKind
from core.data import LabeledDataset
from core.methods import REGISTRY, create
from core.methods.base import PromptSpec
from core.templates import SlotKind, Template, mask_has_space, render_ids, tokenize_word


def comparison_table(summary: Mapping[str, Any]) -> pd.DataFrame:
    """One row per prompt: accuracy mean ± std over seeds, macro-F1, cost; best/worst among a method's variants."""
    rows = []
    for m in summary["methods"]:
        cls = REGISTRY.get(m["method"])
        rows.append(
            {
                "prompt": m["name"],
                "method": cls.label if cls else m["method"],
                "method_id": m["method"],
                "accuracy": m["accuracy"],
                "accuracy_std": m["accuracy_std"],
                "macro_f1": m["macro_f1"],
                "seeds": m["n_seeds"],
                "trainable_params": m["trainable_params"],
                "train_seconds": m["train_seconds"],
                "peak_memory_mb": m["peak_memory_mb"],
                "primary": m["primary"],
                "role": "chosen on dev" if m["primary"] else "",
            }
        )
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    for _, part in df[~df["primary"]].groupby("method_id"):
        if len(part) > 1:
            df.loc[part["accuracy"].idxmax(), "role"] = "best on test"
            df.loc[part["accuracy"].idxmin(), "role"] = "worst on test"
    return df


def significance_table(summary: Mapping[str, Any]) -> pd.DataFrame:
    rows = []
    for s in summary.get("significance", []):
        boot, mc = s["bootstrap"], s["mcnemar"]
        rows.append(
            {
                "prompt": s["method"],
                "versus": s["versus"],
                "accuracy_diff": boot["diff"],
                "ci_low": boot["ci_low"],
                "ci_high": boot["ci_high"],
                "bootstrap_p": boot["p_value"],
                "mcnemar_p": mc["p_value"],
                "significant (p<0.05)": mc["p_value"] < 0.05,
            }
        )
    return pd.DataFrame(rows)


def confusion_frame(summary: Mapping[str, Any]) -> pd.DataFrame:
    """Long format (prompt, gold, predicted, count) of each prompt's first-seed confusion matrix."""
    labels = summary["dataset"]["labels"]
    rows = []
    for m in summary["methods"]:
        for gi, row in enumerate(m["confusion"]):
            for pi, count in enumerate(row):
                rows.append({"prompt": m["name"], "gold": labels[gi], "predicted": labels[pi], "count": count})
    return pd.DataFrame(rows)


def disagreements(summary: Mapping[str, Any], test: LabeledDataset, *, limit: int = 200) -> pd.DataFrame:
    """Test rows where the prompts' (first-seed) predictions differ: text, gold label and each prompt's answer."""
    labels = summary["dataset"]["labels"]
    preds = {m["name"]: m["predictions"][0] for m in summary["methods"]}
    if not preds:
        return pd.DataFrame()
    df = pd.DataFrame({"text": test.texts, "gold": [labels[y] for y in test.labels]})
    for name, p in preds.items():
        df[name] = [labels[i] for i in p]
    names = list(preds)
    differ = df[names].nunique(axis=1) > 1
    out = df[differ].head(limit).copy()
    out.insert(2, "prompts right", [int(sum(r[n] == r["gold"] for n in names)) for _, r in out.iterrows()])
    return out


def _piece(token: object) -> str:
    """A vocabulary piece for display: BPE/SentencePiece word-start markers shown as '·', newlines as '↵'."""
    return str(token).replace("Ġ", "·").replace("▁", "·").replace("Ċ", "↵")


def soft_prompt_readings(summary: Mapping[str, Any]) -> dict[str, list[str]]:
    """Nearest-vocabulary reading of each learned soft prompt, as its method recorded it in the prompt file's
    manifest (`state["nearest_tokens"]`: per soft token, the nearest vocabulary tokens and their cosine)."""
    out: dict[str, list[str]] = {}
    for m in summary["methods"]:
        path = m.get("artifact")
        if not path or not Path(path).exists():
            continue
        try:
            learned = artifacts.load(path)
        except artifacts.ArtifactError:
            continue
        readout = learned.state.get("nearest_tokens")
        if not readout:
            continue
        lines = []
        for i, neighbours in enumerate(readout):
            words = [
                f"{_piece(w[0])} ({w[1]:.2f})" if isinstance(w, list | tuple) and len(w) == 2 else _piece(w)
                for w in neighbours
            ]
            lines.append(f"[P{i}] " + " | ".join(words))
        out[m["name"]] = lines
    return out


def zip_folder(folder: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(folder.parent))
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------------- prompts page


def readable_tokens(tokenizer, ids: Sequence[int]) -> list[str]:
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
    parsed = Template.parse(template)
    return {
        "fields": len(parsed.fields),
        "soft [P]": parsed.n_soft,
        "trigger [T]": parsed.n_trigger,
        "[MASK]": sum(p.kind is SlotKind.MASK for p in parsed.pieces),
    }


def quick_zero_shot(backbone: Backbone, spec: PromptSpec, rows: LabeledDataset) -> pd.DataFrame:
    """Each manual template scored zero-shot (calibrated) on a few rows: accuracy and the answers."""
    method = create("manual", spec, {"calibrate": True})
    out = []
    for template in spec.templates:
        Template.parse(template).validate(rows.columns, backbone.kind)
        prompt = method.prompt_for(backbone, template, rows.columns)
        pred = method.scores(backbone, prompt, rows.records).argmax(1).tolist()
        right = sum(int(p == y) for p, y in zip(pred, rows.labels, strict=True))
        out.append(
            {
                "template": template,
                "accuracy": right / max(len(rows), 1),
                "answers": ", ".join(spec.label_names[p] for p in pred),
            }
        )
    return pd.DataFrame(out)
