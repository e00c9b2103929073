"""Shared fixtures.

GUI tests (marked ``gui``) need a real display: run them as
``xvfb-run -a python -m pytest``.  Qt's ``offscreen`` platform has no OpenGL
here, so napari's canvas cannot be made without an X server; without a usable
display the ``gui`` tests are skipped with a clear reason.

torch is limited to one intra-op thread for the test session: on a small shared
machine, OpenMP threads competing with the Qt main thread (and with other
processes) make runs slower by an order of magnitude.
"""

from __future__ import annotations

import os
import subprocess
import sys
from functools import lru_cache

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np
import pytest

NO_DISPLAY_REASON = (
    "needs a display for napari's OpenGL canvas: run under a virtual display, "
    "e.g. `xvfb-run -a python -m pytest` (Qt's offscreen platform has no OpenGL here)"
)


@lru_cache(maxsize=1)
def display_problem() -> str | None:
    """None when a Qt GUI application can be made here, else the reason why not."""
    if sys.platform not in ("darwin", "win32"):
        if os.environ.get("QT_QPA_PLATFORM", "") in ("offscreen", "minimal"):
            return f"QT_QPA_PLATFORM={os.environ['QT_QPA_PLATFORM']}: " + NO_DISPLAY_REASON
        if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
            return "no DISPLAY set: " + NO_DISPLAY_REASON
    # A broken DISPLAY makes Qt abort the whole process, so probe in a child.
    try:
        probe = subprocess.run(
            [sys.executable, "-c", "from qtpy.QtWidgets import QApplication; QApplication([])"],
            capture_output=True,
            timeout=60,
        )
    except subprocess.TimeoutExpired:
        return "starting a Qt application timed out: " + NO_DISPLAY_REASON
    if probe.returncode != 0:
        return "cannot start a Qt application on this display: " + NO_DISPLAY_REASON
    return None


def pytest_collection_modifyitems(config, items):
    gui_items = [item for item in items if "gui" in item.keywords]
    if not gui_items:
        return
    reason = display_problem()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=reason)
    for item in gui_items:
        item.add_marker(skip)


# --------------------------------------------------------------------------- images
def disk_image(size: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A noisy bright disk on a dark background and its truth (0/1)."""
    yy, xx = np.mgrid[:size, :size]
    truth = ((yy - size * 0.5) ** 2 + (xx - size * 0.45) ** 2 < (size * 0.25) ** 2).astype(np.uint8)
    rng = np.random.default_rng(seed)
    img = 0.3 + 0.4 * truth + rng.normal(0.0, 0.08, truth.shape)
    return img.astype(np.float32), truth


def three_regions(size: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Dark background (0), a mid-grey square (1) and a bright square (2), with noise."""
    truth = np.zeros((size, size), np.uint8)
    q = size // 8
    truth[2 * q : 6 * q, q : 3 * q + q // 2] = 1
    truth[2 * q : 6 * q, 4 * q + q // 2 : 7 * q] = 2
    rng = np.random.default_rng(seed)
    img = np.array([0.15, 0.5, 0.85])[truth] + rng.normal(0.0, 0.05, truth.shape)
    return img.astype(np.float32), truth


def best_iou(pred: np.ndarray, truth: np.ndarray) -> float:
    """Mean IoU of the truth regions with their best one-to-one predicted labels (greedy)."""
    t_ids = np.unique(truth)
    p_ids = list(np.unique(pred))
    scores = []
    for t in t_ids:
        tm = truth == t
        best, best_p = 0.0, None
        for p in p_ids:
            pm = pred == p
            iou = (tm & pm).sum() / max(1, (tm | pm).sum())
            if iou > best:
                best, best_p = iou, p
        if best_p is not None:
            p_ids.remove(best_p)
        scores.append(best)
    return float(np.mean(scores))


# --------------------------------------------------------------------------- fixtures
@pytest.fixture
def errors(monkeypatch):
    """Error notifications the widget shows, collected instead of displayed."""
    from napari_levelset.napari import widget as W

    shown: list[str] = []
    monkeypatch.setattr(W, "_notify_error", shown.append)
    return shown


@pytest.fixture
def make_widget(make_napari_viewer, qtbot, errors):
    """``make_widget(show=False) -> (viewer, widget)``: a viewer with the docked widget.

    On teardown any run still going is stopped and waited for, so no worker
    outlives its test.
    """
    made = []

    def factory(show: bool = False):
        viewer = make_napari_viewer(show=show)
        _dock, widget = viewer.window.add_plugin_dock_widget("napari-levelset", "Level-set segmentation")
        made.append(widget)
        return viewer, widget

    yield factory

    from superqt.utils._qthreading import WorkerBase

    for widget in made:
        if widget.session.run is not None:
            widget.session.cancel()
    WorkerBase.await_workers(msecs=20_000)
    qtbot.wait(1)


def run_and_wait(qtbot, widget, timeout: int = 60_000, refine: bool = False) -> None:
    with qtbot.waitSignal(widget.run_finished, timeout=timeout):
        worker = widget.refine() if refine else widget.run()
        assert worker is not None, widget.session.last_error
