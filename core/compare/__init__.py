"""The comparison: every chosen method, every seed, scored on the same held-out test split.

One (method, seed) pair is a *unit* — what the job manager runs as one background run and the CLI runs in a loop.
`summarize` folds unit results into the `results.json` contract (mean ± std over seeds, significance against the
reference method's prompt on the same test rows).

One module per concern; everything is importable from here (`from core.compare import run_unit`):
- `plan`: the user's input checked (prompt spec, seeds, K values, method options) and the units planned;
- `unit`: one unit fitted (tuned on dev by `tuning`), calibrated on dev, scored on test, its prompt files saved;
- `summary`: the `results.json` contract, with the learning curve over several K;
- `versus`: the paired significance tests, and every prompt read against the best fine-tuning row.

May import: the foundations, `core.data`, `core.engine`, `core.methods`, `core.prompts`. Never a run or the app: a
unit knows nothing of who runs it (the CLI loop, torchrun, Ray or a worker process).
"""

from core.compare import tuning
from core.compare.plan import (
    DEFAULT_PAIR_TEMPLATES,
    DEFAULT_TEMPLATES,
    MAX_K_VALUES,
    MAX_SEED,
    MAX_SEEDS,
    assign,
    default_templates,
    eval_warnings,
    method_options,
    parse_k_shots,
    parse_seeds,
    plan_units,
    prompt_spec,
)
from core.compare.summary import learning_curve, summarize
from core.compare.unit import Unit, readable_prompt, run_unit, with_checkpoint_dir
from core.compare.versus import best_finetuning, paired_tests, versus_finetuning

__all__ = [
    "DEFAULT_PAIR_TEMPLATES",
    "DEFAULT_TEMPLATES",
    "MAX_K_VALUES",
    "MAX_SEED",
    "MAX_SEEDS",
    "Unit",
    "assign",
    "best_finetuning",
    "default_templates",
    "eval_warnings",
    "learning_curve",
    "method_options",
    "paired_tests",
    "parse_k_shots",
    "parse_seeds",
    "plan_units",
    "prompt_spec",
    "readable_prompt",
    "run_unit",
    "summarize",
    "tuning",
    "versus_finetuning",
    "with_checkpoint_dir",
]
