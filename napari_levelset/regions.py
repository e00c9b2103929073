"""Turning class labels into connected regions.

The level-set loss assigns every pixel one of N classes; a class may cover many
separate pieces of the image.  Where one label per *object* is wanted (region
benchmarks such as BSDS500, counting cells), ``connected_regions`` splits each
class into its connected components and merges fragments smaller than
``min_size`` into the nearest large region.  scikit-image and scipy are imported
only when this is called.
"""

from __future__ import annotations

import numpy as np

__all__ = ["connected_regions"]


def connected_regions(labels: np.ndarray, min_size: float = 0.001, spatial_dims: int | None = None) -> np.ndarray:
    """Relabel ``labels`` so that each connected piece of a class is its own region.

    ``min_size`` is the smallest region kept, in pixels (>= 1) or as a fraction of
    the pixels of one image (< 1).  Smaller fragments take the label of the nearest
    kept region.  With ``spatial_dims`` smaller than ``labels.ndim``, leading axes
    are independent slices.  Returns uint32 labels 1..R (numbered over the whole
    array, so slices never share an id).
    """
    from scipy import ndimage
    from skimage.measure import label as cc_label

    labels = np.asarray(labels)
    sd = labels.ndim if spatial_dims is None else int(spatial_dims)
    if sd not in (2, 3) or sd > labels.ndim:
        raise ValueError(f"spatial_dims must be 2 or 3 and at most labels.ndim, got {sd} for shape {labels.shape}")
    spatial = labels.shape[labels.ndim - sd :]
    flat = labels.reshape((-1,) + spatial)
    npix = int(np.prod(spatial))
    min_px = int(min_size) if min_size >= 1 else max(1, int(round(min_size * npix)))
    out = np.zeros(flat.shape, np.uint32)
    offset = 0
    for i, lab in enumerate(flat):
        comp = cc_label(lab.astype(np.int64) + 1, background=0, connectivity=1)
        sizes = np.bincount(comp.ravel())
        small = sizes < min_px
        small[0] = True  # background id (unused) is never a kept region
        if small[1:].all():  # nothing is large enough: keep the largest piece
            small[np.argmax(sizes[1:]) + 1] = False
        drop = small[comp]
        if drop.any():
            _, idx = ndimage.distance_transform_edt(drop, return_indices=True)
            comp = comp[tuple(idx)]
        ids, inv = np.unique(comp, return_inverse=True)
        out[i] = inv.reshape(comp.shape) + 1 + offset
        offset += len(ids)
    return out.reshape(labels.shape)
