"""Label maps as region indices, and the contingency table of two of them: what every score counts.

Every distinct value of a label map is one region, whatever the values (any integers,
0 and negative ones included), so relabelling never changes a score.  Numpy only.
"""

from __future__ import annotations

import numpy as np

__all__ = ["contingency", "relabel"]


def relabel(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Map arbitrary label values to ``0..n-1`` (in sorted value order).

    Parameters
    ----------
    labels : numpy.ndarray
        Label map, any shape; integer or bool values of any dtype (or floats holding integers).

    Returns
    -------
    index : numpy.ndarray
        int64 ``(labels.size,)``: per pixel (flattened), the rank of its value among the
        distinct values.
    n : int
        The number of distinct values.

    Raises
    ------
    ValueError
        When the map is empty or holds non-integer values.

    Examples
    --------
    >>> import numpy as np
    >>> index, n = relabel(np.array([[7, -2], [7, 3]]))
    >>> index.tolist(), n
    ([2, 0, 2, 1], 3)
    """
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iub" and not np.all(np.equal(np.mod(labels, 1), 0)):
        raise ValueError("label arrays must hold integer values")
    flat = labels.ravel()
    if flat.size == 0:
        raise ValueError("empty label array")
    non_negative = flat.dtype.kind in "ub" or (flat.dtype.kind == "i" and flat.min() >= 0)
    if non_negative and flat.max() <= np.iinfo(np.int64).max:  # (uint64 beyond int64 takes np.unique)
        flat = flat.astype(np.int64, copy=False)
        top = int(flat.max())
        if top < 4 * flat.size:  # cheap path: bincount-based compaction
            present = np.bincount(flat, minlength=top + 1) > 0
            lut = np.cumsum(present) - 1
            return lut[flat], int(present.sum())
    uniq, inverse = np.unique(flat, return_inverse=True)
    return inverse.reshape(-1).astype(np.int64, copy=False), int(uniq.size)


def contingency(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Joint histogram of two label maps of the same shape.

    Parameters
    ----------
    a : numpy.ndarray
        Label map, any shape; integer values of any dtype (or floats holding integers).
    b : numpy.ndarray
        Label map of the same shape.

    Returns
    -------
    numpy.ndarray
        float64 ``(n_a, n_b)`` matrix ``n`` with ``n[i, j]`` = number of pixels having
        the ``i``-th distinct value of ``a`` and the ``j``-th distinct value of
        ``b`` (values in sorted order; absent values have no row/column).

    Raises
    ------
    ValueError
        When the shapes differ, a map is empty, or holds non-integer values.

    Examples
    --------
    >>> import numpy as np
    >>> contingency(np.array([0, 0, 1, 1]), np.array([5, 7, 7, 7])).tolist()
    [[1.0, 1.0], [0.0, 2.0]]
    """
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch: {a.shape} vs {b.shape}")
    ia, na = relabel(a)
    ib, nb = relabel(b)
    counts = np.bincount(ia * nb + ib, minlength=na * nb)
    return counts.reshape(na, nb).astype(np.float64)
