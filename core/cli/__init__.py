"""Headless command line (being split by concern; see compare_command.py)."""

from core.cli.compare_command import *  # noqa: F403
from core.cli.compare_command import _device_claim  # noqa: F401
