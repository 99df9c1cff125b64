"""Drafts: a person's unfinished work on disk, keyed by a hash of the owner."""

from __future__ import annotations

from pathlib import Path

from core.app.drafts import Drafts


def draft(data: bytes, digest: str) -> dict:
    return {
        "data": {"bytes": data, "name": "a.csv", "digest": digest, "text_col": "text", "label_col": "label"},
        "settings": {"k_shot": 4},
        "prompts": {"templates": ["{text} [MASK]"], "verbalizer": {"a": ["x"]}},
    }


def test_a_draft_round_trips_and_the_dataset_is_written_once_per_digest(tmp_path: Path) -> None:
    drafts = Drafts(tmp_path)
    assert drafts.load("key-1") is None
    drafts.save("key-1", draft(b"text,label\nx,a\n", "ab12"))
    loaded = drafts.load("key-1")
    assert loaded["data"]["bytes"] == b"text,label\nx,a\n" and loaded["settings"] == {"k_shot": 4}
    (folder,) = tmp_path.iterdir()
    assert "key-1" not in folder.name and len(folder.name) == 32
    drafts.save("key-1", draft(b"text,label\ny,b\n", "cd34"))  # a new dataset replaces the old file
    assert sorted(p.name for p in folder.glob("data-*")) == ["data-cd34.bin"]
    assert drafts.load("key-1")["data"]["bytes"] == b"text,label\ny,b\n"
    assert drafts.load("key-2") is None  # another person's draft is separate


def test_a_damaged_draft_is_dropped_and_a_bad_digest_never_becomes_a_path(tmp_path: Path) -> None:
    drafts = Drafts(tmp_path)
    drafts.save("me", draft(b"x", "ab12"))
    (folder,) = tmp_path.iterdir()
    (folder / "draft.json").write_text("{not json")
    assert drafts.load("me") is None
    try:
        drafts.save("me", draft(b"x", "../../etc"))
    except ValueError as err:
        assert "digest" in str(err)
    else:
        raise AssertionError("a non-hex digest must be refused")
