"""Numbers read from the environment (`PTUNE_PREFIX_CACHE_MB`, `PTUNE_WORKER_IDLE_S`, ...), checked when read.

Why a helper: `float(os.environ[...])` at import turned a typo into a traceback before any code could say what was
wrong, or, for a value such as 0, into a setting that silently breaks the app. Each setting is read where it is
used, when it is used (never at import), and a bad one is a `SettingError`: one line naming the variable, what it
was set to and what it takes. The CLI and the worker print it and exit 2; the app shows it.
"""

from __future__ import annotations

import os


class SettingError(ValueError):
    """An environment variable set to something its setting cannot use; one line naming the variable and the fix."""


def env_float(name: str, default: float, *, above: float | None = None, at_least: float | None = None) -> float:
    """`$name` as a finite number (`default` when unset or blank), refused unless > `above` and >= `at_least`."""
    return _number(name, default, float, above=above, at_least=at_least)


def env_int(name: str, default: int, *, above: int | None = None, at_least: int | None = None) -> int:
    """`$name` as a whole number in ASCII digits (`default` when unset or blank), bounded as in `env_float`."""
    return _number(name, default, int, above=above, at_least=at_least)


def _number(name: str, default, kind: type, *, above, at_least):
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    value = _parse(raw, kind)
    if value is None or (above is not None and value <= above) or (at_least is not None and value < at_least):
        noun = "a whole number" if kind is int else "a number"
        bounds = [
            f"above {above:g}" if above is not None else "",
            f"at least {at_least:g}" if at_least is not None else "",
        ]
        wanted = " ".join([noun, *filter(None, bounds)])
        raise SettingError(
            f"{name}={raw[:40]!r} cannot be used: it takes {wanted} (default {default:g}); set it so, or unset it"
        )
    return value


def _parse(raw: str, kind: type) -> float | int | None:
    """The number `raw` spells in ASCII (int() and float() also read digits such as '²' or '٣', and 'nan'), else None."""
    if not raw.isascii():
        return None
    try:
        value = kind(raw)
    except ValueError:
        return None
    return value if kind is int or value - value == 0 else None  # nan and inf are not settings
