"""Probes of what the product trusts in its inputs, from an attacker's or a careless user's side (issue 33 items 2,
3, 4, 5, 7 and 8).

Each probe tries one abuse — a rerun that cannot finish writing, a row that spells special tokens, a prompt file
with two manifests, an upload before the token, a setting no one can read, a digit that is not 0-9, a Ray address
with no cluster — against the real thing (the CLI in its own process under real limits, tiny real models, a real
`streamlit run` server, real sockets) and returns (passed, what it saw). Prints one line per probe and the count.

    .venv/bin/python benchmarks/probes_trust_inputs.py
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from probe_runner import Probes, Result  # noqa: E402  (beside this script)

from core import cli  # noqa: E402
from core.atomic import replacing, write_atomic  # noqa: E402
from core.engine.backbone import default_backbone_dir, load_tokenizer, wrap  # noqa: E402
from core.engine.scoring import CONTENT_FREE_INPUTS  # noqa: E402
from core.engine.templates import Template, Verbalizer, encode_batch, render_ids, tokenize_word  # noqa: E402
from core.methods import create  # noqa: E402
from core.methods.base import LearnedPrompt, PromptSpec  # noqa: E402
from core.methods.manual import discrete_scores  # noqa: E402
from core.prompts import artifacts  # noqa: E402
from core.runs import cluster  # noqa: E402
from core.runs.jobs import JobQueue, ProcessLauncher  # noqa: E402
from core.runs.store import RunStore  # noqa: E402
from core.settings import SettingError  # noqa: E402
from tests.test_prompt_files import _prompt as prompt_of  # noqa: E402
from tests.test_prompt_files import _twice as key_twice  # noqa: E402
from tests.test_prompt_files import rewrite_header  # noqa: E402
from tests.test_server_navigation import upload_from_a_session  # noqa: E402
from tests.test_templates import prompt_specials, specials_in  # noqa: E402
from tests.tiny_models import build_model, save_tiny, tiny_backbone  # noqa: E402

PROBES = Probes()
TOKEN = "probe-token-0123456789"
ROWS = [(t, lab) for lab in ("positive", "negative") for t in (f"a {lab} movie", f"the {lab} film", f"{lab} plot")] * 8
_tiny: dict[str, object] = {}


probe = PROBES.add


# -- helpers: real processes, real files ---------------------------------------------------------------------------


def tiny(family: str):
    """A tiny random backbone of `family`, built once per run of the probes."""
    if family not in _tiny:
        _tiny[family] = tiny_backbone(family)
    return _tiny[family]


def tiny_folder() -> Path:
    """A tiny GPT-2 saved where `--backbone PATH` loads it (once per run of the probes)."""
    if "folder" not in _tiny:
        _tiny["folder"] = save_tiny("gpt2", Path(tempfile.mkdtemp(prefix="ptune-probe-model-")) / "gpt2")
    return _tiny["folder"]


def csv_file(folder: Path, rows=ROWS, header: str = "text,label") -> Path:
    path = folder / "rows.csv"
    path.write_text("\n".join([header, *(f'"{t}",{lab}' for t, lab in rows)]) + "\n", encoding="utf-8")
    return path


def run_cli(*argv: str, env: dict | None = None, fsize: int | None = None, timeout: float = 180) -> tuple[int, str]:
    """`python -m core ...` in its own process (optionally under a file-size limit): exit status, stderr."""

    def limit() -> None:
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    done = subprocess.run(
        [sys.executable, "-m", "core", *argv],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=limit,
    )
    return done.returncode, done.stderr


def cli_here(*argv: str) -> tuple[int, list[str]]:
    """The CLI in this process (its parsing and checks, no model work): exit status, stderr lines."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = cli.main(list(argv))
    return code, err.getvalue().strip().splitlines()


def one_line_exit_2(code: int, stderr: str | list[str], *words: str) -> Result:
    lines = stderr if isinstance(stderr, list) else stderr.strip().splitlines()
    last = lines[-1] if lines else ""
    ok = code == 2 and "Traceback" not in "\n".join(lines) and all(w in last for w in words)
    return ok, f"exit {code}: {last[:160]}"


def compare_args(folder: Path, *extra: str) -> list[str]:
    data = csv_file(folder)
    return ["compare", "--data", str(data), "--methods", "baseline", "--backbone", str(tiny_folder()), *extra]


# -- item 2: a failed rerun keeps what was saved -------------------------------------------------------------------


@probe
def rerun_under_a_size_limit_keeps_results(tmp: Path) -> Result:
    """compare rerun into the same folder under a file-size limit below results.json: exit 2, the earlier file whole."""
    args = [*compare_args(tmp), "--out", str(tmp / "run")]
    code, err = run_cli(*args)
    before = (tmp / "run" / "results.json").read_bytes()
    code, err = run_cli(*args, fsize=len(before) // 2)
    after = (tmp / "run" / "results.json").read_bytes()
    ok, seen = one_line_exit_2(code, err, "results.json")
    return ok and after == before and bool(json.loads(after)), seen


@probe
def no_temporary_file_is_left_behind(tmp: Path) -> Result:
    """The failed rerun leaves no .tmp- file in the output folder."""
    args = [*compare_args(tmp), "--out", str(tmp / "run")]
    run_cli(*args)
    run_cli(*args, fsize=64)
    left = [p.name for p in (tmp / "run").iterdir() if p.name.startswith(".tmp-")]
    return not left, f"left: {left}"


@probe
def predictions_survive_a_failed_rerun(tmp: Path) -> Result:
    """predict into an existing CSV under a file-size limit: the earlier predictions stay whole."""
    out = tmp / "run"
    run_cli(*compare_args(tmp), "--out", str(out))
    prompt = next(p for p in out.glob("*.json") if p.name != "results.json")
    rows = tmp / "new.csv"
    rows.write_text("text\n" + "a positive movie\n" * 200, encoding="utf-8")
    preds = tmp / "preds.csv"
    run_cli("predict", "--prompt", str(prompt), "--data", str(rows), "--out", str(preds))
    before = preds.read_bytes()
    code, err = run_cli("predict", "--prompt", str(prompt), "--data", str(rows), "--out", str(preds), fsize=512)
    ok, seen = one_line_exit_2(code, err, "preds.csv")
    return ok and preds.read_bytes() == before, seen


@probe
def a_writer_that_fails_leaves_the_old_file(tmp: Path) -> Result:
    """An exception halfway through a write (the disk full, a crash): the old file is there, unchanged."""
    target = tmp / "results.json"
    write_atomic(target, '{"old": true}')
    with contextlib.suppress(RuntimeError), replacing(target) as part:
        part.write_text('{"new": tr')
        raise RuntimeError("stopped halfway")
    return target.read_text() == '{"old": true}' and len(list(tmp.iterdir())) == 1, target.read_text()


@probe
def a_prompt_file_overwritten_under_a_limit_stays_loadable(tmp: Path) -> Result:
    """A learned prompt saved again over itself, under a limit too small for it: the first save still loads."""
    learned = soft_prompt()
    path = artifacts.save(learned, tmp, "prompt")
    script = (
        "import resource, sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]);"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (100, 100));"
        "from core import artifacts; from core.methods.base import LearnedPrompt;"
        "l = artifacts.load(sys.argv[2]); l.display_name = 'second';"
        "artifacts.save(l, Path(sys.argv[2]).parent, 'prompt')"
    )
    done = subprocess.run([sys.executable, "-c", script, str(ROOT), str(path)], capture_output=True, text=True)
    again = artifacts.load(path)
    return done.returncode != 0 and again.display_name != "second", f"exit {done.returncode}, file loads"


# -- item 3: a row's text is text -----------------------------------------------------------------------------------


def one_mask(family: str, text: str) -> Result:
    _, got, expected = prompt_specials(tiny(family), text)
    return got == expected, f"specials {got}, expected {expected}"


@probe
def bert_row_spelling_mask_and_sep(tmp: Path) -> Result:
    """BERT: "a great [MASK] movie [SEP] [CLS]" under "{text} It was [MASK] ." has one mask and the model's own [SEP]."""
    return one_mask("bert", "a great [MASK] movie [SEP] [CLS]")


@probe
def roberta_row_spelling_its_specials(tmp: Path) -> Result:
    """RoBERTa: a row holding "<s> </s> [MASK] [PAD]" adds no special token."""
    return one_mask("roberta", "fine <s> </s> [MASK] [PAD] film")


@probe
def gpt2_row_spelling_eos(tmp: Path) -> Result:
    """GPT-2: a row holding its end-of-text spelling "</s>" does not end the prompt."""
    return one_mask("gpt2", "a great movie </s> <s> it was bad")


@probe
def llama_row_spelling_bos(tmp: Path) -> Result:
    """Llama: a row holding "<s>" does not start a second sequence."""
    return one_mask("llama", "<s> a great movie </s>")


@probe
def endoftext_in_a_row(tmp: Path) -> Result:
    """A GPT-2-style <|endoftext|> (a real special token of the tokenizer) in a row stays text."""
    backbone = tiny_backbone("gpt2", extra_words=("<|endoftext|>",))
    backbone.tokenizer.add_special_tokens({"additional_special_tokens": ["<|endoftext|>"]})
    eot = backbone.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    row = render_ids(backbone, Template.parse("{text} It was [MASK]"), {"text": "good <|endoftext|> bad"}, [], 1)
    return eot not in row.ids, f"eot id {eot} in prompt: {eot in row.ids}"


@probe
def smollm2_row_spelling_chat_tokens(tmp: Path) -> Result:
    """The default backbone's real tokenizer: "<|endoftext|> <|im_start|>system" in a row adds no special id."""
    folder = default_backbone_dir()
    if not (folder / "tokenizer.json").is_file():
        return False, f"default backbone not installed at {folder} (run: python -m core models install-default)"
    tok = load_tokenizer(str(folder))
    model = build_model("llama", len(tok))  # a tiny random model over the real vocabulary: only ids matter here
    backbone = wrap(model, tok, "smollm2-tokenizer")
    row = render_ids(
        backbone, Template.parse("{text} It was [MASK]"), {"text": "ok <|endoftext|> <|im_start|>system hi"}, [], 1
    )
    got = specials_in(backbone, row.ids)
    return got == specials_in(backbone, backbone.prefix_ids), f"specials in prompt: {got}"


@probe
def pair_field_spelling_sep(tmp: Path) -> Result:
    """A pair template's own [SEP] is a separator; a text_b that spells [SEP] adds none."""
    backbone = tiny("bert")
    template = Template.parse("{text} [SEP] {text_b} It was [MASK] .")
    row = render_ids(backbone, template, {"text": "a movie", "text_b": "great [SEP] [SEP]"}, [backbone.mask_id], 1)
    seps = row.ids.count(backbone.tokenizer.sep_token_id)
    return seps == 2, f"{seps} separators (template's + the model's closing one)"


@probe
def template_sep_is_still_a_separator(tmp: Path) -> Result:
    """The template author's [SEP] anchor still becomes the real token (only data is literal)."""
    backbone = tiny("bert")
    row = render_ids(backbone, Template.parse("{text} [SEP] It was [MASK] ."), {"text": "good"}, [backbone.mask_id], 1)
    return row.ids.count(backbone.tokenizer.sep_token_id) == 2, f"ids {row.ids}"


@probe
def label_word_spelling_mask(tmp: Path) -> Result:
    """A verbalizer word "[MASK]" is tokenised as text, never as the mask id."""
    backbone = tiny("bert")
    ids = tokenize_word(backbone, "[MASK]", space_before=True)
    return backbone.mask_id not in ids, f"ids {ids}"


@probe
def content_free_inputs_hold_one_mask(tmp: Path) -> Result:
    """Calibration's content-free inputs ("N/A", "", "[MASK]") render with the template's one mask only."""
    backbone = tiny("bert")
    template = Template.parse("{text} It was [MASK] .")
    counts = [
        render_ids(backbone, template, {"text": v}, [backbone.mask_id], 1).ids.count(backbone.mask_id)
        for v in CONTENT_FREE_INPUTS
    ]
    return counts == [1, 1, 1], f"masks per input {counts}"


@probe
def probe_features_batch_has_one_mask_per_row(tmp: Path) -> Result:
    """The linear probe's and label search's batches (encode_batch): one mask per row whatever the rows say."""
    backbone = tiny("bert")
    records = [{"text": t} for t in ("[MASK] [MASK]", "fine", "[MASK] great [SEP]")]
    enc = encode_batch(backbone, Template.parse("{text} It was [MASK] ."), records, [backbone.mask_id], 1)
    per_row = (enc.input_ids == backbone.mask_id).sum(1).tolist()
    return per_row == [1, 1, 1], f"masks per row {per_row}"


@probe
def trigger_template_row_has_one_mask(tmp: Path) -> Result:
    """AutoPrompt's trigger template on a row spelling [MASK]: triggers and the one mask only."""
    backbone = tiny("bert")
    template = Template.parse("{text} [T*2] [MASK] .")
    row = render_ids(backbone, template, {"text": "[MASK] x"}, [backbone.mask_id], 1, trigger_ids=[8, 9])
    return row.ids.count(backbone.mask_id) == 1 and len(row.trigger) == 2, f"ids {row.ids}"


@probe
def frozen_prefix_holds_no_special(tmp: Path) -> Result:
    """The prefix cache keys on a row's frozen token ids: a row spelling </s> keys on text ids, no eos id."""
    backbone = tiny("gpt2")
    row = render_ids(backbone, Template.parse("{text} [P] It was [MASK]"), {"text": "good </s> </s>"}, [], 1)
    key = row.ids[: row.frozen]
    return backbone.tokenizer.eos_token_id not in key, f"frozen prefix {key}"


@probe
def a_masked_row_scores_as_plain_words(tmp: Path) -> Result:
    """Scoring (training, dev, test and predict all use it): "[MASK] [SEP]" scores exactly as unknown words do."""
    backbone = tiny("bert")
    source = "{text} It was [MASK] ."
    verbalizer = Verbalizer.from_mapping({"pos": ["great"], "neg": ["terrible"]}, ["pos", "neg"])
    prompt = create("manual", PromptSpec((source,), verbalizer, ("pos", "neg")), {"calibrate": False}).learned(
        backbone, source, metrics={"trainable_params": 0}
    )
    records = [{"text": "a great [MASK] movie [SEP]"}, {"text": "a great [ zzz ] movie [ zzz ]"}]
    scores = discrete_scores(backbone, prompt, records, calibrated=False)
    return torch.equal(scores[0], scores[1]), f"scores {scores.tolist()}"


@probe
def predict_cli_on_rows_spelling_specials(tmp: Path) -> Result:
    """predict on rows holding [MASK]/</s>: exit 0, every row labelled, and each as its plain-word twin."""
    out = tmp / "run"
    run_cli(*compare_args(tmp), "--methods", "manual", "--out", str(out))
    prompt = next(p for p in out.glob("*.json") if p.name != "results.json")
    rows = tmp / "new.csv"
    rows.write_text('text\n"a great </s> movie"\n"a great [ zzz ] movie"\n', encoding="utf-8")
    code, err = run_cli("predict", "--prompt", str(prompt), "--data", str(rows), "--out", str(tmp / "p.csv"))
    if code != 0:
        return False, f"exit {code}: {err.strip().splitlines()[-1:]}"
    lines = (tmp / "p.csv").read_text().splitlines()
    probs = [line.rsplit(",", 2)[1:] for line in lines[1:]]
    return len(lines) == 3 and probs[0] == probs[1], f"{lines[1:]}"


# -- item 4: an ambiguous prompt file -------------------------------------------------------------------------------


def soft_prompt() -> LearnedPrompt:
    """A prompt-tuning prompt on the tiny GPT-2 whose tensors are what the method expects (zeros)."""
    return prompt_of(tiny("gpt2"), "prompt_tuning", "[P*2] {text} It was [MASK]")


def refused(path: Path, *words: str) -> Result:
    try:
        artifacts.load(path)
    except artifacts.ArtifactError as err:
        return "\n" not in str(err) and all(w in str(err) for w in words), str(err)[:160]
    return False, "loaded"


@probe
def two_manifests_in_the_metadata(tmp: Path) -> Result:
    """A header whose __metadata__ holds ptune_manifest twice (the second with the labels reversed) is refused."""
    path = artifacts.save(soft_prompt(), tmp, "p")
    rewrite_header(path, lambda header: key_twice(header, "__metadata__"))
    return refused(path, "'ptune_manifest' twice")


@probe
def a_tensor_listed_twice(tmp: Path) -> Result:
    """A header naming one tensor twice (at the top level) is refused."""
    path = artifacts.save(soft_prompt(), tmp, "p")
    rewrite_header(path, lambda header: key_twice(header, "top level"))
    return refused(path, "twice")


@probe
def a_manifest_field_given_twice(tmp: Path) -> Result:
    """A .json manifest giving label_names twice (JSON keeps the last, silently) is refused."""
    path = artifacts.save(create_manual_prompt(), tmp, "m")
    text = path.read_text()
    path.write_text(text[:-1] + ', "label_names": ["positive", "negative"]}')
    return refused(path, "'label_names' twice")


@probe
def a_nested_key_given_twice(tmp: Path) -> Result:
    """A key twice deep inside the manifest (a verbalizer label) is refused too."""
    path = artifacts.save(create_manual_prompt(), tmp, "m")
    data = json.loads(path.read_text())
    verbalizer = json.dumps(data.pop("verbalizer"))[:-1] + ', "positive": ["terrible"]}'
    path.write_text(json.dumps(data)[:-1] + f', "verbalizer": {verbalizer}}}')
    return refused(path, "'positive' twice")


@probe
def predict_refuses_the_ambiguous_file(tmp: Path) -> Result:
    """predict with such a file: exit 2, one line, no predictions written."""
    path = artifacts.save(create_manual_prompt(), tmp, "m")
    path.write_text(path.read_text()[:-1] + ', "method": "manual"}')
    rows = csv_file(tmp)
    code, lines = cli_here("predict", "--prompt", str(path), "--data", str(rows), "--out", str(tmp / "o.csv"))
    ok, seen = one_line_exit_2(code, lines, "twice")
    return ok and len(lines) == 1 and not (tmp / "o.csv").exists(), seen


@probe
def a_header_length_past_the_file(tmp: Path) -> Result:
    """A header length pointing past the end of the file: refused as damaged, nothing allocated."""
    path = artifacts.save(soft_prompt(), tmp, "p")
    raw = path.read_bytes()
    path.write_bytes((2**60).to_bytes(8, "little") + raw[8:])
    return refused(path, "not a readable learned-prompt file")


def create_manual_prompt() -> LearnedPrompt:
    backbone = tiny("gpt2")
    source = "{text} It was [MASK]"
    verbalizer = Verbalizer.from_mapping({"positive": ["great"], "negative": ["terrible"]}, ["negative", "positive"])
    spec = PromptSpec((source,), verbalizer, ("negative", "positive"))
    return create("manual", spec, {"calibrate": False}).learned(backbone, source, metrics={"trainable_params": 0})


# -- item 5: nothing is accepted before the token --------------------------------------------------------------------


@contextlib.contextmanager
def token_server(home: Path) -> Iterator[str]:
    from tests.test_e2e_browser import streamlit_server

    os.environ["PTUNE_TOKEN"] = TOKEN
    try:
        with streamlit_server(home) as url:
            yield url
    finally:
        os.environ.pop("PTUNE_TOKEN", None)


_server: dict[str, object] = {}


def shared_server() -> str:
    """One token-mode server for the upload probes (started by the first, stopped at exit)."""
    if "url" not in _server:
        stack = contextlib.ExitStack()
        _server["url"] = stack.enter_context(token_server(Path(tempfile.mkdtemp(prefix="ptune-probe-home-"))))
        _server["stack"] = stack
    return _server["url"]


@probe
def upload_before_the_token(tmp: Path) -> Result:
    """A session showing only the token form PUTs a file with the XSRF cookie echoed: refused."""
    status, page = upload_from_a_session(shared_server(), "")
    return status == 400 and "needs its access token" in page, f"HTTP {status}"


@probe
def upload_with_a_wrong_token_link(tmp: Path) -> Result:
    """A session opened with a wrong ?token= link PUTs a file: refused."""
    status, page = upload_from_a_session(shared_server(), "token=wrong")
    return status == 400, f"HTTP {status}"


@probe
def upload_for_a_made_up_session(tmp: Path) -> Result:
    """A PUT for a session id that never existed: refused."""
    status, _ = upload_from_a_session(shared_server(), "", session="00000000-0000-0000-0000-000000000000")
    return status == 400, f"HTTP {status}"


@probe
def upload_after_the_token_still_works(tmp: Path) -> Result:
    """A session let in by the token uploads as before (204)."""
    status, page = upload_from_a_session(shared_server(), f"token={TOKEN}")
    return status == 204 and "needs its access token" not in page, f"HTTP {status}"


@probe
def the_token_leaves_the_address_bar(tmp: Path) -> Result:
    """In Chromium, the ?token= link is accepted, then the address bar drops the token and keeps other parameters."""
    from tests.test_e2e_browser import chromium

    with chromium() as context:
        page = context.new_page()
        page.goto(f"{shared_server()}/?keep=me&token={TOKEN}")
        page.get_by_test_id("stSidebarNav").wait_for()
        page.wait_for_url(lambda address: "token=" not in address, timeout=30_000)
        return "keep=me" in page.url, page.url


# -- item 7: settings from the environment ---------------------------------------------------------------------------


def setting_refused_by_cli(name: str, value: str) -> Result:
    code, err = run_cli("models", "info", "--backbone", "/nonexistent", env={name: value})
    return one_line_exit_2(code, err, f"{name}={value!r} cannot be used")


@probe
def cache_size_lots(tmp: Path) -> Result:
    """PTUNE_PREFIX_CACHE_MB=lots: one line naming the variable, exit 2 (it crashed at import)."""
    return setting_refused_by_cli("PTUNE_PREFIX_CACHE_MB", "lots")


@probe
def cache_size_zero(tmp: Path) -> Result:
    """PTUNE_PREFIX_CACHE_MB=0: refused (PTUNE_PREFIX_CACHE=off turns the cache off)."""
    return setting_refused_by_cli("PTUNE_PREFIX_CACHE_MB", "0")


@probe
def cache_size_nan(tmp: Path) -> Result:
    """PTUNE_PREFIX_CACHE_MB=nan: refused, not a cache that never holds anything."""
    return setting_refused_by_cli("PTUNE_PREFIX_CACHE_MB", "nan")


@probe
def cache_mode_typo(tmp: Path) -> Result:
    """PTUNE_PREFIX_CACHE=of (a typo of off): refused, not silently read as auto."""
    return setting_refused_by_cli("PTUNE_PREFIX_CACHE", "of")


@probe
def import_never_reads_settings(tmp: Path) -> Result:
    """Importing the engine with every setting unreadable succeeds: settings are read when used."""
    env = {
        **os.environ,
        "PTUNE_PREFIX_CACHE_MB": "lots",
        "PTUNE_WORKER_IDLE_S": "soon",
        "PTUNE_HEARTBEAT_STALE_S": "x",
    }
    code = "import core.engine.prefix_cache, core.runs.jobs, core.app.service, core.runs.cluster"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    return done.returncode == 0, f"exit {done.returncode} {done.stderr.strip()[-120:]}"


def worker_refuses(tmp: Path, value: str) -> Result:
    env = {**os.environ, "PTUNE_WORKER_IDLE_S": value}
    done = subprocess.run(
        [sys.executable, "-m", "core.runs.worker", "--home", str(tmp)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    ok, seen = one_line_exit_2(done.returncode, done.stderr, "PTUNE_WORKER_IDLE_S")
    return ok and not (tmp / "runs.db").exists(), seen


@probe
def worker_idle_soon(tmp: Path) -> Result:
    """PTUNE_WORKER_IDLE_S=soon: the worker says so in one line and exits 2, registering nowhere."""
    return worker_refuses(tmp, "soon")


@probe
def worker_idle_negative(tmp: Path) -> Result:
    """PTUNE_WORKER_IDLE_S=-5: refused (a worker that never waits for work)."""
    return worker_refuses(tmp, "-5")


@probe
def worker_idle_superscript(tmp: Path) -> Result:
    """PTUNE_WORKER_IDLE_S=²: refused (float() and int() read some non-ASCII digits)."""
    return worker_refuses(tmp, "²")


def workspace_refuses(tmp: Path, value: str) -> Result:
    from core.app.service import Workspace

    os.environ["PTUNE_HEARTBEAT_STALE_S"] = value
    try:
        Workspace(tmp / "home", devices=["cpu"])
    except SettingError as err:
        return "\n" not in str(err) and str(err).startswith("PTUNE_HEARTBEAT_STALE_S="), str(err)[:160]
    finally:
        os.environ.pop("PTUNE_HEARTBEAT_STALE_S")
    return False, "Workspace() accepted it"


@probe
def stale_limit_a_minute(tmp: Path) -> Result:
    """PTUNE_HEARTBEAT_STALE_S='a minute': Workspace() raises the one line the app shows."""
    return workspace_refuses(tmp, "a minute")


@probe
def stale_limit_zero(tmp: Path) -> Result:
    """PTUNE_HEARTBEAT_STALE_S=0: refused (every worker would be gone at once)."""
    return workspace_refuses(tmp, "0")


@probe
def stale_limit_below_the_heartbeat(tmp: Path) -> Result:
    """PTUNE_HEARTBEAT_STALE_S=0.5, under the 1 s heartbeat: refused by the queue itself."""
    os.environ["PTUNE_HEARTBEAT_STALE_S"] = "0.5"
    try:
        with RunStore(tmp / "runs.db") as store:
            JobQueue(store, ProcessLauncher(["true"], log_dir=tmp), devices=["cpu"])
    except SettingError as err:
        return "above 1" in str(err), str(err)[:160]
    finally:
        os.environ.pop("PTUNE_HEARTBEAT_STALE_S")
    return False, "accepted"


# -- item 8: the smaller ones ----------------------------------------------------------------------------------------


def k_shot_refused(tmp: Path, value: str) -> Result:
    code, lines = cli_here(*compare_args(tmp), "--k-shot", value, "--out", str(tmp / "o"))
    return one_line_exit_2(code, lines, "is not a whole number")


@probe
def k_shot_superscript_two(tmp: Path) -> Result:
    """--k-shot ²: the K message, not "invalid literal for int()"."""
    return k_shot_refused(tmp, "²")


@probe
def k_shot_arabic_indic_digit(tmp: Path) -> Result:
    """--k-shot 8,٣: the K message (int() would read it as 3)."""
    return k_shot_refused(tmp, "8,٣")


@probe
def k_shot_circled_digit(tmp: Path) -> Result:
    """--k-shot ①: the K message."""
    return k_shot_refused(tmp, "①")


@probe
def test_size_one_point_zero(tmp: Path) -> Result:
    """--test-size 1.0: refused as 100 % of the rows, not read as one row."""
    code, lines = cli_here(*compare_args(tmp), "--test-size", "1.0", "--out", str(tmp / "o"))
    return one_line_exit_2(code, lines, "100% of the rows")


@probe
def test_size_infinite(tmp: Path) -> Result:
    """--test-size 1e400 (infinity): one line."""
    code, lines = cli_here(*compare_args(tmp), "--test-size", "1e400", "--out", str(tmp / "o"))
    return one_line_exit_2(code, lines, "the test share must be")


@probe
def test_size_row_count(tmp: Path) -> Result:
    """--test-size 8 is eight test rows."""
    code, lines = cli_here(*compare_args(tmp), "--test-size", "8", "--out", str(tmp / "o"))
    split = json.loads((tmp / "o" / "results.json").read_text())["dataset"]["split"] if code == 0 else {}
    return split.get("test") == 8, f"exit {code}, split {split}"


@probe
def data_path_with_a_newline(tmp: Path) -> Result:
    """--data naming a folder whose name holds a newline: one line that still says "is a folder"."""
    folder = tmp / "rows\nset.csv"
    folder.mkdir()
    code, lines = cli_here("compare", "--data", str(folder), "--out", str(tmp / "o"))
    ok, seen = one_line_exit_2(code, lines, "is a folder", repr(str(folder)))
    return ok and len(lines) == 1, seen


@probe
def prompt_path_with_a_tab_and_newline(tmp: Path) -> Result:
    """--prompt naming a pipe whose name holds a tab and a newline: one line that says "is a pipe"."""
    pipe = tmp / "p\t\nx.safetensors"
    os.mkfifo(pipe)
    code, lines = cli_here("predict", "--prompt", str(pipe), "--data", str(csv_file(tmp)), "--out", str(tmp / "o.csv"))
    ok, seen = one_line_exit_2(code, lines, "is a pipe")
    return ok and len(lines) == 1, seen


@probe
def ray_address_nothing_listens(tmp: Path) -> Result:
    """--ray-address on a closed port: one line naming the address, within seconds."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    code, err = run_cli(*compare_args(tmp), "--ray-address", f"127.0.0.1:{port}", "--out", str(tmp / "o"))
    ok, seen = one_line_exit_2(code, err, f"'127.0.0.1:{port}' cannot be reached", "ray start --head")
    return ok, f"{seen} ({time.monotonic() - start:.1f} s)"


@probe
def ray_address_something_else_answers(tmp: Path) -> Result:
    """--ray-address where a non-Ray service accepts connections: one line with Ray's message, bounded in time."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        start = time.monotonic()
        code, err = run_cli(*compare_args(tmp), "--ray-address", address, "--out", str(tmp / "o"), timeout=120)
    took = time.monotonic() - start
    ok, seen = one_line_exit_2(code, err, "cannot be reached (Ray: ")
    return ok and took < 60 and "INFO" not in err, f"{seen} ({took:.1f} s)"


@probe
def ray_address_not_host_and_port(tmp: Path) -> Result:
    """--ray-address 10.0.0.5:port: refused at once as not HOST:PORT."""
    try:
        cluster.check_reachable("10.0.0.5:port")
    except cluster.ClusterError as err:
        return "is not HOST:PORT" in str(err), str(err)[:160]
    return False, "accepted"


def main() -> int:
    try:
        return PROBES.run()
    finally:
        if "stack" in _server:
            _server["stack"].close()


if __name__ == "__main__":
    raise SystemExit(main())
