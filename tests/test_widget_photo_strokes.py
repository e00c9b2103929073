"""The widget on a colour photograph with one short stroke per region (the docs' walk-through).

Runs under pytest-xvfb (omit ``-p no:xvfb``); saves a screenshot, which
``NAPARI_LEVELSET_PHOTO_STROKES_SCREENSHOT=docs/strokes_photo_widget.png`` keeps.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import run_and_wait
from test_widget import save_screenshot

gui = pytest.mark.gui

#: (label, first point, last point) of each short stroke on the coffee sample (213 x 320 pixels), row, column
STROKES = (
    (1, (185, 262), (185, 290)),  # the table, bottom right
    (2, (150, 60), (150, 80)),  # the saucer, left
    (3, (75, 140), (75, 160)),  # the coffee
    (4, (50, 104), (64, 104)),  # the cup's white inside, left wall
)
#: a point of each region far from its stroke, and its label
FAR = (((205, 10), 1), ((20, 300), 1), ((125, 245), 2), ((80, 185), 3), ((45, 200), 4))


@gui
def test_one_short_stroke_per_region_on_a_photograph(make_widget, qtbot, tmp_path, errors):
    """Four short strokes (a 3-pixel brush, 15-30 pixels long) label the whole table, saucer, coffee and cup."""
    viewer, widget = make_widget(show=True)
    viewer.window.resize(1600, 900)
    viewer.open_sample("napari-levelset", "coffee")
    widget.form.n_classes.value = 4
    scribbles = widget.add_scribble_layer()
    scribbles.brush_size = 3
    for label, (r0, c0), (r1, c1) in STROKES:
        for t in np.linspace(0, 1, 2 * max(abs(r1 - r0), abs(c1 - c0)) + 1):
            scribbles.paint((round(r0 + t * (r1 - r0)), round(c0 + t * (c1 - c0))), label, refresh=False)
    scribbles.refresh()
    painted = np.asarray(scribbles.data)
    assert sorted(np.unique(painted)) == [0, 1, 2, 3, 4] and np.count_nonzero(painted) < 0.01 * painted.size
    run_and_wait(qtbot, widget)
    assert not errors, errors
    out = widget.output_layer(widget.image_layer)
    labels = np.asarray(out.data)
    assert all(labels[point] == label for point, label in FAR), [(labels[p], k) for p, k in FAR]
    assert np.all(np.bincount(labels.ravel(), minlength=5)[1:] > 0.03 * labels.size)
    viewer.layers.selection.active = scribbles
    viewer.reset_view()
    qtbot.wait(50)
    save_screenshot(viewer, tmp_path / "strokes_photo_widget.png", "NAPARI_LEVELSET_PHOTO_STROKES_SCREENSHOT")
