"""Private helpers more than one view module needs, kept in one place rather than copied."""

from __future__ import annotations

from core.methods import REGISTRY


def fine_tunes(method: str) -> bool:
    """Whether `method` fine-tunes the backbone: a reference prompts are read against, not a prompt."""
    cls = REGISTRY.get(method)
    return bool(cls and cls.fine_tunes)
