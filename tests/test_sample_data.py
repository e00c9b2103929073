"""The npe2 manifest and the bundled sample images."""

from __future__ import annotations

import shutil
import subprocess
import sys
from importlib.resources import as_file, files
from pathlib import Path

import numpy as np
import pytest

from napari_levelset import _sample_data as S

EXPECTED = {
    "coins": ((303, 384), False),
    "coffee": ((213, 320, 3), True),
    "blobs3d": ((64, 64, 64), False),
}


def test_sample_files_ship_inside_the_package():
    folder = files("napari_levelset") / "sample_data"
    total = 0
    for key, (filename, _name, _rgb) in S.SAMPLES.items():
        res = folder / filename
        assert res.is_file(), f"{filename} is not in napari_levelset/sample_data"
        with as_file(res) as path:
            size = Path(path).stat().st_size
        assert size < 1_000_000, f"{filename} is {size} bytes"
        total += size
    assert total < 2_000_000


@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_sample_functions_return_layer_data(key):
    shape, rgb = EXPECTED[key]
    layers = getattr(S, key)()
    assert len(layers) == 1
    data, kwargs, kind = layers[0]
    assert kind == "image" and kwargs["name"] == key and kwargs["rgb"] is rgb
    assert data.shape == shape and data.dtype == np.uint8
    assert data.std() > 10  # not blank


def test_manifest_contributions():
    from npe2 import PluginManifest

    mf = PluginManifest.from_distribution("napari-levelset")
    assert mf.name == "napari-levelset"
    widgets = {w.display_name: w.command for w in mf.contributions.widgets}
    assert "Level-set segmentation" in widgets
    commands = {c.id: c.python_name for c in mf.contributions.commands}
    assert commands[widgets["Level-set segmentation"]] == "napari_levelset._qt.widget:LevelSetWidget"
    samples = {s.key: s for s in mf.contributions.sample_data}
    assert set(samples) == set(EXPECTED)
    for key, sample in samples.items():
        assert commands[sample.command] == f"napari_levelset._sample_data:{key}"


@pytest.mark.skipif(shutil.which("npe2") is None, reason="the npe2 command is not installed")
def test_npe2_validate():
    res = subprocess.run(
        [shutil.which("npe2"), "validate", "napari-levelset", "--imports"], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "valid" in res.stdout


@pytest.mark.gui
def test_open_samples_in_napari(make_napari_viewer):
    viewer = make_napari_viewer()
    for key, (shape, rgb) in EXPECTED.items():
        viewer.open_sample("napari-levelset", key)
        layer = viewer.layers[-1]
        assert layer.name == key and layer.rgb is rgb and layer.data.shape == shape


def test_regenerating_the_samples_matches_the_shipped_files(tmp_path):
    """``make_samples.py`` is deterministic: what it makes is what ships."""
    script = Path(__file__).resolve().parents[1] / "sample_data" / "make_samples.py"
    if not script.exists():
        pytest.skip("not running from a source checkout")
    code = (
        "import importlib.util, sys, numpy as np, tifffile\n"
        f"spec = importlib.util.spec_from_file_location('ms', {str(script)!r})\n"
        "ms = importlib.util.module_from_spec(spec); spec.loader.exec_module(ms)\n"
        "vol, truth = ms.make_blobs3d()\n"
        f"shipped = tifffile.imread({str(script.parent / 'blobs3d.tif')!r})\n"
        "assert np.array_equal(vol, shipped)\n"
        f"assert np.array_equal(ms.make_coins(), tifffile.imread({str(script.parent / 'coins.tif')!r}))\n"
        "print('ok')\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "ok" in res.stdout, res.stdout + res.stderr
