"""The layering rules.

- The algorithm never imports napari or Qt: every module outside ``napari_levelset.napari`` imports
  with napari and Qt blocked.
- ``napari_levelset.napari`` (what napari imports to build its menus) never imports torch when imported.
- No import cycles between the package's modules, imports inside functions included; the library never
  imports the command line (``napari_levelset.cli``); napari and Qt are named only in ``napari_levelset.napari``.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "napari_levelset"
NAPARI_GLUE = "napari"  # the one subpackage that may import napari and Qt
QT_NAMES = {"napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "superqt", "vispy", "magicgui"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
GLUE = sorted(m for m in MODULES if m.split(".")[1:2] == [NAPARI_GLUE])
CORE = sorted(m for m in MODULES if m not in GLUE and not m.endswith("__main__"))


def _imports(module: str) -> list[str]:
    """Every module ``module`` imports, at its head or inside a function (relative imports resolved)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            out.append(name)
            out += [f"{name}.{a.name}" for a in node.names if f"{name}.{a.name}" in MODULES]
    return out


def _internal_graph() -> dict[str, set[str]]:
    graph = {}
    for module in MODULES:
        targets = set()
        for name in _imports(module):
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name and name != module and name != "napari_levelset":
                targets.add(name)
        graph[module] = targets
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_the_layout_is_read():
    assert {"napari_levelset.method.segmenter", "napari_levelset.io", "napari_levelset.settings"} <= set(CORE)
    assert "napari_levelset.napari.widget" in GLUE


def test_no_import_cycles():
    assert _cycles(_internal_graph()) == []


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_library_never_imports_the_command_line():
    graph = _internal_graph()
    offenders = {
        m: sorted(t for t in targets if t.startswith("napari_levelset.cli"))
        for m, targets in graph.items()
        if not m.startswith("napari_levelset.cli")
    }
    assert {m: t for m, t in offenders.items() if t} == {}


def test_napari_and_qt_are_named_only_in_the_glue():
    named = {m: sorted({n.split(".")[0] for n in _imports(m)} & QT_NAMES) for m in CORE}
    assert {m: n for m, n in named.items() if n} == {}


BLOCK = """
import sys
class _Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked in this test")
        return None
sys.meta_path.insert(0, _Blocked())
"""

IMPORT_EACH = """
import importlib
failed = []
for name in MODULES:
    try:
        importlib.import_module(name)
    except ImportError as exc:
        failed.append(f"{name}: {exc}")
print("failed:", failed)
"""


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=180)


def test_core_modules_import_without_napari_or_qt():
    done = _run(f"BLOCKED = {sorted(QT_NAMES)!r}\nMODULES = {CORE!r}\n" + BLOCK + IMPORT_EACH)
    assert done.returncode == 0 and "failed: []" in done.stdout, done.stdout + done.stderr[-1500:]


def test_napari_glue_imports_without_torch():
    done = _run(f"BLOCKED = {{'torch'}}\nMODULES = {GLUE!r}\n" + BLOCK + IMPORT_EACH)
    assert done.returncode == 0 and "failed: []" in done.stdout, done.stdout + done.stderr[-1500:]
