"""What a comparison is made of, checked before anything runs: the prompt spec (templates and verbalizer against
the data), the seeds and K values the user typed, each method's options, and the plan of (method, K, seed) units.

Why its own module: the CLI, the Train page and the app's launch all read the user's input through these same
functions, so a bad seed list or a path option is refused with the same one line everywhere, before a model loads.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from typing import Any

from core.compare.unit import Unit
from core.data import LabeledDataset
from core.engine.templates import Template, Verbalizer
from core.methods import method_class
from core.methods.base import ENGINE_PATHS, PromptSpec, config_from_dict

DEFAULT_TEMPLATES = ("{text} It was [MASK]", "{text} All in all, it was [MASK]", "Text: {text} Label: [MASK]")


DEFAULT_PAIR_TEMPLATES = ("{text} Question: {text_b} Answer: [MASK]", "{text} {text_b} Label: [MASK]")


def default_templates(dataset: LabeledDataset) -> tuple[str, ...]:
    return DEFAULT_PAIR_TEMPLATES if dataset.text_b_col else DEFAULT_TEMPLATES


def prompt_spec(
    dataset: LabeledDataset, templates: Sequence[str] | None = None, verbalizer: Mapping[str, Any] | str | None = None
) -> PromptSpec:
    """The user's templates and verbalizer, checked against the data's columns and labels."""
    chosen = tuple(templates) if templates else default_templates(dataset)
    for t in chosen:
        Template.parse(t).validate(dataset.columns)
    names = dataset.label_names
    if verbalizer is None:
        verb = Verbalizer.default(names)
    elif isinstance(verbalizer, str):
        verb = Verbalizer.from_json(verbalizer, names)
    else:
        verb = Verbalizer.from_mapping(verbalizer, names)
    return PromptSpec(templates=chosen, verbalizer=verb, label_names=tuple(names))


MAX_SEED = 2**32 - 1  # numpy's and torch's seed range


MAX_SEEDS = 100


def parse_seeds(value: str | Sequence[int]) -> list[int]:
    """Seeds from text like "0, 1, 2" (CLI, Train page) or a list: at least one, each a whole number >= 0."""
    bad = ValueError(f"seeds must be non-negative whole numbers separated by commas, e.g. 0,1,2 (got {value!r})")
    if isinstance(value, str):
        try:
            seeds = [int(s) for s in value.replace(" ", "").split(",") if s]
        except ValueError:
            raise bad from None
    else:
        seeds = list(value)
    if not seeds:
        raise ValueError("seeds is empty; give at least one seed, e.g. 0")
    if any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise bad
    if max(seeds) > MAX_SEED:
        raise ValueError(f"seed {max(seeds)} is out of range; a seed is a whole number from 0 to {MAX_SEED}")
    if len(seeds) > MAX_SEEDS:
        raise ValueError(f"seeds lists {len(seeds)} seeds; give at most {MAX_SEEDS}")
    if len(set(seeds)) != len(seeds):
        raise ValueError("seeds lists a seed twice; give each seed once, e.g. 0,1,2")
    return seeds


MAX_K_VALUES = 20


_DIGITS = re.compile("[0-9]+")


def parse_k_shots(value: str | int | Sequence[int] | None) -> list[int | None]:
    """K values from text like "8,16,32,64" (CLI, Train page), one int, a list, or None (all training rows).

    Several values ask for a learning curve; they come back sorted. One value is the plain K-shot comparison.
    """
    if value is None or value == "":
        return [None]
    fix = "give whole numbers of examples per label, 1 or more, separated by commas, e.g. 8,16,32,64"
    if isinstance(value, str):
        parts = [p for p in value.replace(" ", "").split(",") if p]
        if not all(_DIGITS.fullmatch(p) for p in parts):  # str.isdigit() also passes '²', which int() refuses
            bad = next(p for p in parts if not _DIGITS.fullmatch(p))
            raise ValueError(f"K-shot {bad[:20]!r} is not a whole number; {fix}")
        ks = [int(p) for p in parts]
    else:
        ks = [value] if isinstance(value, int) else list(value)
    if not ks or any(isinstance(k, bool) or not isinstance(k, int) for k in ks):
        raise ValueError(f"K-shot {value!r} is not valid; {fix}")
    if min(ks) < 1:
        raise ValueError(f"K-shot {min(ks)} is below 1; {fix}")
    if len(set(ks)) != len(ks):
        raise ValueError(f"K-shot lists a value twice ({value!r}); give each K once, e.g. 8,16,32")
    if len(ks) > MAX_K_VALUES:
        raise ValueError(f"K-shot lists {len(ks)} values; give at most {MAX_K_VALUES}")
    return sorted(ks)


def plan_units(
    methods: Sequence[str],
    seeds: Sequence[int],
    options: Callable[[str], dict[str, Any]],
    k_shots: Sequence[int | None],
) -> list[Unit]:
    """Every (method, K, seed) unit of a comparison. On a learning curve (several K) a zero-shot method, which
    learns nothing from train rows, runs at the smallest K only: it is the curve's flat reference line."""
    units = []
    for m in methods:
        ks = k_shots[:1] if len(k_shots) > 1 and method_class(m).zero_shot else k_shots
        units += [Unit(m, s, options(m), k) for k in ks for s in seeds]
    return units


def method_options(method: str, options: Mapping[str, Any] | None, *, max_steps: int | None) -> dict[str, Any]:
    """User options for a method, plus the global `max_steps` where the method's config has that field.

    A caller may not choose where files go: a path option would let one person's run write into another's folder
    (or outside PTUNE_HOME), so `ENGINE_PATHS` are refused here, where every caller's options come in."""
    merged = dict(options or {})
    given = sorted(set(merged) & set(ENGINE_PATHS))
    if given:
        raise ValueError(
            f"{method} option {given[0]!r} is a folder PTune Studio chooses (inside the run's own folder); leave it out"
        )
    known = {f.name for f in fields(method_class(method).config_cls)}
    if max_steps is not None and "max_steps" in known:
        merged.setdefault("max_steps", max_steps)
    if "seed" in known:
        merged.setdefault("seed", 0)
    return merged


def eval_warnings(methods: Mapping[str, Mapping[str, Any] | None], *, max_steps: int | None) -> list[str]:
    """One line per method whose steps are fewer than its dev-evaluation interval: dev is then scored only at the
    last step, so the run has no dev curve and its best-on-dev choice has a single candidate."""
    out = []
    for name, options in methods.items():
        cls = method_class(name)
        try:
            cfg = config_from_dict(cls.config_cls, method_options(name, options, max_steps=max_steps), method=name)
        except (ValueError, TypeError):
            continue  # a bad option gets its own error at launch
        every, steps = getattr(cfg, "eval_every", 0), getattr(cfg, "max_steps", None)
        if every and steps is not None and steps < every:
            out.append(
                f"{cls.label} runs {steps} steps but evaluates on dev every {every}, so dev is scored only at the last "
                f"step (no dev curve); set eval_every to {steps} or less (0 = about 10 times a run) or raise the steps"
            )
    return out


def assign(units: Sequence[Unit], rank: int, size: int, *, data_parallel: bool = False) -> list[tuple[Unit, bool]]:
    """Process `rank`'s work among `size` processes, as (unit, shared) pairs in the order to run them.

    Shared units (`data_parallel` on, for methods whose training splits batches across processes) are run by every
    process together, first, in the same order everywhere; the other units are dealt out round-robin.
    """
    together = [data_parallel and size > 1 and method_class(u.method).data_parallel for u in units]
    shared = [u for u, t in zip(units, together, strict=True) if t]
    alone = [u for u, t in zip(units, together, strict=True) if not t]
    return [(u, True) for u in shared] + [(u, False) for u in alone[rank::size]]
