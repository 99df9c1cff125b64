"""Split a dataset reproducibly: stratified train/dev/test, and K examples per label for each seed.

Owns every random draw over rows, so a seed means the same sample wherever it is used, and the test rows every
seed is scored on stay the same.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from core.data.dataset import LabeledDataset
from core.data.reading import DataError


@dataclass(frozen=True)
class Split:
    """Train/dev/test parts of one dataset; `seed` is recorded so a result can be reproduced."""

    train: LabeledDataset
    dev: LabeledDataset
    test: LabeledDataset
    seed: int

    def summary(self) -> dict:
        return {"train": len(self.train), "dev": len(self.dev), "test": len(self.test), "seed": self.seed}


def split_dataset(
    ds: LabeledDataset,
    *,
    test_size: float | int = 0.5,
    dev_size: float | int = 0.1,
    seed: int = 0,
    min_per_label: int = 2,
) -> Split:
    """Stratified train/dev/test: each label's share in each part is its overall share, within one row.

    Sizes are fractions of all rows or row counts; dev_size=0 gives an empty dev. Every label must get at least
    `min_per_label` rows in every (non-empty) part, else DataError names the label and the fix.
    """
    if min_per_label < 1:
        raise ValueError("min_per_label must be at least 1 so every label appears in every part")
    n = len(ds)
    n_test = _part_size(test_size, n, "the test share", allow_zero=False)
    n_dev = _part_size(dev_size, n, "the dev share", allow_zero=True)
    if n_test + n_dev >= n:
        raise DataError(
            f"test ({n_test} rows) and dev ({n_dev} rows) leave no training rows out of {n}; "
            "lower the test share or add rows"
        )
    by_label = _indices_by_label(ds)
    counts = np.array([len(ix) for ix in by_label])
    test_k, dev_k = _apportion(counts, n_test), _apportion(counts, n_dev)
    rng = _rng(seed)
    parts: dict[str, list[int]] = {"train": [], "dev": [], "test": []}
    for name, idx, t, d in zip(ds.label_names, by_label, test_k, dev_k, strict=True):
        _check_label_fits(name, len(idx), {"train": len(idx) - t - d, "dev": d, "test": t}, n_dev > 0, min_per_label)
        perm = rng.permutation(idx)
        parts["test"] += perm[:t].tolist()
        parts["dev"] += perm[t : t + d].tolist()
        parts["train"] += perm[t + d :].tolist()
    return Split(**{k: ds.subset(sorted(v)) for k, v in parts.items()}, seed=seed)


def _part_size(value: float | int, n: int, name: str, *, allow_zero: bool) -> int:
    """A float is a fraction in (0, 1) of n rows (at least one); an int is a row count. A float of 1 or more is
    refused, not read as a count: 1.0 reads as "all the rows" (100 %), and a split of one test row helps no one."""
    bad = DataError(
        f"{name} must be a fraction between 0 and 1 or a whole row count below {n}, got {value!r}; "
        f"use e.g. 0.5 or {max(n // 2, 1)}"
    )
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise bad
    if value == 0 and allow_zero:
        return 0
    if 0 < value < 1:
        return max(1, math.floor(value * n + 0.5))
    if isinstance(value, float) and value >= 1:
        raise DataError(
            f"{name} must be a fraction below 1 such as 0.5, or a whole row count without a decimal point such as "
            f"{max(n // 2, 1)}; {value!r} would be {value:.0%} of the rows"
        )
    if 1 <= value < n:
        return int(value)
    raise bad


def _apportion(counts: np.ndarray, total: int) -> np.ndarray:
    """Split `total` across labels in proportion to `counts` (largest remainder), so each is within one row."""
    quotas = counts * total / counts.sum()
    base = np.floor(quotas).astype(int)
    order = np.argsort(-(quotas - base), kind="stable")
    base[order[: total - base.sum()]] += 1
    return base


def _check_label_fits(name: str, count: int, sizes: dict[str, int], with_dev: bool, min_per_label: int) -> None:
    parts = [p for p in ("train", "dev", "test") if with_dev or p != "dev"]
    short = [p for p in parts if sizes[p] < min_per_label]
    if not short:
        return
    got = ", ".join(f"{p} {max(int(sizes[p]), 0)}" for p in parts)
    fix = {"train": "lower the test share", "test": "raise the test share", "dev": "set the dev share to 0"}
    raise DataError(
        f"label {name!r} has only {count} rows, too few to put {min_per_label} in each of {'/'.join(parts)} "
        f"(it would get {got}); add rows of {name!r} or {fix[short[0]]}"
    )


def _indices_by_label(ds: LabeledDataset) -> list[np.ndarray]:
    labels = np.asarray(ds.labels, dtype=np.int64)
    return [np.flatnonzero(labels == i) for i in range(len(ds.label_names))]


def _rng(seed: int, stream: int = 0) -> np.random.Generator:
    """Independent reproducible streams per (seed, purpose), so the dev draw never mirrors the train draw."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise DataError(f"a seed must be a non-negative integer, got {seed!r}; e.g. seeds 0, 1, 2")
    return np.random.default_rng(int(seed) if stream == 0 else [int(seed), stream])


def k_shot(ds: LabeledDataset, k: int, seed: int) -> LabeledDataset:
    """k rows of every label, drawn with `seed` (same seed, same sample), in the dataset's original order."""
    return ds.subset(_draw_k(ds, k, _rng(seed)))


def _draw_k(ds: LabeledDataset, k: int, rng: np.random.Generator) -> list[int]:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise DataError(f"K (examples per label) must be a positive integer, got {k!r}; e.g. 16")
    chosen: list[int] = []
    for name, idx in zip(ds.label_names, _indices_by_label(ds), strict=True):
        if len(idx) < k:
            raise DataError(
                f"label {name!r} has only {len(idx)} rows to draw from, fewer than K={k}; "
                f"lower K (examples per label) to {len(idx)} or add rows of {name!r}"
            )
        chosen += rng.choice(idx, size=k, replace=False).tolist()
    return sorted(chosen)


def few_shot_split(split: Split, k: int | None, seed: int) -> tuple[LabeledDataset, LabeledDataset]:
    """(train, dev) for one seed; test stays `split.test` so every seed is scored on the same rows.

    k=None gives the full train/dev. Otherwise train is `k_shot(split.train, k, seed)` and dev is another K per
    label drawn from the non-test rows not in train; where a label has too few such rows the dev reuses train
    rows and says so in its warnings.
    """
    if k is None:
        return split.train, split.dev
    train_idx = _draw_k(split.train, k, _rng(seed))
    pool = _concat(split.train, split.dev)  # train rows keep their indices 0..len(train)-1
    rng, taken = _rng(seed, stream=1), set(train_idx)
    dev_idx, shared = [], []
    for name, idx in zip(pool.label_names, _indices_by_label(pool), strict=True):
        free = np.array([i for i in idx if i not in taken], dtype=np.int64)
        picked = rng.choice(free, size=min(k, len(free)), replace=False).tolist()
        if len(picked) < k:
            used = np.array([i for i in idx if i in taken], dtype=np.int64)
            picked += rng.choice(used, size=k - len(picked), replace=False).tolist()
            shared.append(f"{name!r} ({k - len(free)})")
        dev_idx += picked
    dev = pool.subset(sorted(dev_idx))
    if shared:
        note = f"K-shot dev shares rows with train for label {', '.join(shared)}: too few rows for a disjoint draw"
        dev = replace(dev, warnings=(*dev.warnings, note))
    return split.train.subset(train_idx), dev


def _concat(a: LabeledDataset, b: LabeledDataset) -> LabeledDataset:
    if a.label_names != b.label_names:
        raise ValueError("cannot join datasets with different label_names")
    return replace(a, records=a.records + b.records, labels=a.labels + b.labels)
