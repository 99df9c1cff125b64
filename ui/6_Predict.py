"""Predict & download: every learned prompt file (and PEFT export) of a comparison; predictions for a new CSV."""

import uuid
from pathlib import Path

import streamlit as st

from core.app.service import UPLOAD_LIMITS
from core.app.views import (
    ZIP_ALL_MAX_BYTES,
    artifact_scores,
    fmt_bytes,
    path_bytes,
    zip_folder,
    zip_paths,
    zippable,
)
from core.data import DataError, guess_text_column
from core.engine.backbone import BackboneError
from core.engine.templates import TemplateError
from core.prompts import artifacts
from core.prompts.artifacts import ArtifactError
from core.prompts.export import to_safe_csv
from core.prompts.predict import predict_frame
from ui.formatting import plain
from ui.session import app_state, workspace
from ui.uploads import SAMPLES_DIR, csv_uploader, digest, table
from ui.widgets import method_label, pick_group

ws = workspace()
st.title("Predict & download")

st.header("Download learned prompts")
group = pick_group(ws, key="download-group", need_success=True)
if group is None:
    st.info("No finished runs yet: their learned prompt files appear here once a comparison has run.")
else:
    files = ws.artifacts(group)
    scores = artifact_scores(ws.summary(group))
    st.caption(
        "One file per prompt and seed: `.safetensors` (learned tensors plus a JSON manifest in its header) "
        "or `.json` (discrete prompts). Upload one below, or use it with `python -m core predict`."
    )
    small, large = zippable([Path(a["path"]) for a in files])
    if small:
        total = fmt_bytes(sum(path_bytes(p) for p in small))
        st.download_button(  # the zip is built on click, so its own size is not known here: the files' is
            f"Download {'all ' if not large else ''}{len(small)} files as a zip ({total} unzipped)",
            lambda: zip_paths(small),  # built on click, not on every rerun
            file_name=f"prompts-{group}.zip",
            mime="application/zip",
            key="dl-all",
            on_click="ignore",
            icon=":material/folder_zip:",
        )
    if large:
        st.caption(
            f"{len(large)} file(s) over {fmt_bytes(ZIP_ALL_MAX_BYTES)} (a full fine-tune carries the whole backbone) "
            "download on their own below."
        )
    for i, art in enumerate(files):
        path = Path(art["path"])
        c1, c2 = st.columns([4, 1], vertical_alignment="center")
        what = " · PEFT export (`peft.PeftModel.from_pretrained`)" if art["kind"] == "peft" else ""
        name, accuracy = scores.get(art["path"], (None, None))
        score = f" · test accuracy **{accuracy:.3f}**" if accuracy is not None else ""
        method = method_label(art["method"])
        # "P-tuning (ptuning)" once, not "P-tuning (P-tuning (ptuning))": the prompt's name only when it says more
        title = method if not name or method.startswith(f"{name} (") else f"{name} ({method})"
        size = fmt_bytes(path_bytes(path))
        c1.markdown(f"`{path.name}` · {size} · {plain(title)} · seed {art['seed']}{score}{what}")
        if path.is_dir():
            c2.download_button(
                "Download (zip)",
                lambda path=path: zip_folder(path),  # built on click, not on every rerun
                file_name=f"{artifacts.safe_filename(path.name)}.zip",
                mime="application/zip",
                key=f"dl-art-{i}",
                on_click="ignore",
            )
        else:
            c2.download_button(
                "Download",
                lambda path=path: path.read_bytes(),
                file_name=path.name,
                mime="application/octet-stream",
                key=f"dl-art-{i}",
                on_click="ignore",
            )
    results = ws.results_path(group)
    if ws.summary(group) is not None and results.exists():
        st.download_button(
            f"results.json · {fmt_bytes(path_bytes(results))}",
            results.read_bytes(),
            file_name=f"results-{group}.json",
            mime="application/json",
            key="dl-results",
        )

st.header("Predict with a learned prompt")
own = [a for a in (ws.artifacts(group) if group is not None else []) if a["kind"] != "peft"]
prompt_source = st.radio(
    "Prompt",
    [*(["One of this comparison's prompts"] if own else []), "Upload a prompt file"],
    horizontal=True,
    key="predict-prompt-source",
    help="A prompt of your own comparison needs no upload (a full fine-tune's file is the whole backbone, larger "
    "than an upload may be).",
)
prompt_file = own_prompt = None
if prompt_source == "Upload a prompt file":
    prompt_file = st.file_uploader(
        "Learned prompt file (.safetensors or .json)", type=["safetensors", "json"], key="predict-prompt"
    )
else:
    own_prompt = st.selectbox(
        "Learned prompt",
        [a["path"] for a in own],
        format_func=lambda p: f"{Path(p).name} · {fmt_bytes(path_bytes(Path(p)))}",
        key="predict-own-prompt",
    )
samples = sorted(SAMPLES_DIR.glob("*_new.csv"))
source = st.radio(
    "New rows",
    ["Upload a CSV", *(["Bundled sample of new reviews"] if samples else [])],
    horizontal=True,
    key="predict-source",
)
raw = None
if source == "Upload a CSV":
    uploaded = csv_uploader("CSV with a text column", key="predict-data")
    raw = uploaded[0] if uploaded is not None else None
    if uploaded is not None:
        st.caption(f"New rows: **{plain(uploaded[1])}**")
else:
    raw = samples[0].read_bytes()

learned = None
if own_prompt is not None:
    try:
        learned = artifacts.load(own_prompt, shown_as=Path(own_prompt).name)
    except ArtifactError as err:
        st.error(plain(err))
if prompt_file is not None:
    st.caption(f"Prompt file: **{plain(prompt_file.name)}** ({len(prompt_file.getvalue()):,} bytes)")
    suffix = Path(prompt_file.name).suffix.lower()
    if suffix not in (".safetensors", ".json"):
        st.error("The prompt file must end in .safetensors or .json.")
    else:
        folder = ws.home / "uploads"
        folder.mkdir(parents=True, exist_ok=True)
        # never the user's name as a path: a fresh id plus a sanitised stem
        path = folder / f"{uuid.uuid4().hex[:8]}-{artifacts.safe_filename(Path(prompt_file.name).stem)}{suffix}"
        path.write_bytes(prompt_file.getvalue())
        try:
            learned = artifacts.load(path, shown_as=prompt_file.name)  # messages name the person's file
        except ArtifactError as err:
            st.error(plain(err))
        finally:
            path.unlink(missing_ok=True)
if learned is not None:
    st.success(
        f"Prompt: **{plain(learned.display_name or learned.method)}** ({plain(learned.method)}) for labels "
        f"{plain(', '.join(learned.label_names))}, learned on {plain(learned.backbone.get('name'))}"
    )
    if learned.template:
        st.code(learned.template, language=None)

df = None
if raw is not None:
    try:
        df = table(digest(raw), raw)
    except DataError as err:
        st.error(f"This CSV cannot be read: {plain(err)}")
if df is not None:
    columns = [str(c) for c in df.columns]
    text_col = st.selectbox("Text column", columns, index=columns.index(guess_text_column(df)), key="predict-col")
    st.caption(f"{len(df):,} rows (limit {UPLOAD_LIMITS.max_rows:,})")

# The backbone is the one this person chose (Train page) or one already loaded: never one a prompt file names.
loaded = {b["spec"]: b["fingerprint"] for b in ws.pool.loaded()}
choices = list(dict.fromkeys([app_state()["backbone"], *loaded]))
wanted = learned.backbone.get("fingerprint") if learned is not None else None
matching = [i for i, s in enumerate(choices) if wanted and loaded.get(s) == wanted]
spec = st.selectbox(
    "Backbone",
    choices,
    index=matching[0] if matching else 0,
    format_func=lambda s: "SmolLM2-135M (embedded default)" if s == "default" else s,
    key=f"predict-backbone-{wanted}",  # a new prompt file picks its own default
    help="The prompt file must have been learned on this backbone (checked by its fingerprint). Choose another "
    "backbone on the Train page.",
)
if st.button("Predict", type="primary", disabled=learned is None or df is None, key="predict"):
    with st.spinner(f"Loading the backbone and predicting {len(df):,} rows…"):
        try:
            backbone = ws.pool.get(spec)
            st.session_state["predictions"] = predict_frame(backbone, learned, df, text_col=text_col)
        except (ArtifactError, BackboneError, DataError, TemplateError) as err:
            st.session_state["predictions"] = None
            st.error(f"Could not predict: {plain(err)}")
preds = st.session_state.get("predictions")
if preds is not None:
    st.subheader("Predictions")
    st.dataframe(
        preds,
        hide_index=True,
        width="stretch",
        height=320,
        column_config={c: st.column_config.NumberColumn(format="%.4f") for c in preds.columns if c.startswith("p_")},
    )
    counts = preds["predicted_label"].value_counts()
    st.caption(" · ".join(f"{label}: {n}" for label, n in counts.items()))
    preds_csv = to_safe_csv(preds)
    st.download_button(
        f"Download predictions (CSV) · {fmt_bytes(len(preds_csv))}",
        preds_csv,
        file_name="predictions.csv",
        mime="text/csv",
        key="dl-predictions",
    )
