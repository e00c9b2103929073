"""Synthetic piecewise-constant images with known truth, and matched IoU.

Used by the tests and benchmarks to measure quality where the answer is known.
"""

from __future__ import annotations

import numpy as np

__all__ = ["phantom", "matched_iou"]


def phantom(
    shape: tuple[int, ...],
    n_phases: int,
    channels: int | None = None,
    noise: float = 0.08,
    seed: int = 0,
    min_fraction: float = 0.06,
) -> tuple[np.ndarray, np.ndarray]:
    """A noisy piecewise-constant image and its truth (values ``0..n_phases-1``).

    Regions are the Voronoi cells of ``n_phases`` random centres (redrawn until
    every region covers at least ``min_fraction`` of the image).  Grey images
    take evenly spaced levels in [0.2, 0.8]; with ``channels`` the colours are
    random but at least 0.4 apart.  Gaussian noise of std ``noise`` is added.
    Returns float32 ``image`` (``shape`` or ``shape + (channels,)``) and int
    ``truth`` (``shape``).
    """
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij")
    for _ in range(1000):
        centres = [rng.uniform(0, s, n_phases) for s in shape]
        d = np.stack([sum((g - c[i]) ** 2 for g, c in zip(grids, centres)) for i in range(n_phases)])
        truth = d.argmin(0)
        if np.bincount(truth.ravel(), minlength=n_phases).min() >= min_fraction * truth.size:
            break
    else:  # pragma: no cover - practically unreachable for sane settings
        raise ValueError("could not draw balanced regions; lower min_fraction")
    if channels:
        for _ in range(1000):
            colours = rng.uniform(0, 1, (n_phases, channels))
            dist = np.linalg.norm(colours[:, None] - colours[None], axis=-1)
            if dist[np.triu_indices(n_phases, 1)].min() >= 0.4:
                break
        image = colours[truth] + rng.normal(0, noise, shape + (channels,))
    else:
        levels = np.linspace(0.2, 0.8, n_phases)
        image = levels[truth] + rng.normal(0, noise, shape)
    return image.astype(np.float32), truth


def matched_iou(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """IoU of each truth region with its best-matching predicted label.

    The matching is one-to-one and maximises the total IoU (Hungarian method);
    a truth region left without a partner scores 0.  Returns one value per truth
    region, in the order of ``np.unique(truth)``.
    """
    from scipy.optimize import linear_sum_assignment

    pred = np.asarray(pred).ravel()
    truth = np.asarray(truth).ravel()
    if pred.shape != truth.shape:
        raise ValueError(f"shapes differ: {pred.shape} vs {truth.shape}")
    t_ids, t_inv = np.unique(truth, return_inverse=True)
    p_ids, p_inv = np.unique(pred, return_inverse=True)
    inter = np.zeros((len(t_ids), len(p_ids)), dtype=np.int64)
    np.add.at(inter, (t_inv, p_inv), 1)
    t_area = inter.sum(1, keepdims=True)
    p_area = inter.sum(0, keepdims=True)
    iou = inter / (t_area + p_area - inter)
    rows, cols = linear_sum_assignment(-iou)
    out = np.zeros(len(t_ids))
    out[rows] = iou[rows, cols]
    return out
