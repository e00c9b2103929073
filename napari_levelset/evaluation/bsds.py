"""The BSDS500 region benchmark: Segmentation Covering, PRI and VI, and the benchmark's files.

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

This module needs only numpy (and ``scipy.io`` for the ``.mat`` files, imported when
one is read), so it is cheap to import.

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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from os import PathLike
from typing import Any

import numpy as np

from napari_levelset.evaluation.contingency import contingency, relabel

__all__ = [
    "covering_matches",
    "evaluate_image",
    "evaluate_segmentations",
    "load_ground_truth",
    "load_segmentations",
    "rand_index",
    "summarize",
    "variation_of_information",
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
    seg_idx, n_seg = relabel(seg)
    cntR = sumR = 0.0
    ri_sum = vi_sum = 0.0
    seg_best = np.zeros(n_seg)
    matches, areas = [], []
    for gt in gts:
        gt = np.asarray(gt)
        if gt.shape != seg.shape:
            raise ValueError(f"ground truth shape {gt.shape} != segmentation shape {seg.shape}")
        gt_idx, n_gt = relabel(gt)
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
def _scale_labels(per_image: list, scales: Sequence[Any] | None) -> list:
    """The scale labels (``1..n_scales`` by default), after checking every image has ``n_scales`` results."""
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
    return scales


def _best_covering(per_image: list, total_area: float) -> float:
    """Every ground-truth region at its best Jaccard over all scales, area-weighted (nan without the matches)."""
    if not all("gt_matches" in r and "gt_areas" in r for img in per_image for r in img):
        return float("nan")
    cnt_bt = 0.0
    for img in per_image:
        best = np.max([np.asarray(r["gt_matches"], dtype=np.float64) for r in img], axis=0)
        cnt_bt += float(np.sum(np.asarray(img[0]["gt_areas"], dtype=np.float64) * best))
    return cnt_bt / total_area if total_area else 0.0


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
    scales = _scale_labels(per_image, scales)
    n_scales = len(scales)

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

    best_cover = _best_covering(per_image, sumR_total[0])

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
