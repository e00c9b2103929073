"""napari's File > Save for a result layer: napari-levelset's writer contribution."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("napari")


@pytest.fixture(scope="module")
def viewer_model():
    from napari.components import ViewerModel
    from napari.plugins import _initialize_plugins

    _initialize_plugins()  # what napari does at start: the installed plugins' manifests
    return ViewerModel()


def test_a_result_layer_saves_with_its_voxel_size_and_settings(viewer_model, tmp_path):
    from napari_levelset.io.read import read_image_file

    labels = np.ones((4, 32, 32), np.uint16)
    labels[:, 8:20, 8:20] = 2
    settings = dict(n_classes=2, lam=0.05, model="cnn", iterations=np.int64(100))
    layer = viewer_model.add_labels(
        labels,
        scale=(2.0, 0.5, 0.5),
        units=("micrometer",) * 3,
        name="cells level-set",
        metadata={"napari_levelset": settings},
    )
    written = layer.save(str(tmp_path / "cells.tif"), plugin="napari-levelset")
    assert written == [str(tmp_path / "cells.tif"), str(tmp_path / "cells.json")]
    back = read_image_file(tmp_path / "cells.tif")
    assert np.array_equal(back.data, labels) and back.axes == "ZYX"
    assert back.spacing == (2.0, 0.5, 0.5) and back.unit == "µm"
    saved = json.loads((tmp_path / "cells.json").read_text())
    assert saved["settings"] == dict(n_classes=2, lam=0.05, model="cnn", iterations=100)
    assert saved["labels"] == "cells.tif" and saved["name"] == "cells level-set"


def test_a_plain_labels_layer_saves_without_a_settings_file(viewer_model, tmp_path):
    from napari_levelset.io.read import read_image_file

    labels = np.arange(64, dtype=np.uint8).reshape(8, 8)
    layer = viewer_model.add_labels(labels)
    assert layer.save(str(tmp_path / "plain.tiff"), plugin="napari-levelset") == [str(tmp_path / "plain.tiff")]
    assert np.array_equal(read_image_file(tmp_path / "plain.tiff").data, labels)
    assert not (tmp_path / "plain.json").exists()


def test_the_writer_refuses_other_formats_and_a_scale_that_is_no_number(tmp_path):
    from napari_levelset.errors import InputError
    from napari_levelset.napari._writer import write_labels_layer

    labels = np.ones((8, 8), np.uint8)
    with pytest.raises(InputError, match="TIFF"):
        write_labels_layer(str(tmp_path / "out.png"), labels, {"name": "out"})
    assert not (tmp_path / "out.png").exists()
    with pytest.raises(InputError, match="scale"):
        write_labels_layer(str(tmp_path / "out.tif"), labels, {"name": "out", "scale": ("a", "b")})
