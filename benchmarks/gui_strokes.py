"""How soon the dock widget shows what strokes do: the first labels after Run, and a stroke's effect mid-run.

For each BSDS500 image (the strokes of ``benchmarks/strokes.py``: one thin stroke in each
large region of the coarsest human segmentation), the widget runs with the strokes of all
classes but the last; once its first snapshot is shown, the last class's stroke is
written into the scribble layer (as painting does: ``Labels.events.data``).  Printed per
image, and as medians:

* ``first``: seconds from pressing Run to the first labels shown in the output layer;
* ``stroke``: seconds from the new stroke to the first shown snapshot in which most of the
  stroke's pixels carry its label;
* ``mIoU``: the mean IoU over the stroked classes of the labels shown at the end of the run
  (the benchmark's score), beside the same run's ``segment`` called directly (``api``).

The first image's run is also the widget's first run in this process (torch and the
engine are preloaded when the widget docks, as for a user).  Needs a display: run it as
``xvfb-run -a python benchmarks/gui_strokes.py --bsds ../shared/data/bsds500``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from _common import bsds_case, list_images, stroke_scores  # the strokes and the score of benchmarks/strokes.py


def _wait(app, until, timeout: float) -> bool:
    t0 = time.perf_counter()
    while not until():
        app.processEvents()
        time.sleep(0.002)
        if time.perf_counter() - t0 > timeout:
            return False
    return True


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bsds", type=Path, required=True, help="the BSDS500 folder")
    ap.add_argument("--split", default="val")
    ap.add_argument("--limit", type=int, default=5, help="images (the first of the split)")
    ap.add_argument("--iterations", type=int, default=40, help="iterations of each run (segment's with strokes)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the strokes")
    ap.add_argument(
        "--strokes", default="long", choices=("long", "short", "short2"), help="the strokes (as benchmarks/strokes.py)"
    )
    ap.add_argument("--screenshot", help="save the viewer after the last run to this PNG")
    args = ap.parse_args(argv)

    import napari
    from qtpy.QtWidgets import QApplication

    from napari_levelset import segment

    ids = list_images(args.bsds, args.split, args.limit)
    cases = [bsds_case(args.bsds, args.split, i, args.seed, args.strokes) for i in ids]
    viewer = napari.Viewer(show=True)
    _, widget = viewer.window.add_plugin_dock_widget("napari-levelset", "Level-set segmentation")
    app = QApplication.instance()
    shown: list[tuple[float, int]] = []
    widget.snapshot_applied.connect(lambda it: shown.append((time.perf_counter(), it)))
    rows = []
    print("image      N  first s  stroke s  mIoU widget  mIoU api")
    for case in cases:
        for layer in list(viewer.layers):
            viewer.layers.remove(layer)
        image = viewer.add_image(case.image, name=case.id, rgb=True)
        widget.image_layer = image
        widget.form.n_classes.value = case.n_classes
        widget.form.iterations.value = args.iterations
        last = case.n_classes
        first_strokes = np.where(case.strokes == last, 0, case.strokes).astype(np.uint8)
        scribbles = viewer.add_labels(first_strokes, name=f"{case.id} scribbles")
        widget.scribble_layer = scribbles
        shown.clear()
        t_run = time.perf_counter()
        widget.run()
        if not _wait(app, lambda: bool(shown), 60):
            print(f"{case.id}: no snapshot within 60 s", file=sys.stderr)
            return 1
        first = shown[0][0] - t_run
        out = widget.output_layer(image)
        stroke = case.strokes == last
        t_stroke = time.perf_counter()
        n_before = len(shown)
        scribbles.data = case.strokes.astype(np.uint8)  # as painting: events.data reaches the running optimisation

        def took(n_before=n_before, out=out, stroke=stroke, last=last) -> bool:
            return len(shown) > n_before and np.mean(np.asarray(out.data)[stroke] == last) > 0.5

        reached = _wait(app, lambda: took() or not widget.is_running, 60)
        effect = shown[-1][0] - t_stroke if reached and took() else float("nan")
        _wait(app, lambda: not widget.is_running, 120)
        ours = stroke_scores(np.asarray(out.data), case)["miou"]
        api = stroke_scores(segment(case.image, n_classes=case.n_classes, scribbles=case.strokes), case)["miou"]
        rows.append((first, effect, ours, api))
        print(f"{case.id:9s} {case.n_classes:2d}  {first:7.2f}  {effect:8.2f}  {ours:11.3f}  {api:8.3f}", flush=True)
    if args.screenshot:
        viewer.screenshot(args.screenshot, canvas_only=False)
    first, effect, ours, api = zip(*rows)
    print(
        f"median     --  {statistics.median(first):7.2f}  {statistics.median(effect):8.2f}  "
        f"{statistics.mean(ours):11.3f}  {statistics.mean(api):8.3f}   (mIoU: mean)"
    )
    print(f"the first image's run is the widget's first: first labels after {first[0]:.2f} s")
    viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
