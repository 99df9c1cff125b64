"""Helpers for the config dataclasses every method and the training loop use.

Fixed choices are `str, Enum`s; a stored config (JSON) brings them back as plain strings, so each config's
`__post_init__` coerces them once with `choice`, which also names the allowed values when one is wrong.
"""

from __future__ import annotations

from enum import Enum


def choice(enum_cls: type[Enum], value, name: str):
    """Coerce a config value (an enum member or its plain string from stored JSON) or say what is allowed."""
    try:
        return enum_cls(value)
    except ValueError:
        allowed = ", ".join(repr(m.value) for m in enum_cls)
        raise ValueError(f"{name} must be one of {allowed}, not {value!r}") from None
