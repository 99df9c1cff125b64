"""How long work reports progress and learns it should stop: the engine's lowest layer.

Every loop that can take a while (scoring, training, searches) takes a ``progress`` callback and a ``should_stop``
predicate and raises ``Cancelled`` when asked to stop. They live here, below everything else, so that scoring and
training need not import the job runner (``core.jobs``) that supplies them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

ProgressFn = Callable[[int, int, Mapping[str, float]], None]  # progress(step, total, metrics)
StopFn = Callable[[], bool]
MessageFn = Callable[[str], None]  # one human-readable line (downloads, conversions), not a step count


class Cancelled(Exception):
    """Raised by work that saw ``should_stop()``; the run is recorded as cancelled, not failed."""


def no_progress(step: int, total: int, metrics: Mapping[str, float]) -> None:
    """A ProgressFn that ignores everything (scripts and tests that don't watch)."""


def never_stop() -> bool:
    return False


def say_nothing(message: str) -> None:
    """A MessageFn that ignores everything."""
