"""Instance segmentation scores: objects matched by IoU, F1, average precision, foreground Dice.

In both label maps 0 is background and every other value is one object.  A
predicted and a true object *match* when their IoU
(``|P∩T| / |P∪T|``) exceeds a threshold, one to one; above 0.5 a match is
unique without any assignment step, since ``IoU(P, T) > 0.5`` means ``P``
covers more than half of ``T`` and ``T`` more than half of ``P``.  From the
matches at IoU 0.5 come precision, recall and F1 ``2TP / (2TP + FP + FN)``;
the average precision is the Data Science Bowl 2018 score as StarDist and
Cellpose compute it, ``AP_t = TP / (TP + FP + FN)`` averaged over the IoU
thresholds 0.5, 0.55, ..., 0.95.  The overlaps come from a sparse contingency
table (only the object pairs that touch), so a 1024² image with hundreds of
objects takes a few tens of milliseconds.

This module needs only numpy (and ``scipy.optimize`` for matching below IoU 0.5, imported
when used), so it is cheap to import.

References
----------
.. [1] J. C. Caicedo et al., "Nucleus segmentation across imaging experiments: the 2018
   Data Science Bowl", Nature Methods 16, 1247-1253 (2019): the instance AP, as StarDist
   (Schmidt et al., MICCAI 2018) and Cellpose (Stringer et al., Nature Methods 18,
   100-106, 2021) compute it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from napari_levelset.evaluation.contingency import relabel

__all__ = [
    "AP_THRESHOLDS",
    "foreground_dice",
    "instance_scores",
    "match_instances",
]


#: IoU thresholds of the average precision: 0.5, 0.55, ..., 0.95 (DSB 2018, StarDist, Cellpose)
AP_THRESHOLDS: tuple[float, ...] = tuple(round(0.5 + 0.05 * k, 2) for k in range(10))


class _Overlap(NamedTuple):
    """Sparse overlap of the objects of a prediction and a ground truth.

    ``pred_ids`` / ``true_ids`` are the objects' label values (sorted),
    ``pred_area`` / ``true_area`` their pixel counts; the pairs that share
    pixels are ``(rows[k], cols[k])`` (indices into the id arrays) with
    ``inter[k]`` shared pixels and intersection over union ``iou[k]``.
    """

    pred_ids: np.ndarray
    true_ids: np.ndarray
    pred_area: np.ndarray
    true_area: np.ndarray
    rows: np.ndarray
    cols: np.ndarray
    inter: np.ndarray
    iou: np.ndarray


def _objects(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per pixel the object index (0 background, ``1..n`` objects in value order), ids and areas."""
    flat = np.asarray(labels).ravel()
    if flat.dtype.kind == "b":
        flat = flat.view(np.uint8)
    index, n = relabel(flat)
    values = np.empty(n, dtype=flat.dtype)
    values[index] = flat
    area = np.bincount(index, minlength=n)
    is_object = values != 0
    lut = np.where(is_object, np.cumsum(is_object), 0)
    return lut[index], values[is_object].astype(np.int64), area[is_object]


def _overlap(pred: np.ndarray, truth: np.ndarray) -> _Overlap:
    pred = np.asarray(pred)
    truth = np.asarray(truth)
    if pred.shape != truth.shape:
        raise ValueError(f"shape mismatch: prediction {pred.shape} vs truth {truth.shape}")
    if pred.size == 0:
        raise ValueError("empty label array")
    p_idx, p_ids, p_area = _objects(pred)
    t_idx, t_ids, t_area = _objects(truth)
    both = (p_idx > 0) & (t_idx > 0)
    stride = t_ids.size + 1
    keys = p_idx[both] * stride + t_idx[both]
    if (p_ids.size + 1) * stride <= 4 * pred.size:  # few objects: a dense count is cheapest
        counts = np.bincount(keys, minlength=(p_ids.size + 1) * stride)
        keys = np.flatnonzero(counts)
        counts = counts[keys]
    else:
        keys, counts = np.unique(keys, return_counts=True)
    rows, cols = keys // stride - 1, keys % stride - 1
    inter = counts.astype(np.int64)
    union = p_area[rows] + t_area[cols] - inter
    return _Overlap(p_ids, t_ids, p_area, t_area, rows, cols, inter, inter / union)


def _matched_pairs(ov: _Overlap, threshold: float) -> np.ndarray:
    """Indices into ``ov``'s pair arrays of a one-to-one matching with IoU > ``threshold``."""
    if not 0 <= threshold < 1:
        raise ValueError(f"IoU threshold must be in [0, 1); got {threshold}")
    ok = np.flatnonzero(ov.iou > threshold)
    if threshold >= 0.5 or ok.size == 0:  # IoU > 0.5: every object has at most one candidate
        return ok
    # below 0.5 an object may have several candidates: the assignment of largest total IoU
    from scipy.optimize import linear_sum_assignment

    r, r_inv = np.unique(ov.rows[ok], return_inverse=True)
    c, c_inv = np.unique(ov.cols[ok], return_inverse=True)
    iou = np.zeros((r.size, c.size))
    pair = np.full((r.size, c.size), -1)
    iou[r_inv, c_inv] = ov.iou[ok]
    pair[r_inv, c_inv] = ok
    ri, ci = linear_sum_assignment(iou, maximize=True)
    chosen = pair[ri, ci]
    return np.sort(chosen[chosen >= 0])


def _ratio(num: float, den: float, both_empty: bool) -> float:
    """``num / den``; a zero denominator gives 1 when prediction and truth are both empty, else 0."""
    if den > 0:
        return float(num / den)
    return 1.0 if both_empty else 0.0


def match_instances(pred: np.ndarray, truth: np.ndarray, threshold: float = 0.5) -> dict[str, Any]:
    """One-to-one matching of predicted to true objects whose IoU exceeds ``threshold``.

    Parameters
    ----------
    pred, truth : numpy.ndarray
        Integer label maps of the same shape (any number of dimensions, any
        integer or bool dtype, or floats holding integers): 0 is background,
        every other value is one object.  Ids need not be consecutive; an id
        whose pixels are not connected is still one object.
    threshold : float
        IoU a pair must *exceed* (strictly) to match, in ``[0, 1)``.  For
        ``threshold >= 0.5`` the matching is unique: an object overlapping
        another by IoU > 0.5 covers more than half of it, so it has at most
        one such partner.  Below 0.5 a pair may compete, and the matching of
        largest total IoU among the pairs above the threshold is taken
        (``scipy.optimize.linear_sum_assignment``, as StarDist's
        ``matching`` does).  StarDist and Cellpose match at IoU >= threshold;
        the two differ only for a pair whose IoU equals the threshold exactly.

    Returns
    -------
    dict
        With the keys:

        ``pred_ids``, ``true_ids``
            int64 arrays ``(TP,)``: the label values of the matched pairs, in
            increasing ``pred_ids`` order.
        ``iou``
            float64 array ``(TP,)``: their IoU.
        ``tp``, ``fp``, ``fn``
            Matched pairs, unmatched predicted and unmatched true objects (ints).
        ``n_pred``, ``n_true``
            Numbers of predicted and true objects.
        ``threshold``
            The threshold used.

    Raises
    ------
    ValueError
        When the shapes differ, the maps are empty, hold non-integer values, or
        ``threshold`` is outside ``[0, 1)``.

    Notes
    -----
    Source: the instance matching of the Data Science Bowl 2018 metric
    (Caicedo et al., Nature Methods 16:1247-1253, 2019) as used by StarDist
    (Schmidt et al., MICCAI 2018) and Cellpose (Stringer et al., Nature
    Methods 18:100-106, 2021).

    Examples
    --------
    >>> import numpy as np
    >>> truth = np.array([[1, 1, 0, 2, 2]])
    >>> m = match_instances(np.array([[3, 3, 0, 0, 4]]), truth)
    >>> m["pred_ids"].tolist(), m["true_ids"].tolist(), m["tp"], m["fp"], m["fn"]
    ([3], [1], 1, 1, 1)
    """
    ov = _overlap(pred, truth)
    return _match_record(ov, _matched_pairs(ov, float(threshold)), float(threshold))


def _match_record(ov: _Overlap, pairs: np.ndarray, threshold: float) -> dict[str, Any]:
    tp = int(pairs.size)
    return {
        "pred_ids": ov.pred_ids[ov.rows[pairs]],
        "true_ids": ov.true_ids[ov.cols[pairs]],
        "iou": ov.iou[pairs],
        "tp": tp,
        "fp": int(ov.pred_ids.size) - tp,
        "fn": int(ov.true_ids.size) - tp,
        "n_pred": int(ov.pred_ids.size),
        "n_true": int(ov.true_ids.size),
        "threshold": threshold,
    }


def foreground_dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice ``2|P∩T| / (|P| + |T|)`` of the foregrounds ``pred != 0`` and ``truth != 0``.

    Parameters
    ----------
    pred, truth : numpy.ndarray
        Arrays of the same shape (labels or masks; any dtype): nonzero is
        foreground.  A 0 / 255 mask works as it is.

    Returns
    -------
    float
        In ``[0, 1]``; 1 when both are empty.

    Raises
    ------
    ValueError
        When the shapes differ.

    Examples
    --------
    >>> import numpy as np
    >>> foreground_dice(np.array([0, 1, 1, 1]), np.array([0, 0, 255, 255]))
    0.8
    """
    p = np.asarray(pred) != 0
    t = np.asarray(truth) != 0
    if p.shape != t.shape:
        raise ValueError(f"shape mismatch: prediction {p.shape} vs truth {t.shape}")
    total = int(p.sum()) + int(t.sum())
    return _ratio(2 * int(np.count_nonzero(p & t)), total, total == 0)


def instance_scores(pred: np.ndarray, truth: np.ndarray, thresholds: Sequence[float] = AP_THRESHOLDS) -> dict[str, Any]:
    """Instance F1, precision, recall and average precision, and foreground Dice.

    Parameters
    ----------
    pred, truth : numpy.ndarray
        Integer label maps of the same shape, 0 background (see
        :func:`match_instances`).
    thresholds : sequence of float
        IoU thresholds of the average precision (default 0.5, 0.55, ..., 0.95), each
        in ``[0, 1)``.

    Returns
    -------
    dict
        With the keys (floats unless said otherwise):

        ``f1``, ``precision``, ``recall``
            At IoU > 0.5: ``2TP / (2TP + FP + FN)``, ``TP / (TP + FP)``,
            ``TP / (TP + FN)``.
        ``ap``
            Mean over ``thresholds`` of ``AP_t = TP_t / (TP_t + FP_t + FN_t)``:
            the Data Science Bowl 2018 score (Caicedo et al., Nature Methods
            16:1247-1253, 2019) as StarDist's ``matching`` (its
            ``accuracy``) and Cellpose's ``average_precision`` compute it, not
            the area under a precision-recall curve of object detection.
        ``ap_per_threshold``
            list of ``AP_t``, one per threshold; ``thresholds`` the thresholds.
        ``dice``
            Foreground Dice of ``pred != 0`` against ``truth != 0``
            (:func:`foreground_dice`).
        ``mean_matched_iou``
            Mean IoU of the pairs matched at 0.5 (0 if none): how well matched
            objects are outlined.
        ``tp``, ``fp``, ``fn``, ``n_pred``, ``n_true``
            ints, counts at IoU 0.5.

    Raises
    ------
    ValueError
        As :func:`match_instances`.

    Notes
    -----
    A ratio with a zero denominator is 1 when both maps are empty (nothing
    to find, nothing found) and 0 otherwise (as StarDist).

    Examples
    --------
    >>> import numpy as np
    >>> truth = np.array([[1, 1, 0, 2, 2]])
    >>> s = instance_scores(truth.copy(), truth)
    >>> s["f1"], s["ap"], s["dice"]
    (1.0, 1.0, 1.0)
    """
    ov = _overlap(pred, truth)
    empty = ov.pred_ids.size == 0 and ov.true_ids.size == 0
    at_half = _match_record(ov, _matched_pairs(ov, 0.5), 0.5)
    tp, fp, fn = at_half["tp"], at_half["fp"], at_half["fn"]
    ap_t = []
    for t in thresholds:
        k = _matched_pairs(ov, float(t)).size
        ap_t.append(_ratio(k, ov.pred_ids.size + ov.true_ids.size - k, empty))
    fg = int(ov.inter.sum())
    area = int(ov.pred_area.sum() + ov.true_area.sum())
    return {
        "f1": _ratio(2 * tp, 2 * tp + fp + fn, empty),
        "precision": _ratio(tp, tp + fp, empty),
        "recall": _ratio(tp, tp + fn, empty),
        "ap": float(np.mean(ap_t)) if ap_t else float("nan"),
        "ap_per_threshold": ap_t,
        "thresholds": [float(t) for t in thresholds],
        "dice": _ratio(2 * fg, area, area == 0),
        "mean_matched_iou": float(at_half["iou"].mean()) if tp else 0.0,
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "n_pred": at_half["n_pred"],
        "n_true": at_half["n_true"],
    }
