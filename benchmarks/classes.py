#!/usr/bin/env python
"""Whether ``segment(image, n_classes=K)`` gives K labels, or says why not, on phantoms with K levels.

For each K, noise and λ of the grid, runs the per-image CNN (defaults otherwise) on
``napari_levelset.evaluation.synthetic.phantom((SIZE, SIZE), K, seed=s, noise=...)`` for the seeds
given and counts, per row:

*all found*
    runs whose every true region is matched one to one by a label with IoU >= 0.9
    (``evaluation.synthetic.matched_iou``);
*lost a class*
    runs in which a label holds under 0.1 % of the pixels;
*warned*
    of those, the runs that warned why (a ``UserWarning`` whose message says how many of
    the classes asked for hold pixels: ``FewerClassesWarning``).

Example::

    OMP_NUM_THREADS=1 python benchmarks/classes.py --seeds 4
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np
from _common import markdown

GRID = ((4, 0.08, None), (4, 0.08, 0.5), (4, 0.15, None), (5, 0.08, None), (5, 0.15, None), (6, 0.08, None))
GRID += ((6, 0.15, None), (4, 0.15, 0.5))


def run(k: int, noise: float, lam: float | None, seed: int, size: int) -> dict:
    """One run: its labels' fate on one phantom."""
    from napari_levelset import segment
    from napari_levelset.evaluation.synthetic import matched_iou, phantom

    image, truth = phantom((size, size), k, seed=seed, noise=noise)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        labels = segment(image, n_classes=k, lam=lam, device="cpu")
    counts = np.bincount(labels.ravel(), minlength=k + 1)[1:]
    return {
        "found": bool(matched_iou(labels, truth).min() >= 0.9),
        "lost": bool((counts < 0.001 * labels.size).any()),
        "warned": any("classes asked for" in str(w.message) for w in seen),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=4, help="phantoms per row (seeds 0..N-1)")
    p.add_argument("--size", type=int, default=128, help="phantom side, pixels")
    args = p.parse_args()
    import torch

    torch.set_num_threads(1)
    rows = []
    for k, noise, lam in GRID:
        runs = [run(k, noise, lam, s, args.size) for s in range(args.seeds)]
        lost = [r for r in runs if r["lost"]]
        rows.append(
            [
                f"{k}, {noise:g}, {'0.05 (default)' if lam is None else f'{lam:g}'}",
                str(sum(r["found"] for r in runs)),
                str(len(lost)),
                str(sum(r["warned"] for r in lost)) if lost else "—",
            ]
        )
        print(" | ".join(rows[-1]), flush=True)
    print(f"\n{args.seeds} phantoms of {args.size}² per row, per-image CNN, 1 thread\n")
    print("\n".join(markdown(["K, noise, λ", "all found", "lost a class", "of those, warned"], rows)))


if __name__ == "__main__":
    main()
