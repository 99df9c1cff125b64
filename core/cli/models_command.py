"""`python -m core models install-default | info`: install the embedded default backbone, or load one and describe
it (with its load time) as JSON.

Why its own module: one command, one concern; it shares only the stderr lines (`core.cli.common`).
"""

from __future__ import annotations

import argparse
import json
import time

from core.cli.common import say
from core.engine.backbone import install_default, load_backbone


def cmd_models(args: argparse.Namespace) -> int:
    if args.action == "install-default":
        start = time.perf_counter()
        path = install_default(progress=say)
        say(f"installed in {time.perf_counter() - start:.1f} s")
        print(path)
        return 0
    start = time.perf_counter()
    backbone = load_backbone(args.backbone, trust_remote_code=args.trust_remote_code)
    info = {**backbone.describe(), "load_seconds": round(time.perf_counter() - start, 2)}
    print(json.dumps(info, indent=2))
    return 0
