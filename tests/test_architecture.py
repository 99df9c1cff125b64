"""The layering docs/ARCHITECTURE.md promises, checked on the source: packages in layers that only import
downwards, no import cycles, no Streamlit in the engine, `ray` only where an address is given, at most a dozen
modules at `core/`'s top, no module over 500 lines without its reason, and every engine module imports on its own."""

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


def type_checking_nodes(tree: ast.AST) -> set[int]:
    """Nodes inside `if TYPE_CHECKING:` blocks: annotations only, never run, so they are no dependency."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            inside |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return inside


def imports_of(path: Path, known: set[str], *, runtime_only: bool = False) -> set[str]:
    """Every `core.*` module a file imports, at module level or inside functions (lazy imports count too);
    `runtime_only` leaves out the `if TYPE_CHECKING:` ones."""
    found: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skipped = type_checking_nodes(tree) if runtime_only else set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {n for n in names if n in known}
    return found


def import_graph(*, runtime_only: bool = False) -> dict[str, set[str]]:
    modules = core_modules()
    known = set(modules)
    return {name: imports_of(path, known, runtime_only=runtime_only) - {name} for name, path in modules.items()}


# Lowest first: a module imports its own layer and those below it, never one above (docs/ARCHITECTURE.md).
LAYERS = (
    "core",
    "core.data",
    "core.engine",
    "core.methods",
    "core.prompts",
    "core.compare",
    "core.runs",
    "core.app",
    "core.cli",
)


def layer_of(module: str) -> int:
    if module == "core.__main__":
        return LAYERS.index("core.cli")
    return max(i for i, pkg in enumerate(LAYERS) if module == pkg or module.startswith(pkg + ".") or i == 0)


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
    assert {"core.app.service", "core.progress", "core.runs.jobs"} <= set(graph)
    assert cycles(graph) == []


def test_cycle_finder_finds_a_planted_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_packages_only_import_downwards():
    graph = import_graph(runtime_only=True)
    upward = sorted(f"{m} -> {d}" for m, deps in graph.items() for d in deps if layer_of(d) > layer_of(m))
    assert upward == []
    assert {layer_of(m) for m in graph} == set(range(len(LAYERS)))  # every layer has modules: none is misspelt


def test_the_layer_check_places_modules_in_their_packages():
    assert layer_of("core.engine.scoring") < layer_of("core.methods.manual") < layer_of("core.runs.store")
    assert layer_of("core.errors") == 0 and layer_of("core.__main__") == layer_of("core.cli")
    assert layer_of("core.compare.tuning") == layer_of("core.compare")


def test_only_the_run_machinery_and_above_import_the_job_queue():
    importers = {m for m, deps in import_graph().items() if "core.runs.jobs" in deps}
    assert "core.runs.worker" in importers
    assert all(layer_of(m) >= layer_of("core.runs") for m in importers)


def module_imports(path: Path) -> list[tuple[str, bool]]:
    """(top-level package, imported at module level?) for every import statement of a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = {id(n) for n in tree.body}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name.split(".")[0], id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module.split(".")[0], id(node) in top))
    return out


def test_the_engine_never_imports_streamlit():
    """Streamlit lives in app.py and ui/: everything under core/ runs headless (CLI, worker, Ray, tests)."""
    assert [m for m, p in core_modules().items() if any(pkg == "streamlit" for pkg, _ in module_imports(p))] == []


def test_ray_is_imported_only_where_an_address_is_given():
    """`ray` is optional: imported inside the functions that take an address, in the run machinery only."""
    users = {m: [top for pkg, top in module_imports(p) if pkg == "ray"] for m, p in core_modules().items()}
    users = {m: tops for m, tops in users.items() if tops}
    assert set(users) == {"core.runs.cluster", "core.runs.ray_launcher"}
    assert not any(any(tops) for tops in users.values())  # never at module level


def test_at_most_a_dozen_modules_at_the_top_of_core():
    assert 0 < len(list(CORE.glob("*.py"))) <= 12


LONG_REASON = "Longer than 500 lines because"


def test_no_module_over_500_lines_without_its_reason():
    """A long module says at its top why it stays whole: its docstring has "Longer than 500 lines because ..."."""
    files = [*CORE.rglob("*.py"), *(ROOT / "ui").rglob("*.py"), ROOT / "app.py"]
    texts = {p: p.read_text(encoding="utf-8") for p in files}
    long = [p for p, text in texts.items() if len(text.splitlines()) > 500]
    unexplained = [p for p in long if LONG_REASON not in (ast.get_docstring(ast.parse(texts[p])) or "")]
    assert [str(p.relative_to(ROOT)) for p in unexplained] == []


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
