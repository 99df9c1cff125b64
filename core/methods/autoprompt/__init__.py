"""AutoPrompt: gradient-guided search for trigger tokens (`trigger_search`) and, optionally, label words
(`label_search`), wrapped as a method (`method`). The search modules import only the engine; `method` adds what
every method shares (`core.methods.base`, the manual template it starts from)."""

from core.methods.autoprompt.method import (
    STATE_FILE,
    AutoPrompt,
    AutoPromptConfig,
    CandidateScoring,
    SearchCheckpoint,
    default_template,
    triggers_from,
)

__all__ = [
    "STATE_FILE",
    "AutoPrompt",
    "AutoPromptConfig",
    "CandidateScoring",
    "SearchCheckpoint",
    "default_template",
    "triggers_from",
]
