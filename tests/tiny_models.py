"""Tiny randomly initialised models of each supported family, built from configs (no hub access).

They share a word-level tokenizer so that multi-word label words ("not good") are multi-token, which exercises the
same code paths as BPE pieces. `save_tiny` writes one to a folder that `load_backbone(path)` (and the app) loads.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import (
    BertConfig,
    BertForMaskedLM,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
    RobertaConfig,
    RobertaForMaskedLM,
)

from core.engine.backbone import Backbone, wrap

WORDS = (
    "the a an it is was this that movie film story plot great good bad terrible awful fine not very really and or "
    "of to in on with for about as but so just all its his her their they he she we you i review sentence label "
    "text overall summary sentiment positive negative subjective objective yes no true false love hate fun boring "
    "best worst acting script director characters one two three four five six seven eight nine ten alpha beta "
    "gamma delta zeta eta theta kappa lambda sigma omega red green blue cyan magenta yellow black white . , ! ? : -"
).split()
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "<s>", "</s>"]


def build_tokenizer(family: str, extra_words: tuple[str, ...] = ()) -> PreTrainedTokenizerFast:
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys([*SPECIALS, *WORDS, *extra_words]))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    if family in ("bert", "roberta"):
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
        )
        return PreTrainedTokenizerFast(
            tokenizer_object=tok,
            unk_token="[UNK]",
            pad_token="[PAD]",
            cls_token="[CLS]",
            sep_token="[SEP]",
            mask_token="[MASK]",
        )
    if family == "llama":
        tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 5)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", bos_token="<s>", eos_token="</s>")


def build_model(family: str, vocab_size: int, *, seed: int = 0, hidden: int = 32, layers: int = 2) -> torch.nn.Module:
    torch.manual_seed(seed)
    common = dict(vocab_size=vocab_size, num_hidden_layers=layers, num_attention_heads=4)
    if family == "bert":
        cfg = BertConfig(hidden_size=hidden, intermediate_size=hidden * 2, max_position_embeddings=512, **common)
        cfg.architectures = ["BertForMaskedLM"]
        return BertForMaskedLM(cfg)
    if family == "roberta":
        cfg = RobertaConfig(
            hidden_size=hidden, intermediate_size=hidden * 2, max_position_embeddings=514, pad_token_id=0, **common
        )
        cfg.architectures = ["RobertaForMaskedLM"]
        return RobertaForMaskedLM(cfg)
    if family == "gpt2":
        cfg = GPT2Config(
            vocab_size=vocab_size,
            n_embd=hidden,
            n_layer=layers,
            n_head=4,
            n_positions=512,
            bos_token_id=5,
            eos_token_id=6,
        )
        cfg.architectures = ["GPT2LMHeadModel"]
        return GPT2LMHeadModel(cfg)
    if family == "llama":
        cfg = LlamaConfig(
            hidden_size=hidden,
            intermediate_size=hidden * 2,
            num_key_value_heads=2,
            max_position_embeddings=512,
            bos_token_id=5,
            eos_token_id=6,
            pad_token_id=0,
            **common,
        )
        cfg.architectures = ["LlamaForCausalLM"]
        return LlamaForCausalLM(cfg)
    raise ValueError(f"unknown tiny family {family!r}")


def tiny_backbone(family: str, *, seed: int = 0, extra_words: tuple[str, ...] = ()) -> Backbone:
    tokenizer = build_tokenizer(family, extra_words)
    model = build_model(family, len(tokenizer), seed=seed)
    return wrap(model, tokenizer, f"tiny-{family}")


def save_tiny(family: str, folder: Path, *, seed: int = 0, extra_words: tuple[str, ...] = ()) -> Path:
    tokenizer = build_tokenizer(family, extra_words)
    model = build_model(family, len(tokenizer), seed=seed)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
