"""How long work reports progress and learns it should stop: the engine's lowest layer.

Every loop that can take a while (scoring, training, searches) takes a ``progress`` callback and a ``should_stop``
predicate and raises ``Cancelled`` when asked to stop. They live here, below everything else, so that scoring and
training need not import the job runner (``core.runs.jobs``) that supplies them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager

ProgressFn = Callable[[int, int, Mapping[str, float]], None]  # progress(step, total, metrics)
StopFn = Callable[[], bool]
MessageFn = Callable[[str], None]  # one human-readable line (downloads, conversions), not a step count


# A run's phases, in order; each counts its own steps (training steps, test rows) and has its own ETA.
WAITING = "waiting for a worker"
TUNING = "tuning on dev"  # trained methods: trials of the settings they declare worth searching (core.compare.tuning)
TRAINING = "training"
CHOOSING = "choosing on dev"  # methods that train nothing: scoring their candidate prompts on dev
EVALUATING = "evaluating on dev"
SCORING = "scoring the test split"
SAVING = "saving the prompt files"

# What a tuning trial adds to every metrics dict it reports (core.compare.tuning), so a chart draws one line per trial: each
# trial counts its steps from 1 again, and the winner goes on from its rung.
TRIAL_METRIC = "tuning_trial"  # the trial's number, from 1
CONTINUED_METRIC = "tuning_continued"  # 1 on the winner's steps past its rung
TAG_METRICS = (TRIAL_METRIC, CONTINUED_METRIC)  # tags, not measurements: never drawn as curves of their own


def resumed_phase(step: int, unit: str = "step") -> str:
    """The phase of a loop that started again from a checkpoint: 'training, resumed from step 17'."""
    return f"{TRAINING}, resumed from {unit} {step}"


class Cancelled(Exception):
    """Raised by work that saw ``should_stop()``; the run is recorded as cancelled, not failed."""


class ClaimLost(Exception):
    """This process no longer holds the run it works on: it was written off as gone (paused or silent past the
    heartbeat limit) and the run was interrupted, perhaps resumed elsewhere. It must write nothing more (no
    progress, metric, checkpoint or outcome) and stop: raised by the store's fenced writes and by `check_claim`."""


_claim = threading.local()  # per run thread: the check that its claim still stands (set by the job runner)


@contextmanager
def claim_held(
    check: Callable[[], None], hold: Callable[[], AbstractContextManager[None]] | None = None
) -> Iterator[None]:
    """Within this block, on this thread, `check_claim()` runs `check` (which raises `ClaimLost`) and `under_claim()`
    enters `hold()` (which raises `ClaimLost`, or holds the claim for its block)."""
    _claim.check, _claim.hold = check, hold
    try:
        yield
    finally:
        _claim.check = _claim.hold = None


def fenced(write: Callable[..., None]) -> Callable[..., None]:
    """`write` (a checkpoint writer) preceded by `check_claim()`: a process that lost its run does not even
    serialise the file (the rename itself is fenced by `under_claim`)."""

    def guarded(*args: object) -> None:
        check_claim()
        write(*args)

    return guarded


def check_claim() -> None:
    """Raise `ClaimLost` if the run this thread works for was taken from it: a cheap early stop before work whose
    only use is a file another attempt may read. Outside a job runner: nothing."""
    check = getattr(_claim, "check", None)
    if check is not None:
        check()


@contextmanager
def under_claim() -> Iterator[None]:
    """Run the block (a file's rename or removal) while this thread's run is still its own and stays so.

    Why not `check_claim()` then the write: a process paused between the two (SIGSTOP, a swap storm) is written
    off meanwhile, and on waking would replace a checkpoint the resumed attempt reads. Here the check and the block
    are one step of the store's, which a write-off cannot come between; `ClaimLost` if the claim is gone. Outside a
    job runner: just the block."""
    hold = getattr(_claim, "hold", None)
    if hold is None:
        yield
        return
    with hold():
        yield


def no_progress(step: int, total: int, metrics: Mapping[str, float]) -> None:
    """A ProgressFn that ignores everything (scripts and tests that don't watch)."""


def enter_phase(progress: ProgressFn, name: str) -> None:
    """Tell a phase-aware reporter (the job runner's has a ``phase`` method) that the work entered a new phase;
    steps reported from now on count within it. A plain callback has no phases and ignores this."""
    phase = getattr(progress, "phase", None)
    if phase is not None:
        phase(name)


def never_stop() -> bool:
    return False


def say_nothing(message: str) -> None:
    """A MessageFn that ignores everything."""
