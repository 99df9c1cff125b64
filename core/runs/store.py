"""The run store (`RunStore`) and the names its users import, re-exported from the modules that own them."""

from core.runs.store_runs import (
    _MIGRATIONS,
    ACTIVE_STATUSES,
    HOST,
    SCHEMA_VERSION,
    Claim,
    MetricRecord,
    RunStore,
    StoreDamaged,
    backup_path,
    ptune_home,
)

__all__ = [
    "_MIGRATIONS",
    "ACTIVE_STATUSES",
    "HOST",
    "SCHEMA_VERSION",
    "Claim",
    "MetricRecord",
    "RunStore",
    "StoreDamaged",
    "backup_path",
    "ptune_home",
]
