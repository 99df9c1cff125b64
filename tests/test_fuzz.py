"""Property-based fuzzing of every parser a user's input reaches: whatever the input, it loads or raises the
parser's own one-line error — never another exception, never a hang (each example has a deadline)."""

from __future__ import annotations

import json
import os
import tempfile
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.data import DataError, load_dataset
from core.engine.templates import Template, TemplateError, Verbalizer
from core.prompts import artifacts

FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "120")),  # raise by hand for a deeper search
    deadline=timedelta(seconds=2),  # per example: a hang fails the test
    suppress_health_check=[HealthCheck.too_slow],
    database=None,
)
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
VALID = {
    "format": artifacts.FORMAT,
    "format_version": artifacts.FORMAT_VERSION,
    "method": "manual",
    "display_name": "Manual",
    "backbone": {"name": "tiny", "spec": "tiny", "fingerprint": "0123456789abcdef", "kind": "causal"},
    "template": "{text} It was [MASK]",
    "verbalizer": {"positive": ["great"], "negative": ["terrible"]},
    "label_names": ["negative", "positive"],
    "config": {"calibrate": False},
    "state": {},
    "metrics": {},
    "tensors": [],
}


def _one_line(err: Exception) -> None:
    assert str(err).strip() and "\n" not in str(err)


def _csv_cells() -> st.SearchStrategy[str]:
    cell = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12) | st.sampled_from(
        ["text", "label", "positive", "1.0", '"', '""', "\u200b", "ｐos", "=1+1", ""]
    )
    row = st.lists(cell, min_size=1, max_size=4).map(lambda cells: ",".join(cells))
    return st.lists(row, min_size=1, max_size=8).map("\n".join)


@FUZZ
@given(st.binary(max_size=2000) | _csv_cells().map(lambda s: s.encode("utf-8")))
def test_csv_reader_loads_or_raises_data_error(data):
    try:
        ds = load_dataset(data)
    except DataError as err:
        _one_line(err)
    else:
        assert len(ds.label_names) >= 2 and len(ds) == len(ds.labels)


SLOT_BITS = ["{text}", "{text_b}", "{x}", "[MASK]", "[P]", "[P*3]", "[T*2]", "[P*0]", "[T*999]", "[MASK*2]", "[mask]"]


@FUZZ
@given(st.lists(st.sampled_from(SLOT_BITS) | st.text(max_size=6), max_size=8).map("".join))
def test_template_parser_parses_or_raises_template_error(source):
    try:
        template = Template.parse(source)
    except TemplateError as err:
        _one_line(err)
    else:
        assert Template.parse(template.source) == template and template.fields


LABELS = st.lists(st.sampled_from(["positive", "negative", "neutral", "a_b", "a b"]), max_size=3, unique=True)


@FUZZ
@given(
    st.text(max_size=60)
    | JSON.map(json.dumps)
    | st.dictionaries(st.sampled_from(["positive", "negative", "neutral", "a b"]), JSON, max_size=3).map(json.dumps)
    | st.integers(1, 3000).map(lambda n: "[" * n),
    LABELS,
)
def test_verbalizer_parser_parses_or_raises_template_error(text, labels):
    try:
        verbalizer = Verbalizer.from_json(text, labels)
    except TemplateError as err:
        _one_line(err)
    else:
        assert list(verbalizer.words) == list(labels)


def _load(content: bytes, suffix: str):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"prompt{suffix}"
        path.write_bytes(content)
        try:
            return artifacts.load(path)
        except artifacts.ArtifactError as err:
            _one_line(err)
            return None


@FUZZ
@given(st.binary(max_size=600), st.sampled_from([".json", ".safetensors"]))
def test_prompt_loader_on_arbitrary_bytes(content, suffix):
    _load(content, suffix)


@FUZZ
@given(st.sampled_from(sorted(VALID)), JSON | st.just(KeyError))
def test_prompt_loader_on_a_manifest_with_one_field_replaced(key, value):
    manifest = dict(VALID)
    if value is KeyError:
        del manifest[key]
    else:
        manifest[key] = value
    learned = _load(json.dumps(manifest).encode(), ".json")
    if learned is not None:
        assert learned.label_names and learned.method in ("manual", "autoprompt", "baseline")


@pytest.mark.parametrize("depth", [17, 5000])
def test_deep_json_is_refused_before_parsing(depth):
    text = json.dumps({**VALID, "state": {}}).replace('"state": {}', '"state": ' + "[" * depth + "]" * depth)
    assert _load(text.encode(), ".json") is None
