"""The napari reader: a result saved by the writer reopens as Labels with its settings."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_levelset.napari._reader import get_reader
from napari_levelset.napari._writer import META_KEY, write_labels_layer


def _saved(tmp_path):
    labels = np.zeros((12, 16), np.uint8)
    labels[2:6, 3:9] = 2
    settings = {"n_classes": 3, "lam": 0.05, "regions": "classes", "image": "cells"}
    meta = {
        "name": "cells level-set",
        "scale": (0.5, 0.25),
        "units": ("micrometer", "micrometer"),
        "metadata": {META_KEY: settings},
    }
    path = tmp_path / "cells.tif"
    write_labels_layer(str(path), labels, meta)
    return path, labels, settings


def test_a_saved_result_reads_as_labels_with_its_settings(tmp_path):
    path, labels, settings = _saved(tmp_path)
    reader = get_reader(str(path))
    assert reader is not None
    [(data, attrs, kind)] = reader(str(path))
    assert kind == "labels" and np.array_equal(np.asarray(data), labels)
    assert attrs["name"] == "cells level-set"
    assert attrs["metadata"][META_KEY] == settings
    assert np.allclose(attrs["scale"], (0.5, 0.25))
    assert attrs["units"][0] in ("micrometer", "µm")


def test_other_tiffs_fall_through(tmp_path):
    import tifffile

    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, np.zeros((8, 8), np.uint16))
    assert get_reader(str(plain)) is None
    other = tmp_path / "other.tif"
    tifffile.imwrite(other, np.zeros((8, 8), np.uint8))
    (tmp_path / "other.json").write_text(json.dumps({"something": 1}))  # not the writer's
    assert get_reader(str(other)) is None
    assert get_reader(str(tmp_path / "missing.tif")) is None
    assert get_reader([str(plain), str(other)]) is None


@pytest.mark.gui
def test_napari_opens_a_saved_result_as_labels(make_napari_viewer, tmp_path):
    """Through napari: the plugin's reader gives a Labels layer with the settings; napari's own reader
    still opens a plain TIFF as an image."""
    import tifffile
    from napari.layers import Image, Labels

    path, labels, settings = _saved(tmp_path)
    viewer = make_napari_viewer()
    [layer] = viewer.open(str(path), plugin="napari-levelset")
    assert isinstance(layer, Labels) and layer.metadata[META_KEY] == settings
    assert np.allclose(layer.scale, (0.5, 0.25)) and np.array_equal(np.asarray(layer.data), labels)
    plain = tmp_path / "plain.tif"
    tifffile.imwrite(plain, np.zeros((8, 8), np.uint16))
    [image] = viewer.open(str(plain))
    assert isinstance(image, Image)
