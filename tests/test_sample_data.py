"""The npe2 manifest and the bundled sample images."""

from __future__ import annotations

import shutil
import subprocess
import sys
from importlib.resources import as_file, files
from pathlib import Path

import numpy as np
import pytest

from napari_levelset.napari import _sample_data as S

EXPECTED = {  # key: (shape, rgb, dtype)
    "coins": ((303, 384), False, np.uint8),
    "coffee": ((213, 320, 3), True, np.uint8),
    "blobs3d": ((64, 64, 64), False, np.uint8),
    "nuclei": ((512, 512), False, np.uint16),
}


def test_sample_files_ship_inside_the_package():
    folder = files("napari_levelset") / "sample_data"
    total = 0
    for filename in [f for f, _name, _rgb in S.SAMPLES.values()] + list(S.TRUTH.values()):
        res = folder / filename
        assert res.is_file(), f"{filename} is not in napari_levelset/sample_data"
        with as_file(res) as path:
            size = Path(path).stat().st_size
        assert size < 1_000_000, f"{filename} is {size} bytes"
        total += size
    assert total < 2_000_000


@pytest.mark.parametrize("key", sorted(EXPECTED))
def test_sample_functions_return_layer_data(key):
    shape, rgb, dtype = EXPECTED[key]
    layers = getattr(S, key)()
    assert len(layers) == 1
    data, kwargs, kind = layers[0]
    assert kind == "image" and kwargs["name"] == key and kwargs["rgb"] is rgb
    assert data.shape == shape and data.dtype == dtype
    assert data.std() > 10  # not blank


def test_nuclei_sample_is_a_16_bit_fluorescence_image_with_its_instances():
    image = S.load_sample("nuclei")
    truth = S.load_truth("nuclei")
    assert truth.shape == image.shape and truth.dtype == np.uint16
    ids = np.unique(truth)
    assert ids[0] == 0 and len(ids) - 1 >= 50 and np.array_equal(ids, np.arange(len(ids)))  # 0, then 1..K
    # a camera's narrow 16-bit range (beyond 8 bits), nuclei brighter than the background
    assert image.min() >= 100 and 255 < image.max() < 4096
    assert np.median(image[truth > 0]) > 2 * np.median(image[truth == 0])
    # about 28 pixels across
    areas = np.bincount(truth.ravel())[1:]
    assert 20 < 2 * np.sqrt(np.median(areas) / np.pi) < 36


def test_manifest_contributions():
    from npe2 import PluginManifest

    mf = PluginManifest.from_distribution("napari-levelset")
    assert mf.name == "napari-levelset"
    widgets = {w.display_name: w.command for w in mf.contributions.widgets}
    assert "Level-set segmentation" in widgets
    commands = {c.id: c.python_name for c in mf.contributions.commands}
    assert commands[widgets["Level-set segmentation"]] == "napari_levelset.napari.widget:LevelSetWidget"
    samples = {s.key: s for s in mf.contributions.sample_data}
    assert set(samples) == set(EXPECTED)
    for key, sample in samples.items():
        assert commands[sample.command] == f"napari_levelset.napari._sample_data:{key}"


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
    for key, (shape, rgb, dtype) in EXPECTED.items():
        viewer.open_sample("napari-levelset", key)
        layer = viewer.layers[-1]
        assert layer.name == key and layer.rgb is rgb and layer.data.shape == shape and layer.data.dtype == dtype


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
        "image, truth = ms.make_nuclei()\n"
        f"assert np.array_equal(image, tifffile.imread({str(script.parent / 'nuclei.tif')!r}))\n"
        f"assert np.array_equal(truth, tifffile.imread({str(script.parent / 'nuclei_truth.tif')!r}))\n"
        "print('ok')\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "ok" in res.stdout, res.stdout + res.stderr
