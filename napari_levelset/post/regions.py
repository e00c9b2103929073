"""Turning class labels into regions.

The level-set loss assigns every pixel one of N classes; a class may cover many
separate pieces of the image.  Where one label per *object* is wanted (region
benchmarks such as BSDS500, counting cells), ``connected_regions`` splits each
class into its connected components and merges fragments smaller than
``min_region`` into the nearest large region.  ``merge_regions`` then merges
adjacent regions for as long as that lowers the level-set energy of the hard
partition (the same loss, with y = 0 or 1), so the number of regions adapts
to the image instead of following N.  ``to_regions`` is the one entry point
``segment``, the CLI and the benchmarks use.  scikit-image and scipy are
imported only when this is called.

References
----------
.. [1] G. Koepfler, C. Lopez and J.-M. Morel, "A multiscale algorithm for image
   segmentation by variational method", SIAM Journal on Numerical Analysis 31,
   282-299 (1994): region merging for the piecewise-constant Mumford-Shah energy.
.. [2] V. Caselles, R. Kimmel and G. Sapiro, "Geodesic active contours", International
   Journal of Computer Vision 22, 61-79 (1997): the edge-stopping weight.
"""

from __future__ import annotations

import heapq

import numpy as np

__all__ = ["REGION_MODES", "connected_regions", "merge_regions", "to_regions"]

#: ``classes``: one label per class; ``connected``: one per connected piece of a
#: class; ``merged``: connected pieces, then adjacent ones merged while the energy drops;
#: ``instances``: one label per object of the foreground class(es), 0 for background
#: (needs the class probabilities: ``Segmenter.regions``, see ``napari_levelset.post.instances``).
REGION_MODES = ("classes", "connected", "merged", "instances")


def to_regions(
    labels: np.ndarray,
    mode: str = "classes",
    *,
    min_region: float = 0.001,
    features: np.ndarray | None = None,
    merge: float = 0.0,
    spatial_dims: int | None = None,
    edge: float = 2.0,
    texture: float = 1.0,
) -> np.ndarray:
    """Class labels -> the output ``mode`` asks for (see ``REGION_MODES``).

    ``connected`` and ``merged`` split classes into connected pieces, fragments
    under ``min_region`` (pixels, or a fraction of the image when < 1) joined to
    their nearest neighbour.  ``merged`` then runs ``merge_regions`` with
    weight ``merge``, ``edge`` and ``texture`` on ``features`` ``(C, *labels.shape)``
    (``napari_levelset.settings.MERGE_OPTIONS`` has the ones ``segment`` uses).

    Parameters
    ----------
    labels : numpy.ndarray
        Integer class labels, ``(*batch, *S)``.
    mode : str
        One of ``REGION_MODES`` except ``instances``: ``classes`` returns ``labels`` as
        they are.
    min_region : float
        Smallest region kept: pixels (>= 1) or a fraction of one image's pixels (< 1).
    features : numpy.ndarray or None
        Float ``(C, *labels.shape)``, needed for ``merged``.
    merge : float
        Merge weight (>= 0; see :func:`merge_regions`).
    spatial_dims : int or None
        Trailing axes segmented together (2 or 3); None: all of them.
    edge : float
        Edge weighting of the boundary length (see :func:`merge_regions`).
    texture : float
        Weight of the local-contrast feature (see :func:`merge_regions`).

    Returns
    -------
    numpy.ndarray
        ``classes``: ``labels`` itself; otherwise uint32 ``labels.shape``, regions 1..R.

    Raises
    ------
    ValueError
        When ``mode`` is unknown or ``instances`` (that needs the class probabilities:
        ``Segmenter.regions``), or ``merged`` is asked for without ``features``.

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.array([[0, 0, 1, 0, 0]] * 5)
    >>> np.unique(to_regions(labels, "connected", min_region=1)).tolist()
    [1, 2, 3]
    """
    if mode not in REGION_MODES:
        raise ValueError(f"regions must be one of {', '.join(REGION_MODES)}; got {mode!r}")
    if mode == "classes":
        return labels
    if mode == "instances":
        raise ValueError("regions='instances' needs the class probabilities: use Segmenter.regions or segment")
    out = connected_regions(labels, min_region, spatial_dims=spatial_dims)
    if mode == "merged":
        if features is None:
            raise ValueError("regions='merged' needs the features the regions are compared on")
        out = merge_regions(out, features, merge, spatial_dims=spatial_dims, edge=edge, texture=texture)
    return out


def connected_regions(labels: np.ndarray, min_region: float = 0.001, spatial_dims: int | None = None) -> np.ndarray:
    """Relabel ``labels`` so that each connected piece of a class is its own region.

    ``min_region`` is the smallest region kept, in pixels (>= 1) or as a fraction of
    the pixels of one image (< 1).  Smaller fragments take the label of the nearest
    kept region.  With ``spatial_dims`` smaller than ``labels.ndim``, leading axes
    are independent slices.  When no piece is large enough, the largest one is kept.

    Parameters
    ----------
    labels : numpy.ndarray
        Class labels of any integer (or other) dtype, ``(*batch, *S)``.
    min_region : float
        Smallest region kept: pixels (>= 1) or a fraction of one image's pixels (< 1).
    spatial_dims : int or None
        2 or 3 trailing axes (None: all of ``labels``'s axes, which must then be 2 or 3).

    Returns
    -------
    numpy.ndarray
        uint32, ``labels.shape``, labels 1..R (numbered over the whole array, so slices
        never share an id).

    Raises
    ------
    ValueError
        When ``spatial_dims`` is not 2 or 3, or exceeds ``labels.ndim``.

    Notes
    -----
    Components are ``skimage.measure.label`` with connectivity 1 (4- or 6-neighbours); a
    fragment takes its label from the nearest kept pixel
    (``scipy.ndimage.distance_transform_edt`` with ``return_indices``).

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.array([[0, 0, 1, 0, 0]] * 5)
    >>> connected_regions(labels, min_region=1)[0].tolist()
    [1, 1, 2, 3, 3]
    >>> connected_regions(labels, min_region=6)[0].tolist()  # the stripe (5 pixels) is absorbed
    [1, 1, 1, 2, 2]
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
    min_px = int(min_region) if min_region >= 1 else max(1, round(min_region * npix))
    out = np.zeros(flat.shape, np.uint32)
    offset = 0
    for i, lab in enumerate(flat):
        _, classes = np.unique(lab, return_inverse=True)  # any values (negative, uint64) as 0..K-1
        comp = cc_label(classes.reshape(lab.shape) + 1, background=0, connectivity=1)
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


#: overall spread (root of the summed channel variances) features are scaled to before merging
FEATURE_SPREAD = 0.25
#: Gaussian window (pixels) of the local-contrast (texture) feature
TEXTURE_SIGMA = 2.0


def merge_regions(
    regions: np.ndarray,
    features: np.ndarray,
    merge: float,
    spatial_dims: int | None = None,
    *,
    texture: float = 1.0,
    edge: float = 2.0,
    normalize: bool = True,
) -> np.ndarray:
    """Merge adjacent regions while the level-set energy of the partition decreases.

    For a hard partition (``y_n`` = 0 or 1) the level-set loss becomes the
    piecewise-constant Mumford-Shah energy::

        E = sum_R sum_{r in R} |f(r) - c_R|^2  +  2 merge * sum_{neighbour pairs (p, q) on a boundary} w_pq

    (the merge weight -- the level-set loss's λ for this hard partition -- times the total
    variation of the indicator functions, which counts
    each boundary pair twice).  Merging adjacent regions ``i`` and ``j`` raises
    the first term by ``n_i n_j / (n_i + n_j) |c_i - c_j|^2`` and removes their
    shared boundary ``B_ij = sum w_pq``, so it lowers ``E`` exactly when
    ``n_i n_j / (n_i + n_j) |c_i - c_j|^2 / (2 B_ij) < merge``.  Pairs are merged in
    increasing order of that threshold until none is below ``merge`` (Koepfler,
    Lopez & Morel's region merging for the Mumford-Shah functional): the result
    at a larger ``merge`` is always a coarsening of the one at a smaller ``merge``.

    Three choices make one ``merge`` weight suit many images (chosen on BSDS500 val):

    - ``normalize``: the features are scaled so that their overall spread (root of
      the summed channel variances) is ``FEATURE_SPREAD``; a dull and a vivid
      image then merge alike.
    - ``texture``: a feature of local contrast is appended, the local standard
      deviation of the features in a Gaussian window of ``TEXTURE_SIGMA`` pixels,
      times ``texture`` (0: none), so textured areas group with texture.
    - ``edge``: each boundary pair is weighted by ``w_pq = exp(-edge |f(p) - f(q)|^2 /
      (2 mean |f(p') - f(q')|^2))`` over all neighbour pairs (0: plain length), the
      edge-stopping weight of geodesic active contours: a boundary along a strong
      edge is cheap to keep, one across a flat area is not.

    ``regions``: integer labels (each value one region; connected regions work
    best, e.g. from ``connected_regions``).  ``features``: ``(C, *regions.shape)``
    float values compared by squared distance (the prepared image the loss saw).
    With ``spatial_dims`` smaller than ``regions.ndim`` leading axes are
    independent slices.

    Parameters
    ----------
    regions : numpy.ndarray
        Integer labels ``(*batch, *S)``, each value one region.
    features : numpy.ndarray
        Float ``(C, *regions.shape)`` (units of the prepared image, about [0, 1]).
    merge : float
        The merge weight (>= 0): λ of the hard partition's energy; 0 merges nothing.
    spatial_dims : int or None
        2 or 3 trailing axes (None: all of ``regions``'s axes).
    texture : float
        Weight of the local-contrast feature (>= 0; 0: none).
    edge : float
        Edge-stopping strength (>= 0; 0: plain boundary length).
    normalize : bool
        Scale the features to an overall spread of ``FEATURE_SPREAD`` first.

    Returns
    -------
    numpy.ndarray
        uint32, ``regions.shape``, labels 1..R' numbered over the whole array, ``R' <= R``.

    Raises
    ------
    ValueError
        When ``features`` is not ``(C, *regions.shape)``, ``merge``, ``texture`` or ``edge``
        is negative or not finite, or ``spatial_dims`` is not 2 or 3 (or exceeds
        ``regions.ndim``).

    Notes
    -----
    Greedy merging in the manner of Koepfler, Lopez & Morel 1994 with the edge weight of
    geodesic active contours (Caselles, Kimmel & Sapiro 1997), see the module's references;
    the texture window is ``scipy.ndimage.gaussian_filter``.

    Examples
    --------
    >>> import numpy as np
    >>> regions = np.repeat([[1, 1, 2, 2]], 4, axis=0)
    >>> features = np.repeat([[[0.50, 0.50, 0.52, 0.52]]], 4, axis=1)  # (1, 4, 4)
    >>> np.unique(merge_regions(regions, features, merge=1.0, texture=0, edge=0)).tolist()
    [1]
    >>> np.unique(merge_regions(regions, features, merge=0.0)).tolist()
    [1, 2]
    """
    regions = np.asarray(regions)
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != regions.ndim + 1 or features.shape[1:] != regions.shape:
        raise ValueError(f"features {features.shape} must be (C, *regions.shape) with regions {regions.shape}")
    for name, v in (("merge", merge), ("texture", texture), ("edge", edge)):
        if not (np.isfinite(v) and v >= 0):
            raise ValueError(f"{name} must be a non-negative number, got {v!r}")
    sd = regions.ndim if spatial_dims is None else int(spatial_dims)
    if sd not in (2, 3) or sd > regions.ndim:
        raise ValueError(f"spatial_dims must be 2 or 3 and at most regions.ndim, got {sd} for shape {regions.shape}")
    spatial = regions.shape[regions.ndim - sd :]
    flat = regions.reshape((-1,) + spatial)
    feats = features.reshape((features.shape[0], -1) + spatial)
    out = np.zeros(flat.shape, np.uint32)
    offset = 0
    for s, lab in enumerate(flat):
        f = _merge_features(feats[:, s], texture, normalize)
        merged = _merge_one(lab, f, float(merge), float(edge))
        out[s] = merged + 1 + offset
        offset += int(merged.max()) + 1
    return out.reshape(regions.shape)


def _merge_features(x: np.ndarray, texture: float, normalize: bool) -> np.ndarray:
    """``(C, *S)`` features, scaled to ``FEATURE_SPREAD`` and with the texture channel appended."""
    from scipy import ndimage

    x = np.array(x, dtype=np.float64)
    if normalize:
        spread = float(np.sqrt(x.reshape(x.shape[0], -1).var(axis=1).sum()))
        if spread > 0:
            x *= FEATURE_SPREAD / spread
    if texture > 0:
        var = np.zeros(x.shape[1:])
        for ch in x:
            mean = ndimage.gaussian_filter(ch, TEXTURE_SIGMA)
            var += ndimage.gaussian_filter(ch * ch, TEXTURE_SIGMA) - mean * mean
        x = np.concatenate([x, texture * np.sqrt(np.clip(var, 0, None))[None]])
    return x


def _merge_one(lab: np.ndarray, x: np.ndarray, merge: float, edge: float) -> np.ndarray:
    """Greedy merging of one image's regions ``lab`` on features ``x``; returns labels 0..R'-1."""
    ids, inv = np.unique(lab, return_inverse=True)
    lab = inv.reshape(lab.shape)
    R = len(ids)
    C = x.shape[0]
    flat = lab.ravel()
    n = np.bincount(flat, minlength=R).astype(np.float64)
    sums = np.stack([np.bincount(flat, weights=ch.ravel(), minlength=R) for ch in x], 1)  # R C
    # neighbour pairs along every axis: the boundary ones, with their edge weights
    keys, d2s = [], []
    d2_sum, n_pairs = 0.0, 0  # the mean over all neighbour pairs, of every axis
    for ax in range(lab.ndim):
        a = np.moveaxis(lab, ax, 0)
        xa = np.moveaxis(x, ax + 1, 1)
        d2 = ((xa[:, 1:] - xa[:, :-1]) ** 2).reshape(C, -1).sum(0)
        d2_sum, n_pairs = d2_sum + float(d2.sum()), n_pairs + d2.size
        i, j = a[:-1].ravel(), a[1:].ravel()
        on = i != j
        keys.append(np.minimum(i[on], j[on]).astype(np.int64) * R + np.maximum(i[on], j[on]))
        d2s.append(d2[on])
    keys_all = np.concatenate(keys)
    d2 = np.concatenate(d2s)
    mean_d2 = d2_sum / n_pairs if n_pairs else 0.0
    w = np.exp(-edge * d2 / (2 * mean_d2)) if edge > 0 and mean_d2 > 0 else np.ones_like(d2)
    pair, pinv = np.unique(keys_all, return_inverse=True)
    length = np.bincount(pinv, weights=w, minlength=len(pair))
    adj: list[dict[int, float]] = [{} for _ in range(R)]
    for k, c in zip(pair.tolist(), length.tolist()):
        i, j = divmod(k, R)
        adj[i][j] = c
        adj[j][i] = c

    def threshold(i: int, j: int) -> float:
        """The merge weight above which merging ``i`` and ``j`` lowers the energy."""
        d = sums[i] / n[i] - sums[j] / n[j]
        return n[i] * n[j] / (n[i] + n[j]) * float(d @ d) / (2.0 * max(adj[i][j], 1e-12))

    version = [0] * R
    heap = [(threshold(i, j), i, j, 0, 0) for i in range(R) for j in adj[i] if i < j]
    heapq.heapify(heap)
    parent = list(range(R))
    while heap:
        t, i, j, vi, vj = heapq.heappop(heap)
        if t >= merge:
            break
        if vi != version[i] or vj != version[j]:
            continue  # stale: one of them changed since this entry was made
        # merge j into i; an edge's threshold depends only on its two regions, so only i's edges change
        parent[j] = i
        n[i] += n[j]
        sums[i] += sums[j]
        for k, c in adj[j].items():
            if k == i:
                continue
            adj[i][k] = adj[i].get(k, 0.0) + c
            adj[k][i] = adj[i][k]
            del adj[k][j]
        del adj[i][j]
        adj[j] = {}
        version[i] += 1
        version[j] += 1
        for k in adj[i]:
            a, b = (i, k) if i < k else (k, i)
            heapq.heappush(heap, (threshold(a, b), a, b, version[a], version[b]))
    root = np.arange(R)
    for r in range(R):
        p = r
        while parent[p] != p:
            p = parent[p]
        root[r] = p
    _, merged = np.unique(root[lab], return_inverse=True)
    return merged.reshape(lab.shape)
