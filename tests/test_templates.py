"""Template language: parsing, validation, rendering positions, verbalizers, clear errors."""

from __future__ import annotations

import pytest
import torch

from core.engine.backbone import LMKind
from core.engine.templates import SlotKind, Template, TemplateError, Verbalizer, encode_batch, render_ids
from tests.tiny_models import tiny_backbone


def test_parse_counts_slots_and_round_trips_triggers():
    t = Template.parse("[P*3] {text} It was [T*2] [P] [MASK] .")
    assert t.n_soft == 4 and t.n_trigger == 2 and t.fields == ["text"]
    assert [p.kind for p in t.pieces][:2] == [SlotKind.SOFT, SlotKind.TEXT]
    assert t.with_triggers(["very", "much"]) == "[P*3] {text} It was very much [P] [MASK] ."
    assert t.fill({"text": "good"}, ["x", "y"]) == "[P] [P] [P] good It was x y [P] [MASK] ."


@pytest.mark.parametrize(
    "source, fragment",
    [
        ("", "empty"),
        ("{text} It was", "exactly one [MASK]"),
        ("{text} [MASK] [MASK]", "exactly one [MASK]"),
        ("It was [MASK]", "no CSV field"),
        ("{text} [P*0] [MASK]", "count from 1"),
        ("{text} [P*99] [MASK]", "count from 1"),
        ("{text} [MASK*2]", "takes no count"),
        ("{text} [P x] [MASK]", "is not a slot"),
    ],
)
def test_bad_templates_raise_one_line(source, fragment):
    with pytest.raises(TemplateError) as err:
        Template.parse(source)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_validate_names_missing_column_and_causal_mask_position():
    t = Template.parse("{review} It was [MASK]")
    with pytest.raises(TemplateError, match=r"\{review\}.*\{text\}"):
        t.validate(["text"], LMKind.CAUSAL)
    middle = Template.parse("{text} It was [MASK] .")
    middle.validate(["text"], LMKind.MASKED)  # fine for a masked LM
    with pytest.raises(TemplateError, match="must end the template"):
        middle.validate(["text"], LMKind.CAUSAL)
    Template.parse("{text} It was [MASK] ").validate(["text"], LMKind.CAUSAL)  # trailing space is fine


def test_render_positions_mlm(tiny):
    bb = tiny("bert")
    t = Template.parse("[P*2] {text} [T] it was [P] [MASK] .")
    row = render_ids(bb, t, {"text": "a great movie"}, [bb.mask_id] * 2, 2, trigger_ids=[bb.tokenizer.vocab["fun"]])
    ids = row.ids
    assert ids[0] == bb.prefix_ids[0] and ids[-1] == bb.suffix_ids[0]
    assert row.soft == [1, 2, 9] and all(ids[i] == bb.pad_id for i in row.soft)
    assert row.trigger == [6] and ids[6] == bb.tokenizer.vocab["fun"]
    assert row.target == [10, 11] and ids[10] == ids[11] == bb.mask_id
    assert bb.tokenizer.decode(ids[3:6]) == "a great movie"


def test_render_positions_causal_predict_next_token(tiny):
    bb = tiny("llama")
    t = Template.parse("{text} it was [MASK]")
    word = bb.tokenizer("very good", add_special_tokens=False)["input_ids"]
    row = render_ids(bb, t, {"text": "fun"}, word[:-1], 2)
    assert row.ids[0] == bb.prefix_ids[0]  # BOS
    assert row.target == [len(row.ids) - 2, len(row.ids) - 1]  # logits at t predict token t+1
    assert row.ids[-1] == word[0]


def test_truncation_cuts_only_the_field(tiny):
    bb = tiny("gpt2")
    t = Template.parse("{text} it was [MASK]")
    long_text = " ".join(["great"] * 400)
    enc = encode_batch(bb, t, [{"text": long_text}, {"text": "fun"}], [], 1, max_length=32)
    assert enc.lengths[0] == 32 and enc.lengths[1] == 3
    anchor = bb.tokenizer("it was", add_special_tokens=False)["input_ids"]
    assert enc.input_ids[0, 30:32].tolist() == anchor
    with pytest.raises(TemplateError, match="template alone needs"):
        encode_batch(bb, Template.parse("{text} [P*40] [MASK]"), [{"text": "fun"}], [], 1, max_length=16)


def test_verbalizer_parsing_and_errors():
    v = Verbalizer.from_json('{"pos": ["great", "very good"], "neg": "bad"}', ["neg", "pos"])
    assert v.words == {"neg": ("bad",), "pos": ("great", "very good")}
    assert Verbalizer.default(["not_sure", "yes"]).words["not_sure"] == ("not sure",)
    for text, fragment in [
        ('{"pos": ["great"]}', "no word for label 'neg'"),
        ('{"pos": [""], "neg": "x"}', "empty"),
        ('{"pos": "a", "neg": "b", "other": "c"}', "not in the data"),
        ("{pos: 1}", "not valid JSON"),
        ('["great"]', "JSON object"),
    ]:
        with pytest.raises(TemplateError, match=fragment):
            Verbalizer.from_json(text, ["neg", "pos"])


def test_a_word_shared_by_two_labels_is_refused():
    with pytest.raises(TemplateError, match="word 'fine' is given for both 'positive' and 'neutral'"):
        Verbalizer.from_mapping({"positive": ["great", "fine"], "neutral": ["fine"]}, ["positive", "neutral"])
    with pytest.raises(TemplateError, match="given for both"):
        Verbalizer.default(["very_good", "very good"])
    assert Verbalizer.from_mapping({"a": ["x", "x "], "b": "y"}, ["a", "b"]).words == {"a": ("x",), "b": ("y",)}


@pytest.mark.parametrize("value", [None, 3, {"w": 1}])
def test_a_verbalizer_value_that_is_not_words_is_one_clear_error(value):
    with pytest.raises(TemplateError, match="must be a word or a list of words"):
        Verbalizer.from_mapping({"a": value, "b": ["y"]}, ["a", "b"])


def test_a_verbalizer_label_typed_in_another_script_is_explained():
    """The data's label has a Cyrillic і; the verbalizer's has a Latin i: "no word for label" alone would be a
    riddle, so the message names the letter that differs."""
    with pytest.raises(TemplateError) as err:
        Verbalizer.from_mapping({"positive": ["great"], "negative": ["bad"]}, ["negative", "positіve"])
    message = str(err.value)
    assert "'positive' looks like the data's 'positіve'" in message and "(Cyrillic, U+0456)" in message


SPECIAL_SPELLINGS = "a great [MASK] movie [SEP] [CLS] </s> <s> [PAD] [UNK] <|endoftext|>"


def specials_in(backbone, ids: list[int]) -> list[int]:
    """The special-token ids among `ids` ([UNK] aside: unknown words become it)."""
    special = set(backbone.tokenizer.all_special_ids) - {backbone.tokenizer.unk_token_id}
    return [i for i in ids if i in special]


@pytest.mark.parametrize("family", ["bert", "roberta", "gpt2", "llama"])
def test_special_token_spellings_in_a_row_stay_text(tiny, family):
    """A row saying "[MASK] [SEP] [CLS] </s>" gave a masked LM's prompt two masks and two separators; a row's text is
    text, so the prompt's special tokens are the backbone's own and the template's one [MASK]."""
    backbone = tiny(family)
    row, got, expected = prompt_specials(backbone, SPECIAL_SPELLINGS)
    assert got == expected
    if backbone.kind is LMKind.MASKED:
        assert row.ids.count(backbone.mask_id) == 1 and row.ids.index(backbone.mask_id) == row.target[0]


def prompt_specials(backbone, text: str) -> tuple:
    """`text` as a row under "{text} It was [MASK]": the rendered row, the special ids in it, and those expected
    (the backbone's own around the prompt, and the template's mask on a masked LM)."""
    masked = backbone.kind is LMKind.MASKED
    template = Template.parse("{text} It was [MASK] ." if masked else "{text} It was [MASK]")
    fill = [backbone.mask_id] if masked else []
    row = render_ids(backbone, template, {"text": text}, fill, 1)
    expected = [*specials_in(backbone, backbone.prefix_ids), *fill]
    if masked:
        expected += specials_in(backbone, backbone.suffix_ids)
    return row, specials_in(backbone, row.ids), expected


def test_an_end_of_text_token_in_a_row_stays_text():
    """GPT-2's <|endoftext|> in a row would end the document mid-prompt; it is split like any other word."""
    backbone = tiny_backbone("gpt2", extra_words=("<|endoftext|>",))
    backbone.tokenizer.add_special_tokens({"additional_special_tokens": ["<|endoftext|>"]})
    eot = backbone.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    template = Template.parse("{text} It was [MASK]")
    assert eot in backbone.tokenizer("x <|endoftext|>", add_special_tokens=False)["input_ids"]  # special as such
    row = render_ids(backbone, template, {"text": "great <|endoftext|> movie"}, [], 1)
    assert eot not in row.ids


@pytest.mark.parametrize("family", ["bert", "gpt2"])
def test_a_row_with_special_spellings_scores_as_the_same_words_would(tiny, family):
    """Training, scoring, calibration and predict all render through `render_ids`: the row "[MASK]" scores exactly
    as any other three unknown words do (the tiny vocabulary knows neither 'mask' nor 'zzz')."""
    from core.methods import create
    from core.methods.base import PromptSpec
    from core.methods.manual import discrete_scores

    backbone = tiny(family)
    source = "{text} It was [MASK] ." if backbone.kind is LMKind.MASKED else "{text} It was [MASK]"
    verbalizer = Verbalizer.from_mapping({"pos": ["great"], "neg": ["terrible"]}, ["pos", "neg"])
    method = create("manual", PromptSpec((source,), verbalizer, ("pos", "neg")), {"calibrate": False})
    prompt = method.learned(backbone, source, metrics={"trainable_params": 0})
    records = [{"text": "a great [MASK] movie [SEP]"}, {"text": "a great [ zzz ] movie [ zzz ]"}]
    scores = discrete_scores(backbone, prompt, records, calibrated=False)
    assert torch.equal(scores[0], scores[1])
