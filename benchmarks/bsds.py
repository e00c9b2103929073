#!/usr/bin/env python
"""BSDS500 region benchmark (SC / PRI / VI at ODS and OIS) for napari-levelset and baselines.

Every method is run on every image of a split at each value of its "scale"
sweep; each (method, scale, image) result is scored with
:mod:`napari_levelset.evaluation` (a faithful port of the original MATLAB region
benchmark) and cached as a small JSON file, so an interrupted sweep resumes
where it stopped and a re-run with more images only computes the new ones.

Methods and their sweeps (override any sweep with ``--sweep name=v1,v2,...``):

``levelset``
    ``napari_levelset.segment(image, n_classes=N, seed=0, **settings)`` on the
    RGB uint8 image, N over ``--classes`` (default 2..8); ``--set key=value``
    options are forwarded as keyword arguments (values parsed as Python
    literals when possible, e.g. ``--set iterations=300 --set lam=0.5``).
    ``--grid key=v1,v2`` sweeps a granularity setting together with N: the
    scales are all pairs, written ``N@key=v`` (e.g. ``5@position=0.5``), and
    ODS/OIS choose among all of them.
``kmeans``
    k-means on CIELAB colour (no position), ``scipy.cluster.vq.kmeans2`` with
    k-means++ initialisation, 20 iterations, fixed seed 0; k = 2..12.
``felzenszwalb``
    ``skimage.segmentation.felzenszwalb`` on RGB, ``sigma=0.8``,
    ``min_size=100``, sweep of ``scale`` (50 .. 5000).
``chanvese``
    ``skimage.segmentation.chan_vese`` (two-phase) on the grey image,
    ``max_num_iter=200, tol=1e-3, dt=0.5``, sweep of ``mu``.  With
    ``--chanvese-downscale F`` (default 1: full resolution; its seconds per image
    are in ``benchmarks/RESULTS.md``, "Quality") it runs on the image shrunk by F
    (anti-aliased) and the mask is brought back to full size by nearest-neighbour
    upsampling.

Like the level-set output, k-means and Chan-Vese labels are classes, not
connected components: every label value counts as one region (as in the
benchmark).  Timing is the wall-clock time of the segmentation call alone
(not reading nor scoring) for one image at one scale; with ``--workers > 1``
workers share the CPU cores, which inflates it.

Example::

    python benchmarks/bsds.py --bsds ../shared/data/bsds500 --split val \\
        --methods levelset,kmeans,felzenszwalb,chanvese --limit 20 \\
        --classes 2,3,4,5,6 --set iterations=200 --workers 2 --out benchmarks/out/val

Outputs under ``--out``: ``cache/<method>-<hash>/<scale>/<id>[.<output>].json``
(scores; plus ``config.json`` per method/settings), ``labels/<method>-<hash>/<scale>/<id>.npz``
(level-set label maps and the seconds they took, keyed by the settings that change
the segmentation, so new outputs or merge weights only re-score them),
``summary.json`` and ``table.md``.

The level-set outputs: ``levelset`` (classes), ``levelset+cc`` (connected regions)
and ``levelset+ms`` (connected regions merged while the level-set energy of the
partition drops, ``napari_levelset.post.regions.merge_regions``; every weight of
``--merge`` is a scale ``N|m=w`` of its own, so ODS/OIS choose among them).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from _common import (
    OUT,
    POST_KEYS,
    add_data_args,
    bsds_image,
    bsds_truth,
    config_key,
    felzenszwalb_labels,
    label_cache_dir,
    levelset_features,
    list_images,
    literal,
    parse_list,
    parse_set,
    read_bsds_image,
    scale_dir,
    timed,
)

from napari_levelset import evaluation as metrics
from napari_levelset.post.regions import to_regions
from napari_levelset.settings import MERGE_OPTIONS, model_kind, region_defaults


# ------------------------------------------------------------------ methods
def _lab(image: np.ndarray) -> np.ndarray:
    from skimage.color import rgb2lab

    return rgb2lab(image[..., :3])


def parse_levelset_scale(scale: Any) -> tuple[int, dict]:
    """A level-set scale: ``N`` or ``"N@key=value@key=value"`` (N plus granularity settings)."""
    n, *items = str(scale).split("@")
    extra = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"bad level-set scale {scale!r}: expected N@key=value")
        extra[key] = literal(value)
    return int(n), extra


def run_levelset(image: np.ndarray, scale: Any, config: dict) -> np.ndarray:
    """napari_levelset's per-image segmentation, class labels, ``n_classes=N`` of ``scale``.

    ``config['settings']`` are extra keyword arguments of ``napari_levelset.segment``
    (see ``parse_levelset_scale`` for settings inside the scale).  The outputs
    scored from these labels (classes, connected or merged regions) are made by
    ``outputs_of`` with ``napari_levelset.post.regions.to_regions``, exactly as
    ``segment(regions=...)`` makes them.
    """
    from napari_levelset import segment

    n, extra = parse_levelset_scale(scale)
    settings = {**config.get("settings", {}), **extra}
    for key in ("regions", "min_region", "merge"):
        settings.pop(key, None)  # outputs are made from the class labels afterwards
    seed = settings.pop("seed", 0)
    return np.asarray(segment(image, n_classes=n, seed=seed, **settings))


def run_kmeans(image: np.ndarray, scale: Any, config: dict) -> np.ndarray:
    """k-means (k = scale) on Lab colour with a fixed seed; labels 1..k."""
    from scipy.cluster.vq import kmeans2

    lab = _lab(image).reshape(-1, 3).astype(np.float64)
    rng = np.random.default_rng(config.get("seed", 0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "One of the clusters is empty"
        _, lab_idx = kmeans2(lab, int(scale), iter=config.get("iter", 20), minit="++", seed=rng)
    return lab_idx.reshape(image.shape[:2]).astype(np.int32) + 1


def run_felzenszwalb(image: np.ndarray, scale: Any, config: dict) -> np.ndarray:
    """Felzenszwalb-Huttenlocher graph segmentation at ``scale``."""
    return felzenszwalb_labels(image, scale, sigma=config.get("sigma", 0.8), min_size=config.get("min_size", 100))


def run_chanvese(image: np.ndarray, scale: Any, config: dict) -> np.ndarray:
    """Two-phase Chan-Vese on grey with ``mu=scale`` (optionally on a downscaled image)."""
    from skimage.color import rgb2gray
    from skimage.segmentation import chan_vese
    from skimage.transform import rescale

    grey = rgb2gray(image[..., :3])
    f = float(config.get("downscale", 1))
    small = rescale(grey, 1 / f, anti_aliasing=True) if f > 1 else grey
    mask = chan_vese(
        small,
        mu=float(scale),
        max_num_iter=config.get("max_num_iter", 200),
        tol=config.get("tol", 1e-3),
        dt=config.get("dt", 0.5),
    )
    if mask.shape != grey.shape:  # nearest-neighbour upsampling back to full size
        h, w = grey.shape
        rows = np.minimum((np.arange(h) + 0.5) * mask.shape[0] / h, mask.shape[0] - 1).astype(int)
        cols = np.minimum((np.arange(w) + 0.5) * mask.shape[1] / w, mask.shape[1] - 1).astype(int)
        mask = mask[rows][:, cols]
    return mask.astype(np.int32) + 1


@dataclass
class Method:
    """A segmentation method: ``run(image, scale, config) -> labels`` and its default sweep."""

    name: str
    run: Callable[[np.ndarray, Any, dict], np.ndarray]
    scales: list
    scale_name: str
    config: dict = field(default_factory=dict)


METHODS: dict[str, Method] = {
    "levelset": Method("levelset", run_levelset, list(range(2, 9)), "N", {"settings": {}}),
    "kmeans": Method("kmeans", run_kmeans, list(range(2, 13)), "k", {"seed": 0, "iter": 20, "space": "lab"}),
    "felzenszwalb": Method(
        "felzenszwalb",
        run_felzenszwalb,
        [50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000],
        "scale",
        {"sigma": 0.8, "min_size": 100},
    ),
    "chanvese": Method(
        "chanvese",
        run_chanvese,
        [0.05, 0.1, 0.2, 0.4, 0.8],
        "mu",
        {"downscale": 1, "max_num_iter": 200, "tol": 1e-3, "dt": 0.5},
    ),
}


# ------------------------------------------------------------------ running
def _jsonable(result: dict) -> dict:
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in result.items()}


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def run_one(task: dict) -> list[dict]:
    """Run one method on one image at the given scales, score and cache each output.

    ``task`` keys: ``method``, ``config``, ``scales``, ``image_id``, ``image``,
    ``gt`` (paths), ``cache`` (the method's score cache dir), ``labels`` (its
    label cache dir, or None).  A label map found in the label cache is scored
    again instead of recomputed (its stored segmentation time is kept).
    Returns the cached records (dicts as stored in the JSON files).
    """
    method = METHODS[task["method"]]
    image = read_bsds_image(Path(task["image"]))
    gts = metrics.load_ground_truth(task["gt"])
    outputs = outputs_of(method.name, task["config"])
    features = None
    records = []
    for scale in task["scales"]:
        stored = Path(task["labels"]) / scale_dir(scale) / f"{task['image_id']}.npz" if task.get("labels") else None
        if stored is not None and stored.is_file():
            with np.load(stored) as z:
                labels, seconds = z["labels"], float(z["seconds"])
        else:
            labels, seconds = timed(lambda scale=scale: np.asarray(method.run(image, scale, task["config"])))
            if stored is not None:
                stored.parent.mkdir(parents=True, exist_ok=True)
                tmp = stored.with_name(f".{stored.stem}.{os.getpid()}.tmp.npz")
                np.savez_compressed(tmp, labels=labels.astype(np.uint16), seconds=seconds)
                os.replace(tmp, stored)
        if labels.shape != gts[0].shape:
            raise RuntimeError(
                f"{method.name} returned labels of shape {labels.shape} for image "
                f"{task['image_id']} of shape {gts[0].shape}"
            )
        for name, variants in outputs.items():
            for suffix, post in variants.items():
                out_scale = f"{scale}{suffix}" if suffix else scale
                path = Path(task["cache"]) / scale_dir(out_scale) / _record_name(task["image_id"], name, method.name)
                if path.is_file() and not task.get("no_cache"):
                    records.append(json.loads(path.read_text()))
                    continue
                t1 = time.perf_counter()
                if post is None:
                    result = labels
                else:
                    if features is None and method.name == "levelset":
                        features = levelset_features(image, task["config"])
                    result = post(labels, features)
                rec = {
                    "id": task["image_id"],
                    "method": name,
                    "scale": out_scale,
                    "seconds": seconds + (time.perf_counter() - t1 if post is not None else 0.0),
                    **_jsonable(metrics.evaluate_image(result, gts)),
                }
                _write_atomic(path, json.dumps(rec))
                records.append(rec)
    return records


def _record_name(image_id: str, output: str, method: str) -> str:
    return f"{image_id}.json" if output == method else f"{image_id}.{output}.json"


def outputs_of(method: str, config: dict) -> dict[str, dict[str, Callable | None]]:
    """The outputs scored from one segmentation: name -> {scale suffix: post-processing}.

    ``post(labels, features)`` makes the output from the method's labels (None:
    the labels as they are).  For the level-set method ``config["regions"]``
    may ask for ``classes`` (each label value one region, reported as
    ``levelset``), ``connected`` (each connected piece one region, fragments
    under ``config["min_region"]`` merged; ``levelset+cc``) and ``merged``
    (connected pieces merged while the level-set energy drops, one output
    scale per weight in ``config["merge"]``, written ``N|m=w``;
    ``levelset+ms``), all from the same run.
    """
    if method != "levelset":
        return {method: {"": None}}
    # the defaults segment() uses for this model, where not given
    kind = model_kind(config.get("settings", {}).get("model", "cnn"))
    options = MERGE_OPTIONS[kind]
    given = config.get("min_region")
    ms = float(region_defaults(kind, "connected")[1] if given is None else given)
    ms_merged = float(region_defaults(kind, "merged")[1] if given is None else given)
    outs: dict[str, dict[str, Callable | None]] = {}
    for r in config.get("regions", ["classes"]):
        if r == "classes":
            outs["levelset"] = {"": None}
        elif r == "connected":
            outs["levelset+cc"] = {"": lambda lab, x, ms=ms: to_regions(lab, "connected", min_region=ms)}
        elif r == "merged":
            outs["levelset+ms"] = {
                f"|m={w}": (
                    lambda lab, x, w=float(w): to_regions(
                        lab, "merged", min_region=ms_merged, features=x, merge=w, **options
                    )
                )
                for w in config.get("merge", [1.0])
            }
        else:
            raise SystemExit(f"unknown --regions entry {r!r}: use classes, connected and/or merged")
    return outs


def _init_worker(threads: int, uses_torch: bool) -> None:
    """Share the CPU cores between workers (torch would otherwise use all of them in each)."""
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    if uses_torch:
        try:
            import torch

            torch.set_num_threads(threads)
        except ImportError:  # pragma: no cover
            pass


# ------------------------------------------------------------------ reporting
def summarize_method(records: dict[str, dict[Any, dict]], ids: Sequence[str], scales: Sequence) -> dict:
    """ODS/OIS summary plus timing for one method from ``records[id][scale]``."""
    per_image = [[records[i][s] for s in scales] for i in ids]
    summary = metrics.summarize(per_image, scales=list(scales))
    secs = np.array([[r["seconds"] for r in img] for img in per_image])
    summary["sec_per_seg"] = float(secs.mean())
    summary["sec_per_image_sweep"] = float(secs.sum(axis=1).mean())
    summary["mean_regions_per_scale"] = np.array([[r["n_regions"] for r in img] for img in per_image]).mean(0).tolist()
    return summary


def format_table(summaries: dict[str, dict], scale_names: dict[str, str]) -> str:
    """Markdown table: SC / PRI / VI at ODS (with the chosen scale) and OIS, best covering, timing."""
    head = (
        "| method | sweep | SC ODS | SC OIS | best cov | PRI ODS | PRI OIS | VI ODS | VI OIS | s/seg | s/img (sweep) |"
    )
    lines = [head, "|" + "|".join(["---"] * (head.count("|") - 1)) + "|"]
    for name, s in summaries.items():
        sn = scale_names.get(name, "scale")
        lines.append(
            f"| {name} | {sn}={_fmt_scales(s['scales'])} "
            f"| {s['sc_ods']:.3f} ({sn}={s['sc_ods_scale']}) | {s['sc_ois']:.3f} | {s['best_covering']:.3f} "
            f"| {s['pri_ods']:.3f} ({sn}={s['pri_ods_scale']}) | {s['pri_ois']:.3f} "
            f"| {s['vi_ods']:.3f} ({sn}={s['vi_ods_scale']}) | {s['vi_ois']:.3f} "
            f"| {s['sec_per_seg']:.3f} | {s['sec_per_image_sweep']:.2f} |"
        )
    return "\n".join(lines)


def format_per_scale(name: str, s: dict, scale_name: str) -> str:
    """Markdown table of the dataset scores at every scale of one method."""
    lines = [f"{name}:", f"| {scale_name} | regions | SC | PRI | VI |", "|---|---|---|---|---|"]
    for sc, nreg, c, p, v in zip(
        s["scales"], s["mean_regions_per_scale"], s["sc_per_scale"], s["pri_per_scale"], s["vi_per_scale"]
    ):
        lines.append(f"| {sc} | {nreg:.1f} | {c:.4f} | {p:.4f} | {v:.4f} |")
    return "\n".join(lines)


def _fmt_scales(scales: Sequence) -> str:
    if len(scales) > 4:
        return f"{scales[0]}..{scales[-1]} ({len(scales)})"
    return ",".join(str(s) for s in scales)


# ------------------------------------------------------------------ CLI
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="BSDS500 region benchmark (SC/PRI/VI, ODS/OIS) for napari-levelset and baselines.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    add_data_args(p, limit=None, classes="2,3,4,5,6,7,8")
    p.add_argument(
        "--methods",
        default="levelset,kmeans,felzenszwalb,chanvese",
        help="comma-separated methods: " + ",".join(METHODS),
    )
    p.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2,...",
        help="sweep a granularity setting of the level-set method together with N (repeatable): "
        "the scales are every combination, written N@KEY=V",
    )
    p.add_argument("--sweep", action="append", default=[], metavar="METHOD=V1,V2,...", help="override a method's sweep")
    p.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra keyword argument for napari_levelset.segment (repeatable)",
    )
    p.add_argument(
        "--chanvese-downscale",
        type=float,
        default=1.0,
        help="run Chan-Vese on the image shrunk by this factor (labels upsampled nearest-neighbour)",
    )
    p.add_argument(
        "--regions",
        default="classes,connected,merged",
        help="level-set outputs scored from each run: classes (levelset), connected (levelset+cc), "
        "merged (levelset+ms)",
    )
    p.add_argument(
        "--merge",
        default="0.1,0.2,0.3,0.5,0.8,1.2,2",
        help="merge weights swept for the merged output (each N|m=w is one scale)",
    )
    p.add_argument(
        "--min-region",
        type=float,
        default=None,
        help="smallest connected region kept, as a fraction of the image (default: segment's, "
        "0.001; 0.0002 for a U-Net's merged regions)",
    )
    p.add_argument("--workers", type=int, default=1, help="parallel worker processes")
    p.add_argument("--out", type=Path, default=None, help="output folder (default benchmarks/out/bsds-<split>)")
    p.add_argument("--no-cache", action="store_true", help="recompute even where a cached result exists")
    p.add_argument(
        "--save-labels",
        action="store_true",
        help="also store the baselines' label maps (the level-set ones are always kept, under labels/)",
    )
    p.add_argument("--per-scale", action="store_true", help="also print the scores at every scale")
    return p.parse_args(argv)


def build_methods(args: argparse.Namespace) -> dict[str, tuple[Method, list, dict]]:
    """(method, scales, config) for every requested method, with CLI overrides applied."""
    sweeps = {}
    for item in args.sweep:
        name, _, values = item.partition("=")
        if name not in METHODS or not values:
            raise SystemExit(f"bad --sweep {item!r}: expected METHOD=V1,V2,... with METHOD in {list(METHODS)}")
        sweeps[name] = parse_list(values)
    settings = parse_set(args.settings)
    chosen = {}
    for name in [m.strip() for m in args.methods.split(",") if m.strip()]:
        if name not in METHODS:
            raise SystemExit(f"unknown method {name!r}; choose from {list(METHODS)}")
        m = METHODS[name]
        config = json.loads(json.dumps(m.config))
        scales = list(m.scales)
        if name == "levelset":
            config["settings"] = settings
            config["regions"] = [r.strip() for r in args.regions.split(",") if r.strip()]
            config["min_region"] = args.min_region
            config["merge"] = [float(v) for v in parse_list(args.merge)]
            scales = parse_list(args.classes)
            for item in args.grid:
                key, sep, values = item.partition("=")
                if not sep or not key or not values:
                    raise SystemExit(f"bad --grid {item!r}: expected KEY=V1,V2,...")
                scales = [f"{s}@{key.strip()}={v.strip()}" for v in values.split(",") if v.strip() for s in scales]
        if name == "chanvese":
            config["downscale"] = args.chanvese_downscale
        scales = sweeps.get(name, scales)
        chosen[name] = (m, scales, config)
    return chosen


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    from tqdm import tqdm

    bsds = args.bsds.resolve()
    ids = list_images(bsds, args.split, args.limit)
    out = args.out or (OUT / f"bsds-{args.split}")
    chosen = build_methods(args)

    # every output's scales: the method's scales, each with the output's suffixes
    out_scales: dict[str, tuple[str, list]] = {}
    for name, (_, scales, config) in chosen.items():
        for o, variants in outputs_of(name, config).items():
            out_scales[o] = (name, [f"{s}{suffix}" if suffix else s for s in scales for suffix in variants])
    tasks, records = [], {o: {i: {} for i in ids} for o in out_scales}
    for name, (_m, scales, config) in chosen.items():
        seg_config = {k: v for k, v in config.items() if k not in POST_KEYS}
        cache = out / "cache" / config_key(name, {**seg_config, "min_region": config.get("min_region")})
        cache.mkdir(parents=True, exist_ok=True)
        (cache / "config.json").write_text(json.dumps({"method": name, "config": config}, indent=1, sort_keys=True))
        labels_dir = label_cache_dir(out, name, config) if name == "levelset" or args.save_labels else None
        variants = outputs_of(name, config)
        for i in ids:
            for s in scales:
                files = {
                    (o, f"{s}{sfx}" if sfx else s): cache / scale_dir(f"{s}{sfx}") / _record_name(i, o, name)
                    for o, v in variants.items()
                    for sfx in v
                }
                if all(f.is_file() for f in files.values()) and not args.no_cache:
                    for (o, os_), f in files.items():
                        records[o][i][os_] = json.loads(f.read_text())
                    continue
                # one task per (method, scale, image): fine-grained progress and load balancing
                tasks.append(
                    {
                        "method": name,
                        "config": config,
                        "scales": [s],
                        "image_id": i,
                        "image": str(bsds_image(bsds, args.split, i)),
                        "gt": str(bsds_truth(bsds, args.split, i)),
                        "cache": str(cache),
                        "labels": None if labels_dir is None else str(labels_dir),
                        "no_cache": args.no_cache,
                    }
                )

    n_cached = sum(len(v) for name in chosen for v in records[next(iter(outputs_of(name, chosen[name][2])))].values())
    n_todo = sum(len(t["scales"]) for t in tasks)
    print(
        f"{len(ids)} images of {args.split}, methods {', '.join(chosen)}: {n_cached} cached, {n_todo} to run -> {out}",
        file=sys.stderr,
    )
    t_start = time.perf_counter()
    with tqdm(total=n_todo, unit="seg", desc="bsds", dynamic_ncols=True) as bar:

        def collect(recs, n_segs):
            for r in recs:
                records[r["method"]][r["id"]][_match_scale(out_scales[r["method"]][1], r["scale"])] = r
            bar.update(n_segs)  # segmentations, not outputs scored
            if recs:
                bar.set_postfix_str(f"{recs[-1]['method']} {recs[-1]['id']}")

        if args.workers > 1 and len(tasks) > 1:
            import multiprocessing as mp

            threads = max(1, (os.cpu_count() or 1) // args.workers)
            with mp.get_context("spawn").Pool(
                args.workers, initializer=_init_worker, initargs=(threads, "levelset" in chosen)
            ) as pool:
                for recs in pool.imap_unordered(run_one, tasks):
                    collect(recs, 1)
        else:
            for task in tasks:
                collect(run_one(task), len(task["scales"]))
    elapsed = time.perf_counter() - t_start

    summaries = {o: summarize_method(records[o], ids, scales) for o, (_, scales) in out_scales.items()}
    scale_names = {o: chosen[name][0].scale_name for o, (name, _) in out_scales.items()}
    table = format_table(summaries, scale_names)
    header = (
        f"BSDS500 {args.split}: {len(ids)} images; ODS = best single scale over the split, "
        f"OIS = best scale per image; s/seg = mean seconds of one segmentation call"
    )
    print(header)
    print(table)
    if args.per_scale:
        for name, s in summaries.items():
            print()
            print(format_per_scale(name, s, scale_names[name]))
    print(f"(ran {n_todo} segmentations in {elapsed:.1f} s with {args.workers} worker(s))", file=sys.stderr)

    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(
        json.dumps(
            {
                "split": args.split,
                "n_images": len(ids),
                "ids": ids,
                "methods": {o: {"config": chosen[n][2], **summaries[o]} for o, (n, _) in out_scales.items()},
            },
            indent=1,
            default=str,
        )
    )
    (out / "table.md").write_text(header + "\n\n" + table + "\n")
    return summaries


def _match_scale(scales: Sequence, value: Any) -> Any:
    """The sweep entry equal to ``value`` (JSON may turn 2.0 into 2 or keep types apart)."""
    for s in scales:
        if s == value:
            return s
    return value


if __name__ == "__main__":
    main()
