"""What a comparison's work is made of, in tokens: the user's rows measured with the backbone's tokenizer, and the
tokens each method runs through the backbone per row.

Why tokens: a CPU's (and a GPU's) time goes with the tokens a forward or backward pass carries, not the rows; drug
reviews of 110 tokens a row cost four times what 26-token tweets do for every method that runs the whole text each
pass. Rates kept per token (`core.runs.estimate_rates`) then transfer between datasets of different lengths.

Per method, a row is `(fresh, suffix)` tokens (`row_tokens`):
- AutoPrompt on a causal LM (`autoprompt_tokens`): its triggers and label slot every pass, plus a tenth of the
  cached text, which every candidate batch copies and attends over;
- other methods on a frozen causal LM whose learned part comes after the text (P-tuning: `cached` in `PRIORS`)
  pay the text once per row per unit (`fresh`: the prefix cache's key/values) and then only the part
  after it at every step and evaluation (`suffix`: the template's words, the soft tokens or triggers, the label,
  and `CACHED_READ` of the text they attend over);
- every other method runs the whole prompt every pass (`fresh` 0; `suffix`: text + template + its soft tokens; a
  soft prompt placed first runs once per batch; P-tuning v2's per-layer prefixes add attention, counted lightly).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.engine.templates import SlotKind, Template

SAMPLE_ROWS = 64  # rows tokenised to measure the mean: a few milliseconds
MAX_TOKENS = 256  # the engine's default max_length: longer texts are cut to fit
CHARS_PER_TOKEN = 4.0  # the guess when no tokenizer is at hand (English text, BPE)
ROW_TOKENS = 2.0  # a row's fixed cost (special tokens, the label slot's projection), in token-equivalents
PREFIX_ATTENTION = 0.1  # P-tuning v2's per-layer prefix: keys and values only, no MLP: a tenth of a token each
# A cached text token's share of an AutoPrompt candidate pass (its key/values copied per candidate and attended
# over) against a computed one: fitted at 0.10-0.12 from the runs of `bench_estimate.py` (6 triggers on 25- and
# 115-token rows, 2 and 6 triggers on 25-token rows).
CACHED_TEXT = 0.1
# A cached text token's share of a P-tuning pass (its suffix attends over the text's key/values, which the batch
# carries): fitted by `benchmarks/fit_estimate.py --cached-read` on the seed-0 and seed-1 jobs of
# `bench_estimate.py`, where its steps cost 1.3x more per suffix token on 110-token drug reviews than on 25-token
# movie snippets.
CACHED_READ = 0.04
Sample = tuple[int, int | None]  # (seed, K) of a unit's K-shot rows
_SLOTS = re.compile(r"\[(?:MASK|P|T)(?:\*\d+)?\]")


@dataclass(frozen=True)
class TokenStats:
    """Mean tokens per row of the user's data: `text` (the text fields) and `templates` (each of the user's templates
    without the text: its words and the label slot), whether a real tokenizer counted them (`measured`), whether
    the backbone is a causal LM (only those reuse the text's key/values), `anchors` (each template's words
    between its last field and its label slot: the triggers AutoPrompt starts from when it starts from it), and
    `samples` (the text of each unit's own K-shot rows, `for_sample`; the split's rows stand for the test split)."""

    text: float
    templates: tuple[float, ...] = (4.0,)
    measured: bool = False
    causal: bool = True
    anchors: tuple[float, ...] = ()  # per template, its words between the text and the label slot
    samples: tuple[tuple[Sample, float], ...] = ()  # (seed, K) -> mean text tokens of that K-shot train and dev

    def for_sample(self, seed: int, k_shot: int | None) -> TokenStats:
        """The stats of the rows a unit of `seed` and `k_shot` trains and evaluates on: its K-shot sample's text
        length where it was measured (`samples`), else the split's. On long, uneven rows a seed's few rows differ
        from the split's mean (drug reviews, K = 8: 103-114 tokens against 115), and every step and dev evaluation
        pays for the rows it runs."""
        for key, text in self.samples:
            if key == (seed, k_shot):
                return dataclasses.replace(self, text=text, samples=())
        return self

    def prompt(self, i: int = 0) -> float:
        """Tokens of a row rendered with template `i` (cut at `MAX_TOKENS`), plus its fixed cost."""
        extra = self.templates[min(i, len(self.templates) - 1)] if self.templates else 0.0
        return min(self.text + extra, MAX_TOKENS) + ROW_TOKENS

    def words(self) -> str:
        """ "26 tokens a row": what the estimate measured of the data (or guessed, without the tokenizer)."""
        how = "" if self.measured else " (guessed from its length)"
        return f"{round(self.text + (self.templates[0] if self.templates else 0))} tokens a row{how}"


def _sample(records: Sequence[Mapping[str, str]], n: int = SAMPLE_ROWS) -> list[Mapping[str, str]]:
    step = max(1, len(records) // n)
    return list(records[::step][:n])


def _plain(template: Template, record: Mapping[str, str]) -> str:
    return _SLOTS.sub("", template.fill(record)).strip()


def _anchor(template: Template) -> str:
    """The template's words between its last field and its label slot ("{text} It was [MASK]": "It was")."""
    start, end = template.anchor
    return "".join(p.value for p in template.pieces[start:end] if p.kind is SlotKind.TEXT).strip()


def measure_tokens(
    tokenizer: Any,
    records: Sequence[Mapping[str, str]],
    templates: Sequence[str],
    *,
    causal: bool = True,
    samples: Mapping[Sample, Sequence[Mapping[str, str]]] | None = None,
) -> TokenStats:
    """Tokenise a sample of `records` (train or dev rows: never the test split) rendered with each template; the
    text's share is the rendered row less the template alone. `samples`: each unit's K-shot train and dev rows by
    (seed, K), measured the same way (`TokenStats.for_sample`). About 10 ms for 64 rows."""
    rows = _sample(records) or [{"text": ""}]
    parsed = [Template.parse(t) for t in templates] or [Template.parse("{text} [MASK]")]

    def count(texts: list[str]) -> list[int]:
        return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]

    empty = {k: "" for k in rows[0]}
    bare = count([_plain(t, empty) or " " for t in parsed])

    def text_of(some: Sequence[Mapping[str, str]]) -> float:
        full = [sum(count([_plain(t, r) for r in some])) / len(some) for t in parsed]
        return max(sum(f - b for f, b in zip(full, bare, strict=True)) / len(parsed), 1.0)

    words = [_anchor(t) for t in parsed]
    anchors = tuple(float(n) if w else 0.0 for w, n in zip(words, count([w or " " for w in words]), strict=True))
    measured = tuple((key, text_of(_sample(some))) for key, some in (samples or {}).items() if some)
    templates_ = tuple(float(b) + 1.0 for b in bare)
    return TokenStats(text_of(rows), templates_, measured=True, causal=causal, anchors=anchors, samples=measured)


def guess_tokens(records: Sequence[Mapping[str, str]], templates: Sequence[str]) -> TokenStats:
    """The same, guessed from characters (`CHARS_PER_TOKEN`) where no tokenizer is loaded."""
    rows = _sample(records) or [{"text": ""}]
    parsed = [Template.parse(t) for t in templates] or [Template.parse("{text} [MASK]")]
    empty = {k: "" for k in rows[0]}
    bare = [len(_plain(t, empty)) / CHARS_PER_TOKEN + 1.0 for t in parsed]
    text = sum(len(" ".join(str(v) for v in r.values())) for r in rows) / len(rows) / CHARS_PER_TOKEN
    anchors = tuple(len(_anchor(t)) / CHARS_PER_TOKEN for t in parsed)
    return TokenStats(max(text, 1.0), tuple(bare), measured=False, anchors=anchors)


def row_tokens(config: Any, stats: TokenStats, cached: bool) -> tuple[float, float]:
    """(fresh, suffix) tokens a row of `config`'s method costs: `fresh` once per row per unit, `suffix` every pass
    (see the module docstring). The soft tokens come from the config's own fields."""
    if hasattr(config, "num_candidates") and stats.causal:
        return 0.0, autoprompt_tokens(config, stats)
    template = stats.templates[0] if stats.templates else 0.0
    if cached and stats.causal:
        soft = int(getattr(config, "tokens_after_text", 0) or 0) + int(getattr(config, "tokens_before_mask", 0) or 0)
        soft += int(getattr(config, "n_triggers", 0) or 0)
        text = min(stats.text, MAX_TOKENS)
        return text, template + soft + ROW_TOKENS + CACHED_READ * text
    batch = max(int(getattr(config, "batch_size", 8) or 8), 1)
    lead = int(getattr(config, "n_tokens", 0) or 0) / batch  # a soft prompt placed first runs once per batch
    prefix = PREFIX_ATTENTION * int(getattr(config, "n_prefix", 0) or 0)
    return 0.0, stats.prompt(0) + lead + prefix


def autoprompt_tokens(config: Any, stats: TokenStats) -> float:
    """Token-equivalents of one row of an AutoPrompt candidate pass on a causal LM: its triggers and the label slot,
    computed, plus a tenth of the cached text (`CACHED_TEXT`). Its cost follows the trigger count: the same search
    took 62 s with 6 triggers and 40 s with 2 on rows of the same length. The triggers are the config's template's,
    else, when the search starts from the manual template best on dev (not known before the run), the mean of the
    user's templates' `anchors`, else `n_triggers`."""
    if getattr(config, "template", ""):
        triggers = float(Template.parse(config.template).n_trigger)
    elif starts_from_chosen(config) and any(stats.anchors):
        triggers = sum(stats.anchors) / len(stats.anchors)
    else:
        triggers = float(getattr(config, "n_triggers", 4) or 4)
    return triggers + ROW_TOKENS + CACHED_TEXT * min(stats.text, MAX_TOKENS)


def starts_from_chosen(config: Any) -> bool:
    """Whether `config` is an AutoPrompt search that starts from the manual template dev picks (its words become the
    triggers), so that its cost depends on which template that is."""
    return (
        hasattr(config, "num_candidates")
        and not getattr(config, "template", "")
        and bool(getattr(config, "init_from_template", False))
    )


def scoring_rate(
    result: Mapping[str, Any], dev: TokenStats, test: TokenStats, content_free_rows: int, row: float = 0.0
) -> float | None:
    """A method that trains nothing (manual), timed as `estimate_unit` counts it: every template scored on dev (and
    the content-free rows) and on test, all its seconds over all those tokens, so the rate reproduces the run it came
    from (one template's seconds over one template's tokens made the next estimate 1.6x too long). `row`: what a
    row costs beyond its tokens, in tokens (the method's prior), counted the same way; `dev` and `test`: the tokens
    of its dev rows (its K-shot sample) and of the test split."""
    n = max(len(test.templates), 1)
    n_dev, n_test = result.get("n_dev") or 0, (result.get("rows") or [{}])[0].get("n_test") or 0
    scored = sum(
        (n_dev + content_free_rows) * (dev.prompt(i) + row) + n_test * (test.prompt(i) + row) for i in range(n)
    )
    seconds = (result.get("train_seconds") or 0.0) + (result.get("test_seconds") or 0.0)
    seconds += result.get("calibration_seconds") or 0.0
    return seconds / scored if scored > 0 and seconds > 0 else None
