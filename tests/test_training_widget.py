"""The "Train a U-Net" dock widget (napari_levelset.napari._training), with a real viewer (run under xvfb)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tifffile

from napari_levelset.napari._training import TrainingRun, parse_heads

gui = pytest.mark.gui


def nuclei(n=10, size=64, seed=0):
    """A grey image of ``n`` bright discs and its instance mask."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    img = rng.normal(0.1, 0.02, (size, size))
    mask = np.zeros((size, size), np.int32)
    for k in range(1, n + 1):
        cy, cx = rng.integers(5, size - 5, 2)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= 16
        img[disc] = 0.8
        mask[disc] = k
    return img.astype(np.float32), mask


def test_training_run_stops_at_the_next_step():
    run = TrainingRun(steps=10)
    assert run.callback(1, 10, 0.5) is True
    run.stop()
    assert run.callback(2, 10, 0.4) is False
    assert run.take() == [(1, 0.5), (2, 0.4)] and run.take() == []
    assert parse_heads("2") == [2] and parse_heads("2-3,5") == [2, 3, 5]


@pytest.fixture
def panel(make_napari_viewer, qtbot):
    made = []

    def factory():
        viewer = make_napari_viewer()
        _dock, widget = viewer.window.add_plugin_dock_widget("napari-levelset", "Train a U-Net")
        made.append(widget)
        return viewer, widget

    yield factory
    for widget in made:
        if widget.run is not None:
            widget.run.stop()
        if widget.worker is not None:
            qtbot.waitUntil(lambda w=widget: w.worker is None, timeout=60_000)


def tiny(widget, steps):
    widget.init.value = "new"
    widget.classes.value = "2"
    widget.steps.value = steps
    widget.crop.value = 32
    widget.batch_size.value = 1


@gui
def test_labels_layer_to_model_to_labels(panel, qtbot, tmp_path):
    viewer, widget = panel()
    img, mask = nuclei()
    image = viewer.add_image(img, name="t01")
    corrected = viewer.add_labels(mask, name="t01 instances")
    viewer.add_image(nuclei(seed=1)[0], name="t02")  # ticked below, unlabelled
    widget.set_labels(image, corrected)
    widget.rows[1].use.value = True
    assert "instance mask: 10 objects" in widget.rows[0].decision.value
    assert "foreground (2)" in widget.rows[0].decision.value
    assert widget.rows[1].decision.value.strip() == "unlabelled"
    tiny(widget, 6)
    widget.apply_output.value = "classes"
    worker = widget.start()
    assert worker is not None
    qtbot.waitUntil(lambda: widget.worker is None, timeout=120_000)
    assert widget.model_path is not None and widget.model_path.name == "model.pt", widget.status.value
    assert widget.run.step == 6 and len(widget.curve.xs) == 6
    assert "the model's instances" in widget.status.value and "image's edge" in widget.status.value
    assert widget.save_button.enabled and widget.apply_button.enabled
    widget.save_path.value = str(tmp_path / "nuclei.pt")
    saved = widget.save()
    from napari_levelset.nn.model_files import load_model

    net, meta = load_model(saved)
    assert net.head_counts == [2] and "instance mask" in meta["labels"][0]
    workers = widget.apply()
    assert len(workers) == 2
    qtbot.waitUntil(lambda: "t01 trained" in viewer.layers and "t02 trained" in viewer.layers, timeout=60_000)
    out = viewer.layers["t01 trained"]
    assert out.data.shape == img.shape and set(np.unique(out.data)) <= {0, 1, 2}
    np.testing.assert_array_equal(corrected.data, mask)  # the user's layer is untouched
    assert "t01 instances" in viewer.layers and len(viewer.layers) == 5
    folder, out_dir = tmp_path / "more", tmp_path / "more labels"
    folder.mkdir()
    tifffile.imwrite(folder / "t03.tif", (nuclei(seed=3)[0] * 1000).astype(np.uint16))
    widget.apply_folder.value, widget.apply_out.value = str(folder), str(out_dir)
    widget.apply_workers.value = 0
    assert widget.apply_to_folder() is not None
    qtbot.waitUntil(lambda: "1 done" in widget.status.value, timeout=60_000)
    assert (out_dir / "t03.tif").is_file()
    viewer.window._qt_window.resize(1500, 1100)
    qtbot.wait(200)
    path = tmp_path / "training_widget.png"
    viewer.layers.selection.active = out
    viewer.screenshot(str(path), canvas_only=False)
    assert path.stat().st_size > 10_000
    keep = os.environ.get("NAPARI_LEVELSET_TRAINING_SHOT")
    if keep:
        import shutil

        shutil.copy(path, keep)


@gui
def test_stop_keeps_the_model_so_far(panel, qtbot, tmp_path):
    viewer, widget = panel()
    img, mask = nuclei()
    image = viewer.add_image(img, name="a")
    widget.set_labels(image, viewer.add_labels((mask > 0).astype(np.uint8), name="a mask"))
    assert "foreground mask" in widget.rows[0].decision.value
    tiny(widget, 100_000)
    widget.start()
    qtbot.waitUntil(lambda: widget.run.step >= 2, timeout=60_000)
    assert widget.stop_button.enabled
    widget.stop()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    assert widget.model_path is not None and widget.model_path.suffix == ".ckpt"
    assert widget.run.step < 100_000 and "stopped at step" in widget.status.value
    widget.save_path.value = str(tmp_path / "so-far.pt")
    assert widget.save() is not None and (tmp_path / "so-far.pt").is_file()


@gui
def test_refused_labels_are_shown_before_training(panel):
    viewer, widget = panel()
    img, _ = nuclei()
    image = viewer.add_image(img, name="a")
    strokes = viewer.add_labels(np.zeros(img.shape, np.uint8), name="strokes")
    widget.set_labels(image, strokes)
    assert "refused" in widget.rows[0].decision.value and "all 0" in widget.rows[0].decision.value
    widget.label_kind.value = "classes"
    strokes.data[:3, :3] = 1
    strokes.data[-3:, -3:] = 2
    strokes.refresh()
    widget.refresh_layers()
    assert "class labels" in widget.rows[0].decision.value
