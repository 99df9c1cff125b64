"""What every probe script shares: a registry of probes and the loop that runs each in a fresh folder.

A probe is `fn(tmp: Path) -> (passed, what was seen)`, its docstring the claim it checks; one that raises fails
with what it raised. `run` prints a line per probe and the pass count, and returns the exit status.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

Result = tuple[bool, str]
Probe = Callable[[Path], Result]


class Probes(list):
    """The probes of one script, in the order they are declared (`@probes.add`)."""

    def add(self, fn: Probe) -> Probe:
        self.append(fn)
        return fn

    def run(self) -> int:
        passed = 0
        for fn in self:
            with tempfile.TemporaryDirectory(prefix="ptune-probe-") as tmp:
                try:
                    ok, seen = fn(Path(tmp))
                except Exception as err:  # a probe that crashes fails, with what it raised
                    ok, seen = False, f"{type(err).__name__}: {err}"
            passed += ok
            doc = " ".join((fn.__doc__ or "").split())
            print(f"{'PASS' if ok else 'FAIL'} {fn.__name__}: {doc} [{' '.join(str(seen).split())}]", flush=True)
        print(f"{passed}/{len(self)} probes pass")
        return 0 if passed == len(self) else 1
