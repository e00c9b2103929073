#!/usr/bin/env python
"""BSDS500: the pretrained U-Net (direct and fine-tuned) beside the per-image mode.

Runs ``benchmarks/bsds.py`` (cached, resumable) once per configuration, all in
one process after a warm-up (so torch's one-time start-up costs are not
charged to the first image), then prints one table with SC/PRI/VI at ODS and
OIS, the mean seconds per segmentation and the time relative to the per-image
mode::

    python benchmarks/unet_bsds.py --limit 20 --classes 2,3,4,5,6,7,8 \\
        --finetune 20 --out benchmarks/out/unet-val

Configurations (each one ``napari_levelset.segment(image, n_classes=N, seed=0, ...)``):

``per-image``   default settings (the per-image CNN, ``iterations=100``)
``unet``        ``model="unet", iterations=0``: the pretrained network as it is
``unet+SPEC``   ``model="unet"`` plus the settings of one ``--ft SPEC``, e.g.
                ``--ft iterations=20`` (20 fine-tune steps of the head, the
                default ``finetune="head"``),
                ``--ft "iterations=20,init='kmeans'"`` (the head restarted from
                the image's k-means, then 20 steps) or
                ``--ft "iterations=5,finetune='all',lr=0.003"`` (5 steps of
                the whole network).

Set ``OMP_NUM_THREADS`` to fix the CPU threads (``benchmarks/RESULTS.md`` says how many
each of its timings used).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import bsds  # the one script run by another: bsds.main, in this process after the warm-up
import numpy as np
from _common import (
    OUT,
    add_data_args,
    bsds_image,
    list_images,
    ods_ois_cells,
    ods_ois_head,
    parse_set,
    read_bsds_image,
    timed,
)


def warm_up() -> None:
    from napari_levelset import segment

    img = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)
    segment(img, n_classes=2, iterations=1, seed=0)


def timing(args, configs: dict) -> str:
    """Seconds per segmentation with the configurations interleaved image by image.

    Each call is ``napari_levelset.segment(image, n_classes=N, regions=R, ...)`` with
    ``N = --timing-classes`` and ``R = --timing-regions``, so the time includes
    making the regions.  The order of the configurations rotates from image to
    image, so all of them see the same load.
    """
    from napari_levelset import segment

    ids = list_images(args.bsds.resolve(), args.split, args.timing)
    n, regions = args.timing_classes, args.timing_regions
    secs = {name: [] for name in configs}
    for k, i in enumerate(ids):
        image = read_bsds_image(bsds_image(args.bsds, args.split, i))
        names = list(configs)
        names = names[k % len(names) :] + names[: k % len(names)]  # rotate the order
        for name in names:
            settings = parse_set(configs[name][1::2])  # the values of its ["--set", "K=V", ...]
            seed = settings.pop("seed", 0)
            secs[name].append(timed(segment, image, n_classes=n, seed=seed, regions=regions, **settings)[1])
    base = np.median(secs["per-image"]) if "per-image" in secs else None
    rows = [
        f"Interleaved timing, N={n}, regions={regions}, first {len(ids)} images (median s/seg):",
        "",
        "| method | median s/seg | vs per-image |",
        "|---|---|---|",
    ]
    for name, v in secs.items():
        rel = f"{np.median(v) / base:.3f}x" if base else "-"
        rows.append(f"| {name} | {np.median(v):.2f} | {rel} |")
    return "\n".join(rows)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(p, limit=20, classes="2,3,4,5,6,7,8")
    p.add_argument("--model", default="unet", help="unet or a model file")
    p.add_argument(
        "--ft",
        action="append",
        default=[],
        metavar="K=V,K=V",
        help="one fine-tuned configuration (repeatable), e.g. iterations=20",
    )
    p.add_argument("--skip-per-image", action="store_true")
    p.add_argument(
        "--skip-direct",
        action="store_true",
        help="no direct (not fine-tuned) U-Net run, e.g. for N beyond the model's trained heads",
    )
    p.add_argument(
        "--timing",
        type=int,
        default=0,
        metavar="K",
        help="also time every configuration interleaved on the first K images (same load for all; medians reported)",
    )
    p.add_argument("--timing-classes", type=int, default=4, help="N of the timed segmentations")
    p.add_argument("--timing-regions", default="classes", help="output of the timed segmentations")
    p.add_argument("--timing-only", action="store_true", help="only the timing, no benchmark")
    p.add_argument(
        "--regions",
        default="classes",
        help="outputs scored from every segmentation (bsds.py --regions): classes, connected, merged",
    )
    p.add_argument(
        "--merge", default="0.1,0.2,0.3,0.5,0.8,1.2,2", help="merge weights of the merged output (bsds.py --merge)"
    )
    p.add_argument("--workers", type=int, default=1, help="worker processes of the benchmark runs (not the timing)")
    p.add_argument("--out", type=Path, default=OUT / "unet-val")
    args = p.parse_args(argv)

    common = [
        "--bsds",
        str(args.bsds),
        "--split",
        args.split,
        "--limit",
        str(args.limit),
        "--classes",
        args.classes,
        "--methods",
        "levelset",
        "--out",
        str(args.out),
        "--regions",
        args.regions,
        "--merge",
        args.merge,
        "--workers",
        str(args.workers),
    ]
    model = f"model={args.model!r}"
    configs = {}
    if not args.skip_per_image or args.timing_only:
        configs["per-image"] = []
    if not args.skip_direct:
        configs["unet"] = ["--set", model, "--set", "iterations=0"]
    for spec in args.ft or ["iterations=20"]:
        items = [kv.strip() for kv in spec.split(",") if kv.strip()]
        configs["unet+" + ",".join(items)] = ["--set", model, *[a for kv in items for a in ("--set", kv)]]

    warm_up()
    if args.timing_only:
        table = timing(args, configs)
        print(table)
        return {}
    summaries = {}
    for name, extra in configs.items():
        print(f"== {name}", file=sys.stderr)
        for output, summary in bsds.main(common + extra).items():
            summaries[name if output == "levelset" else f"{name} {output[len('levelset') :]}"] = summary

    base = next((s["sec_per_seg"] for n, s in summaries.items() if n.startswith("per-image")), None)
    lines = [
        f"BSDS500 {args.split}, first {args.limit} images, N in {{{args.classes}}}; ODS = best N over the split, "
        "OIS = best N per image",
        "",
        "(+cc: connected regions; +ms: merged regions, scale N|m=merge weight)",
        "",
        *ods_ois_head("method", "s/seg", "time vs per-image"),
    ]
    for name, s in summaries.items():
        rel = f"{s['sec_per_seg'] / base:.2f}x" if base else "-"
        lines.append(f"| {name} | {ods_ois_cells(s)} | {s['sec_per_seg']:.2f} | {rel} |")
    if args.timing:
        lines += ["", timing(args, configs)]
    table = "\n".join(lines)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "unet_table.md").write_text(table + "\n")
    return summaries


if __name__ == "__main__":
    main()
