"""Train: choose the backbone, methods (with generated advanced options), seeds and K; launch into the job queue."""

import hashlib
import json
from dataclasses import replace

import streamlit as st

from core.app.forms import changed_options, default_methods
from core.app.service import ComparisonRequest
from core.app.views import small_dev_warning
from core.compare import default_templates, eval_warnings, parse_k_shots, parse_seeds, plan_units, prompt_spec
from core.data import DataError
from core.engine.backbone import BackboneError
from core.engine.backbone_pool import inspect_backbone
from core.engine.templates import TemplateError, Verbalizer
from core.methods import REGISTRY, method_order
from core.runs.estimate import fmt_minutes
from ui.common import dataset_page, link
from ui.formatting import fmt_bytes, fmt_count, plain
from ui.session import save_draft
from ui.uploads import k_shot_problem
from ui.widgets import method_label, option_form

ws, state, ds, split = dataset_page("Train")
prompts = state["prompts"] or {
    "templates": list(default_templates(ds)),
    "verbalizer": Verbalizer.default(ds.label_names).to_dict(),
}


def request_fingerprint(*parts) -> str:
    """The same choices give the same fingerprint: a second click on Launch does not queue the same work twice."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def reference_cost(expected, references: list[str], methods: list[str]) -> str:
    """What the fine-tuning references add to the comparison, each and together, chosen or not."""
    each = ", ".join(f"{REGISTRY[m].label} {fmt_minutes(expected.only([m]).total)}" for m in references)
    total = fmt_minutes(expected.only(references).total)
    picked = [REGISTRY[m].label for m in references if m in methods]
    included = f" ({', '.join(picked)} included above)" if picked else ""
    return f"Fine-tuning references, all seeds: {each}; about {total} for all {len(references)}{included}."


@st.cache_data(ttl=60, show_spinner="Reading the backbone's config…")
def backbone_info(spec: str):
    return inspect_backbone(spec)


st.subheader("Backbone")
KINDS = ["Embedded default (SmolLM2-135M)", "Hugging Face model ID", "Local folder"]
current = state["backbone"]
kind_index = 0 if current == "default" else (2 if current.startswith(("/", ".", "~")) else 1)
kind = st.radio(
    "Backbone", KINDS, index=kind_index, horizontal=True, key="backbone-kind", label_visibility="collapsed"
)
if kind == KINDS[0]:
    spec = "default"
else:
    placeholder = "e.g. roberta-base or HuggingFaceTB/SmolLM2-135M" if kind == KINDS[1] else "/path/to/model"
    spec = (
        st.text_input(
            "Model ID" if kind == KINDS[1] else "Folder (saved with save_pretrained)",
            value="" if current == "default" else current,
            placeholder=placeholder,
            key="backbone-spec",
        ).strip()
        or "default"
    )
state["backbone"] = spec
info = backbone_info(spec)
c1, c2, c3, c4 = st.columns(4)
c1.metric("Parameters", fmt_count(info.parameters))
c2.metric("On disk", fmt_bytes(info.disk_bytes))
c3.metric(
    f"Memory ({info.dtype} weights)",
    fmt_bytes(info.memory_bytes),
    help="Weights alone at the load dtype; training adds activations for a batch (about 1.2-2x for these "
    "methods, which keep the backbone frozen) — measured peak memory is reported per run.",
)
c4.metric("Type", {"causal": "causal LM", "mlm": "masked LM"}.get(info.kind or "", "–"))
if info.note:
    (st.info if info.available or info.downloadable else st.warning)(f"{info.name}: {info.note}")
if ws.pool.peek(spec) is not None:
    st.caption("Already loaded in this app: runs start at once.")

st.subheader("Methods")
names = [n for n in method_order(REGISTRY) if not REGISTRY[n].fine_tunes]
references = [n for n in method_order(REGISTRY) if REGISTRY[n].fine_tunes]
device = ws.estimate_device()
chosen = state.get("methods") or default_methods(device)
methods = st.multiselect(
    "Methods to compare",
    names,
    default=[m for m in chosen if m in names],
    format_func=method_label,
    key="methods",
)
if references:
    methods += st.multiselect(
        "Fine-tuning references",
        references,
        default=[m for m in chosen if m in references],
        format_func=method_label,
        key="finetune-methods",
        help="Rows that train the backbone itself, which Compare reads every prompt against (the best of them on "
        "dev): its accuracy share, trainable-parameter share and training-time ratio. The slowest rows, run after "
        "every prompt method; off by default on a CPU, on by default on a GPU.",
    )
state["methods"] = methods
if methods:
    st.caption("Advanced options, one tab per method (the defaults are sensible; hover a field for its meaning).")
    for name, tab in zip(methods, st.tabs([method_label(name) for name in methods]), strict=True):
        with tab:
            columns = st.columns(3)
            values = option_form(name, state["options"].get(name, {}), columns)
            state["options"][name] = values

st.subheader("Seeds and steps")
c1, c2, c3 = st.columns(3)
seeds_text = c1.text_input(
    "Seeds (comma-separated)",
    value=state.get("seeds", "0"),
    key="seeds",
    help="Each method runs once per seed (its K-shot sample and initialisation); results show mean ± std over seeds.",
)
max_steps = int(
    c2.number_input(
        "Training steps (trained methods)",
        min_value=1,
        value=state.get("max_steps", 50),
        step=10,
        key="max-steps",
        help="Passed to every method that trains (AutoPrompt has its own 'search iterations' in its tab).",
    )
)
settings = state["settings"]
use_k = c3.toggle("K-shot", value=settings["k_shot"] is not None, key="train-use-k")
k_shot = (
    int(c3.number_input("K per label", min_value=1, value=int(settings["k_shot"] or 16), step=1, key="train-k"))
    if use_k
    else None
)
curve_text = st.text_input(
    "Learning curve: K values (optional)",
    value=settings.get("k_curve", ""),
    key="train-k-curve",
    placeholder="e.g. 8,16,32,64",
    help="Several K per label: every method and seed runs at each K on the same test rows, and Compare draws "
    "accuracy against K with the zero-shot manual prompt as a flat line. Empty: the one K above.",
)
tune = st.checkbox(
    "Tune each trained method on dev",
    value=state.get("tune", True),
    key="train-tune",
    help="Before its final run, each trained method tries a few values of its most sensitive settings (learning "
    "rate; P-tuning's encoder; AutoPrompt's candidates per step) and keeps the best on dev, never on test. Options "
    "you changed above are not tuned. Each trial runs a third of its steps; only the best is continued to the full "
    "budget, so tuning costs about 1.5-2.3x one run's training time.",
)
state.update(seeds=seeds_text, max_steps=max_steps, tune=tune)
n_dev = len(split.dev) if k_shot is None else k_shot * len(ds.label_names)  # a K-shot seed's own dev: K per label
if tune and (note := small_dev_warning(n_dev)):
    st.warning(note)
settings.update(k_shot=k_shot, k_curve=curve_text)

errors = []
try:
    seeds = parse_seeds(seeds_text)
except ValueError as err:
    seeds = []
    errors.append(f"Seeds: {err}")
k_curve: list[int] = []
if curve_text.strip():
    try:
        k_curve = parse_k_shots(curve_text)
    except ValueError as err:
        errors.append(f"Learning curve: {err}")
for k in k_curve or [k_shot]:
    if problem := k_shot_problem(split, k, seeds[0] if seeds else 0):
        errors.append(problem)
        break
if not methods:
    errors.append("Choose at least one method.")
n_runs = len(plan_units(methods, seeds or [0], lambda m: {}, k_curve or [k_shot]))
runs_word = "run" if n_runs == 1 else "runs"
st.caption(
    f"{n_runs} {runs_word} on {len(split.test):,} test rows · templates: "
    + " | ".join(f"`{t}`" for t in prompts["templates"])
)
for message in errors:
    st.error(message)
chosen_options = {m: changed_options(REGISTRY[m].config_cls, state["options"].get(m, {})) for m in methods}
for message in eval_warnings(chosen_options, max_steps=max_steps):
    st.warning(plain(message), icon=":material/warning:")

data = state["data"]
fingerprint = request_fingerprint(
    data["digest"], prompts, methods, state["options"], seeds_text, max_steps, spec, {**settings, "tune": tune}
)
queued = state.get("launched", {}).get(fingerprint)
if queued and any(r["active"] for r in ws.runs(queued)):
    st.info(f"This exact comparison is already queued or running as **{queued}**; change a setting to launch another.")
else:
    queued = None

request = ComparisonRequest(
    data=data["bytes"],
    source_name=data["name"],
    text_col=data["text_col"],
    label_col=data["label_col"],
    text_b_col=data["text_b_col"],
    templates=prompts["templates"],
    verbalizer=prompts["verbalizer"],
    methods=chosen_options,
    seeds=seeds,
    backbone=spec,
    test_size=settings["test_size"],
    dev_size=settings["dev_size"],
    split_seed=settings["split_seed"],
    k_shot=k_shot,
    max_steps=max_steps,
    tune=tune,
    k_shots=k_curve,
)
if not errors:
    # every fine-tuning reference is estimated, chosen or not: the page says what each adds before it is chosen
    with_references = {m: changed_options(REGISTRY[m].config_cls, state["options"].get(m, {})) for m in references}
    try:  # remembered speed, else a probe of a backbone already loaded here (cached), else a size prior
        with st.spinner("Timing the backbone on this device (a second or two, once)…"):
            spec_now = prompt_spec(ds, prompts["templates"], prompts["verbalizer"])
            everything = ws.estimate(replace(request, methods={**with_references, **chosen_options}), split, spec_now)
    except (TemplateError, BackboneError, ValueError, KeyError) as err:
        st.caption(f"No time estimate: {plain(err)}")
    else:
        st.info(
            f"Expected time: {everything.only(methods).words(device)}. Runs start with what trains nothing (majority, "
            "manual templates), then the rest cheapest first (probe, learned methods), so the first answers come "
            "early; fine-tuning references last.",
            icon=":material/schedule:",
        )
        st.caption(f"What each method adds: {everything.only(methods).added_words()}.")
        if references:
            st.caption(reference_cost(everything, references, methods))

if st.button(f"Launch {n_runs} {runs_word}", type="primary", disabled=bool(errors) or bool(queued), key="launch"):
    try:
        group = ws.launch(request)
    except (DataError, TemplateError, BackboneError, ValueError) as err:
        st.error(f"Not launched: {plain(err)}")
    else:
        state["last_group"] = group
        state.setdefault("launched", {})[fingerprint] = group
        st.success(f"Queued {n_runs} {runs_word} as comparison **{group}**. They keep running if you close this tab.")
        link("runs", "Watch them on Runs")
save_draft()
