"""`python -m core predict`: labels for a new CSV from a learned-prompt file, written as a CSV that is safe to open
in a spreadsheet.

Why its own module: one command, one concern; it shares only the output check and stderr lines (`core.cli.common`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from core.cli.common import say, writable_target
from core.data import read_table
from core.engine.backbone import load_backbone
from core.prompts import artifacts


def cmd_predict(args: argparse.Namespace) -> int:
    from core.prompts.export import write_safe_csv
    from core.prompts.predict import predict_frame

    out = writable_target(Path(args.out), folder=False)
    learned = artifacts.load(args.prompt)  # fully validated before anything it names is used
    df = read_table(args.data)
    spec = args.backbone or learned.backbone.get("spec") or "default"
    backbone = load_backbone(spec, trust_remote_code=args.trust_remote_code, progress=say)
    preds = predict_frame(backbone, learned, df, text_col=args.text_col, text_b_col=args.text_b_col)
    for warning in preds.attrs.get("warnings", ()):
        say(f"warning: {warning}")
    print(write_safe_csv(preds, out))
    return 0
