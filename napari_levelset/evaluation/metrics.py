"""Segmentation scores: the BSDS500 region benchmark and instance matching.

The first part is the BSDS500 region benchmark (Segmentation Covering, PRI
and VI); the second scores instance segmentations of objects such as nuclei
(:func:`match_instances`, :func:`instance_scores`, :func:`foreground_dice`),
see "Instance segmentation" below.

A numpy re-implementation of the region part of the Berkeley benchmark
(Arbelaez, Maire, Fowlkes and Malik, TPAMI 2011; ``BSR/bench/benchmarks``):

* :func:`evaluate_image` is ``evaluation_reg_image.m`` for one segmentation
  (one "scale"/threshold) of one image, using ``match_segmentations.m``
  (Jaccard matching for the covering) and ``match_segmentations2.m``
  (Rand index and variation of information against each human map).
* :func:`summarize` is ``collect_eval_reg.m``: it aggregates the per-image
  accumulators into per-scale dataset scores and the ODS / OIS summaries
  that the benchmark writes to ``eval_cover.txt`` and ``eval_RI_VOI.txt``.

Definitions, exactly as the MATLAB code computes them:

* **Covering** of an image at one scale: for every region ``R`` of every ground
  truth ``G_k``, take the best Jaccard overlap ``max_S |R∩S| / |R∪S|`` over
  the regions ``S`` of the segmentation, weight it by ``|R|`` and sum
  (``cntR``); ``sumR`` is the sum of the region areas, i.e. ``K × n_pixels``
  for ``K`` ground truths.  The image's SC is ``cntR / sumR``, i.e. the mean
  over ground truths of the covering of ``G_k`` by the segmentation.  The
  dataset SC at a scale is ``Σ cntR / Σ sumR`` over images (pixel-weighted,
  not a mean of per-image ratios).
* **PRI** and **VI** of an image: the Rand index and the variation of
  information (base-2 logarithms) between the segmentation and each ground
  truth, averaged over the ground truths.  Dataset PRI / VI at a scale is the
  plain mean over images.
* **ODS**: the single scale that is best over the dataset (max SC, max PRI,
  min VI; first such scale on ties).  **OIS**: the best scale chosen per
  image, then aggregated the same way (SC: ``Σ cntR_best / Σ sumR_best``;
  PRI / VI: mean of per-image optima).  **Best covering**: for every
  ground-truth region its best Jaccard over *all* scales, area-weighted,
  summed over images and divided by the total ground-truth area.

Labels may be any integers (including 0 and negative values); every distinct
value counts as one region, so relabelling never changes a score.  (The
MATLAB covering code ignores pixels labelled 0 in the segmentation; the
benchmark's inputs never contain 0, and here 0 is simply one more region.)

Instance segmentation: in both label maps 0 is background and every other
value is one object.  A predicted and a true object *match* when their IoU
(``|P∩T| / |P∪T|``) exceeds a threshold, one to one; above 0.5 a match is
unique without any assignment step, since ``IoU(P, T) > 0.5`` means ``P``
covers more than half of ``T`` and ``T`` more than half of ``P``.  From the
matches at IoU 0.5 come precision, recall and F1 ``2TP / (2TP + FP + FN)``;
the average precision is the Data Science Bowl 2018 score as StarDist and
Cellpose compute it, ``AP_t = TP / (TP + FP + FN)`` averaged over the IoU
thresholds 0.5, 0.55, ..., 0.95.  The overlaps come from a sparse contingency
table (only the object pairs that touch), so a 1024² image with hundreds of
objects takes a few tens of milliseconds.

This module needs only numpy and scipy (``scipy.io`` for the ``.mat`` files
and ``scipy.optimize`` for matching below IoU 0.5, imported lazily), so it is
cheap to import.

References
----------
.. [1] P. Arbeláez, M. Maire, C. Fowlkes and J. Malik, "Contour detection and
   hierarchical image segmentation", IEEE TPAMI 33(5), 898-916 (2011): the benchmark,
   Segmentation Covering, and PRI / VI as it computes them.
.. [2] W. M. Rand, "Objective criteria for the evaluation of clustering methods", Journal
   of the American Statistical Association 66, 846-850 (1971); R. Unnikrishnan,
   C. Pantofaru and M. Hebert, "Toward objective evaluation of image segmentation
   algorithms", IEEE TPAMI 29(6), 929-944 (2007): the (probabilistic) Rand index.
.. [3] M. Meilă, "Comparing clusterings - an information based distance", Journal of
   Multivariate Analysis 98(5), 873-895 (2007): the variation of information.
.. [4] J. C. Caicedo et al., "Nucleus segmentation across imaging experiments: the 2018
   Data Science Bowl", Nature Methods 16, 1247-1253 (2019): the instance AP, as StarDist
   (Schmidt et al., MICCAI 2018) and Cellpose (Stringer et al., Nature Methods 18,
   100-106, 2021) compute it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from os import PathLike
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "load_ground_truth",
    "load_segmentations",
    "contingency",
    "covering_matches",
    "rand_index",
    "variation_of_information",
    "evaluate_image",
    "evaluate_segmentations",
    "summarize",
    "AP_THRESHOLDS",
    "match_instances",
    "instance_scores",
    "foreground_dice",
]


# --------------------------------------------------------------------------- I/O
def load_ground_truth(path: str | PathLike) -> list[np.ndarray]:
    """Read the human segmentations of one BSDS500 image.

    Parameters
    ----------
    path : str or os.PathLike
        A ``groundTruth/<split>/<id>.mat`` file; it holds a cell
        ``groundTruth`` whose ``k``-th entry has a ``Segmentation`` field.

    Returns
    -------
    list of numpy.ndarray
        2-D integer ``(H, W)`` arrays, one label map per human annotator, labels
        from 1 as stored in the file (``scipy.io.loadmat``).
    """
    from scipy.io import loadmat

    cell = loadmat(str(path))["groundTruth"]
    return [np.asarray(cell.flat[k]["Segmentation"][0, 0]) for k in range(cell.size)]


def load_segmentations(path: str | PathLike, key: str = "segs") -> list[np.ndarray]:
    """Read a MATLAB cell of segmentations (e.g. ``bench/data/segs/<id>.mat``).

    Parameters
    ----------
    path : str or os.PathLike
        ``.mat`` file holding a cell array named ``key``.
    key : str
        Name of the cell variable (``"segs"`` in the benchmark's example data).

    Returns
    -------
    list of numpy.ndarray
        2-D integer ``(H, W)`` label arrays, in cell order (scale 1, 2, ...).

    Raises
    ------
    KeyError
        When the file holds no variable ``key``.
    """
    from scipy.io import loadmat

    cell = loadmat(str(path))[key]
    return [np.asarray(cell.flat[k]) for k in range(cell.size)]


# ------------------------------------------------------------------- primitives
def _relabel(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Map arbitrary label values to ``0..n-1`` (in sorted value order)."""
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iub":
        if not np.all(np.equal(np.mod(labels, 1), 0)):
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
    ia, na = _relabel(a)
    ib, nb = _relabel(b)
    counts = np.bincount(ia * nb + ib, minlength=na * nb)
    return counts.reshape(na, nb).astype(np.float64)


def _jaccard(n: np.ndarray) -> np.ndarray:
    """Jaccard index ``|A∩B| / |A∪B|`` for every pair of rows/columns of ``n``."""
    rows = n.sum(axis=1, keepdims=True)
    cols = n.sum(axis=0, keepdims=True)
    union = rows + cols - n
    return np.divide(n, union, out=np.zeros_like(n), where=union > 0)


def covering_matches(seg: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best Jaccard overlaps between the regions of ``seg`` and of ``gt``.

    Parameters
    ----------
    seg, gt : numpy.ndarray
        Label maps of the same shape (integer values, any dtype).

    Returns
    -------
    gt_best : numpy.ndarray
        float64 ``(n_gt_regions,)``: best Jaccard of each ground-truth region over
        the segmentation's regions (``max(matches, [], 1)`` in MATLAB).
    gt_areas : numpy.ndarray
        float64 ``(n_gt_regions,)``: pixel counts of the ground-truth regions.
    jaccard : numpy.ndarray
        float64 ``(n_seg_regions, n_gt_regions)``: the full Jaccard matrix.

    Raises
    ------
    ValueError
        As :func:`contingency`.

    Examples
    --------
    >>> import numpy as np
    >>> best, areas, _ = covering_matches(np.array([[1, 1, 2, 2]]), np.array([[1, 1, 1, 2]]))
    >>> best.tolist(), areas.tolist()
    ([0.6666666666666666, 0.5], [3.0, 1.0])
    """
    n = contingency(seg, gt)
    jac = _jaccard(n)
    return jac.max(axis=0), n.sum(axis=0), jac


def rand_index(n: np.ndarray) -> float:
    """Rand index from a contingency matrix (Allen Yang's ``rand_index``).

    ``1 - (Σ a_i²/2 + Σ b_j²/2 - Σ n_ij²) / C(N, 2)`` where ``a``, ``b`` are
    the row and column sums and ``N`` the number of pixels.

    Parameters
    ----------
    n : numpy.ndarray
        ``(n_a, n_b)`` contingency matrix (pixel counts, see :func:`contingency`).

    Returns
    -------
    float
        In [0, 1]; 1.0 for fewer than 2 pixels.

    Notes
    -----
    Rand 1971; averaged over the ground truths it is the PRI of Unnikrishnan et al. 2007
    (see the module's references).

    Examples
    --------
    >>> import numpy as np
    >>> rand_index(np.array([[2.0, 0.0], [0.0, 2.0]])), round(rand_index(np.array([[1.0, 1.0], [1.0, 1.0]])), 4)
    (1.0, 0.3333)
    """
    n = np.asarray(n, dtype=np.float64)
    total = n.sum()
    if total < 2:
        return 1.0
    n_u = n.sum(axis=1)
    n_v = n.sum(axis=0)
    pairs = total * (total - 1) / 2
    return float(1 - (np.sum(n_u * n_u) / 2 + np.sum(n_v * n_v) / 2 - np.sum(n * n)) / pairs)


def variation_of_information(n: np.ndarray) -> float:
    """Variation of information ``H1 + H2 - 2 MI`` (bits) from a contingency matrix.

    Parameters
    ----------
    n : numpy.ndarray
        ``(n_a, n_b)`` contingency matrix (pixel counts, see :func:`contingency`).

    Returns
    -------
    float
        >= 0, in bits (base-2 logarithms); 0 for identical partitions.

    Notes
    -----
    Meilă 2007 (see the module's references).

    Examples
    --------
    >>> import numpy as np
    >>> variation_of_information(np.array([[1.0, 1.0], [1.0, 1.0]]))  # two independent halvings
    2.0
    """
    n = np.asarray(n, dtype=np.float64)
    joint = n / n.sum()
    m1 = joint.sum(axis=1)
    m2 = joint.sum(axis=0)
    m1 = m1[m1 > 0]
    m2 = m2[m2 > 0]
    h1 = -np.sum(m1 * np.log2(m1))
    h2 = -np.sum(m2 * np.log2(m2))
    p1 = joint.sum(axis=1, keepdims=True)
    p2 = joint.sum(axis=0, keepdims=True)
    nz = joint > 0
    outer = (p1 * p2)[nz]
    mi = np.sum(joint[nz] * np.log2(joint[nz] / outer))
    return float(h1 + h2 - 2 * mi)


# ----------------------------------------------------------------- per image
def evaluate_image(seg: np.ndarray, gts: Sequence[np.ndarray]) -> dict[str, Any]:
    """Score one segmentation of one image against all its human segmentations.

    This is the body of the loop over thresholds in ``evaluation_reg_image.m``.

    Parameters
    ----------
    seg : numpy.ndarray
        2-D ``(H, W)`` integer label map (any label values; each value is one region).
    gts : sequence of numpy.ndarray
        The image's ground-truth label maps (see :func:`load_ground_truth`),
        each of the same shape as ``seg``.

    Returns
    -------
    dict
        With the keys:

        ``cntR``, ``sumR``
            Covering accumulators (ground truth covered by the segmentation):
            ``Σ_k Σ_{R∈G_k} |R| · max_S J(R, S)`` and ``Σ_k Σ_R |R|``.
        ``cntP``, ``sumP``
            The reverse accumulators (segmentation regions matched against the
            union of all ground-truth regions), as the benchmark also records.
        ``sc``
            ``cntR / sumR``: the image's segmentation covering.
        ``pri``, ``vi``
            Rand index and variation of information averaged over ``gts``.
        ``n_regions``
            Number of distinct labels in ``seg``.
        ``gt_matches``, ``gt_areas``
            float64 / int64 arrays over all ground-truth regions (ground truths
            concatenated in order): each region's best Jaccard and its area;
            :func:`summarize` uses them for the "best covering" over scales.

    Raises
    ------
    ValueError
        When ``seg`` is not 2-D, ``gts`` is empty, a ground truth has another shape, or a
        map holds non-integer values.

    Examples
    --------
    >>> import numpy as np
    >>> gt = np.array([[1, 1, 2, 2]] * 4)
    >>> r = evaluate_image(gt.copy(), [gt])
    >>> r["sc"], r["pri"], r["vi"], r["n_regions"]
    (1.0, 1.0, 0.0, 2)
    """
    seg = np.asarray(seg)
    if seg.ndim != 2:
        raise ValueError(f"seg must be 2-D, got shape {seg.shape}")
    if len(gts) == 0:
        raise ValueError("no ground truth given")
    seg_idx, n_seg = _relabel(seg)
    cntR = sumR = 0.0
    ri_sum = vi_sum = 0.0
    seg_best = np.zeros(n_seg)
    matches, areas = [], []
    for gt in gts:
        gt = np.asarray(gt)
        if gt.shape != seg.shape:
            raise ValueError(f"ground truth shape {gt.shape} != segmentation shape {seg.shape}")
        gt_idx, n_gt = _relabel(gt)
        n = np.bincount(seg_idx * n_gt + gt_idx, minlength=n_seg * n_gt)
        n = n.reshape(n_seg, n_gt).astype(np.float64)
        jac = _jaccard(n)
        gt_area = n.sum(axis=0)
        gt_best = jac.max(axis=0)
        cntR += float(np.sum(gt_area * gt_best))
        sumR += float(gt_area.sum())
        seg_best = np.maximum(seg_best, jac.max(axis=1))
        matches.append(gt_best)
        areas.append(gt_area)
        ri_sum += rand_index(n)
        vi_sum += variation_of_information(n)
    seg_area = np.bincount(seg_idx, minlength=n_seg).astype(np.float64)
    k = len(gts)
    return {
        "cntR": cntR,
        "sumR": sumR,
        "cntP": float(np.sum(seg_area * seg_best)),
        "sumP": float(seg_area.sum()),
        "sc": cntR / sumR if sumR else 0.0,
        "pri": ri_sum / k,
        "vi": vi_sum / k,
        "n_regions": n_seg,
        "gt_matches": np.concatenate(matches),
        "gt_areas": np.concatenate(areas).astype(np.int64),
    }


def evaluate_segmentations(segs: Sequence[np.ndarray], gts: Sequence[np.ndarray]) -> list[dict[str, Any]]:
    """:func:`evaluate_image` for each segmentation (scale) of one image.

    Parameters
    ----------
    segs : sequence of numpy.ndarray
        2-D label maps, one per scale (e.g. :func:`load_segmentations`).
    gts : sequence of numpy.ndarray
        The image's ground-truth label maps, each of the same shape.

    Returns
    -------
    list of dict
        One :func:`evaluate_image` result per segmentation, in order.

    Raises
    ------
    ValueError
        As :func:`evaluate_image`.
    """
    return [evaluate_image(s, gts) for s in segs]


# ------------------------------------------------------------------ dataset
def _get(result: Mapping[str, Any], key: str) -> Any:
    try:
        return result[key]
    except KeyError:
        raise KeyError(f"per-image result lacks {key!r} (was it made by evaluate_image?)") from None


def summarize(
    results: Sequence[Sequence[Mapping[str, Any]]] | Mapping[Any, Sequence[Mapping[str, Any]]],
    scales: Sequence[Any] | None = None,
) -> dict[str, Any]:
    """Aggregate per-image results over a dataset (``collect_eval_reg.m``).

    Parameters
    ----------
    results : sequence or mapping
        For every image (a sequence, or a mapping image-id → results), the
        list of :func:`evaluate_image` dicts, one per scale, in the same scale
        order for all images.  ``gt_matches``/``gt_areas`` may be lists (e.g.
        read back from JSON); without them ``best_covering`` is ``nan``.
    scales : sequence or None
        Labels of the scales (thresholds, k, parameter values); defaults to
        ``1..n_scales`` like the benchmark's ``thresh`` for ``segs`` input.

    Returns
    -------
    dict
        With the keys:

        ``scales``, ``n_images``
            The scale labels (list) and the number of images (int).
        ``sc_per_scale``, ``pri_per_scale``, ``vi_per_scale``
            Dataset scores at each scale (``eval_cover_th.txt`` and
            ``eval_RI_VOI_thr.txt``), lists of float.
        ``sc_ods``, ``sc_ods_scale``, ``sc_ois``, ``best_covering``
            ``eval_cover.txt``: ODS covering and its scale, OIS covering, and the
            covering with every ground-truth region matched at its best scale.
        ``pri_ods``, ``pri_ods_scale``, ``pri_ois``, ``vi_ods``, ``vi_ods_scale``, ``vi_ois``
            ``eval_RI_VOI.txt``.
        ``sc_ois_scales``, ``pri_ois_scales``, ``vi_ois_scales``
            The scale picked for every image by OIS (last optimum on ties, as in
            the MATLAB ``ff(end)``).

    Raises
    ------
    ValueError
        When there are no images, the images have different (or no) numbers of scales, or
        ``scales`` has another length.
    KeyError
        When a per-image result lacks ``cntR``, ``sumR``, ``pri`` or ``vi``.

    Examples
    --------
    >>> import numpy as np
    >>> gt = np.array([[1, 1, 2, 2]] * 4)
    >>> per_image = [evaluate_segmentations([np.ones_like(gt), gt], [gt])]
    >>> s = summarize(per_image, scales=[1, 2])
    >>> s["sc_ods"], s["sc_ods_scale"], s["vi_ods"]
    (1.0, 2, 0.0)
    """
    per_image = list(results.values()) if isinstance(results, Mapping) else list(results)
    if not per_image:
        raise ValueError("no images to summarize")
    n_scales = len(per_image[0])
    if n_scales == 0 or any(len(r) != n_scales for r in per_image):
        raise ValueError("every image needs the same, non-zero number of scales")
    if scales is None:
        scales = list(range(1, n_scales + 1))
    scales = list(scales)
    if len(scales) != n_scales:
        raise ValueError(f"{len(scales)} scale labels for {n_scales} scales")

    cntR = np.array([[float(_get(r, "cntR")) for r in img] for img in per_image])
    sumR = np.array([[float(_get(r, "sumR")) for r in img] for img in per_image])
    pri = np.array([[float(_get(r, "pri")) for r in img] for img in per_image])
    vi = np.array([[float(_get(r, "vi")) for r in img] for img in per_image])
    n_img = len(per_image)

    # covering (eval_cover_th / eval_cover)
    cntR_total = cntR.sum(axis=0)
    sumR_total = sumR.sum(axis=0)
    sc_scale = np.divide(cntR_total, sumR_total, out=np.zeros(n_scales), where=sumR_total != 0)
    ods = int(np.argmax(sc_scale))
    r_img = np.divide(cntR, sumR, out=np.zeros_like(cntR), where=sumR != 0)
    sc_pick = [int(np.flatnonzero(row == row.max())[-1]) for row in r_img]
    cnt_best = sum(cntR[i, j] for i, j in enumerate(sc_pick))
    sum_best = sum(sumR[i, j] for i, j in enumerate(sc_pick))
    sc_ois = cnt_best / sum_best if sum_best else 0.0

    best_cover = float("nan")
    if all("gt_matches" in r and "gt_areas" in r for img in per_image for r in img):
        cnt_bt = 0.0
        for img in per_image:
            best = np.max([np.asarray(r["gt_matches"], dtype=np.float64) for r in img], axis=0)
            cnt_bt += float(np.sum(np.asarray(img[0]["gt_areas"], dtype=np.float64) * best))
        best_cover = cnt_bt / sumR_total[0] if sumR_total[0] else 0.0

    # PRI / VI (eval_RI_VOI_thr / eval_RI_VOI)
    pri_scale = pri.mean(axis=0)
    vi_scale = vi.mean(axis=0)
    pri_ods = int(np.argmax(pri_scale))
    vi_ods = int(np.argmin(vi_scale))
    pri_pick = [int(np.flatnonzero(row == row.max())[-1]) for row in pri]
    vi_pick = [int(np.flatnonzero(row == row.min())[-1]) for row in vi]

    return {
        "scales": scales,
        "n_images": n_img,
        "sc_per_scale": sc_scale.tolist(),
        "pri_per_scale": pri_scale.tolist(),
        "vi_per_scale": vi_scale.tolist(),
        "sc_ods": float(sc_scale[ods]),
        "sc_ods_scale": scales[ods],
        "sc_ois": float(sc_ois),
        "best_covering": float(best_cover),
        "pri_ods": float(pri_scale[pri_ods]),
        "pri_ods_scale": scales[pri_ods],
        "pri_ois": float(np.mean([pri[i, j] for i, j in enumerate(pri_pick)])),
        "vi_ods": float(vi_scale[vi_ods]),
        "vi_ods_scale": scales[vi_ods],
        "vi_ois": float(np.mean([vi[i, j] for i, j in enumerate(vi_pick)])),
        "sc_ois_scales": [scales[j] for j in sc_pick],
        "pri_ois_scales": [scales[j] for j in pri_pick],
        "vi_ois_scales": [scales[j] for j in vi_pick],
    }


# ------------------------------------------------------------------ instances
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
    index, n = _relabel(flat)
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


def instance_scores(
    pred: np.ndarray, truth: np.ndarray, thresholds: Sequence[float] = AP_THRESHOLDS
) -> dict[str, Any]:
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
