"""The command line's entry: the parser of every command and its flags, and `main`, which runs one and turns what
went wrong into an exit status and one line on stderr (bad input exits 2, a failure 1, never a traceback).

Why its own module: the flags and the exit codes are the CLI's contract in one place; each command's work lives in
its own module (`compare_command`, `predict_command`, `models_command`).
"""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import NoReturn

from core import distributed
from core.cli.common import say
from core.cli.compare_command import cmd_compare
from core.cli.models_command import cmd_models
from core.cli.predict_command import cmd_predict
from core.cli.run_units import UnitFailed
from core.data import DataError
from core.engine import prefix_cache
from core.engine.backbone import BackboneError
from core.errors import one_line
from core.methods import method_names
from core.progress import ClaimLost
from core.runs import cluster
from core.runs.device_claim import DeviceBusy
from core.runs.store import StoreDamaged

EXIT_BAD_INPUT = 2


EXIT_FAILED = 1


class UsageError(ValueError):
    """A command line argparse cannot read; said in one line with `--help` named, not argparse's usage block."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message}; see {self.prog} --help")


def _part_size(text: str) -> float | int:
    """--test-size / --dev-size: digits alone are a row count (200), anything else a fraction (0.5); a fraction of
    1 or more, such as 1.0, is refused by the split with what to give instead."""
    if re.fullmatch(r"\s*[0-9]+\s*", text):
        return int(text)
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text[:20]!r} is neither a fraction such as 0.5 nor a row count") from None


def _launched_rank() -> int:
    """This process's rank as the launcher set it (0 without one): input errors are the same on every process."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m core", description="PTune Studio: compare ways of prompting a language model on a labeled CSV."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{compare,predict,models}")
    cmp_ = sub.add_parser("compare", help="run methods side by side on one held-out split; writes results.json")
    cmp_.add_argument("--data", required=True, help="labeled CSV")
    cmp_.add_argument("--text-col", help="text column (auto-detected)")
    cmp_.add_argument("--text-b-col", help="second text column for pair tasks")
    cmp_.add_argument("--label-col", help="label column (auto-detected)")
    cmp_.add_argument("--methods", default="manual,baseline", help=f"comma-separated: {', '.join(method_names())}")
    cmp_.add_argument("--backbone", default="default", help="'default' (SmolLM2-135M), a Hugging Face ID or a path")
    cmp_.add_argument("--template", action="append", help="template (repeat for several), e.g. '{text} It was [MASK]'")
    cmp_.add_argument("--verbalizer", help='JSON, e.g. \'{"positive": ["great"], "negative": ["terrible"]}\'')
    cmp_.add_argument(
        "--k-shot",
        default=None,
        help="examples per class for training and dev (default: all); several, e.g. 8,16,32,64, draw a learning "
        "curve (every method and seed at each K, the same test rows)",
    )
    cmp_.add_argument("--seeds", default="0", help="comma-separated seeds, e.g. 0,1,2")
    cmp_.add_argument(
        "--test-size",
        type=_part_size,
        default=0.5,
        help="test share: a fraction such as 0.5, or a row count such as 200",
    )
    cmp_.add_argument(
        "--dev-size", type=_part_size, default=0.1, help="dev share: a fraction of all rows, or a row count"
    )
    cmp_.add_argument("--split-seed", type=int, default=0, help="seed of the train/dev/test split (shared by all)")
    cmp_.add_argument("--max-steps", type=int, default=None, help="training steps for trained methods")
    cmp_.add_argument("--option", action="append", help="method option METHOD.NAME=VALUE (repeatable)")
    cmp_.add_argument(
        "--no-tune",
        action="store_true",
        help="skip the automatic per-method tuning on dev (learning rate, encoder, AutoPrompt's candidates; "
        "options you set with --option are never tuned)",
    )
    cmp_.add_argument("--out", default="runs/latest", help="output folder")
    cmp_.add_argument("--trust-remote-code", action="store_true", help="allow a backbone's own code to run")
    cmp_.add_argument("--device-map", choices=["auto"], help="shard a backbone larger than one GPU across GPUs")
    cmp_.add_argument(
        "--data-parallel",
        action="store_true",
        help="under torchrun/accelerate launch: train each continuous-prompt unit on all processes together "
        "(batches split, gradients averaged) instead of one unit per process",
    )
    cmp_.add_argument(
        "--dist-timeout",
        type=float,
        default=distributed.DEFAULT_TIMEOUT_S,
        help="under a launcher: seconds a process waits for the others at a collective call (the end-of-run "
        "exchange waits for the slowest process)",
    )
    cmp_.add_argument(
        "--ray-address",
        default=os.environ.get(cluster.RAY_ADDRESS_ENV) or None,
        help="send the units to this Ray cluster (auto, HOST:6379, ray://HOST:10001; 'local' starts one here); "
        "default: $PTUNE_RAY_ADDRESS, else run here",
    )
    cmp_.set_defaults(func=cmd_compare)
    pred = sub.add_parser("predict", help="predict labels for a new CSV with a learned-prompt file")
    pred.add_argument("--prompt", required=True, help="learned-prompt file (.safetensors or .json)")
    pred.add_argument("--data", required=True, help="CSV with a text column")
    pred.add_argument("--out", required=True, help="output CSV")
    pred.add_argument("--text-col", help="text column (default: 'text' or the longest)")
    pred.add_argument("--text-b-col", help="second text column for pair tasks")
    pred.add_argument("--backbone", help="override the backbone recorded in the prompt file")
    pred.add_argument("--trust-remote-code", action="store_true")
    pred.set_defaults(func=cmd_predict)
    models = sub.add_parser("models", help="install the embedded default backbone, or describe one")
    models.add_argument("action", choices=["install-default", "info"])
    models.add_argument("--backbone", default="default")
    models.add_argument("--trust-remote-code", action="store_true")
    models.set_defaults(func=cmd_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except UsageError as err:
        if _launched_rank() == 0:
            say(f"error: {err}")
        return EXIT_BAD_INPUT
    try:
        prefix_cache.check_settings()  # a bad PTUNE_* setting: one line before any work
        return args.func(args)
    except UnitFailed as err:
        say(f"error: {err}")
        return EXIT_BAD_INPUT if err.bad_input else EXIT_FAILED
    except DeviceBusy as err:
        say(f"error: {err}")
        return EXIT_BAD_INPUT
    except (ClaimLost, StoreDamaged) as err:
        say(f"error: {one_line(err)}")
        return EXIT_FAILED
    except (ValueError, DataError, BackboneError) as err:
        if _launched_rank() == 0:  # the same on every process of a group: said once
            say(f"error: {one_line(err)}")
        return EXIT_BAD_INPUT
    except OSError as err:  # a file that vanished or cannot be written while we ran
        where = f" ({Path(err.filename).name})" if err.filename else ""
        if _launched_rank() == 0:
            say(f"error: {err.strerror or type(err).__name__}{where}; check the paths and permissions")
        return EXIT_BAD_INPUT
    except distributed.DistributedError as err:
        say(f"error: {err}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        say("interrupted")
        return 130
