#!/usr/bin/env python
"""Ablation of the region merging on BSDS500: which of its parts buys what.

Reads the level-set label maps that ``benchmarks/bsds.py`` stored (run it first
with the same ``--out``, ``--split``, ``--limit``, ``--classes`` and ``--set``),
then merges their connected regions with ``napari_levelset.post.regions.merge_regions``
under each variant and reports SC / PRI / VI at ODS and OIS over all
``N|m=weight`` scales, like ``bsds.py`` does for its ``levelset+ms`` output::

    python benchmarks/bsds.py --limit 20 --methods levelset --classes 16,24 --out benchmarks/out/val
    python benchmarks/merge_ablation.py --limit 20 --classes 16,24 --out benchmarks/out/val

Variants (the package default is the last):

``plain``        the level-set energy on the prepared image as it is, boundary = length
``+normalise``   features scaled to a fixed overall spread (contrast-relative weight)
``+edge``        boundary pairs weighted by the edge-stopping weight
``+texture``     plus a local-contrast channel (all three: the default)

``--rgb`` adds one more row: the default merging on the normalised RGB image
instead of CIELAB (what a network trained on RGB sees), e.g. for U-Net label
maps (``--set model='unet' --set iterations=20 --set init='kmeans'``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from _common import (
    OUT,
    add_data_args,
    bsds_image,
    bsds_truth,
    label_cache_dir,
    levelset_features,
    list_images,
    map_tasks,
    ods_ois_cells,
    ods_ois_head,
    parse_list,
    parse_set,
    read_bsds_image,
    scale_dir,
)

from napari_levelset import evaluation as metrics
from napari_levelset.io.prepare import prepare_image
from napari_levelset.post.regions import connected_regions, merge_regions

VARIANTS = {
    "plain": dict(normalize=False, edge=0.0, texture=0.0),
    "+normalize": dict(normalize=True, edge=0.0, texture=0.0),
    "+normalize+edge": dict(normalize=True, edge=2.0, texture=0.0),
    "+normalize+edge+texture (default)": dict(normalize=True, edge=2.0, texture=1.0),
}
DEFAULT_ROW = "+normalize+edge+texture (default)"
RGB_ROW = "the default, on normalised RGB"
#: weights swept per variant: the plain energy is on the unscaled features, so it needs its own range
WEIGHTS = {
    "plain": [0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.8],
    "default": [0.1, 0.2, 0.3, 0.5, 0.8, 1.2, 2.0],
}


def score_image(task: dict) -> dict[str, list[dict]]:
    """All variants and weights for one image and all N: {variant: [result per scale]}."""
    image = read_bsds_image(Path(task["image"]))
    gts = metrics.load_ground_truth(task["gt"])
    features = levelset_features(image, task["config"])
    variants = dict(VARIANTS)
    rgb = None
    if task.get("rgb"):
        rgb = prepare_image(image, color="rgb").data[0]
        variants[RGB_ROW] = VARIANTS[DEFAULT_ROW]
    out = {name: [] for name in variants}
    for n in task["classes"]:
        path = Path(task["labels"]) / scale_dir(n) / f"{task['id']}.npz"
        if not path.is_file():
            raise SystemExit(f"no stored labels {path}: run benchmarks/bsds.py with the same settings first")
        with np.load(path) as z:
            regions = connected_regions(z["labels"], task["min_region"])
        for name, options in variants.items():
            f = rgb if name == RGB_ROW else features
            for w in WEIGHTS["plain" if name == "plain" else "default"]:
                out[name].append(metrics.evaluate_image(merge_regions(regions, f, w, **options), gts))
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(p, limit=None, classes="16,24")
    p.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--min-region", type=float, default=0.001)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--rgb", action="store_true", help="also the default merging on normalised RGB (see above)")
    p.add_argument("--out", type=Path, default=OUT / "bsds-val")
    args = p.parse_args(argv)

    settings = parse_set(args.settings)
    config = {"settings": settings}
    labels = label_cache_dir(args.out, "levelset", config)
    classes = parse_list(args.classes)
    ids = list_images(args.bsds.resolve(), args.split, args.limit)
    tasks = [
        dict(
            id=i,
            image=str(bsds_image(args.bsds, args.split, i)),
            gt=str(bsds_truth(args.bsds, args.split, i)),
            labels=str(labels),
            classes=classes,
            config=config,
            min_region=args.min_region,
            rgb=args.rgb,
        )
        for i in ids
    ]
    results = map_tasks(score_image, tasks, args.workers, "ablation")

    lines = [
        f"BSDS500 {args.split}, {len(ids)} images, label maps of {settings or 'the defaults'}, "
        f"N in {classes}; scales N|m=weight",
        "",
        *ods_ois_head("merging"),
    ]
    summaries = {}
    for name in list(VARIANTS) + ([RGB_ROW] if args.rgb else []):
        weights = WEIGHTS["plain" if name == "plain" else "default"]
        scales = [f"{n}|m={w}" for n in classes for w in weights]
        s = metrics.summarize([r[name] for r in results], scales=scales)
        summaries[name] = s
        lines.append(f"| {name} | {ods_ois_cells(s)} |")
    print("\n".join(lines))
    return summaries


if __name__ == "__main__":
    main()
