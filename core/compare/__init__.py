"""The comparison (being split by concern; see unit.py)."""

from core.compare.unit import *  # noqa: F403
