#!/usr/bin/env python
"""Strokes benchmark: segmentation guided by a few thin synthetic strokes, against the truth they came from.

A user paints one short stroke per class and expects every pixel of the object
it touches to get that class.  This script draws such strokes from expert
segmentations, deterministically (``--seed``), runs every method with the same
strokes and scores the result against the regions the strokes were drawn in.

Strokes (0 = unpainted, k = class k; the ``scribbles`` of ``napari_levelset.segment``):

BSDS500 (``--bsds DIR``, ``--split``, default val)
    Of each image's human segmentations the coarsest (fewest regions; the first
    of equals).  Its regions of at least 2 % of the image, the 8 largest when
    there are more, are the classes 1..K, largest first.  In each one stroke:
    a connected piece of the skeleton (``skimage.morphology.skeletonize``) of
    the region eroded by 3 px (less for a region too thin for that), grown
    from a random point of the skeleton's largest piece (breadth first along
    the skeleton) to at most 2 % of the region's pixels.
Nuclei (``--nuclei DIR``, laid out as ``benchmarks/nuclei.py`` reads it)
    GOWT1 and HeLa (instance masks) and NIH3T3 (a foreground mask, whose
    connected components stand in for the nuclei).  Class 2 is the nuclei:
    one stroke as above in each of three nuclei picked at random among those
    at least as large as the median and off the image border.  Class 1 is the
    background: three strokes on the skeleton of the background eroded by
    8 px, each at most a tenth of the image's shorter side, each started at
    least a quarter of that side away from the strokes before it.

These are the ``--strokes long`` strokes (the default).  People paint shorter ones:
``--strokes short`` puts one stroke of a 3-px brush (a disc of radius 1) in each
region, along the same eroded skeleton from one of its far ends (the skeleton
pixel farthest along it from a random one), at most 2 % of the region's pixels
in one stretch; on nuclei one such stroke in each of the three nuclei and one on
the background (from a far end of its skeleton, at most a tenth of the shorter
side long).  ``--strokes short2`` adds a second such stroke from the other far
end (the skeleton pixel farthest from the first end): two per region, each at
most 2 %; two on the background.

Scores, per image, then averaged over the images of a set:

``mean IoU``
    over the stroked classes k: the truth's region of class k against all
    pixels labelled k.
``pixel accuracy``
    over the pixels of the stroked regions (on nuclei images: every pixel).
``Dice`` (nuclei)
    of the foreground, labels 2 against the nuclei.

Methods (``--methods``, comma-separated), each run in this process on the
image as stored (RGB uint8, grey uint8 or uint16) with the strokes:

``levelset`` / ``levelset:key=value,...``
    ``napari_levelset.segment(image, n_classes=K, scribbles=strokes, **settings)``,
    its defaults unless settings are given (e.g. ``levelset:model=unet,iterations=30``;
    values read as Python literals).
``first`` / ``first:key=value,...``
    the first result a user sees: ``Segmenter(image, K, scribbles=strokes, **settings).labels()``
    (the strokes' start: their classes' means seeded from the stroked pixels, no
    iteration yet); its time is the time to the first labels.
``rf``
    scikit-image's trainable segmentation as in its gallery example:
    ``multiscale_basic_features`` (intensity and texture, σ 1..16, every
    channel) and ``fit_segmenter`` / ``predict_segmenter`` with
    ``RandomForestClassifier(n_estimators=50, n_jobs=-1, max_depth=10,
    max_samples=0.05, random_state=0)``.  Needs scikit-learn
    (``pip install scikit-learn``).

Time is the wall clock of the method's call alone (features and training
included for ``rf``), after one warm-up call of every method on a small
synthetic image.  A method that raises is reported and the run goes on.

Example::

    python benchmarks/strokes.py --bsds ../shared/data/bsds500 --nuclei ../shared/data/nuclei --limit 20 \\
        --methods levelset,rf --json /tmp/strokes.json --figure /tmp/strokes.png

``--figure`` writes a PNG with a row per image (the first image of each set, at
most three): the image with its strokes, the stroked truth, each method's labels,
class k in the same colour everywhere.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from _common import (
    NUCLEI_SETS,
    STROKE_KINDS,
    Case,
    bsds_case,
    list_images,
    markdown,
    nuclei_case,
    parse_settings,
    read_nuclei_image,
    stroke_scores,
    timed,
    warm_up_runs,
)


# ------------------------------------------------------------------ the cases (the strokes: see _common)
def bsds_cases(root: Path, split: str, limit: int | None, seed: int, kind: str = "long", start: int = 0) -> list[Case]:
    """The split's images ``start`` .. ``start + limit`` (sorted by id; all from ``start`` without ``limit``)."""
    ids = list_images(root, split)[start:]
    return [bsds_case(root, split, i, seed, kind) for i in ids[:limit]]


def nuclei_cases(root: Path, limit: int | None, seed: int, kind: str = "long") -> list[Case]:
    """The images of every nuclei set found under ``root`` (a missing set's folder is skipped)."""
    sets = [d for d in NUCLEI_SETS.values() if (root / d.folder / "img").is_dir()]
    if not sets:
        raise SystemExit(f"no nuclei sets under {root}: expected {', '.join(d.folder for d in NUCLEI_SETS.values())}")
    return [
        nuclei_case(dataset, image_id, read_nuclei_image(image), read_nuclei_image(truth), seed, kind)
        for dataset in sets
        for image_id, image, truth in dataset.items(root, limit)
    ]


# ------------------------------------------------------------------ methods
Run = Callable[[np.ndarray, np.ndarray, int], np.ndarray]


def run_levelset(image: np.ndarray, strokes: np.ndarray, n_classes: int, **settings: Any) -> np.ndarray:
    """``napari_levelset.segment(image, n_classes=K, scribbles=strokes, **settings)``."""
    from napari_levelset import segment

    return np.asarray(segment(image, n_classes=n_classes, scribbles=strokes, **settings))


def run_first(image: np.ndarray, strokes: np.ndarray, n_classes: int, **settings: Any) -> np.ndarray:
    """The labels a ``Segmenter`` with these strokes shows before its first iteration."""
    from napari_levelset import Segmenter
    from napari_levelset.method.strokes import stroke_contrast

    settings.setdefault("contrast", stroke_contrast(image))  # as segment and the widget choose it
    return np.asarray(Segmenter(image, n_classes, scribbles=strokes, **settings).labels())


def run_rf(image: np.ndarray, strokes: np.ndarray, n_classes: int) -> np.ndarray:
    """scikit-image's trainable segmentation (its gallery's features and random forest)."""
    from skimage.feature import multiscale_basic_features
    from skimage.future import fit_segmenter, predict_segmenter
    from sklearn.ensemble import RandomForestClassifier

    features = multiscale_basic_features(
        image,
        intensity=True,
        edges=False,
        texture=True,
        sigma_min=1,
        sigma_max=16,
        channel_axis=-1 if image.ndim == 3 else None,
    )
    forest = RandomForestClassifier(n_estimators=50, n_jobs=-1, max_depth=10, max_samples=0.05, random_state=0)
    return predict_segmenter(features, fit_segmenter(strokes, features, forest))


def split_methods(spec: str) -> list[str]:
    """``--methods`` split at commas, except those between the ``key=value`` items of a ``levelset:`` entry."""
    names: list[str] = []
    for token in (t.strip() for t in spec.split(",")):
        if names and names[-1].startswith(("levelset:", "first:")) and "=" in token and ":" not in token:
            names[-1] += "," + token
        elif token:
            names.append(token)
    return names


def build_methods(spec: str) -> dict[str, Run]:
    """Method name -> ``run(image, strokes, n_classes) -> labels`` for a ``--methods`` string."""
    methods: dict[str, Run] = {}
    for name in split_methods(spec):
        if name == "rf":
            try:
                import sklearn  # noqa: F401
            except ImportError:
                raise SystemExit("the rf method needs scikit-learn: pip install scikit-learn") from None
            methods[name] = run_rf
        elif name.partition(":")[0] in ("levelset", "first"):
            settings = parse_settings(name.partition(":")[2]) if ":" in name else {}
            run = run_levelset if name.startswith("levelset") else run_first
            methods[name] = lambda im, s, k, kw=settings, run=run: run(im, s, k, **kw)
        else:
            raise SystemExit(f"unknown method {name!r}: levelset[:key=value,...], first[:key=value,...] or rf")
    return methods


# ------------------------------------------------------------------ running
def warm_up(methods: dict[str, Run]) -> None:
    """Run every method once on a small synthetic RGB image with two strokes (errors are left to the real run)."""
    yy, xx = np.mgrid[:48, :64]
    disc = (yy - 24) ** 2 + (xx - 40) ** 2 < 150
    image = np.stack([40 + 160 * disc, 60 + 100 * disc, 120 - 60 * disc], axis=-1).astype(np.uint8)
    strokes = np.zeros(disc.shape, np.uint8)
    strokes[24, 35:45], strokes[5:40, 6] = 2, 1
    warm_up_runs(methods.values(), image, strokes, 2)  # warnings ignored: the forest's, too few samples here


def run_all(
    cases: Sequence[Case], methods: dict[str, Run], keep: set[tuple[str, str]]
) -> tuple[list[dict], dict[tuple[str, str], dict[str, np.ndarray]]]:
    """Run and score every method on every case; also return the labels of the cases in ``keep``."""
    records, kept = [], {}
    for case in cases:
        for name, run in methods.items():
            rec: dict[str, Any] = {"set": case.set, "image": case.id, "method": name, "classes": case.n_classes}
            try:
                labels, rec["seconds"] = timed(
                    lambda run=run, case=case: np.asarray(run(case.image, case.strokes, case.n_classes))
                )
                rec.update(stroke_scores(labels, case))
            except Exception as exc:
                rec["error"] = f"{type(exc).__name__}: {exc}"
                print(f"{case.set} {case.id} {name}: {rec['error']}", file=sys.stderr)
            else:
                if (case.set, case.id) in keep:
                    kept.setdefault((case.set, case.id), {})[name] = labels
                shown = ", ".join(f"{k} {rec[k]:.3f}" for k in ("miou", "accuracy", "dice") if k in rec)
                print(
                    f"{case.set} {case.id} {name} (K {case.n_classes}): {shown}, {rec['seconds']:.2f} s",
                    file=sys.stderr,
                )
            records.append(rec)
    return records, kept


def summarize(records: Sequence[dict]) -> dict[str, dict[str, dict[str, Any]]]:
    """Set -> method -> mean of each score over the images it ran on (and its errors)."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for rec in records:
        out.setdefault(rec["set"], {}).setdefault(rec["method"], {"ok": [], "failed": []})[
            "failed" if "error" in rec else "ok"
        ].append(rec)
    for methods in out.values():
        for name, groups in methods.items():
            ok, failed = groups["ok"], groups["failed"]
            entry = methods[name] = {"n_images": len(ok)}
            for key in ("miou", "accuracy", "dice", "seconds"):
                if ok and key in ok[0]:
                    entry[key] = float(np.mean([r[key] for r in ok]))
            if failed:
                entry.update(error=failed[0]["error"], n_failed=len(failed))
    return out


# ------------------------------------------------------------------ reporting
SCORES = {"miou": "mean IoU", "accuracy": "pixel accuracy", "dice": "foreground Dice", "seconds": "s / image"}


def format_table(summary: dict[str, dict[str, dict]], methods: Sequence[str]) -> str:
    """Markdown: a row per set and score, a column per method."""
    rows = []
    for set_name, by_method in summary.items():
        n = max(e["n_images"] + e.get("n_failed", 0) for e in by_method.values())
        keys = (
            ("dice", "miou", "seconds")
            if any("dice" in e for e in by_method.values())
            else ("miou", "accuracy", "seconds")
        )
        for j, key in enumerate(keys):
            cells = []
            for m in methods:
                entry = by_method.get(m, {})
                cell = "—" if key not in entry else f"{entry[key]:.2f}" if key == "seconds" else f"{entry[key]:.3f}"
                cells.append(cell + (f" ({entry['n_failed']} failed)" if j == 0 and "n_failed" in entry else ""))
            rows.append([f"{set_name} ({n})" if j == 0 else "", SCORES[key], *cells])
    return "\n".join(markdown(["set (images)", "score", *methods], rows))


# ------------------------------------------------------------------ figure
PALETTE = np.array(
    [
        (70, 70, 70),
        (230, 25, 75),
        (60, 180, 75),
        (255, 225, 25),
        (0, 130, 200),
        (245, 130, 48),
        (145, 30, 180),
        (70, 240, 240),
        (240, 50, 230),
    ],
    np.uint8,
)  # index 0: not scored


def _display(image: np.ndarray) -> np.ndarray:
    """RGB uint8 for showing: RGB as it is, grey stretched between its 0.5th and 99.8th percentiles."""
    if image.ndim == 3:
        return np.asarray(image[..., :3], np.uint8)
    lo, hi = np.percentile(image, (0.5, 99.8))
    grey = np.clip((image.astype(np.float64) - lo) / max(hi - lo, 1e-9), 0, 1)
    return np.repeat((grey * 255).astype(np.uint8)[..., None], 3, axis=-1)


def _panels(case: Case, labels: dict[str, np.ndarray], height: int) -> list[tuple[Any, str]]:
    """The row of one case: image with strokes, truth, every method's labels; scaled to ``height``."""
    from PIL import Image
    from scipy import ndimage as ndi

    size = (round(case.image.shape[1] * height / case.image.shape[0]), height)
    shrink = case.image.shape[0] / height
    strokes = ndi.grey_dilation(case.strokes, size=2 * max(1, round(shrink)) + 1)  # visible once shrunk
    shown = np.asarray(Image.fromarray(_display(case.image)).resize(size, Image.BILINEAR)).copy()
    small = np.asarray(Image.fromarray(strokes).resize(size, Image.NEAREST))
    shown[small > 0] = PALETTE[small[small > 0]]
    panels = [
        (Image.fromarray(shown), f"{case.set} {case.id}\nstrokes, K {case.n_classes}"),
        (Image.fromarray(PALETTE[case.truth]).resize(size, Image.NEAREST), "truth\n(grey: not scored)"),
    ]
    for name, lab in labels.items():
        s = stroke_scores(lab, case)
        caption = f"mIoU {s['miou']:.2f}" + (f", Dice {s['dice']:.2f}" if "dice" in s else f", acc {s['accuracy']:.2f}")
        colours = PALETTE[np.clip(lab, 0, len(PALETTE) - 1).astype(np.intp)]
        panels.append((Image.fromarray(colours).resize(size, Image.NEAREST), f"{name}\n{caption}"))
    return panels


def write_figure(
    path: Path, cases: Sequence[Case], labels: dict[tuple[str, str], dict[str, np.ndarray]], height: int = 280
) -> None:
    """PNG grid: a row per case in ``labels``, panels from ``_panels``."""
    from PIL import Image, ImageDraw, ImageFont

    try:
        font = ImageFont.load_default(size=18)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    rows = [_panels(c, labels[(c.set, c.id)], height) for c in cases if (c.set, c.id) in labels]
    if not rows:
        return
    pad, text_h = 12, 46
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    widths = [
        [max(p.width, measure.multiline_textbbox((0, 0), t, font=font, spacing=2)[2]) for p, t in row] for row in rows
    ]
    sheet = Image.new(
        "RGB",
        (max(map(sum, widths)) + pad * (max(map(len, rows)) + 1), pad + len(rows) * (text_h + height + pad)),
        "white",
    )
    draw = ImageDraw.Draw(sheet)
    for r, row in enumerate(rows):
        top, left = pad + r * (text_h + height + pad), pad
        for (panel, title), width in zip(row, widths[r]):
            draw.multiline_text((left, top), title, fill="black", font=font, spacing=2)
            sheet.paste(panel, (left, top + text_h))
            left += width + pad
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, optimize=True)


def figure_cases(cases: Sequence[Case], n: int = 3) -> list[Case]:
    """The first image of each set, then the second of each, ... : ``n`` in all."""
    by_set: dict[str, list[Case]] = {}
    for c in cases:
        by_set.setdefault(c.set, []).append(c)
    order = sorted(((i, s) for s, group in enumerate(by_set.values()) for i in range(len(group))))
    return [list(by_set.values())[s][i] for i, s in order][:n]


# ------------------------------------------------------------------ CLI
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Strokes benchmark: segmentation from a few synthetic strokes, scored against the truth "
        "they were drawn from (mean IoU, pixel accuracy, foreground Dice, s/image).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--bsds", type=Path, default=None, help="BSDS500 folder (images/, groundTruth/)")
    p.add_argument("--split", default="val", help="BSDS500 split")
    p.add_argument("--nuclei", type=Path, default=None, help="nuclei folder (N2DH-GOWT1/, N2DL-HeLa/, NIH3T3/)")
    p.add_argument("--limit", type=int, default=None, help="only the first N images of BSDS500 and of each nuclei set")
    p.add_argument("--start", type=int, default=0, help="BSDS500: skip the first N images (sorted by id)")
    p.add_argument(
        "--methods",
        default="levelset,rf",
        help="comma-separated: levelset, levelset:key=value,..., first, first:key=value,..., rf",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the strokes")
    p.add_argument(
        "--strokes",
        choices=STROKE_KINDS,
        default="long",
        help="long: one thin stroke along each region's skeleton (up to 2 %% of it); short: one stroke of a "
        "3-px brush from one end of the skeleton (up to 2 %%); short2: two such strokes, one from each end",
    )
    p.add_argument("--json", type=Path, default=None, help="write per-image records and the summary")
    p.add_argument("--figure", type=Path, default=None, help="write a PNG of strokes, truth and results")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.bsds is None and args.nuclei is None:
        raise SystemExit("nothing to run: give --bsds DIR and/or --nuclei DIR")
    methods = build_methods(args.methods)
    import torch

    torch.set_num_threads(args.threads)
    cases = []
    if args.bsds is not None:
        cases += bsds_cases(args.bsds.resolve(), args.split, args.limit, args.seed, args.strokes, args.start)
    if args.nuclei is not None:
        cases += nuclei_cases(args.nuclei.resolve(), args.limit, args.seed, args.strokes)
    shown = figure_cases(cases) if args.figure else []

    warm_up(methods)
    t_start = time.perf_counter()
    records, kept = run_all(cases, methods, {(c.set, c.id) for c in shown})
    elapsed = time.perf_counter() - t_start
    summary = summarize(records)

    print(
        f"Strokes benchmark: means over each set's images; s / image = wall clock of one call "
        f"({args.threads} torch threads, {args.strokes} strokes, seed {args.seed})\n"
    )
    print(format_table(summary, list(methods)))
    print(f"\n(all methods on all images: {elapsed:.1f} s)", file=sys.stderr)
    if args.figure:
        write_figure(args.figure, shown, kept)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "bsds": str(args.bsds),
                    "split": args.split,
                    "nuclei": str(args.nuclei),
                    "methods": list(methods),
                    "threads": args.threads,
                    "seed": args.seed,
                    "strokes": args.strokes,
                    "elapsed_s": elapsed,
                    "summary": summary,
                    "records": records,
                },
                indent=1,
            )
        )
    return summary


if __name__ == "__main__":
    main()
