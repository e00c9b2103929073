"""Tests of the napari dock widget, with a real viewer (run under ``xvfb-run -a``).

Runs are waited for on the widget's signals (``run_started``,
``snapshot_applied``, ``run_finished``), which it emits on the main thread from
the worker's ``yielded`` / ``finished`` signals; there are no sleeps.  Images
are small and iteration counts low: the whole file takes well under a minute on
two CPU cores.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import best_iou, disk_image, run_and_wait, three_regions

from napari_levelset.settings import Settings, default_position

gui = pytest.mark.gui
LONG = 100_000  # iterations for runs that the test stops itself


@pytest.fixture(autouse=True)
def remembered_settings_here(monkeypatch, tmp_path):
    """The settings a widget remembers between sessions (magicgui's ``persist``) go to this test's own
    folder: no test starts from another's, or from the user's; yields the folder.  magicgui saves them
    from a timer thread a moment after a change: the test waits for it before the folder goes."""
    import threading

    import magicgui._util

    folder = tmp_path / "remembered"
    monkeypatch.setattr(magicgui._util, "user_cache_dir", lambda *args, **kwargs: folder)
    monkeypatch.setenv("XDG_CACHE_HOME", str(folder))  # the same for a Python started by a test
    yield folder
    for thread in threading.enumerate():
        if isinstance(thread, threading.Timer):
            thread.join(5)


# --------------------------------------------------------------------------- no display needed


def start_long_run(qtbot, widget):
    """Start a run of ``LONG`` iterations (a snapshot every 2) and wait for its first snapshot;
    returns the worker."""
    widget.form.iterations.value = LONG
    widget.form.every.value = 2
    with qtbot.waitSignal(widget.snapshot_applied, timeout=30_000):
        worker = widget.run()
    return worker


def save_screenshot(viewer, path, keep_variable):
    """Save the whole window to ``path`` (checked to hold a picture); copy it where the environment
    variable ``keep_variable`` says, if set (how docs/ screenshots are made)."""
    viewer.screenshot(str(path), canvas_only=False)
    assert path.stat().st_size > 10_000
    keep = os.environ.get(keep_variable)
    if keep:
        import shutil

        shutil.copy(path, keep)


def test_importing_the_widget_does_not_import_torch():
    """napari's plugin menu imports the widget module: no torch.  Docking the widget starts
    importing torch (and pandas, which napari needs for the first Labels layer) in a background
    thread, so the first Run does not freeze the viewer; the main thread never imports them."""
    code = textwrap.dedent(
        """
        import sys, threading
        main_imports = []
        def hook(event, args):
            main = threading.current_thread() is threading.main_thread()
            if event == "import" and args[0] in ("torch", "pandas") and main:
                main_imports.append(args[0])
        sys.addaudithook(hook)
        import napari_levelset.napari
        assert "torch" not in sys.modules, "napari_levelset.napari imported torch"
        from napari_levelset.napari.widget import LevelSetWidget
        import napari_levelset.napari._sample_data
        assert "torch" not in sys.modules, "the widget module imported torch"
        from qtpy.QtWidgets import QApplication
        from napari.components import ViewerModel
        import numpy as np
        app = QApplication([])
        viewer = ViewerModel()
        viewer.add_image(np.zeros((8, 8)))
        w = LevelSetWidget(viewer)
        w.add_scribble_layer()
        w.image_layer = viewer.add_image(np.zeros((5, 8, 8), np.uint16))  # ambiguous axes, 16-bit
        assert w.form.axes_box.label.text() and w.contrast() == "linear"  # classes, no strokes: as segment
        w.form.output.value = "instances"
        assert w.contrast() == "fluorescence"
        for t in threading.enumerate():
            if t.name == "napari-levelset preload":
                t.join(120)
        assert "torch" in sys.modules, "the widget did not preload torch"
        # the first optimiser imports torch._dynamo (1.2 s): the first run's first labels waited for it
        assert "torch._dynamo" in sys.modules, "the widget did not preload what the first optimiser imports"
        assert not main_imports, f"the main thread imported {main_imports}"
        print("ok")
        """
    )
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0 and "ok" in res.stdout, res.stdout + res.stderr


def test_restore_segmenter_reproduces_labels():
    """The settings + state stored in layer metadata rebuild the same result."""
    from napari_levelset.method.restore import restore_segmenter
    from napari_levelset.method.segmenter import Segmenter

    img, _ = disk_image(32)
    seg = Segmenter(img, 3, device="cpu", width=8)
    for _ in seg.run(5, every=5):
        pass
    again = restore_segmenter(img, seg.settings, seg.state_dict()["model"])
    # snapshot labels come from the forward pass before the last optimiser step,
    # the restored network is the one after it: nearly all pixels agree
    assert (again.labels() == seg.labels()).mean() > 0.98
    assert again.iteration == seg.iteration and again.settings["order"] == seg.settings["order"]


def test_error_messages_are_for_users():
    from napari_levelset.errors import InputError
    from napari_levelset.errors import widget_message as error_message

    assert error_message(InputError("the image is constant")) == "the image is constant"
    assert "out of memory" in error_message(MemoryError())
    assert "out of memory" in error_message(RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert "out of memory" in error_message(RuntimeError("DefaultCPUAllocator: can't allocate memory: 8 GB"))
    assert error_message(ValueError("bad")) == "ValueError: bad"


def test_the_session_imports_without_qt_napari_or_torch():
    """The widget's state is a plain Python model: it imports with Qt, napari and torch blocked."""
    code = textwrap.dedent(
        """
        import sys
        BLOCKED = {"torch", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "napari", "magicgui", "superqt", "vispy"}
        class Blocked:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError(f"{name} is blocked")
        sys.meta_path.insert(0, Blocked())
        from napari_levelset.napari._session import Session
        assert Session().state == "idle"
        print("ok")
        """
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "ok" in res.stdout, res.stdout + res.stderr


class _FakeSegmenter:
    """What a run's Segmenter offers the session: live λ / lr, scribbles and a stop."""

    def __init__(self, max_label: int = 2):
        self.lam, self.lr, self.iteration, self.max_label = 0.05, 0.01, 7, max_label
        self.scribbles, self.stopped = "unset", False

    def set_scribbles(self, s):
        from napari_levelset.errors import InputError

        if s is not None and s.max() > self.max_label:
            raise InputError("a scribble label is larger than the number of classes")
        self.scribbles = s

    def stop(self):
        self.stopped = True


def _session_with_a_run():
    from napari_levelset.napari._session import Run, RunState, Session

    session = Session()
    shown, finished = [], []
    session.errored.connect(shown.append)
    session.run_finished.connect(lambda: finished.append(True))
    run = Run(
        image=None, key=(), meta={}, out_shape=(4, 4), scale=(1, 1), translate=(0, 0), with_probs=False, refine=False
    )
    session.begin(run, 10, "starting…")
    assert session.state == RunState.RUNNING and session.run is run
    return session, run, shown, finished


def test_a_large_instances_run_shows_a_first_look_before_it_prepares_the_image():
    """Instances of a large image: the worker first sends a first look at the classes (the k-means of a
    coarse copy, on the image's grid), then the Segmenter; its output is still ``segment``'s."""
    from napari_levelset.evaluation.synthetic import nuclei
    from napari_levelset.method.plan import PREVIEW_PIXELS, plan_run
    from napari_levelset.method.segmentation import segment
    from napari_levelset.napari._session import Handover
    from napari_levelset.napari._worker import Final, RunRequest, Started, Update, run_segmentation

    img, truth = nuclei((320, 320), n_objects=12, diameter=30.0, seed=2)
    assert img.size > PREVIEW_PIXELS
    settings = Settings(regions="instances", iterations=3)
    req = RunRequest(
        image=img, settings=settings, axes=dict(channel_axis=None, spatial_dims=None, spacing=None), iterations=None
    )
    handover = Handover()
    items = []
    for item in run_segmentation(req, handover):
        items.append(item)
        handover.ready.set()  # as the main thread does once it took an item
    first = items[0]
    assert isinstance(first, Update) and first.preview and first.iteration == 0
    assert first.labels.shape == img.shape and set(np.unique(first.labels)) == {1, 2}
    assert best_iou(first.labels, truth > 0) > 0.5  # the nuclei, roughly
    assert isinstance(items[1], Started) and not any(getattr(i, "preview", False) for i in items[1:])
    assert np.array_equal(items[-1].output, segment(img, settings=settings)) and isinstance(items[-1], Final)
    plan = plan_run(img, settings, prepare=False)  # resolved only: prepared when asked, as plan_run does
    assert plan.full is None and plan.prepares and plan.settings.contrast == "fluorescence"
    done, whole = plan.prepare(), plan_run(img, settings)
    assert done is plan and plan.settings == whole.settings and np.array_equal(plan.prepared.data, whole.prepared.data)


def test_auto_snapshots_keep_the_display_cost_down_and_time_left_skips_the_warm_up():
    """Every = auto: snapshots about AUTO_PERIOD_S apart while showing one is cheap, further apart when it
    costs more than DISPLAY_SHARE of the run's CPU time; the time left is not guessed from the first chunk."""
    from napari_levelset.napari._worker import AUTO_MAX_CHUNK, AUTO_PERIOD_S, Cadence

    cheap = Cadence(0, 100)
    assert cheap.chunk == 1 and cheap.remaining(0) is None
    cheap.chunk_done(1, 0.05, 0.05, 1)  # the first chunk (warm-up): no estimate from it
    assert cheap.chunk == round(AUTO_PERIOD_S / 0.05) and cheap.remaining(1) is None
    cheap.chunk_done(6, 0.3, 0.3, 7)
    assert cheap.remaining(7) is not None and cheap.remaining(7) >= 0
    costly = Cadence(0, 100)
    costly.cost = 0.1  # CPU seconds the viewer spends on a snapshot
    costly.chunk_done(1, 0.1, 0.1, 1)  # 0.1 s per iteration: 0.1 / (DISPLAY_SHARE * 0.1) iterations apart
    assert costly.chunk > round(AUTO_PERIOD_S / 0.1) and costly.chunk <= AUTO_MAX_CHUNK
    fixed = Cadence(5, 100)
    fixed.cost = 10.0
    fixed.chunk_done(5, 0.1, 0.1, 5)
    assert fixed.chunk == 5  # a number given by the user is kept


def test_changes_made_before_the_segmenter_exists_reach_it():
    """λ, the learning rate, strokes and a stop made while the worker builds the Segmenter are kept by the
    session and given to it when the worker hands it over; later ones go to it at once."""
    from napari_levelset.napari._session import RunState

    session, run, shown, finished = _session_with_a_run()
    session.live_change("lam", 0.5)
    session.live_change("lr", 0.02)
    strokes = np.ones((4, 4), np.uint8)
    session.set_scribbles(strokes, "strokes")
    session.request_stop()
    assert session.state == RunState.STOPPING and run.meta["scribbles"] == "strokes"
    seg = _FakeSegmenter()
    session.attach(run, seg)
    assert (seg.lam, seg.lr, seg.scribbles is strokes, seg.stopped) == (0.5, 0.02, True, True) and not shown
    assert not run.pending and "live_changes" not in run.meta  # (no iteration had run yet)
    session.live_change("lam", 0.2)  # now straight to the Segmenter, noted at its iteration
    assert seg.lam == 0.2 and run.meta["live_changes"] == [{"iteration": 7, "lam": 0.2}]
    assert session.curve.marks == [7]
    assert not session.finished(run) and session.state == RunState.IDLE and finished == [True]


def test_strokes_the_segmenter_refuses_are_reported_and_the_run_goes_on():
    session, run, shown, _ = _session_with_a_run()
    session.set_scribbles(np.full((4, 4), 9, np.uint8), "bad")
    seg = _FakeSegmenter()
    session.attach(run, seg)
    assert shown and "larger than the number of classes" in shown[-1]
    assert seg.scribbles is None and run.meta["scribbles"] is None and not seg.stopped


# --------------------------------------------------------------------------- GUI
@gui
def test_widget_in_plugins_menu(make_widget):
    from napari_levelset.napari.widget import LevelSetWidget

    viewer, widget = make_widget()
    assert isinstance(widget, LevelSetWidget)
    assert widget.form.n_classes.min == 2 and widget.form.n_classes.max >= 16

    def texts(menu):
        for action in menu.actions():
            yield action.text()
            if action.menu() is not None:
                yield from texts(action.menu())

    menu = viewer.window.plugins_menu
    menu.aboutToShow.emit()
    assert any("Level-set segmentation" in t for t in texts(menu))


@gui
def test_layer_pickers_follow_the_viewer(make_widget):
    viewer, widget = make_widget()
    assert widget.image_layer is None and not widget.run_buttons.run_button.enabled
    a = viewer.add_image(np.zeros((16, 16)), name="a")
    viewer.add_points(name="points")  # not an image: not offered
    b = viewer.add_image(np.zeros((16, 16)), name="b")
    names = [widget.form.image.native.itemText(i) for i in range(widget.form.image.native.count())]
    assert names == ["a", "b"]
    widget.image_layer = a
    a.name = "renamed"
    assert widget.form.image.native.currentText() == "renamed"
    viewer.layers.remove(b)
    assert widget.form.image.native.count() == 1
    assert widget.form.scribbles.native.itemText(0) == "none"
    scrib = widget.add_scribble_layer()
    assert scrib.data.shape == (16, 16) and scrib.mode == "paint" and scrib.selected_label == 1
    assert widget.scribble_layer is scrib and widget.form.scribbles.native.currentText() == scrib.name


@gui
def test_run_segments_synthetic_image(make_widget, qtbot, errors):
    viewer, widget = make_widget()
    img, truth = disk_image(64)
    image = viewer.add_image(img, name="disk")
    widget.form.n_classes.value = 2
    widget.form.iterations.value = 40
    widget.form.every.value = 5
    widget.session.wait_for_display = True  # every snapshot reaches the layer: count them
    applied = []
    widget.snapshot_applied.connect(applied.append)
    run_and_wait(qtbot, widget)
    assert not errors
    out = widget.output_layer(image)
    assert out is not None and out.name == "disk level-set"
    assert applied == [5, 10, 15, 20, 25, 30, 35, 40]  # updated in place at every snapshot
    assert widget.session.n_updates == 8
    assert out.data.shape == img.shape
    assert len(np.unique(out.data)) >= 2
    assert best_iou(np.asarray(out.data), truth) >= 0.9
    meta = out.metadata["napari_levelset"]
    assert meta["n_classes"] == 2 and meta["iteration"] == 40 and meta["image"] == "disk"
    assert meta["running"] is False and meta["stopped"] is False
    assert "body.0.weight" in out.metadata["napari_levelset_state"]
    # the stored settings + state reproduce the result
    from napari_levelset.method.restore import restore_segmenter

    again = restore_segmenter(img, meta, out.metadata["napari_levelset_state"])
    assert (again.labels() == out.data).mean() > 0.98
    assert "loss" in widget.run_status.status.text() and widget.run_status.progress.value() == 40
    assert len(widget.session.curve.xs) >= 3
    assert widget.run_buttons.refine_button.enabled
    # the user's image is untouched, and the output is not offered as an image/scribbles
    np.testing.assert_array_equal(image.data, img)
    assert widget.form.scribbles.native.findText(out.name) == -1


@gui
def test_stop_then_rerun_reuses_the_layer(make_widget, qtbot):
    viewer, widget = make_widget()
    img, _ = disk_image(48)
    viewer.add_image(img, name="disk")
    user_layer = viewer.add_labels(np.zeros((48, 48), np.uint8), name="disk level-set")  # not ours
    widget.form.n_classes.value = 2
    start_long_run(qtbot, widget)
    assert widget.is_running and widget.run_buttons.stop_button.enabled and not widget.run_buttons.run_button.enabled
    with qtbot.waitSignal(widget.run_finished, timeout=10_000):
        widget.run_buttons.stop_button.native.click()
        at_stop = widget.segmenter.iteration
    out = widget.output_layer()
    assert out is not user_layer and out.name != "disk level-set"  # never overwrite the user's layer
    assert not user_layer.data.any()
    meta = out.metadata["napari_levelset"]
    assert meta["stopped"] is True and meta["iteration"] <= at_stop + 1  # stops after the current iteration
    n_layers = len(viewer.layers)
    widget.form.iterations.value = 6
    run_and_wait(qtbot, widget)
    assert widget.output_layer() is out and len(viewer.layers) == n_layers
    assert out.metadata["napari_levelset"]["iteration"] == 6  # a new run starts from scratch


@gui
def test_live_lambda_and_restart_on_n(make_widget, qtbot):
    viewer, widget = make_widget()
    img, _ = three_regions(48)
    viewer.add_image(img, name="img")
    widget.form.n_classes.value = 2
    start_long_run(qtbot, widget)
    seg = widget.segmenter
    widget.form.lam.value = 0.5  # live: no restart
    assert seg.lam == 0.5 and widget.segmenter is seg
    with qtbot.waitSignal(widget.snapshot_applied, timeout=10_000):
        pass
    assert widget.output_layer().metadata["napari_levelset"]["lam"] == 0.5
    widget.form.lr.value = 0.02
    assert seg.lr == pytest.approx(0.02)
    out = widget.output_layer()
    with qtbot.waitSignal(widget.run_started, timeout=10_000):
        widget.form.n_classes.value = 3  # structural: a new run
    with qtbot.waitSignal(widget.snapshot_applied, timeout=30_000):
        pass
    assert widget.segmenter is not seg and widget.segmenter.n_classes == 3
    assert widget.output_layer() is out and out.metadata["napari_levelset"]["n_classes"] == 3
    with qtbot.waitSignal(widget.run_finished, timeout=10_000):
        widget.stop()
    assert not widget.is_running


@gui
def test_scribbles_during_a_run_change_the_result_and_refine(make_widget, qtbot, errors):
    """Scribbles painted while running reach the optimisation; after it ended, Refine continues."""
    viewer, widget = make_widget()
    img, truth = three_regions(64)
    image = viewer.add_image(img, name="img")
    widget.form.n_classes.value = 2
    widget.form.iterations.value = LONG
    widget.form.every.value = 5
    widget.form.alpha.value = 5.0
    scrib = widget.add_scribble_layer()
    with qtbot.waitSignal(widget.snapshot_applied, timeout=30_000):
        widget.run()
    for _ in range(3):
        with qtbot.waitSignal(widget.snapshot_applied, timeout=30_000):
            pass
    out = widget.output_layer(image)
    mid = truth == 1

    def mid_label():
        return int(np.bincount(np.asarray(out.data)[mid]).argmax())

    before = mid_label()
    other = 3 - before
    dark = int(np.bincount(np.asarray(out.data)[truth == 0]).argmax())
    bright = int(np.bincount(np.asarray(out.data)[truth == 2]).argmax())
    s = np.zeros(img.shape, np.uint8)
    s[truth == 0] = dark
    s[truth == 2] = bright
    rows = np.nonzero(mid.any(1))[0]
    cols = np.nonzero(mid.any(0))[0]
    s[rows[4] : rows[-4], cols[4] : cols[-4]] = other  # most of the mid square, the other label
    s[::2] = 0  # leave part unlabelled
    scrib.data = s  # like painting: events.data / events.paint feed the running optimisation
    qtbot.waitUntil(lambda: mid_label() == other, timeout=30_000)
    with qtbot.waitSignal(widget.run_finished, timeout=10_000):
        widget.stop()
    assert not errors
    it_before = widget.segmenter.iteration
    seg = widget.segmenter
    # painting after the run offers a one-click refine that continues from the last state
    assert widget.run_buttons.refine_button.enabled and not widget.run_buttons.refine_button.native.font().bold()
    scrib.paint((2, 2), other)  # a brush stroke: Labels.events.paint
    assert widget.run_buttons.refine_button.enabled and widget.run_buttons.refine_button.native.font().bold()
    widget.form.iterations.value = 4
    widget.form.every.value = 2
    with qtbot.waitSignal(widget.run_finished, timeout=30_000):
        widget.run_buttons.refine_button.native.click()
    assert widget.segmenter is seg and seg.iteration == it_before + 4
    assert out.metadata["napari_levelset"]["iteration"] == it_before + 4
    assert widget.output_layer(image) is out and mid_label() == other


@gui
def test_volume_runs_in_3d_and_per_slice(make_widget, qtbot, errors):
    viewer, widget = make_widget()
    zz, yy, xx = np.mgrid[:20, :24, :24]
    truth = ((zz - 10) ** 2 + (yy - 12) ** 2 + (xx - 12) ** 2 < 49).astype(np.uint8)
    vol = (0.3 + 0.4 * truth + np.random.default_rng(0).normal(0, 0.05, truth.shape)).astype(np.float32)
    image = viewer.add_image(vol, name="vol")
    widget.form.n_classes.value = 2
    widget.form.iterations.value = 15
    widget.form.width.value = 8
    for mode in ("3D", "2D per slice"):
        widget.form.volumes.native.setCurrentText(mode)
        run_and_wait(qtbot, widget)
        assert not errors, errors
        out = widget.output_layer(image)
        assert out.data.shape == vol.shape and len(np.unique(out.data)) >= 2
        assert out.metadata["napari_levelset"]["spatial_dims"] == (3 if mode == "3D" else 2)
        assert best_iou(np.asarray(out.data), truth) >= 0.9


@gui
def test_rgb_image_runs(make_widget, qtbot, errors):
    viewer, widget = make_widget()
    img, truth = disk_image(48)
    rgb = np.stack([img, 1 - img, 0.5 * img], axis=-1)
    rgb = (np.clip(rgb, 0, 1) * 255).astype(np.uint8)
    image = viewer.add_image(rgb, name="rgb", rgb=True)
    assert image.rgb
    widget.form.n_classes.value = 2
    widget.form.iterations.value = 20
    widget.form.uncertainty.value = True
    run_and_wait(qtbot, widget)
    assert not errors, errors
    out = widget.output_layer(image)
    assert out.data.shape == (48, 48) and len(np.unique(out.data)) >= 2
    assert out.metadata["napari_levelset"]["channel_axis"] == 2
    assert out.metadata["napari_levelset"]["color"] == "lab"  # auto: an RGB layer is compared in CIELAB
    assert widget.form.position.native.text() == "auto"  # auto position: a CIELAB photograph's, for its N
    assert out.metadata["napari_levelset"]["position"] == default_position("cnn", "lab", 2) == 0
    assert best_iou(np.asarray(out.data), truth) >= 0.9
    unc = widget.uncertainty_layer(image)
    assert unc.data.shape == (48, 48) and unc.data.min() >= 0 and unc.data.max() <= 1
    widget.form.channel_mode.native.setCurrentText("RGB channels as they are")
    run_and_wait(qtbot, widget)
    assert not errors, errors
    assert out.metadata["napari_levelset"]["color"] == "rgb" and best_iou(np.asarray(out.data), truth) >= 0.9
    assert out.metadata["napari_levelset"]["position"] == 0.0  # auto: off for channels as they are
    widget.form.position.value = 0.5  # colour and position
    run_and_wait(qtbot, widget)
    assert not errors, errors
    assert out.metadata["napari_levelset"]["position"] == 0.5 and best_iou(np.asarray(out.data), truth) >= 0.9
    widget.form.position.value = 0.0
    widget.form.channel_mode.native.setCurrentText("RGB → grey")
    run_and_wait(qtbot, widget)
    assert widget.output_layer(image) is out
    assert out.metadata["napari_levelset"]["channel_axis"] is None and out.metadata["napari_levelset"]["to_grey"]
    # a multichannel (C, Y, X) layer
    multi = viewer.add_image(np.stack([img, img[::-1]]), name="multi")
    widget.image_layer = multi
    widget.form.channel_mode.native.setCurrentText("first axis is channels")
    run_and_wait(qtbot, widget)
    assert not errors, errors
    out2 = widget.output_layer(multi)
    assert out2 is not out and out2.data.shape == (48, 48) and out2.metadata["napari_levelset"]["channel_axis"] == 0


@gui
@pytest.mark.parametrize("which", ["image", "output"])
def test_removing_the_image_or_the_output_mid_run_stops_the_run(make_widget, qtbot, errors, which):
    """Removing the image ends the run; so does deleting the output layer, which used to come back at
    the next snapshot."""
    viewer, widget = make_widget()
    img, _ = disk_image(48)
    image = viewer.add_image(img, name="disk")
    start_long_run(qtbot, widget)
    out = widget.output_layer(image)
    assert out is not None
    with qtbot.waitSignal(widget.run_finished, timeout=10_000):
        viewer.layers.remove(image if which == "image" else out)
    qtbot.wait(100)
    assert not errors and not widget.is_running
    assert ("removed" if which == "image" else "deleted") in widget.run_status.status.text()
    if which == "image":
        assert widget.image_layer is None and not widget.run_buttons.refine_button.enabled
    else:
        assert "disk level-set" not in [lay.name for lay in viewer.layers]


@gui
def test_the_status_names_the_image_and_the_idle_bar_says_so(make_widget, qtbot, errors):
    viewer, widget = make_widget()
    assert "0 / 1" not in widget.run_status.progress.text()
    img, _ = disk_image(32)
    viewer.add_image(img, name="first")
    widget.form.iterations.value = 4
    widget.form.every.value = 2
    run_and_wait(qtbot, widget)
    assert "'first'" in widget.run_status.status.text() and widget.run_status.progress.text() == "4 / 4 iterations"


@gui
def test_a_new_empty_scribble_layer_does_not_ask_for_refine(make_widget, qtbot, errors):
    """After a run without strokes, New (an empty layer) changes nothing; painting does."""
    _viewer, widget = _disk_widget(make_widget, 4)
    run_and_wait(qtbot, widget)
    scribbles = widget.add_scribble_layer()
    assert widget.run_buttons.refine_button.native.text() == "Refine"
    assert "scribbles changed" not in widget.run_status.status.text()
    scribbles.paint((16, 16), 1)
    qtbot.waitUntil(lambda: widget.run_buttons.refine_button.native.text() != "Refine", timeout=5_000)
    assert "scribbles changed" in widget.run_status.status.text()


@gui
def test_a_reopened_widget_reuses_the_results_of_the_last(make_widget, qtbot, errors):
    """Closing the widget and opening it again: the next run updates ``disk level-set`` instead of
    adding ``disk level-set [1]`` beside it."""
    from napari_levelset.napari.widget import LevelSetWidget

    viewer, widget = _disk_widget(make_widget, 4)
    image = viewer.layers["disk"]
    run_and_wait(qtbot, widget)
    out = widget.output_layer(image)
    again = LevelSetWidget(viewer)
    assert again.output_layer(image) is out
    assert again.image_layer is image  # the result is not offered as an image
    again.form.iterations.value = 4
    run_and_wait(qtbot, again)
    names = [lay.name for lay in viewer.layers]
    assert names.count("disk level-set") == 1 and not any("[1]" in n for n in names), names
    assert again.output_layer(image) is out and not errors


@gui
def test_closing_the_viewer_mid_run(make_widget, qtbot, errors):
    viewer, widget = make_widget()
    img, _ = disk_image(48)
    viewer.add_image(img, name="disk")
    worker = start_long_run(qtbot, widget)
    with qtbot.waitSignal(worker.finished, timeout=10_000):
        viewer.close()
    assert not errors


@gui
def test_closing_the_widget_mid_run(make_widget, qtbot, errors):
    """napari's close button takes the widget out of its dock: the run ends."""
    viewer, widget = make_widget()
    img, _ = disk_image(48)
    viewer.add_image(img, name="disk")
    worker = start_long_run(qtbot, widget)
    with qtbot.waitSignal(worker.finished, timeout=10_000):
        viewer.window.remove_dock_widget(widget)
    assert not errors and not widget.is_running
    viewer.add_image(np.zeros((8, 8)), name="later")  # the viewer's events no longer reach it
    assert widget.form.image.native.count() == 1


@gui
def test_errors_are_notifications_and_layers_are_untouched(make_widget, qtbot, errors):
    viewer, widget = make_widget()
    flat = viewer.add_image(np.full((16, 16), 3.0, np.float32), name="flat")
    run_and_wait(qtbot, widget)
    assert errors and "constant" in errors[-1]
    assert [lay.name for lay in viewer.layers] == ["flat"] and widget.output_layer(flat) is None

    img, _ = disk_image(32)
    viewer.layers.remove(flat)
    image = viewer.add_image(img, name="disk")
    bad = viewer.add_labels(np.zeros((10, 10), np.uint8), name="bad scribbles")
    widget.scribble_layer = bad
    assert widget.run() is None and "shape" in errors[-1]
    widget.scribble_layer = None
    widget.form.n_classes.value = 2
    s = np.zeros((32, 32), np.uint8)
    s[0, 0] = 7  # more classes than N
    bad.data = np.zeros((32, 32), np.uint8)
    bad.data = s
    widget.scribble_layer = bad
    run_and_wait(qtbot, widget)
    assert "larger than the number of classes" in errors[-1]
    widget.scribble_layer = None

    widget.set_model(str(Path("no") / "such" / "model.pt"))
    n_err = len(errors)
    run_and_wait(qtbot, widget)
    assert len(errors) == n_err + 1  # a clear notification, whatever the U-Net module says
    print("U-Net from a missing file:", errors[-1])
    assert widget.output_layer(image) is None
    np.testing.assert_array_equal(image.data, img)
    assert [lay.name for lay in viewer.layers] == ["disk", "bad scribbles"]


def _disk_widget(make_widget, iterations: int, every: int | None = None, show: bool = False):
    """A viewer with a 32² disk image and the widget set to N 2 and ``iterations``."""
    viewer, widget = make_widget(show=show)
    img, _ = disk_image(32)
    viewer.add_image(img, name="disk")
    widget.form.n_classes.value = 2
    widget.form.iterations.value = iterations
    if every is not None:
        widget.form.every.value = every
    return viewer, widget


@gui
def test_a_runtime_error_mid_run_is_reported_and_the_widget_recovers(make_widget, qtbot, errors, monkeypatch):
    """torch reports out-of-memory as a RuntimeError; the worker must not swallow it."""
    import torch

    from napari_levelset.method.segmenter import Segmenter

    _viewer, widget = _disk_widget(make_widget, LONG, every=1)
    real_step, calls = Segmenter.step, []

    def step_then_fail(self):  # the allocator fails on the fourth step
        calls.append(1)
        if len(calls) == 4:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")
        return real_step(self)

    monkeypatch.setattr(Segmenter, "step", step_then_fail)
    run_and_wait(qtbot, widget, timeout=30_000)
    assert errors and "out of memory" in errors[-1]
    assert not widget.is_running
    assert widget.run_buttons.run_button.enabled and not widget.run_buttons.stop_button.enabled
    assert "error" in widget.run_status.status.text()
    monkeypatch.setattr(Segmenter, "step", real_step)
    widget.form.iterations.value = 4
    run_and_wait(qtbot, widget)  # and it runs again
    assert widget.output_layer().metadata["napari_levelset"]["iteration"] == 4


@gui
def test_a_run_that_fails_at_once_keeps_the_last_result_refinable(make_widget, qtbot, errors, tmp_path):
    viewer, widget = _disk_widget(make_widget, 6, show=True)
    run_and_wait(qtbot, widget)
    assert widget.can_refine() and len(widget.session.curve.xs) > 0
    scrib = widget.add_scribble_layer()
    bad = np.zeros((32, 32), np.uint8)
    bad[0, 0] = 7  # more classes than N: the run fails before its first snapshot
    scrib.data = bad
    run_and_wait(qtbot, widget)
    assert "larger than the number of classes" in errors[-1]
    assert widget.can_refine() and widget.run_buttons.refine_button.enabled and len(widget.session.curve.xs) > 0
    viewer.screenshot(str(tmp_path / "failed_run_keeps_result.png"), canvas_only=False)  # status line + result
    assert (tmp_path / "failed_run_keeps_result.png").stat().st_size > 10_000
    scrib.data = np.zeros((32, 32), np.uint8)
    run_and_wait(qtbot, widget, refine=True)
    assert widget.output_layer().metadata["napari_levelset"]["iteration"] == 12


@gui
def test_a_stop_that_comes_after_the_end_does_not_stop_the_next_refine(make_widget, qtbot, errors):
    _viewer, widget = _disk_widget(make_widget, 5, every=5)
    widget.session.wait_for_display = True
    with qtbot.waitSignal(widget.run_finished, timeout=30_000):
        widget.snapshot_applied.connect(lambda it: widget.stop() if it == 5 else None)
        widget.run()
    widget.snapshot_applied.disconnect()
    assert widget.output_layer().metadata["napari_levelset"]["iteration"] == 5
    run_and_wait(qtbot, widget, refine=True)
    assert widget.output_layer().metadata["napari_levelset"]["iteration"] == 10


@gui
def test_the_merge_weight_follows_the_model_until_set_by_hand(make_widget):
    from napari_levelset.settings import MERGE_WEIGHT

    _viewer, widget = make_widget()
    assert widget.form.merge.value == MERGE_WEIGHT["cnn"]
    widget.set_model("unet")
    assert widget.form.merge.value == MERGE_WEIGHT["unet"]
    widget.set_model("cnn")
    assert widget.form.merge.value == MERGE_WEIGHT["cnn"]
    widget.form.merge.value = 0.3  # the user's choice stays
    widget.set_model("unet")
    assert widget.form.merge.value == 0.3


@gui
def test_main_thread_time_per_snapshot_512(make_widget, qtbot, errors):
    """Main-thread work per snapshot (layer update, plot, metadata) at 512x512."""
    viewer, widget = make_widget()
    img, _ = disk_image(512)
    viewer.add_image(img, name="big")
    widget.form.n_classes.value = 4
    widget.form.iterations.value = 4
    widget.form.every.value = 1
    widget.form.width.value = 8
    widget.form.uncertainty.value = True
    run_and_wait(qtbot, widget, timeout=120_000)
    assert not errors
    t = np.array(widget.session.timings[1:]) * 1000  # the first one creates the layers
    cpu = np.array(widget.session.cpu_timings[1:]) * 1000
    assert len(t) >= 2
    print(
        f"\nmain-thread ms per snapshot at 512x512: wall median {np.median(t):.1f} max {t.max():.1f}; "
        f"CPU median {np.median(cpu):.1f} max {cpu.max():.1f}"
    )
    # CPU time of the main thread: wall time also counts other processes on a busy machine
    assert np.median(cpu) < 50


@gui
def test_screenshot_with_a_result(make_widget, qtbot, tmp_path, errors):
    """Saves a screenshot of the viewer with the widget and a finished result.

    Set ``NAPARI_LEVELSET_SCREENSHOT=path.png`` to keep a copy (docs/screenshot.png
    was made this way).
    """
    viewer, widget = make_widget(show=True)
    viewer.window.resize(1200, 860)
    widget.form.advanced.expand(animate=False)
    viewer.open_sample("napari-levelset", "coins")
    widget.form.n_classes.value = 3
    widget.form.lam.value = 0.05
    widget.form.iterations.value = 30
    widget.form.every.value = 5
    run_and_wait(qtbot, widget)
    assert not errors
    viewer.reset_view()
    qtbot.wait(50)
    save_screenshot(viewer, tmp_path / "screenshot.png", "NAPARI_LEVELSET_SCREENSHOT")


@gui
def test_pretrained_unet_model_runs(make_widget, qtbot, errors):
    viewer, widget = make_widget()
    img, truth = disk_image(64)
    rgb = (np.clip(np.stack([img, 1 - img, 0.5 * img], axis=-1), 0, 1) * 255).astype(np.uint8)
    image = viewer.add_image(rgb, name="rgb", rgb=True)
    widget.form.model.native.setCurrentText("pretrained U-Net")
    widget.form.n_classes.value = 2
    widget.form.iterations.value = 20  # fine-tune steps of the class head
    run_and_wait(qtbot, widget)
    assert not errors, errors
    out = widget.output_layer(image)
    assert out.metadata["napari_levelset"]["model"] == "unet"
    assert out.metadata["napari_levelset"]["init"] == "kmeans"  # a fine-tune starts from the image's k-means
    assert best_iou(np.asarray(out.data), truth) >= 0.9


@gui
def test_regions_button_gives_one_label_per_object(make_widget, qtbot, errors):
    viewer, widget = make_widget()
    rng = np.random.default_rng(4)
    img = np.full((64, 64), 0.2, np.float32)
    img[8:24, 8:24] = 0.8  # two objects of the same brightness: one class, two regions
    img[36:56, 30:58] = 0.8
    img += rng.normal(0, 0.04, img.shape).astype(np.float32)
    image = viewer.add_image(img, name="two")
    assert not widget.steps_panel.regions_button.enabled  # nothing to split yet
    widget.form.n_classes.value = 4  # more classes than phases, and classes with a place:
    widget.form.position.value = 0.5  # the background splits into pieces, merging has work to do
    widget.form.iterations.value = 30
    run_and_wait(qtbot, widget)
    assert not errors, errors
    out = widget.output_layer(image)
    classes = np.asarray(out.data).copy()
    assert widget.steps_panel.regions_button.enabled
    worker = widget.make_regions()
    assert worker is not None
    qtbot.waitUntil(lambda: widget.regions_layer(image) is not None, timeout=30_000)
    regions = np.asarray(widget.regions_layer(image).data)
    assert len(np.unique(regions)) == 3
    assert len(np.unique(regions[10:22, 10:22])) == 1 and len(np.unique(regions[38:54, 32:56])) == 1
    assert regions[16, 16] != regions[45, 45] != regions[0, 0]
    assert np.array_equal(np.asarray(out.data), classes)  # the class labels are left as they were
    meta = widget.regions_layer(image).metadata["napari_levelset"]
    assert meta["kind"] == "regions" and meta["n_regions"] == 3
    # merge weight 0: the connected pieces of the classes as they are, in the same layer
    from napari_levelset.post.regions import connected_regions

    layer = widget.regions_layer(image)
    widget.form.merge.value = 0.0
    qtbot.waitUntil(lambda: widget.steps_panel.regions_button.enabled, timeout=30_000)
    widget.make_regions()
    expected = len(np.unique(connected_regions(classes, 0.001)))
    assert expected > 3
    qtbot.waitUntil(lambda: len(np.unique(np.asarray(layer.data))) == expected, timeout=30_000)
    assert layer.metadata["napari_levelset"]["merge"] == 0.0
    assert widget.regions_layer(image) is layer
    assert not errors, errors


# --------------------------------------------------------------------------- microscopy
def _matched_fraction(instances: np.ndarray, truth: np.ndarray) -> float:
    """Fraction of the true objects matched one-to-one by a predicted one with IoU > 0.5."""
    from napari_levelset.evaluation.synthetic import matched_iou

    return float((matched_iou(instances, truth)[1:] > 0.5).mean())  # [0] is the background


def _instances_and_wait(qtbot, widget) -> None:
    """Press Instances and wait until the step is over (the button comes back)."""
    assert widget.make_instances() is not None, widget.session.last_error
    assert not widget.steps_panel.instances.instances_button.enabled  # busy
    qtbot.waitUntil(widget.steps_panel.instances.instances_button.native.isEnabled, timeout=60_000)


def test_auto_contrast_rule():
    """auto: fluorescence for grey integer data of more than 8 bits (camera formats), else linear."""
    from napari.layers import Image

    from napari_levelset.napari._layers import auto_contrast

    assert auto_contrast(Image(np.zeros((8, 8), np.uint16)))[0] == "fluorescence"
    assert auto_contrast(Image(np.zeros((3, 8, 8), np.int16)))[0] == "fluorescence"
    assert auto_contrast(Image(np.zeros((8, 8), np.uint8)))[0] == "linear"  # coins, blobs3d
    assert auto_contrast(Image(np.zeros((8, 8, 3), np.uint8), rgb=True))[0] == "linear"  # coffee
    assert auto_contrast(Image(np.zeros((8, 8, 3), np.uint16), rgb=True))[0] == "linear"
    assert auto_contrast(Image(np.zeros((8, 8), np.float32)))[0] == "linear"


def test_instances_follow_the_foreground_choice():
    """The Instances step reads the class labels as they are; the foreground picks which classes are objects."""
    from napari_levelset.method.segmenter import Segmenter
    from napari_levelset.napari._layers import FOREGROUND_AUTO, FOREGROUND_REST, instances_from_labels

    img, _ = three_regions(64)
    seg = Segmenter(img, 3, device="cpu", width=8)
    labels = np.ones((64, 64), np.uint8)
    labels[8:24, 8:24] = 2  # a dim object
    labels[40:56, 40:56] = 3  # a bright one
    labels[40:56, 8:24] = 3
    top = instances_from_labels(seg, labels, None, FOREGROUND_AUTO)  # the brightest class
    rest = instances_from_labels(seg, labels, None, FOREGROUND_REST)
    two = instances_from_labels(seg, labels, None, 2)
    assert top.dtype == np.uint32 and top.max() == 2 and top[16, 16] == 0
    assert rest.max() == 3 and rest[16, 16] > 0 and rest[0, 0] == 0
    assert two.max() == 1 and two[16, 16] == 1 and two[48, 48] == 0


@gui
def test_nuclei_sample_gives_one_label_per_nucleus(make_widget, qtbot, errors, tmp_path):
    """The 16-bit nuclei sample with Output = instances: auto contrast is fluorescence, and the run (then
    Instances, on the classes as they are) finds the nuclei.

    Also saves a screenshot of the viewer with the instances and the widget; set
    ``NAPARI_LEVELSET_NUCLEI_SCREENSHOT=docs/nuclei_widget.png`` to keep a copy.
    """
    from napari_levelset.napari._sample_data import load_truth

    viewer, widget = make_widget(show=True)
    viewer.window.resize(1400, 1050)
    widget.form.advanced.expand(animate=False)  # shows Contrast: auto (fluorescence: 16-bit)
    viewer.open_sample("napari-levelset", "nuclei")
    image = viewer.layers["nuclei"]
    truth = load_truth("nuclei")
    assert widget.image_layer is image and image.data.dtype == np.uint16
    widget.form.output.value = "instances"
    assert widget.contrast() == "fluorescence" and "fluorescence" in widget.form.contrast_choice.native.currentText()
    assert widget.form.contrast_choice.native.currentIndex() == 0  # auto
    assert not widget.form.axes_box.isVisibleTo(widget)  # a 2D image: nothing ambiguous
    assert not widget.steps_panel.instances.instances_button.enabled  # nothing to split yet
    widget.form.n_classes.value = 2  # nuclei and background
    widget.form.iterations.value = 15
    diameter = widget.steps_panel.instances.diameter_box.native
    assert diameter.text() == "auto" and diameter.suffix() == " px"  # no scale: pixels
    run_and_wait(qtbot, widget, timeout=120_000)
    assert not errors, errors
    meta = widget.output_layer(image).metadata["napari_levelset"]
    assert meta["contrast"] == "fluorescence" and 20 < meta["diameter"] < 36  # estimated (about 28 px)
    assert diameter.text() == f"auto (≈ {meta['diameter']:.3g} px)"
    assert widget.steps_panel.instances.instances_button.enabled
    assert widget.instances_layer(image) is not None  # made by the run
    _instances_and_wait(qtbot, widget)
    layer = widget.instances_layer(image)
    inst = np.asarray(layer.data)
    assert layer.name == "nuclei instances" and inst.shape == truth.shape
    assert np.array_equal(layer.scale, image.scale) and np.array_equal(layer.translate, image.translate)
    frac = _matched_fraction(inst, truth)
    print(f"\nnuclei sample: {inst.max()} objects for {truth.max()} nuclei, {frac:.0%} matched at IoU > 0.5")
    assert frac >= 0.8
    assert inst.min() == 0 and (inst[truth == 0] == 0).mean() > 0.95  # background is 0 (transparent)
    lmeta = layer.metadata["napari_levelset"]
    assert lmeta["kind"] == "instances" and lmeta["n_objects"] == inst.max() and lmeta["diameter"] == meta["diameter"]
    assert f"{inst.max()} objects" in widget.run_status.status.text()
    assert widget.form.scribbles.native.findText(layer.name) == -1  # not offered as scribbles
    # the layers: image, classes, instances (on top)
    assert [lay.name for lay in viewer.layers] == ["nuclei", "nuclei level-set", "nuclei instances"]

    # the screenshot: the image with its instances (the class layer hidden) and the dock widget
    widget.output_layer(image).visible = False
    viewer.layers.selection.active = layer
    viewer.reset_view()
    qtbot.wait(100)
    save_screenshot(viewer, tmp_path / "nuclei_widget.png", "NAPARI_LEVELSET_NUCLEI_SCREENSHOT")

    # a second press reuses the layer; a foreground class by number
    widget.steps_panel.instances.set_foreground(2)
    n_layers = len(viewer.layers)
    _instances_and_wait(qtbot, widget)
    assert widget.instances_layer(image) is layer and len(viewer.layers) == n_layers
    assert layer.metadata["napari_levelset"]["foreground"] == 2
    assert not errors, errors


@gui
def test_instances_in_physical_units_with_an_estimated_diameter(make_widget, qtbot, errors):
    """A layer with a pixel size: the diameter is in its unit and the instances keep its geometry."""
    from napari_levelset.evaluation.synthetic import nuclei

    viewer, widget = make_widget()
    img, truth = nuclei((160, 160), n_objects=12, diameter=20.0, seed=3)
    image = viewer.add_image(img, name="cells", scale=(0.5, 0.5), translate=(10.0, 20.0), units="um")
    diameter = widget.steps_panel.instances.diameter_box
    assert diameter.native.suffix() == " µm" and diameter.native.text().startswith("auto")
    widget.form.output.value = "instances"
    widget.form.n_classes.value = 2
    widget.form.iterations.value = 15
    run_and_wait(qtbot, widget, timeout=120_000)
    assert not errors, errors
    seg = widget.segmenter
    # the run's plan prepared the image with the fluorescence contrast (as segment does)
    assert widget.session.result.plan.contrast == "fluorescence" and seg.spacing == (0.5, 0.5)
    assert 7.0 < seg.diameter < 13.0  # estimated, in µm: about 20 px of 0.5 µm
    assert "≈" in diameter.native.text() and "µm" in diameter.native.text()  # what auto came to
    _instances_and_wait(qtbot, widget)
    layer = widget.instances_layer(image)
    assert np.array_equal(layer.scale, image.scale) and np.array_equal(layer.translate, image.translate)
    assert _matched_fraction(np.asarray(layer.data), truth) >= 0.8
    # a diameter given in µm: 10 µm = 20 px
    widget.steps_panel.instances.diameter_box.value = 10.0
    _instances_and_wait(qtbot, widget)
    meta = layer.metadata["napari_levelset"]
    assert meta["diameter"] == 10.0 and meta["diameter_unit"] == "µm" and meta["spacing"] == (0.5, 0.5)
    assert _matched_fraction(np.asarray(layer.data), truth) >= 0.8
    # the settings stored on the output layer rebuild the run (fluorescence contrast, estimate, spacing)
    from napari_levelset.method.restore import restore_segmenter

    out = widget.output_layer(image)
    again = restore_segmenter(img, out.metadata["napari_levelset"], out.metadata["napari_levelset_state"])
    assert again.contrast == "fluorescence" and again.diameter == seg.diameter and again.spacing == (0.5, 0.5)
    assert (again.labels() == np.asarray(out.data)).mean() > 0.98
    assert not errors, errors


@gui
def test_changing_the_contrast_restarts_a_run(make_widget, qtbot, errors):
    viewer, widget = make_widget()
    img, _ = disk_image(48)
    viewer.add_image(img, name="disk")
    assert widget.contrast() == "linear"  # a float image: as it is
    widget.form.n_classes.value = 2
    start_long_run(qtbot, widget)
    seg = widget.segmenter
    assert seg.contrast == "linear"
    with qtbot.waitSignal(widget.run_started, timeout=10_000):
        widget.form.contrast_choice.native.setCurrentText("fluorescence (background removed, log)")
    with qtbot.waitSignal(widget.snapshot_applied, timeout=60_000):
        pass
    assert widget.segmenter is not seg and widget.segmenter.contrast == "fluorescence"
    assert widget.output_layer().metadata["napari_levelset"]["contrast"] == "fluorescence"
    with qtbot.waitSignal(widget.run_finished, timeout=10_000):
        widget.stop()
    assert not errors, errors


@gui
def test_channel_layers_are_segmented_together(make_widget, qtbot, errors):
    """Two layers of one image (as napari opens a 2-channel file): each shows one object, together both."""
    viewer, widget = make_widget()
    rng = np.random.default_rng(0)
    truth = np.zeros((48, 48), np.uint8)
    truth[8:40, 6:22] = 1  # seen in channel A only
    truth[8:40, 28:44] = 2  # seen in channel B only
    a = (0.2 + 0.6 * (truth == 1) + rng.normal(0, 0.05, truth.shape)).astype(np.float32)
    b = (0.2 + 0.6 * (truth == 2) + rng.normal(0, 0.05, truth.shape)).astype(np.float32)
    la = viewer.add_image(a, name="A", scale=(2.0, 2.0))
    viewer.add_image(np.zeros((10, 10), np.float32), name="other shape")
    lb = viewer.add_image(b, name="B", scale=(2.0, 2.0))
    widget.image_layer = la
    assert not widget.form.channels.isVisibleTo(widget) and widget.form.channels.add_btn.isEnabled()
    assert widget.form.channels.add() is lb  # the first layer of the same shape
    assert widget.channel_layers() == [la, lb] and widget.form.channels.isVisibleTo(widget)
    assert not widget.form.channels.add_btn.isEnabled()  # no other layer of A's shape
    widget.form.n_classes.value = 3
    widget.form.iterations.value = 40
    run_and_wait(qtbot, widget)
    assert not errors, errors
    out = widget.output_layer(la)
    meta = out.metadata["napari_levelset"]
    assert out.data.shape == (48, 48) and meta["channel_axis"] == 0 and meta["channels"] == ["A", "B"]
    assert np.array_equal(out.scale, la.scale)
    assert viewer.layers[-1].name == "A level-set"  # on top, where nothing hides it
    assert best_iou(np.asarray(out.data), truth) >= 0.9  # both objects and the background
    assert widget.output_layer(lb) is None
    # the further channel changes the run: taking it out restarts nothing here, but refine is off
    assert widget.can_refine()
    viewer.layers.remove(lb)
    assert widget.channel_layers() == [la] and not widget.form.channels.isVisibleTo(widget)
    assert not widget.can_refine()
    assert not errors, errors


@gui
def test_ambiguous_axes_are_named(make_widget, qtbot, errors):
    """A (5, 64, 64) grey layer is a volume or 5 channels: the widget says which reading it uses."""
    viewer, widget = make_widget()
    viewer.add_image(np.random.default_rng(0).random((40, 64, 64), np.float32), name="volume")
    assert not widget.form.axes_box.isVisibleTo(widget)  # 40 slices: not ambiguous
    stack = viewer.add_image(np.random.default_rng(0).random((5, 64, 64), np.float32), name="five")
    widget.image_layer = stack
    note = widget.form.axes_box.label.text()
    assert widget.form.axes_box.isVisibleTo(widget)
    assert "5 slices" in note and "5 channels" in note and "Advanced → Channels" in note and "'five'" in note
    widget.form.axes_box.switch_btn.click()  # read it as channels
    assert widget.form.channel_mode.native.currentText() == "first axis is channels"
    assert "read as 5 channels" in widget.form.axes_box.label.text() and widget.form.axes_box.isVisibleTo(widget)
    assert widget.add_scribble_layer().data.shape == (64, 64)
    widget.form.axes_box.switch_btn.click()  # and back
    assert widget.form.channel_mode.native.currentIndex() == 0
    assert "read as 5 slices" in widget.form.axes_box.label.text()
    widget.image_layer = viewer.layers["volume"]
    assert not widget.form.axes_box.isVisibleTo(widget)
    widget.image_layer = viewer.add_image(np.zeros((5, 64, 3), np.uint8), name="rgb", rgb=True)
    assert not widget.form.axes_box.isVisibleTo(widget)  # the last axis is its colour
    assert not errors, errors


@gui
def test_quitting_during_a_run_ends_it_quietly():
    """Closing napari while a run is going ends the run before Qt deletes the worker's signals,
    so nothing is printed from the dying thread ("wrapped C/C++ object ... has been deleted")."""
    code = textwrap.dedent(
        """
        import sys
        import numpy as np
        import napari
        from qtpy.QtCore import QEventLoop
        from napari_levelset.napari.widget import LevelSetWidget

        viewer = napari.Viewer(show=True)
        viewer.add_image(np.random.default_rng(0).random((256, 256)).astype(np.float32), name="img")
        widget = LevelSetWidget(viewer)
        viewer.window.add_dock_widget(widget, name="level set")
        widget.form.iterations.value = 100000
        widget.form.every.value = 5
        loop = QEventLoop()
        widget.snapshot_applied.connect(loop.quit)
        assert widget.run() is not None
        loop.exec_()  # the run is going
        viewer.close()
        print("closed")
        sys.exit(0)
        """
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "closed" in done.stdout
    assert "aborted thread" not in done.stderr and "has been deleted" not in done.stderr, done.stderr[-2000:]


@gui
def test_volume_and_channel_settings_show_only_where_they_apply(make_widget):
    viewer, widget = make_widget(show=True)
    widget.form.advanced.expand(animate=False)
    shown = lambda w: w.isVisibleTo(widget)  # noqa: E731
    viewer.add_image(np.zeros((16, 16), np.float32), name="grey")
    assert not shown(widget.form.volumes.native) and not shown(widget.form.channel_mode.native)
    viewer.add_image(np.zeros((16, 16, 3), np.uint8), name="rgb", rgb=True)
    widget.image_layer = viewer.layers["rgb"]
    assert not shown(widget.form.volumes.native) and shown(widget.form.channel_mode.native)
    viewer.add_image(np.zeros((4, 16, 16), np.float32), name="stack")
    widget.image_layer = viewer.layers["stack"]
    assert shown(widget.form.volumes.native) and shown(widget.form.channel_mode.native)


@gui
def test_results_go_on_top_of_the_layer_list(make_widget, qtbot, errors):
    """A result inserted just above its image was hidden by any layer above that; it goes on top."""
    viewer, widget = make_widget()
    img, _ = disk_image(32)
    image = viewer.add_image(img, name="disk")
    viewer.add_image(img, name="another picture")
    widget.image_layer = image
    widget.form.iterations.value = 4
    run_and_wait(qtbot, widget)
    assert viewer.layers[-1] is widget.output_layer(image) and not errors


@gui
def test_the_background_class_can_be_transparent(make_widget, qtbot, errors):
    """In 3D a coloured background class is a solid block: by default the darkest class of a volume
    is drawn transparent (as napari draws 0), with the label ids unchanged; a 2D photo keeps its
    colours, and the setting recolours a result at once."""
    viewer, widget = make_widget()
    volume = np.zeros((8, 24, 24), np.float32)
    volume[2:6, 6:18, 6:18] = 1
    volume += np.random.default_rng(0).normal(0, 0.1, volume.shape).astype(np.float32)
    vol = viewer.add_image(volume, name="vol")
    widget.form.n_classes.value = 2
    widget.form.iterations.value = 4
    run_and_wait(qtbot, widget)
    out = widget.output_layer(vol)
    alpha = lambda layer, k: float(layer.colormap.map(np.array([k]))[0][3])  # noqa: E731
    assert set(np.unique(out.data)) == {1, 2}
    assert alpha(out, 1) == 0 and alpha(out, 2) > 0
    img, _ = disk_image(32)
    flat = viewer.add_image((img * 255).astype(np.uint8), name="flat")
    widget.image_layer = flat
    run_and_wait(qtbot, widget)
    out2 = widget.output_layer(flat)
    assert alpha(out2, 1) > 0 and alpha(out2, 2) > 0
    widget.form.transparent.native.setCurrentIndex(3)  # the brightest
    assert alpha(out2, 2) == 0 and alpha(out2, 1) > 0 and alpha(out, 2) == 0
    assert not errors


@gui
def test_a_new_widget_starts_from_the_remembered_settings(make_widget, qtbot, remembered_settings_here):
    """How results are shown and where runs go is remembered between sessions; how an image is segmented
    (N, λ, …) starts from the defaults."""
    import pickle

    from napari_levelset.napari.widget import LevelSetWidget

    def remembered():
        files = list(remembered_settings_here.glob("*"))
        try:
            return {k: pickle.loads(v) for k, v in pickle.loads(files[0].read_bytes()).items()} if files else {}
        except (EOFError, pickle.UnpicklingError):  # magicgui is writing the file right now: read it again
            return {}

    viewer, widget = make_widget()
    assert widget.form.device.native.currentText() == "auto" and widget.form.every.native.text() == "auto"
    widget.form.device.native.setCurrentText("cpu")
    widget.form.every.value = 7
    widget.form.transparent.native.setCurrentIndex(2)  # the darkest
    widget.form.uncertainty.value = True
    widget.form.n_classes.value = 5
    expected = dict(uncertainty=True, every=7, device="cpu", transparent="darkest")
    qtbot.waitUntil(lambda: remembered() == expected, timeout=5_000)  # saved a moment after the last change
    again = LevelSetWidget(viewer)
    assert again.form.device.native.currentText() == "cpu" and again.form.every.value == 7
    assert again.form.transparent.native.currentIndex() == 2 and again.form.uncertainty.value
    assert again.form.n_classes.value == Settings().resolved().n_classes
    assert again.parameters().device == "cpu"


@gui
def test_a_reopened_widget_adopts_every_kind_of_result(make_widget):
    """One table names the result layers where they are made and where a reopened widget takes them over."""
    from napari_levelset.napari._outputs import RESULT_LAYERS, result_name
    from napari_levelset.napari.widget import LevelSetWidget

    assert [result_name("img", kind) for kind in RESULT_LAYERS] == [
        "img level-set",
        "img level-set uncertainty",
        "img regions",
        "img instances",
    ]
    viewer, _widget = make_widget()
    image = viewer.add_image(np.zeros((8, 8), np.float32), name="img")
    made = {
        kind: viewer.add_layer(
            layer_type(
                np.zeros((8, 8), np.uint8),
                name=result_name("img", kind),
                metadata={"napari_levelset": {"image": "img"}},
            )
        )
        for kind, (_suffix, layer_type) in RESULT_LAYERS.items()
    }
    again = LevelSetWidget(viewer)
    assert again.output_layer(image) is made["output"] and again.uncertainty_layer(image) is made["uncertainty"]
    assert again.regions_layer(image) is made["regions"] and again.instances_layer(image) is made["instances"]
    assert again.form.image.native.count() == 1 and again.form.scribbles.native.count() == 1  # results are not offered


def test_every_setting_has_a_control_or_a_reason():
    """Each ``Settings`` field is set by one control of the widget, or named with the reason it is not shown."""
    import dataclasses

    from napari_levelset.napari._form import HIDDEN_SETTINGS, SHOWN_SETTINGS

    hidden = [name for name, reason in HIDDEN_SETTINGS if reason]
    fields = [f.name for f in dataclasses.fields(Settings)]
    assert sorted(SHOWN_SETTINGS) + sorted(hidden) == sorted(SHOWN_SETTINGS) + sorted(set(hidden))  # no repeats
    assert set(SHOWN_SETTINGS) | set(hidden) == set(fields) and not set(SHOWN_SETTINGS) & set(hidden)


@gui
def test_the_controls_take_their_ranges_and_choices_from_the_spec(make_widget):
    """Each control named in ``SHOWN_SETTINGS`` exists; its range is the spec's, within a top the widget
    gives itself (N, unbounded numbers, a Qt spin box's int32) or a special "auto" value below it."""
    from functools import reduce

    from napari_levelset.napari import _form as F
    from napari_levelset.settings import MAX_OFFERED_CLASSES, SPEC

    _viewer, widget = make_widget()
    controls = {name: reduce(getattr, path.split("."), widget) for name, path in F.SHOWN_SETTINGS.items()}
    form = widget.form
    assert (form.n_classes.min, form.n_classes.max) == (SPEC["n_classes"].lo, MAX_OFFERED_CLASSES)
    for name in ("width", "depth", "alpha"):
        assert (controls[name].min, controls[name].max) == (SPEC[name].lo, SPEC[name].hi), name
    assert (form.lam.spin.min, form.lam.spin.max) == (SPEC["lam"].lo, SPEC["lam"].hi)
    assert form.lam.slider.max <= SPEC["lam"].hi  # the slider shows part of it
    assert SPEC["lr"].lo < form.lr.spin.min < 1e-4 and form.lr.spin.max == SPEC["lr"].hi  # (0, 10]
    assert form.iterations.max == SPEC["iterations"].hi and form.iterations.min >= SPEC["iterations"].lo
    assert form.position.max == SPEC["position"].hi and form.position.min < SPEC["position"].lo  # "auto"
    assert form.seed.min == SPEC["seed"].lo and form.seed.max <= SPEC["seed"].hi
    assert form.merge.min == SPEC["merge"].lo
    diameter = controls["diameter"]
    assert diameter.min == SPEC["diameter"].lo and diameter.native.text() == "auto"  # the open end: auto
    assert [c for c in form.device.choices] == list(SPEC["device"].choices)
    assert [c for c in form.contrast_choice.choices] == [c or "auto" for c in SPEC["contrast"].choices]
    for name, control in controls.items():  # the tooltip has the spec's help
        help_text = SPEC[name].help
        if name not in ("color", "foreground"):  # (shown through another picker)
            assert help_text[1:] in getattr(control, "spin", control).tooltip, name  # (a LogSpin: its box)


# --------------------------------------------------------------------------- the widget computes what segment computes


def _phantom_tif(tmp_path, name: str, image: np.ndarray) -> Path:
    """``image`` saved as an 8-bit TIFF (as GOWT1's frames are), for ``viewer.open``."""
    import tifffile

    path = tmp_path / f"{name}.tif"
    tifffile.imwrite(path, image)
    return path


def _to_8bit(image: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(image, (0.1, 99.9))
    return np.clip((image - lo) / (hi - lo) * 255.0, 0, 255).astype(np.uint8)


@gui
def test_widget_instances_are_what_segment_makes(make_widget, qtbot, errors, tmp_path):
    """An 8-bit fluorescence frame opened as a user would, Output = instances with the defaults, Run:
    the instances layer holds exactly ``segment(image, regions="instances")`` (2 classes, the
    fluorescence contrast, a working copy of at most INSTANCE_PIXELS, INSTANCE_ITERATIONS)."""
    from napari_levelset.evaluation.synthetic import nuclei
    from napari_levelset.method.segmentation import segment
    from napari_levelset.settings import INSTANCE_ITERATIONS

    img, truth = nuclei((576, 576), n_objects=20, diameter=30.0, seed=5)
    img = _to_8bit(img.astype(np.float32))
    path = _phantom_tif(tmp_path, "frame", img)
    viewer, widget = make_widget()
    viewer.open(str(path))
    image = viewer.layers["frame"]
    assert widget.image_layer is image and image.data.dtype == np.uint8
    widget.form.output.value = "instances"
    assert widget.form.n_classes.value == 2 and widget.form.iterations.value == INSTANCE_ITERATIONS
    assert widget.form.is_auto("n_classes") and widget.form.n_classes.native.font().italic()
    assert widget.contrast() == "fluorescence"
    run_and_wait(qtbot, widget, timeout=240_000)
    assert not errors, errors
    layer = widget.instances_layer(image)
    assert layer is not None, widget.session.status
    expected = segment(np.asarray(image.data), regions="instances")
    assert np.array_equal(np.asarray(layer.data), expected)
    assert expected.max() >= 0.8 * truth.max()
    out = widget.output_layer(image)
    assert out.data.shape == img.shape  # the working copy's labels shown on the image's grid
    assert f"{int(expected.max())} objects" in widget.run_status.status.text()
    assert [lay.name for lay in viewer.layers][-1] == "frame instances"


@gui
def test_widget_classes_and_regions_are_what_segment_makes(make_widget, qtbot, errors, tmp_path):
    """Output = classes (N 4, 100 iterations, linear contrast for 8-bit) and Output = regions (merged):
    the widget's result is ``segment``'s on the same layer."""
    from napari_levelset.method.segmentation import segment

    img, _ = three_regions(64)
    img8 = _to_8bit(img)
    viewer, widget = make_widget()
    viewer.open(str(_phantom_tif(tmp_path, "regions", img8)))
    image = viewer.layers["regions"]
    assert widget.form.iterations.value == 100 and widget.form.n_classes.value == 4
    run_and_wait(qtbot, widget, timeout=120_000)
    assert not errors, errors
    assert np.array_equal(np.asarray(widget.output_layer(image).data), segment(img8))
    widget.form.output.value = "merged"
    run_and_wait(qtbot, widget, timeout=120_000)
    assert not errors, errors
    assert np.array_equal(np.asarray(widget.regions_layer(image).data), segment(img8, regions="merged"))


@gui
def test_a_newly_opened_image_is_the_one_segmented(make_widget, tmp_path):
    """Opening another image picks it: Run segments what the user sees, not the former image."""
    viewer, widget = make_widget()
    first = viewer.add_image(disk_image(32)[0], name="first")
    assert widget.image_layer is first
    viewer.open(str(_phantom_tif(tmp_path, "second", _to_8bit(disk_image(32, seed=1)[0]))))
    assert widget.image_layer is viewer.layers["second"]
    widget.add_scribble_layer()  # a Labels layer (and the widget's own layers) leave the pick alone
    assert widget.image_layer is viewer.layers["second"]


@gui
def test_a_new_run_is_not_hidden_under_former_instances(make_widget, qtbot, errors):
    """After instances, a run making classes: the former instances layer no longer covers its labels
    (it is hidden, not deleted); an instances run shows its layer again, on top."""
    from napari_levelset.evaluation.synthetic import nuclei

    viewer, widget = make_widget()
    img, _ = nuclei((96, 96), n_objects=5, diameter=20.0, seed=1)
    image = viewer.add_image(img, name="cells")
    widget.form.output.value = "instances"
    widget.form.iterations.value = 5
    run_and_wait(qtbot, widget, timeout=120_000)
    inst = widget.instances_layer(image)
    assert inst is not None and inst.visible
    widget.form.output.value = "classes"
    run_and_wait(qtbot, widget, timeout=120_000)
    names = [lay.name for lay in viewer.layers]
    assert inst in viewer.layers
    covered = inst.visible and names.index(inst.name) > names.index(widget.output_layer(image).name)
    assert not covered
    widget.form.output.value = "instances"
    run_and_wait(qtbot, widget, timeout=120_000)
    assert inst.visible and [lay.name for lay in viewer.layers][-1] == inst.name
    assert not errors, errors


@gui
def test_the_unet_runs_as_the_library_resolves_it(make_widget):
    """Choosing the U-Net: iterations follow the resolver (0: used directly, as the CLI does); a number
    the user typed stays theirs, and Defaults puts it back."""
    viewer, widget = make_widget()
    viewer.add_image(disk_image(32)[0])
    assert widget.form.iterations.value == 100
    widget.set_model("unet")
    assert widget.form.iterations.value == 0 and widget.parameters().resolved().iterations == 0
    widget.set_model("cnn")
    assert widget.form.iterations.value == 100
    widget.form.iterations.value = 7
    widget.set_model("unet")
    assert widget.form.iterations.value == 7 and widget.parameters().iterations == 7
    widget.form.use_defaults()
    assert widget.form.iterations.value == 0 and widget.parameters().iterations is None


@gui
def test_the_network_width_follows_the_output(make_widget):
    """The per-image CNN's width is the resolver's for the chosen output (smaller for instances), shown
    until the user sets one, which then stays theirs until Defaults."""
    from napari_levelset.settings import Settings

    viewer, widget = make_widget()
    viewer.add_image(disk_image(32)[0])
    form = widget.form
    for output in ("instances", "classes", "instances"):
        form.output.value = output
        assert form.width.value == Settings(regions=output).resolved().width
        assert widget.parameters().width is None
    assert Settings(regions="instances").resolved().width != Settings().resolved().width
    form.width.value = 12
    form.output.value = "classes"
    assert form.width.value == 12 and widget.parameters().width == 12
    form.use_defaults()
    assert form.width.value == Settings().resolved().width and widget.parameters().width is None


@gui
def test_microscopy_rows_show_for_instances_only(make_widget):
    """Object diameter and foreground matter for instances: hidden for classes and regions."""
    viewer, widget = make_widget()
    viewer.add_image(np.zeros((16, 16, 3), np.uint8), rgb=True)
    rows = widget.steps_panel.instances
    assert not rows.isVisibleTo(widget)
    widget.form.output.value = "merged"
    assert not rows.isVisibleTo(widget)
    widget.form.output.value = "instances"
    assert rows.isVisibleTo(widget)


@gui
def test_long_runs_show_progress_and_time_left(make_widget, qtbot):
    """The status line says iteration i/K and the time left."""
    viewer, widget = make_widget()
    viewer.add_image(disk_image(48)[0])
    start_long_run(qtbot, widget)
    with qtbot.waitSignal(widget.snapshot_applied, timeout=30_000):
        pass
    text = widget.run_status.status.text()
    assert f"/{LONG}" in text and "left" in text, text
    widget.stop()
    qtbot.waitUntil(lambda: widget.session.run is None, timeout=30_000)


def test_the_background_of_dark_objects_and_of_instances_is_drawn_transparent():
    """Stained tissue read as transmitted light showed its background class as an opaque wash over the image."""
    pytest.importorskip("napari")
    from napari_levelset.napari._outputs import OutputLayers

    label = OutputLayers.transparent_label
    assert label("auto", {"contrast": "transmitted", "n_classes": 2}, 2) == 1
    assert label("auto", {"contrast": "linear", "regions": "instances", "n_classes": 2}, 2) == 1
    assert label("auto", {"contrast": "fluorescence", "n_classes": 2}, 2) == 1
    assert label("auto", {"contrast": "linear", "regions": "classes", "n_classes": 4}, 2) is None
