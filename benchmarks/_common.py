"""What the benchmark scripts share: the data sets' readers, settings given on the command line,
timing, tables, the layout of ``bsds.py``'s cache, the Felzenszwalb baseline and the strokes
protocol (``strokes.py``, ``gui_strokes.py``).

A script imports it as ``_common``: ``python benchmarks/X.py`` puts this folder on ``sys.path``.
The package itself is installed (``pip install -e .``).
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import multiprocessing as mp
import os
import re
import time
import warnings
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_levelset.evaluation import foreground_dice, load_ground_truth

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "out"
DEFAULT_BSDS = REPO.parent / "shared" / "data" / "bsds500"


# ------------------------------------------------------------------ settings on the command line
def literal(text: str) -> Any:
    """``text`` as a Python literal where it parses, else the text itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_list(text: str) -> list:
    """``"a,b,c"`` -> ``[literal(a), literal(b), literal(c)]`` (empty items dropped)."""
    return [literal(t) for t in text.split(",") if t.strip()]


def parse_set(items: Iterable[str]) -> dict[str, Any]:
    """Repeated ``--set KEY=VALUE`` options -> ``{KEY: literal(VALUE)}``."""
    settings = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"bad --set {item!r}: expected KEY=VALUE")
        settings[key.strip()] = literal(value.strip())
    return settings


def parse_settings(text: str) -> dict[str, Any]:
    """``"key=value,key=value"`` -> dict, values as Python literals where they parse (commas inside allowed)."""
    settings = {}
    for item in re.split(r",(?=\s*[A-Za-z_]\w*\s*=)", text):
        key, sep, value = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise SystemExit(f"bad level-set setting {item!r}: expected key=value")
        settings[key.strip()] = literal(value.strip())
    return settings


# ------------------------------------------------------------------ BSDS500
def add_data_args(p: argparse.ArgumentParser, limit: int | None, classes: str) -> None:
    """``--bsds``, ``--split``, ``--limit`` and ``--classes`` of the scripts that read BSDS500."""
    p.add_argument("--bsds", type=Path, default=DEFAULT_BSDS, help="BSDS500 folder (images/, groundTruth/)")
    p.add_argument("--split", default="val", help="split to evaluate (train or val)")
    p.add_argument("--limit", type=int, default=limit, help="use only the first N images (sorted by id)")
    p.add_argument("--classes", default=classes, help="N sweep of the level-set method")


def bsds_image(bsds: Path, split: str, image_id: str) -> Path:
    return bsds / "images" / split / f"{image_id}.jpg"


def bsds_truth(bsds: Path, split: str, image_id: str) -> Path:
    return bsds / "groundTruth" / split / f"{image_id}.mat"


def list_images(bsds: Path, split: str, limit: int | None = None) -> list[str]:
    """Sorted image ids of a split that have both an image and a ground truth."""
    ids = sorted(p.stem for p in (bsds / "images" / split).glob("*.jpg"))
    ids = [i for i in ids if bsds_truth(bsds, split, i).is_file()]
    if not ids:
        raise SystemExit(f"no images with ground truth under {bsds}/images/{split}")
    return ids[:limit] if limit else ids


def read_bsds_image(path: Path) -> np.ndarray:
    from skimage.io import imread

    return np.asarray(imread(path))


#: the version of ``bsds.py``'s cache layout (part of every cache key)
CACHE_VERSION = 1
#: method config entries that only change how labels are post-processed
POST_KEYS = ("regions", "min_region", "merge")


def config_key(method: str, config: dict) -> str:
    """Directory name identifying a method and its fixed settings in ``bsds.py``'s cache."""
    blob = json.dumps({"method": method, "config": config, "v": CACHE_VERSION}, sort_keys=True, default=str)
    return f"{method}-{hashlib.sha1(blob.encode()).hexdigest()[:10]}"


def scale_dir(scale: Any) -> str:
    """The folder of one scale in ``bsds.py``'s caches."""
    return str(scale).replace("/", "_").replace(os.sep, "_")


def label_cache_dir(out: Path, method: str, config: dict) -> Path:
    """Where ``bsds.py`` keeps a method's label maps: keyed by what changes the segmentation only.

    Post-processing settings (which outputs, the fragment size, merge weights)
    are not part of the key, so a new output or merge sweep re-scores stored
    label maps instead of segmenting again.
    """
    seg_config = {k: v for k, v in config.items() if k not in POST_KEYS}
    return out / "labels" / config_key(method, seg_config)


def levelset_features(image: np.ndarray, config: dict) -> np.ndarray:
    """The prepared image ``(C, H, W)`` the level-set data term compared (for merging regions)."""
    from napari_levelset.io.prepare import prepare_image
    from napari_levelset.settings import Settings

    settings = config.get("settings", {})
    prepared = prepare_image(image, color=settings.get("color", Settings().color))
    return prepared.data[0]


def felzenszwalb_labels(
    image: np.ndarray, scale: float, sigma: float = 0.8, min_size: int = 100, first: int = 1
) -> np.ndarray:
    """The Felzenszwalb-Huttenlocher baseline on RGB (scikit-image), labels from ``first``."""
    from skimage.segmentation import felzenszwalb

    return felzenszwalb(image[..., :3], scale=float(scale), sigma=sigma, min_size=min_size) + first


# ------------------------------------------------------------------ the nuclei sets
@dataclass(frozen=True)
class NucleiSet:
    """One image set: where its images and masks are and how they pair up."""

    name: str
    folder: str
    pattern: str  # image file pattern: a regex whose group is the image number
    truth: str  # ground-truth file name, formatted with the image number
    instances: bool  # instance masks (F1, AP, Dice) or foreground only (Dice)

    def items(self, root: Path, limit: int | None = None) -> list[tuple[str, Path, Path]]:
        """``(image id, image path, truth path)`` in numeric order, the first ``limit``."""
        found = []
        for path in (root / self.folder / "img").iterdir():
            m = re.fullmatch(self.pattern, path.name)
            truth = root / self.folder / "gt" / self.truth.format(m.group(1)) if m else None
            if truth is not None and truth.is_file():
                found.append((int(m.group(1)), path.stem, path, truth))
        if not found:
            raise SystemExit(f"no images with ground truth under {root / self.folder}")
        return [item[1:] for item in sorted(found)][:limit]

    def read(self, path: Path) -> np.ndarray:
        """An image or mask as stored."""
        return read_nuclei_image(path)

    def classical(self, image: np.ndarray) -> np.ndarray:
        """The image the classical baselines get: as stored."""
        return image


@dataclass(frozen=True)
class DsbSet:
    """One kind of the DSB2018 development data: ``KIND/NAME.png`` with ``KIND/NAME_masks.tif``.

    The classical baselines get the grey image (``rgb2gray`` of an RGB one, grey / 255 otherwise),
    inverted where the nuclei are dark (``invert``), as a user would do by hand.
    """

    name: str
    folder: str  # the kind: fluorescence, stained or brightfield
    invert: bool  # dark nuclei on a light field
    instances: bool = True

    def items(self, root: Path, limit: int | None = None) -> list[tuple[str, Path, Path]]:
        """``(image id, image path, truth path)`` in name order, the first ``limit``."""
        found = []
        for path in sorted((root / self.folder).glob("*.png")):
            truth = path.with_name(path.stem + "_masks.tif")
            if truth.is_file():
                found.append((path.stem, path, truth))
        if not found:
            raise SystemExit(f"no images with ground truth under {root / self.folder}")
        return found[:limit]

    def read(self, path: Path) -> np.ndarray:
        """An image or mask as stored, an RGBA image without its alpha channel."""
        image = read_nuclei_image(path)
        return image[..., :3] if image.ndim == 3 else image

    def classical(self, image: np.ndarray) -> np.ndarray:
        """Grey in [0, 1] (``rgb2gray`` for RGB, / 255 otherwise), inverted for dark nuclei."""
        if image.ndim == 3:
            from skimage.color import rgb2gray

            grey = rgb2gray(image[..., :3])
        else:
            grey = image.astype(np.float64) / 255.0
        return 1.0 - grey if self.invert else grey


NUCLEI_SETS = {
    s.name: s
    for s in (
        NucleiSet("GOWT1", "N2DH-GOWT1", r"t(\d+)\.tif", "man_seg{}.tif", True),
        NucleiSet("HeLa", "N2DL-HeLa", r"t(\d+)\.tif", "man_seg{}.tif", True),
        NucleiSet("NIH3T3", "NIH3T3", r"dna-(\d+)\.png", "{}.png", False),
    )
}

#: the DSB2018 development data, one set per kind (``--dsb DIR``)
DSB_SETS = {
    s.name: s
    for s in (
        DsbSet("DSB-fluorescence", "fluorescence", invert=False),
        DsbSet("DSB-stained", "stained", invert=True),
        DsbSet("DSB-brightfield", "brightfield", invert=True),
    )
}


def read_nuclei_image(path: Path) -> np.ndarray:
    """A TIFF (tifffile; the LZW ones need ``imagecodecs``) or a PNG (Pillow), as stored."""
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile

        return np.asarray(tifffile.imread(path))
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im)


# ------------------------------------------------------------------ running and timing
def timed(run: Callable, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """``run(*args, **kwargs)`` and its wall-clock seconds."""
    t0 = time.perf_counter()
    out = run(*args, **kwargs)
    return out, time.perf_counter() - t0


def warm_up_runs(runs: Iterable[Callable], *args: Any) -> None:
    """Call every run once with ``args``, so one-off costs (imports, initialisation) are not timed later.

    Warnings and errors are ignored: they are left to the real run.
    """
    for run in runs:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                run(*args)
        except Exception:
            pass


def map_tasks(run: Callable[[Any], Any], tasks: Sequence, workers: int, desc: str) -> list:
    """``[run(t) for t in tasks]`` with a progress bar, in ``workers`` spawned processes when more than one."""
    from tqdm import tqdm

    if workers > 1:
        with mp.get_context("spawn").Pool(workers) as pool:
            return list(tqdm(pool.imap(run, tasks), total=len(tasks), desc=desc))
    return [run(t) for t in tqdm(tasks, desc=desc)]


# ------------------------------------------------------------------ tables
def markdown(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """The lines of a Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def ods_ois_head(first: str, *more: str) -> list[str]:
    """The header and rule of a table of ``first``, SC / PRI / VI at ODS and OIS, then ``more`` columns."""
    columns = [first, "SC ODS", "SC OIS", "PRI ODS", "PRI OIS", "VI ODS", "VI OIS", *more]
    return ["| " + " | ".join(columns) + " |", "|" + "|".join(["---"] * len(columns)) + "|"]


def ods_ois_cells(s: dict) -> str:
    """``SC ODS (scale) | SC OIS | PRI ODS (scale) | PRI OIS | VI ODS (scale) | VI OIS`` of a summary."""
    return (
        f"{s['sc_ods']:.3f} ({s['sc_ods_scale']}) | {s['sc_ois']:.3f} "
        f"| {s['pri_ods']:.3f} ({s['pri_ods_scale']}) | {s['pri_ois']:.3f} "
        f"| {s['vi_ods']:.3f} ({s['vi_ods_scale']}) | {s['vi_ois']:.3f}"
    )


# ------------------------------------------------------------------ the strokes protocol
MIN_REGION = 0.02  # of the image: smaller BSDS regions get no stroke and are not scored
MAX_CLASSES = 8  # the largest regions kept
STROKE_FRACTION = 0.02  # a stroke's pixels, at most, of its region's
EROSION = 3  # px the region is eroded by before its skeleton is taken
STROKED_NUCLEI = 3
BACKGROUND_STROKES = 3
BACKGROUND_MARGIN = 8  # px between background strokes and the nuclei
BACKGROUND_LENGTH = 0.1  # of the image's shorter side: one background stroke, at most
BACKGROUND_SPACING = 0.25  # of the shorter side: the least distance between background strokes
BACKGROUND, NUCLEUS = 1, 2
#: ``--strokes``: "long" strokes along each region's skeleton (the original protocol), "short" one short
#: stroke of a BRUSH-px brush near one end of each region, "short2" two such strokes (one near each end)
STROKE_KINDS = ("long", "short", "short2")
BRUSH = 3  # px: the brush of the short strokes (a disc of radius 1)


@dataclass
class Case:
    """One image with its strokes and the truth they were drawn from."""

    set: str
    id: str
    image: np.ndarray
    strokes: np.ndarray  # 0 unpainted, k class k
    truth: np.ndarray  # k where the truth is class k, 0 outside the stroked regions
    n_classes: int
    foreground: bool = False  # nuclei: class NUCLEUS is the foreground (scored by Dice)


def _box(mask: np.ndarray, pad: int) -> tuple[slice, ...]:
    """The bounding box of ``mask``, ``pad`` px larger on every side (within the array)."""
    rows, cols = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
    return (slice(max(rows[0] - pad, 0), rows[-1] + pad + 1), slice(max(cols[0] - pad, 0), cols[-1] + pad + 1))


def skeleton_of(region: np.ndarray, erosion: int) -> np.ndarray:
    """The skeleton of ``region`` eroded by ``erosion`` px, or by less where that would leave nothing."""
    from scipy import ndimage as ndi
    from skimage.morphology import disk, skeletonize

    box = _box(region, 1)
    sub = region[box]
    for r in range(erosion, 0, -1):
        core = ndi.binary_erosion(sub, disk(r))
        if core.any():
            break
    else:
        core = sub
    out = np.zeros(region.shape, bool)
    out[box] = skeletonize(core)
    return out


def skeleton_piece(skeleton: np.ndarray, budget: int, rng: np.random.Generator) -> np.ndarray:
    """At most ``budget`` connected pixels of ``skeleton``: breadth first from a random point of its largest piece."""
    from scipy import ndimage as ndi

    pieces, _ = ndi.label(skeleton, structure=np.ones((3, 3)))
    largest = np.argmax(np.bincount(pieces.ravel())[1:]) + 1
    ys, xs = np.nonzero(pieces == largest)
    i = rng.integers(len(ys))
    start = (int(ys[i]), int(xs[i]))
    out = np.zeros(skeleton.shape, bool)
    queue, seen, taken = deque([start]), {start}, 0
    h, w = skeleton.shape
    while queue and taken < budget:
        y, x = queue.popleft()
        out[y, x] = True
        taken += 1
        for q in ((y + dy, x + dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)):
            if 0 <= q[0] < h and 0 <= q[1] < w and skeleton[q] and q not in seen:
                seen.add(q)
                queue.append(q)
    return out


def region_stroke(region: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One thin stroke inside ``region``: its eroded skeleton, at most ``STROKE_FRACTION`` of its pixels."""
    budget = max(1, int(STROKE_FRACTION * np.count_nonzero(region)))
    return skeleton_piece(skeleton_of(region, EROSION), budget, rng)


def skeleton_order(skeleton: np.ndarray, start: tuple[int, int]) -> list[tuple[int, int]]:
    """The pixels of ``start``'s piece of ``skeleton`` in breadth-first order from ``start`` (8-connected)."""
    h, w = skeleton.shape
    queue, seen, order = deque([start]), {start}, []
    while queue:
        y, x = queue.popleft()
        order.append((y, x))
        for q in ((y + dy, x + dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)):
            if 0 <= q[0] < h and 0 <= q[1] < w and skeleton[q] and q not in seen:
                seen.add(q)
                queue.append(q)
    return order


def skeleton_ends(skeleton: np.ndarray, rng: np.random.Generator) -> tuple[tuple[int, int], tuple[int, int]]:
    """Two far ends of the largest piece of ``skeleton``: the point farthest (along it) from a random point,
    then the point farthest from that one."""
    from scipy import ndimage as ndi

    pieces, _ = ndi.label(skeleton, structure=np.ones((3, 3)))
    largest = pieces == np.argmax(np.bincount(pieces.ravel())[1:]) + 1
    ys, xs = np.nonzero(largest)
    i = rng.integers(len(ys))
    first = skeleton_order(largest, (int(ys[i]), int(xs[i])))[-1]
    return first, skeleton_order(largest, first)[-1]


def brush_stroke(
    skeleton: np.ndarray, region: np.ndarray, start: tuple[int, int], budget: int, length: int | None = None
) -> np.ndarray:
    """A stroke of a ``BRUSH``-px brush along ``skeleton`` from ``start``, inside ``region``, of at most
    ``budget`` pixels (and ``length`` skeleton pixels); at least the brush's dab at ``start``."""
    from scipy import ndimage as ndi
    from skimage.morphology import disk

    path = skeleton_order(skeleton, start)
    n = max(1, min(len(path), budget // BRUSH, length or len(path)))
    while True:
        line = np.zeros(region.shape, bool)
        line[tuple(np.array(path[:n]).T)] = True
        out = ndi.binary_dilation(line, disk(BRUSH // 2)) & region
        if n == 1 or np.count_nonzero(out) <= budget:
            return out
        n = max(1, int(n * 0.9))


def short_region_strokes(region: np.ndarray, rng: np.random.Generator, count: int) -> np.ndarray:
    """``count`` (1 or 2) short strokes in ``region``: a ``BRUSH``-px brush along its eroded skeleton from
    one end (and from the other end), each at most ``STROKE_FRACTION`` of its pixels."""
    budget = max(1, int(STROKE_FRACTION * np.count_nonzero(region)))
    skeleton = skeleton_of(region, EROSION)
    ends = skeleton_ends(skeleton, rng)
    out = np.zeros(region.shape, bool)
    for end in ends[:count]:
        out |= brush_stroke(skeleton, region, end, budget)
    return out


def short_background_strokes(background: np.ndarray, rng: np.random.Generator, count: int) -> np.ndarray:
    """``count`` short strokes of a ``BRUSH``-px brush on the background's skeleton (kept ``BACKGROUND_MARGIN``
    px from the rest), at most ``BACKGROUND_LENGTH`` of the shorter side long, from its far ends."""
    skeleton = skeleton_of(background, BACKGROUND_MARGIN)
    if not skeleton.any():
        return np.zeros(background.shape, bool)
    length = max(1, int(BACKGROUND_LENGTH * min(background.shape)))
    ends = skeleton_ends(skeleton, rng)
    out = np.zeros(background.shape, bool)
    for end in ends[:count]:
        out |= brush_stroke(skeleton, background, end, BRUSH * length, length)
    return out


def background_strokes(background: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``BACKGROUND_STROKES`` strokes on the skeleton of the background kept ``BACKGROUND_MARGIN`` px from the rest."""
    from scipy import ndimage as ndi

    side = min(background.shape)
    skeleton = skeleton_of(background, BACKGROUND_MARGIN)
    out = np.zeros(background.shape, bool)
    for _ in range(BACKGROUND_STROKES):
        if not skeleton.any():
            break
        stroke = skeleton_piece(skeleton, max(1, int(BACKGROUND_LENGTH * side)), rng)
        out |= stroke
        skeleton &= ndi.distance_transform_edt(~stroke) >= BACKGROUND_SPACING * side
    return out


def case_rng(seed: int, set_name: str, image_id: str) -> np.random.Generator:
    """The strokes' random numbers: one stream per image, the same whichever images run with it."""
    return np.random.default_rng([seed, zlib.crc32(f"{set_name}/{image_id}".encode())])


def coarsest(segmentations: Sequence[np.ndarray]) -> np.ndarray:
    """The human segmentation with the fewest regions (the first of equals)."""
    return min(segmentations, key=lambda s: len(np.unique(s)))


def stroke_in(region: np.ndarray, rng: np.random.Generator, kind: str) -> np.ndarray:
    """The strokes of one region under ``kind`` (``STROKE_KINDS``)."""
    if kind == "long":
        return region_stroke(region, rng)
    if kind in ("short", "short2"):
        return short_region_strokes(region, rng, 2 if kind == "short2" else 1)
    raise ValueError(f"unknown stroke kind {kind!r}: one of {', '.join(STROKE_KINDS)}")


def bsds_case(root: Path, split: str, image_id: str, seed: int, kind: str = "long") -> Case:
    """A BSDS500 image, strokes (``kind``) in each large region of its coarsest human segmentation."""
    image = read_bsds_image(bsds_image(root, split, image_id))
    human = coarsest(load_ground_truth(bsds_truth(root, split, image_id)))
    ids, counts = np.unique(human, return_counts=True)
    order = np.argsort(-counts, kind="stable")
    kept = [ids[i] for i in order if counts[i] >= MIN_REGION * human.size][:MAX_CLASSES]
    rng = case_rng(seed, "bsds", image_id)
    truth = np.zeros(human.shape, np.uint8)
    strokes = np.zeros(human.shape, np.uint8)
    for k, region_id in enumerate(kept, start=1):
        region = human == region_id
        truth[region] = k
        strokes[stroke_in(region, rng, kind)] = k
    return Case(f"BSDS500 {split}", image_id, image, strokes, truth, len(kept))


def nuclei_case(
    dataset: NucleiSet, image_id: str, image: np.ndarray, mask: np.ndarray, seed: int, kind: str = "long"
) -> Case:
    """Strokes (``kind``) in three typical nuclei (class 2) and on the background (class 1)."""
    from skimage.measure import label

    objects = np.asarray(mask) if dataset.instances else label(np.asarray(mask) != 0)
    areas = np.bincount(objects.ravel())
    ids = np.nonzero(areas[1:])[0] + 1
    on_border = np.unique(np.concatenate([objects[[0, -1]].ravel(), objects[:, [0, -1]].ravel()]))
    candidates = [i for i in ids if areas[i] >= np.median(areas[ids]) and i not in on_border] or list(ids)
    rng = case_rng(seed, dataset.name, image_id)
    picked = np.sort(rng.choice(candidates, size=min(STROKED_NUCLEI, len(candidates)), replace=False))
    truth = np.where(objects > 0, NUCLEUS, BACKGROUND).astype(np.uint8)
    strokes = np.zeros(truth.shape, np.uint8)
    for i in picked:
        strokes[stroke_in(objects == i, rng, kind)] = NUCLEUS
    if kind == "long":
        strokes[background_strokes(objects == 0, rng)] = BACKGROUND
    else:
        strokes[short_background_strokes(objects == 0, rng, 2 if kind == "short2" else 1)] = BACKGROUND
    return Case(dataset.name, image_id, image, strokes, truth, 2, foreground=True)


def stroke_scores(labels: np.ndarray, case: Case) -> dict[str, float]:
    """Mean IoU over the stroked classes, pixel accuracy over the stroked regions, foreground Dice on nuclei."""
    if labels.shape != case.truth.shape:
        raise ValueError(f"labels of shape {labels.shape} for an image of shape {case.truth.shape}")
    ious = []
    for k in range(1, case.n_classes + 1):
        truth, pred = case.truth == k, labels == k
        ious.append(np.count_nonzero(truth & pred) / max(np.count_nonzero(truth | pred), 1))
    scored = case.truth > 0
    rec = {"miou": float(np.mean(ious)), "accuracy": float(np.mean(labels[scored] == case.truth[scored]))}
    if case.foreground:
        rec["dice"] = foreground_dice(labels == NUCLEUS, case.truth == NUCLEUS)
    return rec
