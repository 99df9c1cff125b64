"""How long the runs still to come take: each run's estimate from launch, rescaled by how the finished runs
fared against theirs and, while a run goes, projected from its own measured rate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from core.app.views.runs import wall_seconds
from core.runs.estimate import progress_fraction

SPEED_FACTOR_RANGE = (0.5, 2.0)  # how far finished runs may rescale the others' estimates (no jump beyond 2x)


OWN_RATE_AFTER = 0.1  # share of a run's work after which its own measured rate alone projects its end


TAIL = 0.05  # a run past its projected end: this share of its estimate, shrinking as it runs on (never "0 s")


def queue_eta(runs: Sequence[Mapping[str, Any]], now: float) -> tuple[float | None, int]:
    """(seconds until every unfinished run is done, how many of them have no estimate yet), one worker assumed.

    A run launched with an estimate (`estimate`: core.runs.estimate's seconds and stages, the Train page's number) is
    expected to take that, times how much slower or faster the comparison's finished runs were than theirs
    (`speed_factor`). A running one projects its end from its own measured rate as its progress comes in
    (`run_remaining`), so the total moves down while time passes and never jumps by more than 2x once the run has
    measured its speed. Runs without an estimate (launched before estimates) fall back to the mean wall time of
    finished runs of the same method (else of any method)."""
    done: dict[str, list[float]] = {}
    for r in runs:
        if r["status"] == "succeeded" and (w := wall_seconds(r)) is not None:
            done.setdefault(r["method"], []).append(w)
    every = [w for ws in done.values() for w in ws]
    factor = speed_factor(runs)
    total, unknown = 0.0, 0
    for r in runs:
        if r["status"] not in ("queued", "running"):
            continue
        if (r.get("estimate") or {}).get("seconds") is not None:
            total += run_remaining(r, now, factor)
            continue
        same = done.get(r["method"]) or every
        estimate = sum(same) / len(same) if same else None
        if r["status"] == "running":
            started = r.get("started")
            left = estimate - (now - started) if estimate is not None and started is not None else None
            known = [x for x in (left, r.get("eta_seconds")) if x is not None and x > 0]
            if known:
                total += max(known)
            else:  # no estimate, or one it has outrun with no phase ETA: unknown, never "about 0 s"
                unknown += 1
        elif estimate is None:
            unknown += 1
        else:
            total += estimate
    return (total if unknown < sum(r["status"] in ("queued", "running") for r in runs) else None), unknown


def speed_factor(runs: Sequence[Mapping[str, Any]]) -> float:
    """Finished runs' wall time over their estimates (1 with none), within `SPEED_FACTOR_RANGE`: a loaded machine
    or a mis-estimated device rescales every estimate still waiting."""
    actual = expected = 0.0
    for r in runs:
        est = (r.get("estimate") or {}).get("seconds")
        if r["status"] == "succeeded" and est and (w := wall_seconds(r)) is not None:
            actual, expected = actual + w, expected + est
    if not expected:
        return 1.0
    low, high = SPEED_FACTOR_RANGE
    return min(max(actual / expected, low), high)


def run_remaining(run: Mapping[str, Any], now: float, factor: float = 1.0) -> float:
    """Seconds left of one run with an estimate: a queued run, its estimate (times `factor`); a running one, its
    projected total less its elapsed time. The projection blends the estimate with the run's own rate — elapsed
    time at its last progress report over the share of its work done then (core.runs.estimate.progress_fraction) —
    the own rate taking over entirely once `OWN_RATE_AFTER` of the work is done. Past its projected end, a small
    tail that shrinks as time passes: the number always moves, and never reads "0 s" for a run still going."""
    expected = run["estimate"]["seconds"] * factor
    started = run.get("started")
    if run["status"] != "running" or started is None:
        return expected
    elapsed = max(now - started, 0.0)
    projected = expected
    share = progress_fraction(
        run["estimate"].get("stages") or [], run.get("phase") or "", run["progress_step"], run["progress_total"]
    )
    if share:
        measured_at = min(max((run.get("updated") or now) - started, 0.0), elapsed)
        weight = min(share / OWN_RATE_AFTER, 1.0)
        projected = weight * measured_at / share + (1 - weight) * expected
    return max(projected - elapsed, TAIL * expected * expected / (expected + elapsed))
