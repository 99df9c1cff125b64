"""The tables, previews and phrases the pages show, computed from summaries, datasets and tokenizers (pandas in,
out). No Streamlit here, so every view is unit-tested on plain inputs.

One module per page's concern: `comparison` (Compare's tables), `tuning` (what tuning on dev chose and tried),
`verdict` (the comparison in words, provisional while runs go), `finetuning` (prompts against fine-tuning), `runs`
(the Runs page's cards and chart), `eta` (time left), `prompts` (token previews, the quick zero-shot check),
`downloads` (Predict's files and zips), `formatting` (durations and sizes in words); `_shared` holds the private
helpers more than one of them needs. Every public name is re-exported here: `from core.app.views import x` and
`views.x` work whichever module owns `x`.
"""

from core.app.views.comparison import (
    MISSING,
    calibration_columns,
    chosen_variants,
    comparison_table,
    confusion_frame,
    disagreements,
    learning_curve_frames,
    repeated_rows,
    shown_cells,
    shown_reference,
    significance_table,
    soft_prompt_readings,
    spread_text,
    steps_text,
)
from core.app.views.downloads import (
    ZIP_ALL_MAX_BYTES,
    artifact_scores,
    path_bytes,
    zip_folder,
    zip_paths,
    zippable,
)
from core.app.views.eta import (
    OWN_RATE_AFTER,
    SPEED_FACTOR_RANGE,
    TAIL,
    queue_eta,
    run_remaining,
    speed_factor,
)
from core.app.views.finetuning import (
    cost_points,
    finetuning_phrase,
    finetuning_table,
    finetuning_verdict,
    percent_text,
    significance_words,
    times_text,
)
from core.app.views.formatting import (
    fmt_bytes,
    fmt_seconds,
)
from core.app.views.prompts import (
    QUICK_CHECK_ROWS,
    comparison_dev,
    label_word_tokens,
    quick_zero_shot,
    readable_tokens,
    slot_summary,
    token_preview,
)
from core.app.views.runs import (
    CURVE_POINTS,
    PHASE_UNITS,
    card_order,
    curve_frame,
    finished_text,
    phase_progress,
    stopped_text,
    trial_parts,
    tuning_stage,
    unit_key,
    wall_seconds,
)
from core.app.views.tuning import (
    settings_note,
    small_dev_warning,
    tuning_trials,
)
from core.app.views.verdict import (
    provisional_verdict,
    verdict,
)

__all__ = [
    "CURVE_POINTS",
    "MISSING",
    "OWN_RATE_AFTER",
    "PHASE_UNITS",
    "QUICK_CHECK_ROWS",
    "SPEED_FACTOR_RANGE",
    "TAIL",
    "ZIP_ALL_MAX_BYTES",
    "artifact_scores",
    "calibration_columns",
    "card_order",
    "chosen_variants",
    "comparison_dev",
    "comparison_table",
    "confusion_frame",
    "cost_points",
    "curve_frame",
    "disagreements",
    "finetuning_phrase",
    "finetuning_table",
    "finetuning_verdict",
    "finished_text",
    "fmt_bytes",
    "fmt_seconds",
    "label_word_tokens",
    "learning_curve_frames",
    "path_bytes",
    "percent_text",
    "phase_progress",
    "provisional_verdict",
    "queue_eta",
    "quick_zero_shot",
    "readable_tokens",
    "run_remaining",
    "settings_note",
    "repeated_rows",
    "shown_cells",
    "shown_reference",
    "significance_table",
    "significance_words",
    "slot_summary",
    "small_dev_warning",
    "soft_prompt_readings",
    "speed_factor",
    "spread_text",
    "steps_text",
    "stopped_text",
    "times_text",
    "token_preview",
    "trial_parts",
    "tuning_stage",
    "tuning_trials",
    "unit_key",
    "verdict",
    "wall_seconds",
    "zip_folder",
    "zip_paths",
    "zippable",
]
