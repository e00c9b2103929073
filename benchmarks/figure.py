"""A figure of a few BSDS500 images beside their segmentations.

Each row: the image, this project's per-image level-set segmentation (merged
regions, each painted in its mean colour, boundaries in yellow), Felzenszwalb's
segmentation drawn the same way, and the first human segmentation.  The
defaults are the settings each method's SC is best at over BSDS500 val (ODS;
``benchmarks/RESULTS.md``, "Quality").

    python benchmarks/figure.py --bsds ../shared/data/bsds500 --ids 101085,103070,108005,106024 \
        -o docs/bsds_examples.png
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path

import numpy as np
from _common import DEFAULT_BSDS, REPO, bsds_image, bsds_truth, felzenszwalb_labels

from napari_levelset import evaluation as metrics


def paint(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    from skimage.color import label2rgb
    from skimage.segmentation import mark_boundaries

    avg = label2rgb(labels, image, kind="avg", bg_label=-1)
    return (mark_boundaries(avg / 255.0, labels, color=(1, 1, 0)) * 255).astype(np.uint8)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bsds", type=Path, default=DEFAULT_BSDS)
    ap.add_argument("--split", default="val")
    ap.add_argument("--ids", default="101085,103070,108005,106024")
    ap.add_argument("--classes", type=int, default=24)
    ap.add_argument("--merge", type=float, default=0.8, help="merge weight of the level-set regions")
    ap.add_argument("--min-region", type=float, default=0.001)
    ap.add_argument("--felzenszwalb-scale", type=float, default=750)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("-o", "--output", type=Path, default=REPO / "docs" / "bsds_examples.png")
    args = ap.parse_args(argv)

    import imageio.v3 as iio
    from skimage.transform import rescale

    from napari_levelset import segment

    settings = {k: ast.literal_eval(v) for k, _, v in (s.partition("=") for s in args.set)}
    rows = []
    for i in args.ids.split(","):
        image = iio.imread(bsds_image(args.bsds, args.split, i))
        ours = segment(image, args.classes, regions="merged", merge=args.merge, min_region=args.min_region, **settings)
        fz = felzenszwalb_labels(image, args.felzenszwalb_scale, first=0)  # mark_boundaries: 0 is background
        human = metrics.load_ground_truth(bsds_truth(args.bsds, args.split, i))[0]
        tiles = [image, paint(image, ours), paint(image, fz), paint(image, human)]
        if image.shape[0] > image.shape[1]:  # portrait: keep every row the same height
            tiles = [np.rot90(t) for t in tiles]
        gap = np.full((tiles[0].shape[0], 6, 3), 255, np.uint8)
        rows.append(np.concatenate([piece for t in tiles for piece in (t, gap)][:-1], axis=1))
        print(
            f"{i}: {len(np.unique(ours))} level-set regions, {len(np.unique(fz))} Felzenszwalb regions", file=sys.stderr
        )
    gap = np.full((6, rows[0].shape[1], 3), 255, np.uint8)
    grid = np.concatenate([piece for r in rows for piece in (r, gap)][:-1], axis=0)
    grid = (rescale(grid, 0.5, channel_axis=-1, anti_aliasing=True) * 255).astype(np.uint8)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(args.output, grid)
    print(f"wrote {args.output} {grid.shape}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
