"""The layering DESIGN.md promises, checked on the source: no import cycles, the engine never imports the app
layer, low layers never import the job runner, and every engine module imports on its own."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "core"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def core_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(CORE.rglob("*.py"))}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """Every `core.*` module a file imports, at module level or inside functions (lazy imports count too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {n for n in names if n in known}
    return found


def import_graph() -> dict[str, set[str]]:
    modules = core_modules()
    known = set(modules)
    return {name: imports_of(path, known) - {name} for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_the_import_graph_has_no_cycles():
    graph = import_graph()
    assert {"core.app.service", "core.progress", "core.jobs"} <= set(graph)
    assert cycles(graph) == []


def test_cycle_finder_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_engine_never_imports_the_app_layer():
    graph = import_graph()
    offenders = sorted(
        m for m, deps in graph.items() if not m.startswith("core.app") and any(d.startswith("core.app") for d in deps)
    )
    assert offenders == []
    assert any(d.startswith("core.") and not d.startswith("core.app") for d in graph["core.app.service"])


def test_only_the_app_layer_imports_the_job_runner():
    """The engine below jobs.py never reaches up to it: the server (service), what a worker runs (runner), the
    worker process and the Ray actor that hosts one are the app's."""
    importers = sorted(m for m, deps in import_graph().items() if "core.jobs" in deps)
    assert importers == ["core.app.ray_launcher", "core.app.runner", "core.app.service", "core.app.worker"]


def test_every_engine_module_imports_on_its_own():
    """Each module imported first, in a fresh set of `core` modules: an import that only works after another
    module was loaded (a hidden cycle or a missing import) fails here."""
    names = sorted(n for n in core_modules() if n != "core.__main__")  # __main__ runs the CLI on import
    script = (
        "import importlib, sys\n"
        f"names = {names!r}\n"
        "failed = []\n"
        "for name in names:\n"
        "    for loaded in [m for m in sys.modules if m == 'core' or m.startswith('core.')]:\n"
        "        del sys.modules[loaded]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as err:\n"
        "        failed.append(f'{name}: {type(err).__name__}: {err}')\n"
        "print('\\n'.join(failed))\n"
        "sys.exit(1 if failed else 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_path_the_architecture_document_names_exists():
    """docs/ARCHITECTURE.md is the design of record: a path it names that no longer exists means it went stale."""
    import re

    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    tops = r"(core|ui|tests|benchmarks|docs|data|models_cache|\.ci)/[\w./-]*|app\.py|README\.md"
    named = {m.group(1) for m in re.finditer(rf"`({tops})`", text)}
    assert len(named) > 20  # the code map names its rooms
    assert [p for p in sorted(named) if not (ROOT / p.rstrip("/")).exists()] == []
