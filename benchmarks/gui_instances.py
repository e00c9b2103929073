"""How soon and how fast the dock widget makes instances, beside ``segment`` in the same process.

One image (a TIFF given with ``--image``, opened as a user would; else a synthetic 1024²
fluorescence phantom, 8-bit), Output = instances with the widget's defaults (every other
setting auto), Run.  Library and widget runs alternate (``--repeats`` of each, the first
of a pair swapping every repeat), so a busy machine slows both alike.  Printed per repeat,
then as medians:

* ``first``: seconds from pressing Run to the first labels in the output layer;
* ``widget``: seconds from Run to the instances layer holding the run's instances;
* ``library``: seconds of ``segment(image, regions="instances")``;
* ``ratio``: widget / library;
* ``equal``: whether the instances layer holds exactly ``segment``'s labels;
* ``left``: the first "about N s left" of the status line against the seconds the run's
  iterations then took (from that update to the last one).

The widget is docked first and its background imports waited for, as a user would set up a
run meanwhile.  Needs a display: run it as, e.g.::

    xvfb-run -a python benchmarks/gui_instances.py --image ../shared/data/nuclei/N2DH-GOWT1/img/t01.tif
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np


def phantom(size: int) -> np.ndarray:
    """A ``size``² synthetic fluorescence image of nuclei (``evaluation.synthetic.nuclei``), 8-bit."""
    from napari_levelset.evaluation.synthetic import nuclei

    img, _ = nuclei((size, size), n_objects=max(8, size // 16), diameter=size / 24, seed=3)
    img = img.astype(np.float32)
    lo, hi = np.percentile(img, (0.1, 99.9))
    return np.clip((img - lo) / (hi - lo) * 255.0, 0, 255).astype(np.uint8)


class WidgetRun:
    """Runs the widget on the picked image and times what it shows (main thread, Qt event loop)."""

    LEFT = re.compile(r"about (\d+) (s|min) left")

    def __init__(self, widget) -> None:
        self.widget = widget
        self.t0 = 0.0
        self.first: float | None = None
        self.estimates: list[tuple[float, float]] = []  # (time of the update, seconds left it said)
        self.last_update = 0.0
        widget.snapshot_applied.connect(self._applied)

    def _applied(self, iteration: int) -> None:
        now = time.perf_counter() - self.t0
        if self.first is None:
            self.first = now
        if iteration > 0:
            self.last_update = now
        m = self.LEFT.search(self.widget.run_status.status.text())
        if m:
            self.estimates.append((now, float(m.group(1)) * (60 if m.group(2) == "min" else 1)))

    def __call__(self) -> tuple[float, float, np.ndarray]:
        """One run: (seconds to the first labels, seconds to the instances, the instances)."""
        from qtpy.QtCore import QEventLoop

        widget = self.widget
        self.first, self.estimates = None, []
        loop = QEventLoop()
        widget.run_finished.connect(loop.quit)
        self.t0 = time.perf_counter()
        if widget.run() is None:
            raise SystemExit(f"the run did not start: {widget.run_status.status.text()}")
        loop.exec_()
        total = time.perf_counter() - self.t0
        widget.run_finished.disconnect(loop.quit)
        layer = widget.instances_layer()
        if layer is None:
            raise SystemExit(f"no instances: {widget.run_status.status.text()}")
        return self.first if self.first is not None else float("nan"), total, np.asarray(layer.data)

    def left_text(self) -> str:
        """The first time-left estimate against the seconds the iterations then took."""
        if not self.estimates:
            return "-"
        at, said = self.estimates[0]
        return f"{said:.0f} s at {at:.1f} s (took {self.last_update - at:.1f} s)"


def wait_for_preload(widget) -> None:
    """Until the widget's background imports (``_worker.preload``) are done."""
    from qtpy.QtWidgets import QApplication

    while any(t.name == "napari-levelset preload" for t in threading.enumerate()):
        QApplication.processEvents()
        time.sleep(0.02)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", type=Path, help="a TIFF to segment (default: a synthetic phantom)")
    ap.add_argument("--size", type=int, default=1024, help="the phantom's side in pixels")
    ap.add_argument("--repeats", type=int, default=3, help="library and widget runs, each")
    ap.add_argument("--screenshot", help="save the viewer after the last widget run to this PNG")
    args = ap.parse_args(argv)

    import napari

    from napari_levelset.method.segmentation import segment
    from napari_levelset.napari.widget import LevelSetWidget

    viewer = napari.Viewer(show=True)
    if args.image is not None:
        layer = viewer.open(str(args.image))[0]
        name = args.image.name
    else:
        layer = viewer.add_image(phantom(args.size), name="phantom")
        name = f"synthetic phantom {args.size}²"
    widget = LevelSetWidget(viewer)
    viewer.window.add_dock_widget(widget, name="level set")
    form = widget.form
    form.output.value = "instances"
    form.every.value = 0  # auto (the widget remembers a number typed in another session)
    form.uncertainty.value = False
    wait_for_preload(widget)
    image = np.asarray(layer.data)
    print(f"{name}: {image.shape} {image.dtype}, Output = instances, the widget's defaults")
    print("repeat | first s | widget s | library s | ratio | equal | objects | first time-left estimate")
    timer = WidgetRun(widget)
    rows = []
    for r in range(args.repeats):
        for what in ("library", "widget") if r % 2 == 0 else ("widget", "library"):
            if what == "library":
                t = time.perf_counter()
                expected = segment(image, regions="instances")
                library = time.perf_counter() - t
            else:
                first, total, got = timer()
        equal = bool(np.array_equal(got, expected))
        rows.append((first, total, library, total / library, equal))
        print(
            f"{r + 1} | {first:.2f} | {total:.1f} | {library:.1f} | {total / library:.2f} | {equal} | "
            f"{int(expected.max())} | {timer.left_text()}"
        )
    med = [statistics.median(c) for c in zip(*[row[:4] for row in rows])]
    print(
        f"median | {med[0]:.2f} | {med[1]:.1f} | {med[2]:.1f} | {med[3]:.2f} | "
        f"{all(row[4] for row in rows)} | {int(expected.max())} |"
    )
    if args.screenshot:
        viewer.screenshot(args.screenshot, canvas_only=False)
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
