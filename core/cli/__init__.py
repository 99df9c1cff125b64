"""Headless command line: `python -m core compare | predict | models`.

Runs the same engine as the app. Bad input exits with status 2 and one line on stderr (no traceback); it also runs
unchanged under `torchrun` / `accelerate launch` (each process loads the backbone on its own device and runs its
share of the units; process 0 gathers the results and writes results.json; see core/distributed.py).

One module per concern; `from core.cli import main` (and the names below) keep working:
- `entry`: the parser and its flags, and the exit codes with their one line;
- `compare_command`, `predict_command`, `models_command`: each command's work;
- `run_units`: where a comparison's units run (this process's share under a launcher, the GPU claim, or Ray);
- `common`: the stderr line and the output check every command shares.

May import: everything in `core` but the app.
"""

from core.cli.compare_command import cmd_compare
from core.cli.entry import EXIT_BAD_INPUT, EXIT_FAILED, UsageError, build_parser, main
from core.cli.models_command import cmd_models
from core.cli.predict_command import cmd_predict
from core.cli.run_units import BAD_INPUT, UnitFailed, gpu_name
from core.cli.run_units import _device_claim as _device_claim  # tests and probes hold the GPU claim directly

__all__ = [
    "BAD_INPUT",
    "EXIT_BAD_INPUT",
    "EXIT_FAILED",
    "UnitFailed",
    "UsageError",
    "build_parser",
    "cmd_compare",
    "cmd_models",
    "cmd_predict",
    "gpu_name",
    "main",
]
