"""Each person's unfinished work, kept on the server so it survives a reload and opens in a second tab.

A *draft* is what the Data, Prompts and Train pages collect before a launch: the dataset (bytes and name), column
choices, split settings, templates, verbalizer, K, backbone, methods and their options, seeds and steps. Streamlit
keeps session state per browser tab and drops it on reload, so the pages load the draft when a session starts and
save it when it changes (as Jupyter keeps a notebook's state on the server).

On disk: ``<home>/drafts/<sha256(owner)>/draft.json`` plus the dataset as ``data-<digest>.bin`` (written once per
dataset). Folder names come from a hash, never from the owner string (an e-mail address or a workspace key).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from core.atomic import write_atomic

log = logging.getLogger(__name__)

DRAFT_FILE = "draft.json"
_DIGEST_CHARS = set("0123456789abcdef")


class Drafts:
    """Drafts of every owner under one folder; thread-safe by atomic file replacement (last write wins)."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def _dir(self, owner: str) -> Path:
        if not owner:
            raise ValueError("a draft needs an owner")
        return self.folder / hashlib.sha256(owner.encode("utf-8")).hexdigest()[:32]

    def load(self, owner: str) -> dict[str, Any] | None:
        """The owner's last saved draft (its dataset bytes back under ``data["bytes"]``), or None if there is none
        or it cannot be read (a draft is a convenience: a damaged one is dropped, never an error)."""
        folder = self._dir(owner)
        try:
            draft = json.loads((folder / DRAFT_FILE).read_text(encoding="utf-8"))
            data = draft.get("data")
            if data is not None:
                data["bytes"] = (folder / _data_file(data["digest"])).read_bytes()
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            log.warning("draft of %s ignored: %s", folder.name, err)
            return None
        return draft

    def save(self, owner: str, draft: dict[str, Any]) -> None:
        """Replace the owner's draft; the dataset bytes are written only when the dataset changed."""
        folder = self._dir(owner)
        folder.mkdir(parents=True, exist_ok=True)
        plain = dict(draft)
        data = plain.get("data")
        if data is not None:
            data = {k: v for k, v in data.items() if k != "bytes"}
            target = folder / _data_file(data["digest"])
            if not target.exists():
                write_atomic(target, draft["data"]["bytes"])
            for old in folder.glob("data-*.bin"):
                if old != target:
                    old.unlink(missing_ok=True)
            plain["data"] = data
        write_atomic(folder / DRAFT_FILE, json.dumps(plain, indent=1).encode("utf-8"))

    def clear(self, owner: str) -> None:
        folder = self._dir(owner)
        for path in folder.glob("*"):
            path.unlink(missing_ok=True)


def _data_file(digest: str) -> str:
    if not digest or not set(str(digest)) <= _DIGEST_CHARS:
        raise ValueError(f"dataset digest {digest!r} is not hexadecimal")
    return f"data-{digest}.bin"
