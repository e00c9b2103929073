"""Time from a grey image to instances against Otsu + distance-transform watershed, in one run.

For each image (files given, or a synthetic 1024² fluorescence phantom and its dark,
bright-field-like inverse) it times ``segment(image, regions="instances")`` with the
defaults and ``nuclei.py``'s Otsu + distance-transform watershed (the classical pipeline a
user would run instead; given the image inverted where the objects are dark), alternately,
``--repeats`` times each after one warm-up call, and prints the median seconds, their ratio,
where the level set's time goes (planning and preparation, the iterations, the instances),
and the F1 at IoU 0.5 of both where the truth is known.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/instances_speed.py --threads 1
    python benchmarks/instances_speed.py IMAGE.png [IMAGE2.tif ...] --repeats 5

Times are quoted only as the ratio to the classical pipeline of the same run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from nuclei import run_otsu_watershed

from napari_levelset.evaluation.matching import instance_scores
from napari_levelset.evaluation.synthetic import nuclei
from napari_levelset.io.read import read_image
from napari_levelset.method.plan import plan_run
from napari_levelset.method.segmentation import run_with_progress
from napari_levelset.resources import chooses_from_load, run_threads, torch_threads
from napari_levelset.settings import Settings, object_contrast


def stages(image: np.ndarray, threads: int | None = None) -> tuple[np.ndarray, dict[str, float]]:
    """``segment(image, regions="instances", threads=threads)`` step by step, with the seconds of each step
    (the thread count chosen as ``segment`` chooses it)."""
    t = [time.perf_counter()]
    from_load = not threads and chooses_from_load()
    with torch_threads(run_threads(threads)):
        plan = plan_run(image, Settings(regions="instances"))
        t.append(time.perf_counter())
        with torch_threads(plan.threads(run_threads(threads), from_load)):
            seg = plan.make_segmenter()
            last = run_with_progress(seg, plan.iterations, False)
            t.append(time.perf_counter())
            labels = plan.finish(seg, last)
    t.append(time.perf_counter())
    return labels, {"plan": t[1] - t[0], "iterations": t[2] - t[1], "instances": t[3] - t[2]}


def classical_input(image: np.ndarray) -> np.ndarray:
    """The grey image in [0, 1], inverted where the objects are dark (as a user would by hand)."""
    g = np.asarray(image, np.float64)
    g = (g - g.min()) / max(float(np.ptp(g)), 1e-12)
    return 1.0 - g if object_contrast(image, None)[0] == "transmitted" else g


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("images", nargs="*", help="grey image files (default: a 1024² phantom and its inverse)")
    ap.add_argument("--repeats", type=int, default=3, help="timed calls of each method per image (default: 3)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: as the library chooses)")
    a = ap.parse_args(argv)
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    cases = []
    if a.images:
        cases = [(Path(p).name, np.asarray(read_image(p)), None) for p in a.images]
    else:
        bright, truth = nuclei((1024, 1024), n_objects=120, diameter=24.0, seed=0)
        cases = [("phantom 1024² (bright nuclei)", bright, truth)]
        cases.append(("its inverse (dark nuclei)", (bright.max() - bright).astype(bright.dtype), truth))
    print(
        "| image | Otsu + watershed (s) | level set (s) | ratio | plan / iterations / instances (s) "
        "| F1 (Otsu-ws / level set) |"
    )
    print("|---|---|---|---|---|---|")
    for name, image, truth in cases:
        grey = classical_input(image)
        stages(image, a.threads)  # warm-up: imports, first allocations
        run_otsu_watershed(grey)
        ours, theirs, parts = [], [], []
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            classical = run_otsu_watershed(grey)
            theirs.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            labels, part = stages(image, a.threads)
            ours.append(time.perf_counter() - t0)
            parts.append(part)
        o, c = statistics.median(ours), statistics.median(theirs)
        split = " / ".join(f"{statistics.median(p[k] for p in parts):.2f}" for k in ("plan", "iterations", "instances"))
        f1 = "—"
        if truth is not None:
            f1 = f"{instance_scores(classical, truth)['f1']:.3f} / {instance_scores(labels, truth)['f1']:.3f}"
        print(f"| {name} {image.shape} | {c:.3f} | {o:.2f} | {o / c:.1f}× | {split} | {f1} |", flush=True)


if __name__ == "__main__":
    main()
