"""The project's habits: one version, a licence, a citation file, and code that ruff passes."""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
from pathlib import Path

import pytest

import napari_levelset

ROOT = Path(__file__).resolve().parents[1]


def test_one_version_everywhere():
    """The version is written once (``napari_levelset.__version__``); the package metadata and
    CITATION.cff say the same."""
    import yaml

    assert importlib.metadata.version("napari-levelset") == napari_levelset.__version__
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert str(citation["version"]) == napari_levelset.__version__
    assert "version =" not in (ROOT / "pyproject.toml").read_text().split("[project]")[1].split("[")[0]


def test_the_licence_is_the_one_the_metadata_names():
    meta = importlib.metadata.metadata("napari-levelset")
    assert "BSD-3-Clause" in (meta.get("License-Expression") or meta.get("License") or "")
    assert "BSD 3-Clause License" in (ROOT / "LICENSE").read_text()


def test_ruff_passes():
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -e '.[testing]' brings it)")
    done = subprocess.run([ruff, "check", "--no-cache", str(ROOT)], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-1000:]


def test_ruff_format_is_applied():
    ruff = shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -e '.[testing]' brings it)")
    done = subprocess.run(
        [ruff, "format", "--check", "--no-cache", str(ROOT)], capture_output=True, text=True, cwd=ROOT
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-1000:]


def test_no_module_is_over_800_lines():
    sizes = {
        str(p.relative_to(ROOT)): len(p.read_text(encoding="utf-8").splitlines())
        for p in (ROOT / "napari_levelset").rglob("*.py")
    }
    assert {name: n for name, n in sizes.items() if n > 800} == {}
