"""The comparison in words: the winner chosen on dev and whether it beats the manual reference significantly,
the best on test (labelled as such), and while runs are still going a provisional verdict with what is still to
come and about how long it takes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from core.app.views._shared import fine_tunes
from core.app.views.eta import queue_eta
from core.app.views.finetuning import finetuning_verdict
from core.app.views.runs import tuning_stage
from core.methods import REGISTRY
from core.progress import TUNING
from core.runs.store import ACTIVE_STATUSES


def _prompt_words(row: Mapping[str, Any], templates: Sequence[str]) -> str:
    """A prompt named as a person recognises it: the manual template by its number and words, else its method."""
    cls = REGISTRY.get(row["method"])
    if row["method"] == "manual":
        number = templates.index(row["template"]) + 1 if row["template"] in templates else None
        return f"your template #{number} “{row['template']}”" if number else f"the template “{row['template']}”"
    return cls.label if cls else row["name"]


def verdict(summary: Mapping[str, Any]) -> dict[str, str]:
    """The comparison in words: ``headline`` (the winner chosen on dev and whether it beats the reference
    significantly, with the McNemar p-value of the significance table) and ``test_best`` (the best on test, labelled
    as such: picking by test accuracy is not a fair choice)."""
    winner, how, score = _winner(summary)
    who = _prompt_words(winner, list(summary.get("templates") or []))
    headline = f"{who[0].upper()}{who[1:]} is best ({how}: {score})" + _against_reference(summary, winner)
    top = max(summary["methods"], key=lambda m: m["accuracy"])
    test_best = f"Best on test: {top['name']} ({top['accuracy']:.3f}), picked after seeing the test split"
    out = {"headline": headline + ".", "test_best": test_best + "."}
    if against := finetuning_verdict(summary):
        out["finetuning"] = against
    return out


def _winner(summary: Mapping[str, Any]) -> tuple[Mapping[str, Any], str, str]:
    """(the row a user would pick: best on dev among each method's primary prompt, how it was picked, its scores).

    Fine-tuning rows are the references prompts are read against, not candidates (unless nothing else ran)."""
    primary = [m for m in summary["methods"] if m["primary"]]
    rows = [m for m in primary if not fine_tunes(m["method"])] or primary
    on_dev = [m for m in rows if m.get("dev_accuracy") is not None]
    if on_dev:
        winner = max(on_dev, key=lambda m: (m["dev_accuracy"], m["accuracy"]))
        return winner, "chosen on dev", f"dev {winner['dev_accuracy']:.3f}, test {winner['accuracy']:.3f}"
    winner = max(rows, key=lambda m: m["accuracy"])
    return winner, "best on test (no dev scores to choose with)", f"test {winner['accuracy']:.3f}"


def _against_reference(summary: Mapping[str, Any], winner: Mapping[str, Any]) -> str:
    """The headline's clause on significance against the manual prompt chosen on dev ('' without that reference)."""
    templates = list(summary.get("templates") or [])
    sig = {s["method"]: s for s in summary.get("significance", [])}
    reference = next((m for m in summary["methods"] if m["name"] == summary.get("reference")), None)
    if reference is None:
        return ""
    ref_words = f"the manual prompt chosen on dev ({_prompt_words(reference, templates)})"
    if winner["name"] == reference["name"]:
        better = [s for s in sig.values() if s["bootstrap"]["diff"] > 0]
        best = min(better, key=lambda s: s["mcnemar"]["p_value"], default=None)
        if best is None:
            return f"; no other method beats {ref_words} on test"
        if best["mcnemar"]["p_value"] < 0.05:
            return f"; but {best['method']} beats it on test (p = {best['mcnemar']['p_value']:.3f})"
        return (
            f"; no method is significantly better than {ref_words} "
            f"(smallest p = {best['mcnemar']['p_value']:.3f}, {best['method']})"
        )
    if winner["name"] in sig:
        s = sig[winner["name"]]
        p, diff = s["mcnemar"]["p_value"], s["bootstrap"]["diff"]
        word = "significantly" if p < 0.05 else "not significantly"
        return f"; {diff:+.3f} on test against {ref_words}, {word} (p = {p:.3f})"
    return ""


def provisional_verdict(
    summary: Mapping[str, Any] | None, runs: Sequence[Mapping[str, Any]], now: float
) -> str | None:
    """While any run of the comparison is queued or running, what its finished runs say so far, marked provisional,
    with what is still to come and about how long it takes (`queue_eta`); None once the last run has ended (the
    normal verdict then). `summary` is built from succeeded runs only, so its significance is among those alone."""
    waiting = [r for r in runs if r["status"] in ACTIVE_STATUSES]
    if not waiting:
        return None
    current = [r for r in runs if not r.get("superseded")]
    to_come = f"{_waiting_words(waiting)}, {_time_left_words(*queue_eta(runs, now))}"
    if not summary or not summary.get("methods"):
        return f"Provisional — nothing scored yet; {to_come}."
    winner, _, _ = _winner(summary)
    who = _prompt_words(winner, list(summary.get("templates") or []))
    dev = winner.get("dev_accuracy")
    how = f"dev-chosen, dev {dev:.3f}" if dev is not None else "best on test: no dev scores to choose with"
    done = sum(r["status"] == "succeeded" for r in current)
    among = _against_reference(summary, winner)
    if summary.get("reference") is None and any(
        r["method"] == "manual" for r in current
    ):  # the reference is part of it, not scored yet
        among = "; no significance test until the manual reference is scored"
    return (
        f"Provisional — so far ({done} of {len(current)} runs scored): {who} {winner['accuracy']:.3f} on test "
        f"({how}){among}; {to_come}."
    )


def _waiting_words(waiting: Sequence[Mapping[str, Any]]) -> str:
    """'P-tuning still training; Prompt tuning (2 runs), P-tuning v2 queued': the methods still to come."""

    def names(rows: Sequence[Mapping[str, Any]]) -> str:
        count: dict[str, int] = {}
        for r in rows:
            cls = REGISTRY.get(r["method"])
            label = cls.label if cls else r["method"]
            count[label] = count.get(label, 0) + 1
        return ", ".join(f"{label} ({n} runs)" if n > 1 else label for label, n in count.items())

    running = [r for r in waiting if r["status"] == "running"]
    queued = [r for r in waiting if r["status"] == "queued"]
    parts = []
    training = [r for r in running if r["method"] in REGISTRY and REGISTRY[r["method"]].trains]
    scoring = [r for r in running if r not in training]
    tuning = [r for r in training if tuning_stage(r.get("phase") or "")]
    training = [r for r in training if r not in tuning]
    for r in tuning:  # named as its card names it
        parts.append(f"{names([r])} still {TUNING} ({tuning_stage(r['phase'])})")
    if training:
        parts.append(f"{names(training)} still training")
    if scoring:
        parts.append(f"{names(scoring)} still scoring")
    if queued:
        parts.append(f"{names(queued)} queued")
    return "; ".join(parts)


def _time_left_words(eta: float | None, unknown: int) -> str:
    """'about 6 min' (rounded up), 'under a minute', or that there is no estimate yet (never a made-up number)."""
    if eta is None:
        return "time left not known yet (no finished run to estimate it from)"
    words = "under a minute" if eta < 60 else f"about {math.ceil(eta / 60)} min"
    return words + (f" (and {unknown} run{'s' if unknown > 1 else ''} not estimated yet)" if unknown else "")
