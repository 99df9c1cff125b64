"""Prompts: edit manual templates and the verbalizer; live preview with slots and tokens; quick zero-shot check."""

import streamlit as st

from core.app.views import (
    QUICK_CHECK_ROWS,
    comparison_dev,
    label_word_tokens,
    quick_zero_shot,
    slot_summary,
    token_preview,
)
from core.compare import default_templates, prompt_spec
from core.engine.backbone import BackboneError
from core.engine.templates import Template, TemplateError, Verbalizer
from ui.common import dataset_page, link
from ui.formatting import plain
from ui.session import save_draft
from ui.uploads import first_seed
from ui.widgets import token_chips

ws, state, ds, split = dataset_page("Prompts")

if state["prompts"] is None or set(state["prompts"]["verbalizer"]) != set(ds.label_names):
    state["prompts"] = {
        "templates": list(default_templates(ds)),
        "verbalizer": Verbalizer.default(ds.label_names).to_dict(),
    }
prompts = state["prompts"]

st.markdown(
    "Write one template per line. `{text}` is the example"
    + (", `{text_b}` its pair" if ds.text_b_col else "")
    + "; `[MASK]` is where the label word goes (at the end for a causal LM such as the default backbone); "
    "`[P]` / `[P*k]` are soft tokens learned by P-tuning and prompt tuning; `[T]` / `[T*k]` are trigger slots "
    "filled by AutoPrompt's search. Manual scoring needs neither."
)
text = st.text_area(
    "Templates (one per line)", value="\n".join(prompts["templates"]), height=130, key="templates-text"
)
templates = [line.strip() for line in text.splitlines() if line.strip()]

st.subheader("Verbalizer")
st.caption(
    "The word(s) that stand for each label; several words per label are averaged, multi-token words "
    "are scored as a whole."
)
verbalizer: dict[str, list[str]] = {}
cols = st.columns(min(len(ds.label_names), 4))
for i, label in enumerate(ds.label_names):
    words = cols[i % len(cols)].text_input(
        f"Words for **{label}** (comma-separated)",
        value=", ".join(prompts["verbalizer"].get(label, [label])),
        key=f"verb-{label}",
    )
    verbalizer[label] = [w.strip() for w in words.split(",") if w.strip()]

try:
    spec = prompt_spec(ds, templates, verbalizer)
except TemplateError as err:
    st.error(f"These prompts cannot be used yet: {plain(err)}")
    st.stop()
if spec.templates != tuple(prompts["templates"]) or verbalizer != prompts["verbalizer"]:
    state["zero_shot"] = None
prompts.update(templates=list(spec.templates), verbalizer=verbalizer)
if st.button("Reset to the default templates and label words", key="reset-prompts"):
    state["prompts"] = None
    for key in ["templates-text", *(f"verb-{label}" for label in ds.label_names)]:
        st.session_state.pop(key, None)
    st.rerun()

st.subheader("Live preview")
c1, c2 = st.columns([3, 1])
template = c1.selectbox("Template", spec.templates, key="preview-template")
dev, dev_name = comparison_dev(split, state["settings"]["k_shot"], first_seed(state))  # the rows Compare's dev is
pool_source = dev if len(dev) else split.train
row = c2.number_input(
    "Dev example #", min_value=0, max_value=max(len(pool_source) - 1, 0), value=0, step=1, key="preview-row"
)
record = pool_source.records[int(row)]
st.markdown(
    f"Gold label: **{ds.label_names[pool_source.labels[int(row)]]}** · slots: "
    + ", ".join(f"{k} {v}" for k, v in slot_summary(template).items())
)
st.code(Template.parse(template).fill(record), language=None, wrap_lines=True)
spec_name = state["backbone"]
try:
    tokenizer_view = ws.pool.tokenizer_only(spec_name)
except BackboneError as err:
    st.info(f"Token view unavailable: {plain(err)}")
else:
    try:
        tokens = token_preview(tokenizer_view, template, record)
        Template.parse(template).validate(ds.columns, tokenizer_view.kind)
    except TemplateError as err:
        st.error(f"On backbone {plain(tokenizer_view.name)}: {plain(err)}")
    else:
        st.caption(
            f"How **{tokenizer_view.name}** ({tokenizer_view.kind.value}) sees it: {len(tokens)} tokens "
            "(choose another backbone on the Train page)"
        )
        token_chips(tokens)
        try:
            st.dataframe(label_word_tokens(tokenizer_view, template, spec.verbalizer.to_dict()), hide_index=True)
        except TemplateError as err:
            st.error(str(err))

st.subheader("Quick zero-shot check")
n_rows = min(QUICK_CHECK_ROWS, len(pool_source))
which = dev_name if len(dev) else "the training rows (no dev split)"
capped = f" (the first {n_rows} of {len(pool_source):,})" if n_rows < len(pool_source) else ""
st.caption(
    f"Scores every template zero-shot (calibrated) on {n_rows} rows of {which}{capped} with the chosen backbone, "
    "the rows the comparison chooses its manual template on, enough to rank the templates before training — a "
    "check of wording and label words, not a result."
)
if state.get("zero_shot_on") != which:  # scored on other rows (K or the seed changed since): not this check's
    state["zero_shot"] = None
if st.button(f"Check on {n_rows} {'dev' if len(dev) else 'training'} rows", key="zero-shot"):
    with st.spinner("Loading the backbone…"):
        try:
            backbone = ws.pool.get(spec_name)
        except BackboneError as err:
            st.error(str(err))
            backbone = None
    if backbone is not None:
        bar = st.progress(0.0, text="Scoring…")
        try:
            state["zero_shot"] = quick_zero_shot(
                backbone,
                spec,
                pool_source.subset(range(n_rows)),
                progress=lambda done, total: bar.progress(done / total, text=f"Scored {done:,}/{total:,} rows"),
            )
            state["zero_shot_on"] = which
        except TemplateError as err:
            st.error(str(err))
        bar.empty()
if state.get("zero_shot") is not None:
    st.caption(f"Scored on {which}.")
    st.dataframe(
        state["zero_shot"],
        hide_index=True,
        column_config={
            "accuracy": st.column_config.NumberColumn(format="%.2f"),
            "rows": st.column_config.NumberColumn("rows scored"),
            "answers": st.column_config.TextColumn("first answers"),
        },
    )
link("train", "Next: Train")
save_draft()
