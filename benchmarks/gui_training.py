"""The napari training loop end to end: one corrected image, the others unlabelled, a fine-tune, Apply.

The images of ``--images`` are opened as layers; the label file of the FIRST image only (matched by
``napari_levelset.training.data.match_label_files``: ``man_seg13.tif`` for ``t13.tif``, ...) is opened
as a Labels layer and given to the "Train a U-Net" panel, every other image is ticked unlabelled.
The panel fine-tunes the shipped U-Net (2 classes) for ``--steps`` steps, then Apply makes instances
of every image.  Printed, per image: foreground Dice and F1 at IoU 0.5 of the applied instances
against the label files (the first image is the training label: not a held-out score), and beside
them, for the same model on the held-out images, ``segment(..., regions="instances")`` as the
model's preparation says (linear contrast) and with the contrast the image alone would choose
(``contrast="fluorescence"``, the instance path before models recorded their preparation).
``--screenshot`` saves the viewer with the panel.  Needs a display::

    xvfb-run -a python benchmarks/gui_training.py --images ../shared/data/nuclei/N2DL-HeLa/img \\
        --labels ../shared/data/nuclei/N2DL-HeLa/gt --steps 150 --screenshot docs/training_widget.png
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np


def wait(predicate, timeout: float) -> None:
    from qtpy.QtWidgets import QApplication

    end = time.perf_counter() + timeout
    while not predicate():
        if time.perf_counter() > end:
            raise TimeoutError("the panel did not finish in time")
        QApplication.processEvents()
        time.sleep(0.02)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=Path, required=True, help="a folder of images")
    ap.add_argument("--labels", type=Path, required=True, help="their instance masks (scores; the first trains)")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--contrast", default="linear", choices=["linear", "fluorescence"], help="training's")
    ap.add_argument("--screenshot", help="save the viewer after Apply to this PNG")
    args = ap.parse_args(argv)

    import napari

    from napari_levelset.evaluation.matching import foreground_dice, instance_scores
    from napari_levelset.io.read import read_image
    from napari_levelset.method.segmentation import segment
    from napari_levelset.training.data import IMAGE_EXT, match_label_files

    files = sorted(p for p in args.images.iterdir() if p.suffix.lower() in IMAGE_EXT)
    matched, _, _ = match_label_files([f.stem for f in files], list(args.labels.iterdir()))
    truth = {f.stem: read_image(matched[f.stem], labels=True) for f in files if f.stem in matched}
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1700, 1150)
    layers = [viewer.add_image(read_image(f), name=f.stem) for f in files]
    corrected = viewer.add_labels(truth[files[0].stem], name=f"{files[0].stem} corrected")
    _dock, panel = viewer.window.add_plugin_dock_widget("napari-levelset", "Train a U-Net")
    panel.set_labels(layers[0], corrected)
    for row in panel.rows[1:]:
        row.use.value = True
    panel.init.value, panel.classes.value, panel.contrast.value = "unet", "2", args.contrast
    panel.steps.value, panel.crop.value, panel.batch_size.value = args.steps, args.crop, args.batch_size
    print(
        f"{len(files)} images, labels of {files[0].name} only; {args.steps} steps of {args.batch_size} crops, "
        f"contrast {args.contrast}"
    )
    t = time.perf_counter()
    panel.start()
    wait(lambda: panel.worker is None, 3600)
    print(f"trained in {time.perf_counter() - t:.0f} s: {panel.status.value}")
    panel.apply_output.value = "instances"
    panel.apply()
    wait(lambda: all(f"{f.stem} trained" in viewer.layers for f in files), 1800)
    print("image | held out | Dice (panel) | F1@0.5 (panel) | Dice as prepared | Dice fluorescence contrast")
    for i, f in enumerate(files):
        if f.stem not in truth:
            continue
        got = np.asarray(viewer.layers[f"{f.stem} trained"].data)
        row = f"{f.stem} | {i > 0} | {foreground_dice(got, truth[f.stem]):.3f} | "
        row += f"{instance_scores(got, truth[f.stem])['f1']:.3f}"
        if i > 0:
            img = read_image(f)
            kw = dict(n_classes=2, model=str(panel.model_path), iterations=0, regions="instances")
            own = segment(img, **kw)
            fluo = segment(img, contrast="fluorescence", **kw)
            row += f" | {foreground_dice(own, truth[f.stem]):.3f} | {foreground_dice(fluo, truth[f.stem]):.3f}"
        print(row)
    if args.screenshot:  # the last image and what the model made of it
        last = files[-1].stem
        for layer in viewer.layers:
            layer.visible = layer.name in (last, f"{last} trained")
        shown = viewer.layers[last]
        shown.contrast_limits = [float(v) for v in np.percentile(np.asarray(shown.data), (0.5, 99.8))]
        viewer.layers[f"{last} trained"].opacity = 0.45
        viewer.reset_view()
        viewer.layers.selection.active = viewer.layers[f"{last} trained"]
        viewer.screenshot(args.screenshot, canvas_only=False)
    viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
