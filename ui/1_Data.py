"""Data: upload a CSV or pick a sample; preview; text/label columns; label distribution; split and K-shot."""

import pandas as pd
import streamlit as st

from core.app.service import UPLOAD_LIMIT_MB, UPLOAD_LIMITS
from core.app.views import comparison_dev
from core.data import DataError, detect_columns, split_dataset
from ui.charts import label_bars
from ui.common import link
from ui.formatting import plain
from ui.session import app_state, save_draft
from ui.uploads import SAMPLES_DIR, csv_uploader, dataset, digest, first_seed, k_shot_problem, table

state = app_state()
st.title("Data")
st.caption(
    f"A labeled CSV with a header row: one column of text and one of labels. Limits: {UPLOAD_LIMIT_MB} MB per file, "
    f"{UPLOAD_LIMITS.max_rows:,} rows (more are ignored), {UPLOAD_LIMITS.max_text_chars:,} characters per text "
    "(longer texts are cut)."
)

samples = sorted(  # movie reviews first: the one the intro text promises
    (p for p in SAMPLES_DIR.glob("*.csv") if not p.stem.endswith("_new")),
    key=lambda p: (p.stem != "movie_reviews", p.name),
)
source = st.radio(
    "Source",
    ["Upload a CSV", "Bundled sample"],
    horizontal=True,
    key="data-source",
    index=1 if state["data"] and state["data"]["name"].startswith("sample: ") else 0,
)
raw, name = None, None
if source == "Upload a CSV":
    uploaded = csv_uploader("CSV file", key="data-upload")
    if uploaded is not None:
        raw, name = uploaded
elif samples:
    before = state["data"]["name"].removeprefix("sample: ") if state["data"] else None
    names = [p.name for p in samples]
    index = names.index(before) if before in names else 0
    chosen = st.selectbox("Sample", samples, index=index, format_func=lambda p: p.name, key="data-sample")
    raw, name = chosen.read_bytes(), f"sample: {chosen.name}"
else:
    st.info("No bundled samples are installed (data/samples/ is empty).")

if raw is None and state["data"] is not None:
    raw, name = state["data"]["bytes"], state["data"]["name"]
    st.caption(f"Using the dataset loaded before: **{plain(name)}**")
if raw is None:
    st.info("Upload a CSV above, or choose **Bundled sample** to try PTune Studio on movie reviews.")
    st.stop()

key = digest(raw)
try:
    df = table(key, raw)
except DataError as err:
    st.error(f"**{plain(name)}** cannot be read: {plain(err)}")
    st.stop()

previous = state["data"] if state["data"] and state["data"]["digest"] == key else None
st.subheader("Preview")
st.dataframe(df.head(20), width="stretch", hide_index=True)
st.caption(f"{len(df):,} rows × {len(df.columns)} columns")

columns = [str(c) for c in df.columns]
try:
    guess_text, guess_label = detect_columns(df)
except DataError as err:
    guess_text, guess_label = columns[0], columns[-1]
    st.warning(f"Could not guess the columns: {plain(err)}")
if previous:
    guess_text, guess_label = previous["text_col"], previous["label_col"]
c1, c2, c3 = st.columns(3)
text_col = c1.selectbox("Text column", columns, index=columns.index(guess_text), key=f"text-col-{key}")
label_col = c2.selectbox("Label column", columns, index=columns.index(guess_label), key=f"label-col-{key}")
pair_options = ["(none)", *columns]
pair_default = previous["text_b_col"] if previous and previous["text_b_col"] else "(none)"
text_b = c3.selectbox(
    "Second text column (pairs, optional)",
    pair_options,
    index=pair_options.index(pair_default),
    key=f"text-b-col-{key}",
)
text_b_col = None if text_b == "(none)" else text_b

try:
    ds = dataset(key, raw, text_col, label_col, text_b_col)
except DataError as err:
    st.error(f"This column choice cannot be used: {plain(err)}")
    st.stop()
for warning in ds.warnings:
    st.warning(warning)

st.subheader("Labels")
counts = pd.DataFrame({"label": list(ds.label_counts()), "rows": list(ds.label_counts().values())})
st.vega_lite_chart(counts, label_bars(), width="stretch")

st.subheader("Split")
settings = state["settings"]
c1, c2, c3, c4 = st.columns(4)
test_size = c1.slider(
    "Test share",
    0.1,
    0.8,
    float(settings["test_size"]),
    0.05,
    key="test-size",
    help="Rows held out for the final comparison; every method is scored on the same test rows.",
)
dev_size = c2.slider(
    "Dev share",
    0.0,
    0.3,
    float(settings["dev_size"]),
    0.05,
    key="dev-size",
    help="Rows used to pick the best template and to watch training.",
)
split_seed = c3.number_input("Split seed", min_value=0, value=int(settings["split_seed"]), step=1, key="split-seed")
use_k = c4.toggle(
    "K-shot",
    value=settings["k_shot"] is not None,
    key="use-k",
    help="Train on K examples per label (drawn per seed) instead of all training rows.",
)
k_shot = None
if use_k:
    k_shot = int(
        st.number_input(
            "K (examples per label)", min_value=1, value=int(settings["k_shot"] or 16), step=1, key="k-shot"
        )
    )
try:
    split = split_dataset(ds, test_size=test_size, dev_size=dev_size, seed=int(split_seed))
except DataError as err:
    st.error(f"This split does not work: {plain(err)}")
    st.stop()
problem = k_shot_problem(split, k_shot)
if problem:
    st.error(f"This K does not work: {plain(problem)}")
    st.stop()

settings.update(test_size=test_size, dev_size=dev_size, split_seed=int(split_seed), k_shot=k_shot)
if previous is None:  # a new dataset: prompts written for the old one may not fit
    state["prompts"] = None
    state["zero_shot"] = None
state["data"] = {
    "bytes": raw,
    "name": name,
    "digest": key,
    "text_col": text_col,
    "label_col": label_col,
    "text_b_col": text_b_col,
}
m1, m2, m3, m4 = st.columns(4)
m1.metric("Rows", f"{len(ds):,}")
if k_shot:
    m2.metric(
        f"Train (K={k_shot} per label)",
        f"{k_shot * len(ds.label_names):,}",
        help=f"Drawn per seed from {len(split.train):,} training rows; dev gets another K per label.",
    )
else:
    m2.metric("Train", f"{len(split.train):,}")
dev, dev_name = comparison_dev(split, k_shot, first_seed(state))
m3.metric(
    "Dev" if k_shot is None else f"Dev (K={k_shot} per label)",
    f"{len(dev):,}",
    help=f"{dev_name[0].upper()}{dev_name[1:]}: where templates are chosen, methods tuned and the Prompts page's "
    "quick check is scored.",
)
m4.metric("Test", f"{len(split.test):,}")
if k_shot is not None:
    st.caption(
        f"Dev: {dev_name}, {len(dev):,} rows, drawn per seed from the dev share ({len(split.dev):,} rows) and the "
        "training rows its K-shot sample leaves; the comparison chooses and tunes on these, never on the whole share."
    )
st.success(
    f"Dataset ready: **{name}** — {len(ds.label_names)} labels ({', '.join(ds.label_names)}). Next: write prompts."
)
link("prompts", "Go to Prompts")
save_draft()
