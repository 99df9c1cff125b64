"""An estimate as the pages show it: each unit's seconds, phases and range, the comparison's total, and its words.

Split from `core.runs.estimate` (which re-exports all of it): that module is the cost model, this one what the
model's answer is and how it reads ("about 4 min (3 min to 6 min) on this CPU, from a probe of this machine").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.methods import REGISTRY
from core.runs.estimate_rates import DERIVED, MEASURED, PRIOR, PROBED, SOURCE_RANK
from core.runs.estimate_tokens import TokenStats


@dataclass
class Stage:
    """One phase of a unit as its progress reports it: `kind` (choose, trial, continue, train, test), the estimated
    seconds, and the step counts its progress reports from `start` to `end`."""

    kind: str
    seconds: float
    start: int = 0
    end: int = 1


@dataclass
class UnitEstimate:
    """A unit's expected wall seconds, its phases, and the least trusted source its rates came from."""

    method: str
    seed: int
    k_shot: int | None
    seconds: float
    stages: list[Stage] = field(default_factory=list)
    source: str = PRIOR
    low: float = 0.0  # the range the truth is expected in (`spread`)
    high: float = 0.0
    runs: int = 0  # finished runs its rates rest on
    # AutoPrompt starting from the manual template dev picks: this unit as if dev picks each one (template -> the
    # seconds, range and stages), for the pages to take once manual has chosen (`as_chosen`)
    by_template: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """What a run's stored config keeps, so the Runs page's ETA uses the very estimate the Train page showed."""
        return {
            "seconds": self.seconds,
            "low": self.low,
            "high": self.high,
            "source": self.source,
            "stages": [dataclasses.asdict(s) for s in self.stages],
            **({"by_template": self.by_template} if self.by_template else {}),
        }

    def with_alternatives(self, by_template: Mapping[str, UnitEstimate]) -> UnitEstimate:
        """This estimate, keeping what it would be if dev picks each template, its range spanning them all (which
        one dev picks is part of what is not known at launch)."""
        self.by_template = {t: e.plan() for t, e in by_template.items()}
        self.low = min([self.low, *(e.low for e in by_template.values())])
        self.high = max([self.high, *(e.high for e in by_template.values())])
        return self

    def plan(self) -> dict[str, Any]:
        """Its seconds, range and stages: what one alternative of `by_template` keeps."""
        return {k: v for k, v in self.to_json().items() if k in ("seconds", "low", "high", "stages")}


def as_chosen(stored: Mapping[str, Any] | None, template: str | None) -> Mapping[str, Any] | None:
    """A unit's stored estimate once the template it depends on is known (manual has chosen it on dev): that
    template's alternative, marked `chosen`; else the estimate as stored. Why: AutoPrompt searches the chosen
    template's words as its triggers, and 6 of them cost 1.6x what 2 do, which the launch cannot know."""
    alternative = ((stored or {}).get("by_template") or {}).get(template or "")
    if not alternative:
        return stored
    return {**(stored or {}), **alternative, "chosen": template}


@dataclass
class ComparisonEstimate:
    units: list[UnitEstimate]
    total: float
    source: str  # the least trusted source among the units
    low: float = 0.0  # the range the total is expected in
    high: float = 0.0
    tokens: TokenStats | None = None  # the rows' tokens it was computed from

    @classmethod
    def of(cls, units: Sequence[UnitEstimate], tokens: TokenStats | None = None) -> ComparisonEstimate:
        """Units run one after another: their total and range, and the least trusted source among them."""
        source = max((u.source for u in units), key=SOURCE_RANK.__getitem__, default=MEASURED)
        total = sum(u.seconds for u in units)
        low, high = sum(u.low or u.seconds for u in units), sum(u.high or u.seconds for u in units)
        return cls(list(units), total, source, low, high, tokens)

    def only(self, methods: Collection[str]) -> ComparisonEstimate:
        """The part of this estimate spent on `methods`' units: what choosing them adds (the Train page's line on
        the fine-tuning references)."""
        return ComparisonEstimate.of([u for u in self.units if u.method in methods], self.tokens)

    def rests_on(self) -> str:
        """ "from 3 finished runs on this machine", "from a probe of this machine": what the rates rest on."""
        runs = {u.method: u.runs for u in self.units if u.source in (MEASURED, DERIVED)}
        if self.source == MEASURED:
            n = sum(runs.values())
            return f"from {n} finished run{'s' if n != 1 else ''} on this machine"
        if self.source == DERIVED:
            n = max(runs.values(), default=0)
            return f"from {n} finished run{'s' if n != 1 else ''} of other methods on this machine"
        if self.source == PROBED:
            return "from a probe of this machine"
        return "a rough guess from the backbone's size (nothing measured on this machine yet)"

    def range_words(self) -> str:
        """ "about 4 min (3-6 min)": the one number, and the range while it is uncertain (narrow ranges left out)."""
        about = f"about {fmt_minutes(self.total)}"
        if self.total <= 0 or (self.high - self.low) <= 0.5 * self.total:
            return about
        low, high = fmt_minutes(self.low), fmt_minutes(self.high)
        return about if low == high else f"{about} ({low} to {high})"

    def words(self, device: str) -> str:
        """ "about 4 min (3 min to 6 min) on this CPU, from a probe of this machine, 26 tokens a row": the Train
        page's line."""
        where = "this CPU" if device == "cpu" else device
        rows = f", {self.tokens.words()}" if self.tokens is not None else ""
        return f"{self.range_words()} on {where}, {self.rests_on()}{rows}"

    def added_words(self) -> str:
        """ "Manual prompt about 40 s, AutoPrompt about 3 min, P-tuning about 5 min": what each method adds to the
        total (all its seeds and K together), in the order the queue runs them, so a user sees what a method costs
        before choosing it. A method whose cost turns on the template dev picks (AutoPrompt) says how far: "AutoPrompt
        about 50 s (35 s to 1 min, by the template dev picks)"."""
        seconds: dict[str, list[float]] = {}
        for unit in sorted(self.units, key=lambda u: (REGISTRY[u.method].trains, u.seconds)):
            alternatives = [a["seconds"] for a in unit.by_template.values()] or [unit.seconds]
            spans = [unit.seconds, min(alternatives), max(alternatives)]
            seconds[unit.method] = [a + b for a, b in zip(seconds.get(unit.method, [0.0] * 3), spans, strict=True)]
        return ", ".join(f"{REGISTRY[m].label} about {_by_template(*s)}" for m, s in seconds.items())


def _by_template(seconds: float, low: float, high: float) -> str:
    low_words, high_words = fmt_minutes(low), fmt_minutes(high)
    if low_words == high_words:
        return fmt_minutes(seconds)
    return f"{fmt_minutes(seconds)} ({low_words} to {high_words}, by the template dev picks)"


def fmt_minutes(seconds: float) -> str:
    """Rounded as an estimate deserves: '40 s', '3 min', '1 h 10 min'."""
    if seconds < 60:
        return f"{max(5, round(seconds / 5) * 5)} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"
