#!/usr/bin/env python
"""Nuclei benchmark: instance F1 / AP and foreground Dice of napari-levelset and classical baselines.

Runs every method on every image of the nuclei data (``DATA_DIR``, laid out as
described in its ``README.md``) and scores it against the expert masks with
:mod:`napari_levelset.evaluation`:

``GOWT1`` (``N2DH-GOWT1``) and ``HeLa`` (``N2DL-HeLa``)
    ``img/tNN.tif`` against the instance masks ``gt/man_segNN.tif``: F1 at
    IoU 0.5, mean average precision over IoU 0.5:0.05:0.95 (the DSB 2018 /
    StarDist / Cellpose ``TP / (TP + FP + FN)``) and foreground Dice.
``NIH3T3``
    ``img/dna-N.png`` against the foreground mask ``gt/N.png`` (0 / 255, no
    instances): foreground Dice only.
``DSB-fluorescence``, ``DSB-stained``, ``DSB-brightfield`` (``--dsb DIR``)
    The DSB2018 development data (laid out as described in its ``README.md``),
    one set per kind: ``KIND/NAME.png`` against the instance masks
    ``KIND/NAME_masks.tif``, scored as GOWT1 and HeLa.  The level-set method
    gets the image as stored (RGB for stained); the classical baselines get
    the grey image (``rgb2gray`` of RGB, grey / 255 otherwise), inverted for
    stained and bright-field, where the nuclei are dark, as a user would do
    by hand (that step is not timed).
``synthetic-3D`` (``--synthetic3d N``)
    ``N`` synthetic fluorescence z-stacks with anisotropic voxels
    (``napari_levelset.evaluation.synthetic.nuclei_volume``, seeds 0..N-1: nuclei
    of three sizes, some touching, the z step 2-4 times the xy step) against their
    instance truth, scored in 3D as GOWT1 and HeLa.  The level-set method runs
    with the voxel size (``spacing``) and, as ``... no spacing``, without it; Otsu
    and Otsu + watershed run in 3D with the same smoothing in voxels, the
    watershed's distance transform in physical units (``sampling=`` the voxel
    size), as a user would set them; voronoi-otsu is left out of this set.

Set scores are means over the set's images.  Time is the wall clock of the
segmentation call alone (not reading, not scoring), one image at a time in
this process; every method first runs once on a small synthetic image, so
one-off costs (imports, initialisation) are not counted.

Methods (``--methods``, comma-separated; the baselines are scikit-image / scipy):

``otsu``
    Gaussian σ 1, Otsu threshold, connected components (8-connected), objects
    under 30 px removed.
``otsu-watershed``
    The same, then a distance-transform watershed: seeds are the
    ``peak_local_max`` of the distance transform (``min_distance`` 5 px, per
    component, peaks on one plateau joined), flooded over −distance within
    the mask.  In 3D the components are 26-connected and the distance
    transform is taken with the voxel size.
``voronoi-otsu`` / ``voronoi-otsu-S``
    Voronoi-Otsu labelling as in napari-segment-blobs-and-things-with-membranes
    (after pyclesperanto): local maxima of a Gaussian with spot σ ``S`` as
    seeds, kept inside the Otsu mask of a Gaussian with outline σ 2, and
    flooded over that mask (a masked Voronoi tessellation of the seeds).
    ``voronoi-otsu`` alone sweeps ``--spot-sigmas``; the table then also
    gives the best σ per set, chosen on the very images it is scored on (an
    optimistic baseline, marked as such).
``levelset`` / ``levelset:key=value,...``
    ``napari_levelset.segment(image, regions="instances", **settings)``; e.g.
    ``levelset:diameter=30,iterations=50`` (values read as Python literals).
    A method that raises is reported with its error and the run goes on.

Example::

    python benchmarks/nuclei.py ../shared/data/nuclei --methods otsu,otsu-watershed,voronoi-otsu \\
        --figure /tmp/nuclei.png --json /tmp/nuclei.json
    python benchmarks/nuclei.py --dsb ../shared/data/dsb2018 --methods levelset,otsu,otsu-watershed
    python benchmarks/nuclei.py --synthetic3d 6 --methods levelset,otsu,otsu-watershed

``--figure`` writes a PNG: per set one image (a crop of it), the expert
outlines in green and a method's in magenta, for the level-set method and for
the best baseline of the set.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from _common import DSB_SETS, NUCLEI_SETS, DsbSet, NucleiSet, markdown, parse_settings, timed, warm_up_runs

from napari_levelset import evaluation as metrics


@dataclass(frozen=True)
class VolumeSet:
    """Synthetic nuclei z-stacks made on the fly (``nuclei_volume``), scored as instances."""

    name: str = "synthetic-3D"
    folder: str = "nuclei_volume, anisotropic voxels"
    instances: bool = True
    unit: str = "volume"


SYNTHETIC_3D = VolumeSet()
ALL_SETS: dict[str, NucleiSet | DsbSet | VolumeSet] = {**NUCLEI_SETS, **DSB_SETS, SYNTHETIC_3D.name: SYNTHETIC_3D}
NO_SPACING = ", no spacing"  # suffix of a level-set method run on a volume without its voxel size
SPOT_SIGMAS = (2, 4, 6, 8, 10, 12, 15)
MIN_SIZE = 30  # px: smaller Otsu objects are dropped
OUTLINE_SIGMA = 2.0


# ------------------------------------------------------------------ methods
def _blur(image: np.ndarray, sigma: float) -> np.ndarray:
    from skimage.filters import gaussian

    return gaussian(np.asarray(image, dtype=np.float64), sigma=sigma)


def otsu_mask(image: np.ndarray, sigma: float) -> np.ndarray:
    """Foreground: the Gaussian-blurred image above its Otsu threshold."""
    from skimage.filters import threshold_otsu

    smooth = _blur(image, sigma)
    return smooth > threshold_otsu(smooth)


def run_otsu(image: np.ndarray) -> np.ndarray:
    """Gaussian σ 1, Otsu, 8-connected components, objects under ``MIN_SIZE`` px removed."""
    from skimage.measure import label
    from skimage.segmentation import relabel_sequential

    labels = label(otsu_mask(image, 1.0))
    labels[np.bincount(labels.ravel())[labels] < MIN_SIZE] = 0
    return relabel_sequential(labels)[0]


def run_otsu_watershed(image: np.ndarray, spacing: Sequence[float] | None = None) -> np.ndarray:
    """``run_otsu`` split by a watershed of the distance transform from its peaks (5 px apart); the
    distance in the unit of ``spacing`` (the pixel size per axis) where given."""
    from scipy import ndimage as ndi
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    components = run_otsu(image)
    mask = components > 0
    distance = ndi.distance_transform_edt(mask, sampling=spacing)
    peaks = np.zeros(mask.shape, bool)
    peaks[tuple(peak_local_max(distance, min_distance=5, labels=components, exclude_border=False).T)] = True
    markers = ndi.label(peaks)[0]
    return watershed(-distance, markers, mask=mask)


def run_voronoi_otsu(image: np.ndarray, spot_sigma: float, outline_sigma: float = OUTLINE_SIGMA) -> np.ndarray:
    """Voronoi-Otsu labelling (napari-segment-blobs-and-things-with-membranes' ``voronoi_otsu_labeling``)."""
    from skimage.measure import label
    from skimage.morphology import local_maxima
    from skimage.segmentation import watershed

    mask = otsu_mask(image, outline_sigma)
    seeds = label(local_maxima(_blur(image, spot_sigma)) & mask)
    return watershed(mask, seeds, mask=mask)


def run_levelset(image: np.ndarray, **settings: Any) -> np.ndarray:
    """``napari_levelset.segment(image, regions="instances", **settings)``."""
    from napari_levelset import segment

    return np.asarray(segment(image, regions="instances", **settings))


METHOD_NAME = re.compile(r"otsu|otsu-watershed|voronoi-otsu(-[\d.]+)?|levelset(:.*)?")


def split_methods(spec: str) -> list[str]:
    """``--methods`` split at commas, except those inside a ``levelset:key=value,...`` entry."""
    names: list[str] = []
    for token in (t.strip() for t in spec.split(",")):
        if names and names[-1].startswith("levelset:") and not METHOD_NAME.fullmatch(token):
            names[-1] += "," + token
        elif token:
            names.append(token)
    return names


def build_methods(spec: str, spot_sigmas: Sequence[float]) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """Method name -> ``run(image) -> labels`` for a ``--methods`` string."""
    methods: dict[str, Callable[[np.ndarray], np.ndarray]] = {}
    for name in split_methods(spec):
        if name == "otsu":
            methods[name] = lambda im, spacing=None: run_otsu(im)
        elif name == "otsu-watershed":
            methods[name] = run_otsu_watershed
        elif name == "voronoi-otsu":
            for s in spot_sigmas:
                methods[f"voronoi-otsu-{s:g}"] = lambda im, s=float(s): run_voronoi_otsu(im, s)
        elif m := re.fullmatch(r"voronoi-otsu-(\d+(?:\.\d+)?)", name):
            sigma = float(m.group(1))
            methods[name] = lambda im, s=sigma: run_voronoi_otsu(im, s)
        elif name == "levelset" or name.startswith("levelset:"):
            settings = parse_settings(name.partition(":")[2]) if ":" in name else {}
            methods[name] = lambda im, kw=settings, **more: run_levelset(im, **kw, **more)
        else:
            raise SystemExit(
                f"unknown method {name!r}: otsu, otsu-watershed, voronoi-otsu[-SIGMA], levelset[:key=value,...]"
            )
    return methods


# ------------------------------------------------------------------ running
def score(labels: np.ndarray, truth: np.ndarray, instances: bool) -> dict[str, Any]:
    """Instance scores against an instance mask, or only Dice against a foreground mask."""
    if labels.shape != truth.shape:
        raise ValueError(f"labels of shape {labels.shape} for an image of shape {truth.shape}")
    if not instances:
        return {"dice": metrics.foreground_dice(labels, truth), "n_pred": int(len(np.unique(labels)) - 1)}
    s = metrics.instance_scores(labels, truth)
    keys = ("f1", "ap", "dice", "precision", "recall", "mean_matched_iou", "tp", "fp", "fn", "n_pred", "n_true")
    return {k: s[k] for k in keys}


def warm_up(methods: dict[str, Callable]) -> None:
    """Run every method once on a small synthetic image (errors are left to the real run)."""
    yy, xx = np.mgrid[:64, :64]
    blobs = 40 + 150 * (((yy - 20) ** 2 + (xx - 22) ** 2 < 64) | ((yy - 44) ** 2 + (xx - 40) ** 2 < 81))
    warm_up_runs(methods.values(), blobs.astype(np.uint8))


def run_set(
    root: Path, dataset: NucleiSet | DsbSet, methods: dict[str, Callable], limit: int | None, keep_first: bool = False
) -> tuple[list[dict], dict[str, Any]]:
    """Run and score every method on every image of a set.

    Returns the per-image records and, with ``keep_first`` (for the figure),
    the set's first image with its truth and every method's labels (else {}).
    """
    records, kept, reported = [], {}, set()
    for n, (image_id, image_path, truth_path) in enumerate(dataset.items(root, limit)):
        image, truth = dataset.read(image_path), dataset.read(truth_path)
        grey = dataset.classical(image) if any(is_baseline(n) for n in methods) else image
        if keep_first and n == 0:
            kept = {"id": image_id, "image": image, "truth": truth, "labels": {}}
        for name, run in methods.items():
            rec: dict[str, Any] = {"set": dataset.name, "image": image_id, "method": name}
            try:
                labels, rec["seconds"] = timed(run, grey if is_baseline(name) else image)
                rec.update(score(np.asarray(labels), truth, dataset.instances))
            except Exception as exc:
                rec["error"] = f"{type(exc).__name__}: {exc}"
                if (name, rec["error"]) not in reported:
                    reported.add((name, rec["error"]))
                    print(f"{dataset.name} {image_id} {name}: {rec['error']}", file=sys.stderr)
            else:
                if keep_first and n == 0:
                    kept["labels"][name] = labels
                print(f"{dataset.name} {image_id} {name}: {_brief(rec)}", file=sys.stderr)
            records.append(rec)
    return records, kept


def volume_methods(methods: dict[str, Callable]) -> dict[str, Callable[[np.ndarray, tuple], np.ndarray]]:
    """The methods run on a volume, ``run(volume, spacing) -> labels``: every level-set method with the
    voxel size and again without it (``NO_SPACING``), Otsu and Otsu + watershed (voronoi-otsu left out)."""
    out: dict[str, Callable[[np.ndarray, tuple], np.ndarray]] = {}
    for name, run in methods.items():
        if is_baseline(name):
            if name in ("otsu", "otsu-watershed"):
                out[name] = lambda im, sp, run=run: run(im, spacing=sp)
            continue
        out[name] = lambda im, sp, run=run: run(im, spacing=sp)
        out[name + NO_SPACING] = lambda im, sp, run=run: run(im)
    return out


def warm_up_volume(methods: dict[str, Callable]) -> None:
    """Run every volume method once on a small synthetic volume (one-off costs of 3D not timed later)."""
    from napari_levelset.evaluation.synthetic import nuclei_volume

    volume, _, spacing = nuclei_volume((8, 40, 40), n_objects=3, diameters=(12.0,), z_step=2.0, seed=99)
    warm_up_runs([lambda v, run=run: run(v, spacing) for run in methods.values()], volume)


def run_volumes(n_volumes: int, methods: dict[str, Callable]) -> list[dict]:
    """Run and score every volume method on ``nuclei_volume(seed=i)``, ``i`` in ``0..n_volumes-1``."""
    from napari_levelset.evaluation.synthetic import nuclei_volume

    records = []
    for seed in range(n_volumes):
        volume, truth, spacing = nuclei_volume(seed=seed)
        image_id = f"seed {seed} (z step {spacing[0]:g})"
        for name, run in methods.items():
            rec: dict[str, Any] = {"set": SYNTHETIC_3D.name, "image": image_id, "method": name}
            try:
                labels, rec["seconds"] = timed(run, volume, spacing)
                rec.update(score(np.asarray(labels), truth, True))
            except Exception as exc:
                rec["error"] = f"{type(exc).__name__}: {exc}"
                print(f"{SYNTHETIC_3D.name} {image_id} {name}: {rec['error']}", file=sys.stderr)
            else:
                print(f"{SYNTHETIC_3D.name} {image_id} {name}: {_brief(rec)}", file=sys.stderr)
            records.append(rec)
    return records


def _brief(rec: dict) -> str:
    shown = [f"{k} {rec[k]:.3f}" for k in ("f1", "ap", "dice") if k in rec]
    return ", ".join(shown + [f"{rec['seconds']:.2f} s"])


def summarize(records: list[dict]) -> dict[str, dict[str, Any]]:
    """Per method: mean of each score over the images it ran on, and its errors."""
    out: dict[str, dict[str, Any]] = {}
    for name in dict.fromkeys(r["method"] for r in records):
        ok = [r for r in records if r["method"] == name and "error" not in r]
        failed = [r for r in records if r["method"] == name and "error" in r]
        entry = out[name] = {"n_images": len(ok)}
        for key in ("f1", "ap", "dice", "seconds"):
            if ok and key in ok[0]:
                entry[key] = float(np.mean([r[key] for r in ok]))
        if failed:
            entry["error"] = failed[0]["error"]
            entry["n_failed"] = len(failed)
    return out


def best_of(summary: dict[str, dict], names: Sequence[str], key: str) -> str | None:
    """The method among ``names`` with the highest ``key`` (first on ties), or None."""
    scored = [n for n in names if key in summary.get(n, {})]
    return max(scored, key=lambda n: summary[n][key]) if scored else None


def ranking_key(dataset: NucleiSet | DsbSet) -> str:
    return "f1" if dataset.instances else "dice"


def is_baseline(name: str) -> bool:
    return not name.startswith("levelset")


# ------------------------------------------------------------------ reporting
def _columns(dataset: NucleiSet | DsbSet) -> list[tuple[str, str]]:
    cols = [("f1", "F1@0.5"), ("ap", "AP 0.5:0.95"), ("dice", "Dice")] if dataset.instances else [("dice", "Dice")]
    return cols + [("seconds", f"s/{getattr(dataset, 'unit', 'image')}")]


def _cell(entry: dict, key: str) -> str:
    if key not in entry:
        return "—"
    return f"{entry[key]:.2f}" if key == "seconds" else f"{entry[key]:.3f}"


def best_voronoi(dataset: NucleiSet | DsbSet, summary: dict[str, dict]) -> str | None:
    """The voronoi-otsu σ of the run with the best score on this set (when several were run)."""
    voronoi = [n for n in summary if n.startswith("voronoi-otsu-")]
    return best_of(summary, voronoi, ranking_key(dataset)) if len(voronoi) > 1 else None


def _sigma(name: str) -> str:
    return name.rsplit("-", 1)[1]


BEST_NOTE = (
    "† spot σ chosen on these same images (best F1, for NIH3T3 best Dice, of the σ run): an optimistic baseline."
)


def set_table(dataset: NucleiSet | DsbSet, summary: dict[str, dict], n_images: int) -> str:
    """Markdown table of one set: every method, then the voronoi-otsu σ chosen on these images."""
    cols = _columns(dataset)
    rows = []
    for name, entry in summary.items():
        cells = [_cell(entry, k) for k, _ in cols]
        if "error" in entry:
            cells[-1] += f" ({entry['n_failed']} failed: {entry['error'][:120]})"
        rows.append([name, *cells])
    best = best_voronoi(dataset, summary)
    if best:
        rows.append([f"voronoi-otsu, best σ = {_sigma(best)} †", *[_cell(summary[best], k) for k, _ in cols]])
    lines = [f"### {dataset.name} ({dataset.folder}, {n_images} {getattr(dataset, 'unit', 'image')}s)", ""]
    lines += markdown(["method", *[c for _, c in cols]], rows)
    return "\n".join(lines + (["", BEST_NOTE] if best else []))


def overview_table(summaries: dict[str, dict[str, dict]]) -> str:
    """One row per method, one cell per set: ``F1 / AP / Dice`` (Dice only without instances), s/image."""
    names = list(dict.fromkeys(n for s in summaries.values() for n in s))

    def cell(set_name: str, entry: dict, suffix: str = "") -> str:
        if "error" in entry and not entry["n_images"]:
            return "error"
        keys = ("f1", "ap", "dice") if ALL_SETS[set_name].instances else ("dice",)
        return " / ".join(_cell(entry, k) for k in keys) + suffix

    rows = [[name, *[cell(s, summary.get(name, {})) for s, summary in summaries.items()]] for name in names]
    best = {s: best_voronoi(ALL_SETS[s], summary) for s, summary in summaries.items()}
    if all(best.values()):
        rows.append(
            [
                "voronoi-otsu, best σ per set †",
                *[cell(s, summaries[s][b], f" (σ {_sigma(b)})") for s, b in best.items()],
            ]
        )
    header = ["method"] + [f"{s} ({'F1 / AP / Dice' if ALL_SETS[s].instances else 'Dice'})" for s in summaries]
    return "\n".join(markdown(header, rows) + (["", BEST_NOTE] if all(best.values()) else []))


def per_image_table(dataset: NucleiSet | DsbSet, records: list[dict]) -> str:
    cols = _columns(dataset)
    rows = [
        [r["image"], r["method"], *([_cell(r, k) for k, _ in cols] if "error" not in r else ["error"] * len(cols))]
        for r in records
    ]
    return "\n".join([f"{dataset.name}, per image:", "", *markdown(["image", "method", *[c for _, c in cols]], rows)])


# ------------------------------------------------------------------ figure
TRUTH_RGB = (40, 230, 60)
METHOD_RGB = (255, 40, 220)


def _crop_window(truth: np.ndarray, size: int) -> tuple[slice, slice]:
    """The ``size``² window (16 px steps) holding the most foreground of ``truth``."""
    fg = np.pad((truth != 0).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    h, w = truth.shape
    sh, sw = min(size, h), min(size, w)
    ys, xs = np.arange(0, h - sh + 1, 16)[:, None], np.arange(0, w - sw + 1, 16)
    area = fg[ys + sh, xs + sw] - fg[ys, xs + sw] - fg[ys + sh, xs] + fg[ys, xs]
    i, j = np.unravel_index(np.argmax(area), area.shape)
    return slice(int(ys[i, 0]), int(ys[i, 0]) + sh), slice(int(xs[j]), int(xs[j]) + sw)


def _overlay(image: np.ndarray, truth: np.ndarray, labels: np.ndarray | None, zoom: int) -> np.ndarray:
    """RGB uint8, ``zoom`` × larger: the image (square-root contrast, so dim nuclei show), expert
    outlines just outside each true object, the method's just inside each of its objects."""
    from skimage.segmentation import find_boundaries

    if image.ndim == 3:
        from skimage.color import rgb2gray

        image = rgb2gray(image[..., :3])
    lo, hi = np.percentile(image, (0.5, 99.8))
    grey = np.sqrt(np.clip((image.astype(np.float64) - lo) / max(hi - lo, 1e-9), 0, 1))
    rgb = np.repeat((grey * 255).astype(np.uint8)[..., None], 3, axis=-1)
    rgb[find_boundaries(truth, mode="outer")] = TRUTH_RGB
    if labels is not None:
        rgb[find_boundaries(labels, mode="inner")] = METHOD_RGB
    return rgb.repeat(zoom, axis=0).repeat(zoom, axis=1)


def _caption(name: str | None, dataset: NucleiSet | DsbSet, records: list[dict], image_id: str) -> str:
    """The scores of ``name`` on this image, as the panel's second title line."""
    rec = next((r for r in records if r["method"] == name and r["image"] == image_id), None)
    if rec is None:
        return "not run"
    if "error" in rec:
        return "failed: " + rec["error"].split(":")[0]
    shown = ", ".join(f"{label} {rec[k]:.2f}" for k, label in _columns(dataset)[:-1])
    return shown if dataset.instances else shown + " (foreground only: splits are not scored)"


def write_figure(
    path: Path, results: dict[str, tuple[NucleiSet, list[dict], dict, dict]], crop: int, zoom: int = 2
) -> None:
    """PNG grid: a row per set (its first image, cropped), the level-set method and the best baseline."""
    from PIL import Image, ImageDraw, ImageFont

    try:
        font = ImageFont.load_default(size=22)
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    pad, text_h = 16, 56
    rows = []
    for set_name, (dataset, records, kept, summary) in results.items():
        if not kept:
            continue
        window = _crop_window(kept["truth"], crop)
        levelset = next((n for n in summary if not is_baseline(n)), None)
        baseline = best_of(summary, [n for n in summary if is_baseline(n)], ranking_key(dataset))
        panels = []
        for name, role in ((levelset, ""), (baseline, ", best baseline")):
            labels = kept["labels"].get(name) if name else None
            rgb = _overlay(
                kept["image"][window], kept["truth"][window], None if labels is None else labels[window], zoom
            )
            title = (
                f"{set_name} {kept['id']}: {name or 'levelset'}{role}\n{_caption(name, dataset, records, kept['id'])}"
            )
            panels.append((Image.fromarray(rgb), title))
        rows.append(panels)
    if not rows:
        return
    cell_w = max(p.width for r in rows for p, _ in r)
    cell_h = max(p.height for r in rows for p, _ in r)
    sheet = Image.new("RGB", (pad + 2 * (cell_w + pad), 48 + len(rows) * (text_h + cell_h + pad)), "white")
    draw = ImageDraw.Draw(sheet)
    draw.text((pad, 8), "green: expert outlines      magenta: the method's outlines", fill="black", font=font)
    for r, panels in enumerate(rows):
        top = 48 + r * (text_h + cell_h + pad)
        for c, (panel, title) in enumerate(panels):
            left = pad + c * (cell_w + pad)
            draw.multiline_text((left, top), title, fill="black", font=font, spacing=4)
            sheet.paste(panel, (left, top + text_h))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, optimize=True)


# ------------------------------------------------------------------ CLI
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Nuclei benchmark (instance F1 / AP, foreground Dice, s/image) for napari-levelset and "
        "classical baselines.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "data", type=Path, nargs="?", default=None, help="the nuclei data folder (N2DH-GOWT1/, N2DL-HeLa/, NIH3T3/)"
    )
    p.add_argument(
        "--dsb", type=Path, default=None, help="the DSB2018 data folder (fluorescence/, stained/, brightfield/)"
    )
    p.add_argument(
        "--sets",
        default=None,
        help="comma-separated sets (default: every set of the folders given): " + ", ".join([*NUCLEI_SETS, *DSB_SETS]),
    )
    p.add_argument("--limit", type=int, default=None, help="only the first N images of each set")
    p.add_argument(
        "--synthetic3d",
        type=int,
        default=0,
        metavar="N",
        help="also score N synthetic nuclei z-stacks with anisotropic voxels (nuclei_volume, seeds 0..N-1); "
        "the level-set method with and without the voxel size, Otsu and Otsu + watershed in 3D",
    )
    p.add_argument(
        "--methods",
        default="otsu,otsu-watershed,voronoi-otsu,levelset",
        help="comma-separated: otsu, otsu-watershed, voronoi-otsu (the σ sweep) or voronoi-otsu-SIGMA, "
        "levelset or levelset:key=value,... (keyword arguments of segment)",
    )
    p.add_argument(
        "--spot-sigmas", default=",".join(map(str, SPOT_SIGMAS)), help="spot σ swept by the voronoi-otsu method"
    )
    p.add_argument("--per-image", action="store_true", help="also print a row per image")
    p.add_argument("--figure", type=Path, default=None, help="write a PNG of outlines over one image per set")
    p.add_argument("--crop", type=int, default=360, help="side of the figure's crops (px; shown twice as large)")
    p.add_argument("--json", type=Path, default=None, help="write per-image records and set summaries")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads for the level-set method")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.data is None and args.dsb is None and not args.synthetic3d:
        raise SystemExit("give the nuclei data folder, --dsb DIR, --synthetic3d N, or several")
    roots = {}  # set name -> its data folder
    for folder, sets in ((args.data, NUCLEI_SETS), (args.dsb, DSB_SETS)):
        if folder is not None:
            roots.update(dict.fromkeys(sets, folder.resolve()))
    chosen = [s.strip() for s in args.sets.split(",") if s.strip()] if args.sets else list(roots)
    unknown = [s for s in chosen if s not in roots]
    if unknown:
        raise SystemExit(f"unknown set(s) {unknown}: choose from {list(roots)}")
    methods = build_methods(args.methods, [float(s) for s in args.spot_sigmas.split(",") if s.strip()])
    if any(not is_baseline(n) for n in methods):
        import torch

        torch.set_num_threads(args.threads)

    in_3d = volume_methods(methods) if args.synthetic3d else {}
    if chosen:
        warm_up(methods)
    if in_3d:
        warm_up_volume(in_3d)
    t_start = time.perf_counter()
    results = {}
    for set_name in chosen:
        dataset = ALL_SETS[set_name]
        records, kept = run_set(roots[set_name], dataset, methods, args.limit, keep_first=bool(args.figure))
        results[set_name] = (dataset, records, kept, summarize(records))
    if in_3d:
        records = run_volumes(args.synthetic3d, in_3d)
        results[SYNTHETIC_3D.name] = (SYNTHETIC_3D, records, {}, summarize(records))
    elapsed = time.perf_counter() - t_start

    shown = ", ".join([*map(str, dict.fromkeys(roots[s] for s in chosen)), *(["nuclei_volume"] if in_3d else [])])
    print(
        f"Nuclei benchmark, {shown}: means over each set's images; s/image = wall clock of the segmentation call "
        f"({args.threads} torch threads)\n"
    )
    for dataset, records, _, summary in results.values():
        print(set_table(dataset, summary, len({r["image"] for r in records})), end="\n\n")
        if args.per_image:
            print(per_image_table(dataset, records), end="\n\n")
    summaries = {name: res[3] for name, res in results.items()}
    print(overview_table(summaries))
    print(f"\n(all methods on all images: {elapsed:.1f} s)", file=sys.stderr)

    if args.figure:
        write_figure(args.figure, results, args.crop)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "data": str(args.data.resolve()) if args.data else None,
                    **({"dsb": str(args.dsb.resolve())} if args.dsb else {}),
                    **({"synthetic3d": args.synthetic3d} if args.synthetic3d else {}),
                    "methods": list(methods),
                    "threads": args.threads,
                    "elapsed_s": elapsed,
                    "summary": summaries,
                    "records": [r for res in results.values() for r in res[1]],
                },
                indent=1,
            )
        )
    return summaries


if __name__ == "__main__":
    main()
