"""The layering rule: the algorithm never imports napari or Qt, and napari-facing modules never import torch
when they are imported (napari imports them to build its menus)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "napari_levelset"
#: modules napari imports: they may use napari and Qt, but must not import torch at import time
NAPARI_FACING = {"_sample_data", "_writer", "_layers"}
CORE = sorted(p.stem for p in PACKAGE.glob("*.py")
              if p.stem not in NAPARI_FACING | {"__init__", "__main__"})

BLOCK = """
import sys
class _Blocked:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked in this test")
        return None
sys.meta_path.insert(0, _Blocked())
"""


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)


def test_there_are_core_modules():
    assert {"engine", "loss", "io", "validate", "instances", "resources"} <= set(CORE)


IMPORT_EACH = """
import importlib
failed = []
for name in MODULES:
    try:
        importlib.import_module("napari_levelset." + name)
    except ImportError as exc:
        failed.append(f"{name}: {exc}")
print("failed:", failed)
"""


def test_core_modules_import_without_napari_or_qt():
    done = _run(f"BLOCKED = {{'napari', 'qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'superqt', 'vispy'}}\n"
                f"MODULES = {CORE!r}\n" + BLOCK + IMPORT_EACH)
    assert done.returncode == 0 and "failed: []" in done.stdout, done.stdout + done.stderr[-1500:]


def test_napari_facing_modules_import_without_torch():
    modules = (sorted(NAPARI_FACING & {p.stem for p in PACKAGE.glob("*.py")})
               + sorted(f"_qt.{p.stem}" for p in (PACKAGE / "_qt").glob("*.py")))
    assert "_qt.widget" in modules
    done = _run(f"BLOCKED = {{'torch'}}\nMODULES = {modules!r}\n" + BLOCK + IMPORT_EACH)
    assert done.returncode == 0 and "failed: []" in done.stdout, done.stdout + done.stderr[-1500:]
