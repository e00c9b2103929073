"""The strokes' look and the evidence map made to agree with its neighbours.

The look: ``appearance_features`` (what a class's strokes show: colour at two blurs, local
texture) and ``refit_features`` (the second look's, learnt from the pixels a class's first
map won), each class's Gaussian of them (``_log_likelihoods``: its covariance shrunk toward
the image's, with a floor).

``napari_levelset.method.strokes.stroke_prior`` scores every pixel of a colour
photograph for each stroked class, pixel by pixel.  ``mean_field`` then lets each
pixel's classes lean toward what its neighbours of a like colour say, a few rounds
of the mean-field update of a conditional random field whose pairwise term is a
Potts model weighted by colour likeness (Krähenbühl & Koltun, NeurIPS 2011, with a
small window instead of their dense kernel): isolated pixels and thin specks that a
class won on its look alone go to the class around them, while a colour edge keeps
its two sides apart.

Maps here are ``(M, H, W)`` arrays, one per stroked class, on the grid of one 2D
item ``(C, H, W)`` of the image.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "MEAN_FIELD_BLUR",
    "MEAN_FIELD_COLOUR",
    "MEAN_FIELD_ITERATIONS",
    "MEAN_FIELD_NEIGHBOURS",
    "MEAN_FIELD_RADIUS",
    "MEAN_FIELD_SHARPNESS",
    "PRIOR_REFIT_SIGMAS",
    "PRIOR_REFIT_TEXTURES",
    "appearance_features",
    "mean_field",
    "refit_features",
]

#: ``mean_field``: rounds of the update; 0 leaves the map as it is
MEAN_FIELD_ITERATIONS = 10
#: ``mean_field``: the neighbours are the pixels within this many pixels (a disc, the pixel itself left out)
MEAN_FIELD_RADIUS = 2
#: ``mean_field``: the map's values times this are the classes' own log-odds (the map lies in [-1, 0])
MEAN_FIELD_SHARPNESS = 5.0
#: ``mean_field``: the weight of the neighbours' agreement (their mean class probabilities) in those log-odds
MEAN_FIELD_NEIGHBOURS = 10.0
#: ``mean_field``: a neighbour's weight is ``exp(-|x_i - x_j|^2 / (2 s^2))``, ``s`` this many of the colour's
#: standard deviations (each channel scaled by its own over the item)
MEAN_FIELD_COLOUR = 0.5
#: ``mean_field``: the colour is blurred by a Gaussian of this many pixels first (0: as it is)
MEAN_FIELD_BLUR = 1.0


#: ``stroke_prior``: the Gaussian blurs of the colour features, in pixels of the geodesic copy (0: none)
PRIOR_SIGMAS = (1.0, 3.0)
#: ``stroke_prior``: the window (Gaussian sigma, pixels of the geodesic copy) of the local standard deviation
PRIOR_TEXTURE = 4.0
#: ``stroke_prior``: added to the diagonal of each stroked class's feature covariance
PRIOR_RIDGE = 1e-3
#: ``stroke_prior``: a stroked class's covariance is pulled toward ``PRIOR_SHRINK_SCALE`` times the whole
#: image's as if that were ``PRIOR_SHRINK`` more painted pixels (a short stroke's own is poorly known)
PRIOR_SHRINK = 50.0
PRIOR_SHRINK_SCALE = 0.1
#: ``stroke_prior``: this share of every stroked class's covariance is ``PRIOR_SHRINK_SCALE`` times the image's,
#: however many pixels were painted (a class whose short stroke shows a narrow look does not lose every pixel
#: that strays from it, nor does one with a broad look win every odd pixel: BSDS500 fit sets, short strokes,
#: with the segments' average below, 0 gives 0.720 / 0.732 / 0.711, 0.5 gives 0.732 / 0.738 / 0.717)
PRIOR_SHRINK_FLOOR = 0.5
#: ``refit_features``: the second look's colour blurs and texture windows (pixels)
PRIOR_REFIT_SIGMAS = (1.0, 3.0, 8.0)
PRIOR_REFIT_TEXTURES = (2.0, 4.0, 8.0)


def appearance_features(item: np.ndarray) -> np.ndarray:
    """The features a class's appearance is learnt from: colour at two blurs and local standard deviation.

    Parameters
    ----------
    item : numpy.ndarray
        Float ``(C, *S)``, one item of the image.

    Returns
    -------
    numpy.ndarray
        float64 ``(F, *S)``, ``F = 3 C``: each channel blurred by each of ``PRIOR_SIGMAS``
        (0: as it is), then its local standard deviation in a Gaussian window of
        ``PRIOR_TEXTURE`` pixels (texture: grass and sky of one mean colour differ there).
    """
    return _colour_and_texture(item, PRIOR_SIGMAS, (PRIOR_TEXTURE,))


def _colour_and_texture(item: np.ndarray, sigmas, windows) -> np.ndarray:
    """float64 ``(C (len(sigmas) + len(windows)), *S)``: each channel of ``item`` blurred by each of ``sigmas``
    (0: as it is), then its local standard deviation in each Gaussian window of ``windows`` pixels."""
    from scipy import ndimage as ndi

    item = np.asarray(item, np.float64)
    feats = [ndi.gaussian_filter(c, sg) if sg else c for sg in sigmas for c in item]
    for window in windows:
        for c in item:
            mean = ndi.gaussian_filter(c, window)
            feats.append(np.sqrt(np.maximum(ndi.gaussian_filter(c * c, window) - mean * mean, 0.0)))
    return np.stack(feats)


def _log_likelihoods(flat: np.ndarray, weights: list[np.ndarray]) -> np.ndarray:
    """``(len(weights), P)``: each class's Gaussian (weighted mean and covariance of its pixels) at every pixel."""
    out = []
    n_feat = flat.shape[1]
    whole = PRIOR_SHRINK_SCALE * np.cov(flat.T).reshape(n_feat, n_feat)
    flat32 = flat.astype(np.float32)  # the distances of every pixel: float32 (to ~1e-6 of float64's)
    for w in weights:
        some = np.flatnonzero(w)  # the pixels that count: a stroke's few, or the pixels a map gave the class
        ws = w[some]
        n = float(ws.sum())
        mu = ws @ flat[some] / n
        mine = flat[some] - mu
        cov = (mine * ws[:, None]).T @ mine / max(n - 1.0, 1.0)
        cov = (n * cov + PRIOR_SHRINK * whole) / (n + PRIOR_SHRINK)
        cov = (1.0 - PRIOR_SHRINK_FLOOR) * (cov + PRIOR_RIDGE * np.eye(n_feat)) + PRIOR_SHRINK_FLOOR * whole
        root = np.linalg.cholesky(np.linalg.inv(cov))  # |root.T d|^2 is the Mahalanobis distance
        y = (flat32 - mu.astype(np.float32)) @ root.astype(np.float32)
        ll = -0.5 * np.einsum("ij,ij->i", y, y).astype(np.float64) + np.log(np.diag(root)).sum()
        out.append(ll)
    return np.stack(out)


def refit_features(item: np.ndarray) -> np.ndarray:
    """The features of the second look (``stroke_prior``'s refit): colour at three blurs, local std in three windows.

    Parameters
    ----------
    item : numpy.ndarray
        Float ``(C, *S)``, one item of the image.

    Returns
    -------
    numpy.ndarray
        float64 ``(6 C, *S)``: each channel blurred by each of ``PRIOR_REFIT_SIGMAS``, then its
        local standard deviation in each Gaussian window of ``PRIOR_REFIT_TEXTURES`` pixels.
    """
    return _colour_and_texture(item, PRIOR_REFIT_SIGMAS, PRIOR_REFIT_TEXTURES)


def _neighbours(radius: int) -> list[tuple[int, int]]:
    """The offsets ``(dy, dx)`` within ``radius`` pixels, ``(0, 0)`` left out."""
    r = int(radius)
    return [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1) if 0 < dy * dy + dx * dx <= r * r]


def _shifted(padded: np.ndarray, r: int, dy: int, dx: int, h: int, w: int) -> np.ndarray:
    """The neighbour at ``(dy, dx)`` of every pixel of an array padded by ``r`` on both spatial axes."""
    return padded[..., r + dy : r + dy + h, r + dx : r + dx + w]


def mean_field(item: np.ndarray, maps: np.ndarray, iterations: int | None = None) -> np.ndarray:
    """``maps`` after rounds of an edge-aware mean-field update: each pixel leans to its like-coloured neighbours.

    Parameters
    ----------
    item : numpy.ndarray
        Float ``(C, H, W)``, one 2D item of the image (its channels are the colour
        the neighbours' likeness is measured on).
    maps : numpy.ndarray
        Float ``(M, H, W)``, one map per class in [-1, 0], higher for likelier
        (``stroke_prior``'s evidence on the grid of ``item``).
    iterations : int or None
        Rounds of the update; None: ``MEAN_FIELD_ITERATIONS``.

    Returns
    -------
    numpy.ndarray
        float32 ``(M, H, W)`` in [-1, 0], the best class 0 at every pixel: ``(L_k -
        max_j L_j) / a`` clipped at -1, ``L`` the last round's log-odds below; ``maps``
        as they are (float32) with no rounds, fewer than two classes or an item that is
        not 2D.

    Raises
    ------
    ValueError
        When ``maps`` and ``item`` do not have the same spatial shape.

    Notes
    -----
    ``a = MEAN_FIELD_SHARPNESS``, ``b = MEAN_FIELD_NEIGHBOURS``, ``U`` the maps:
    ``Q = softmax(a U)``, then each round ``L_k(i) = a U_k(i) + b sum_j w_ij Q_k(j)``,
    ``Q = softmax(L)``, the sum over the pixels ``j`` within ``MEAN_FIELD_RADIUS`` pixels
    of ``i`` (the image's border repeated), ``w_ij`` proportional to ``exp(-|x_i -
    x_j|^2 / (2 s^2))`` and summing to 1 over ``j``, ``x`` the item's colour blurred by
    ``MEAN_FIELD_BLUR`` pixels with each channel over its standard deviation, ``s =
    MEAN_FIELD_COLOUR``.  This is the mean-field inference of a fully connected CRF
    (Krähenbühl & Koltun, NeurIPS 2011) on a local window, with a Potts term of weight
    ``b`` weighted by an appearance kernel alone.

    On BSDS500 with one short stroke per region (``benchmarks/strokes.py``, first labels;
    train 0-20 / train 20-50 / val 20-40), mean IoU 0.744 / 0.751 / 0.728 -> 0.749 /
    0.755 / 0.730; see ``benchmarks/RESULTS.md``, "Short strokes: the evidence map's
    neighbours".

    Examples
    --------
    Two flat halves whose map says the right class by 0.2, but for a speckle of wrong
    pixels that say the other by 0.2:

    >>> import numpy as np
    >>> item = np.zeros((3, 20, 20)); item[:, :, 10:] = 1.0
    >>> right = np.zeros((2, 20, 20)); right[1, :, :10] = right[0, :, 10:] = -0.2
    >>> speckle = np.random.default_rng(0).random((20, 20)) < 0.1
    >>> noisy = np.where(speckle, right[::-1], right)
    >>> before = np.mean(noisy.argmax(0) == right.argmax(0))
    >>> after = np.mean(mean_field(item, noisy).argmax(0) == right.argmax(0))
    >>> bool(before < 0.95 and after == 1.0)
    True
    """
    from scipy import ndimage as ndi

    maps = np.asarray(maps, np.float32)
    rounds = MEAN_FIELD_ITERATIONS if iterations is None else int(iterations)
    if item.ndim != 3 or maps.ndim != 3 or len(maps) < 2 or rounds <= 0:
        return maps
    if maps.shape[1:] != item.shape[1:]:
        raise ValueError(f"maps of spatial shape {maps.shape[1:]} for an item of spatial shape {item.shape[1:]}")
    h, w = maps.shape[1:]
    r = int(MEAN_FIELD_RADIUS)
    colour = np.stack([ndi.gaussian_filter(c, MEAN_FIELD_BLUR) if MEAN_FIELD_BLUR else c for c in item]).astype(
        np.float32
    )
    colour /= colour.reshape(len(colour), -1).std(1)[:, None, None] + 1e-6
    offsets = _neighbours(r)
    padded = np.pad(colour, ((0, 0), (r, r), (r, r)), mode="edge")
    weights = np.stack(
        [
            np.exp(-((colour - _shifted(padded, r, dy, dx, h, w)) ** 2).sum(0) / (2.0 * MEAN_FIELD_COLOUR**2))
            for dy, dx in offsets
        ]
    )
    weights /= np.maximum(weights.sum(0), 1e-12)
    unary = MEAN_FIELD_SHARPNESS * maps
    logits = unary
    for _ in range(rounds):
        q = np.exp(logits - logits.max(0))
        q /= q.sum(0)
        padded_q = np.pad(q, ((0, 0), (r, r), (r, r)), mode="edge")
        agree = np.zeros_like(q)
        for o, (dy, dx) in enumerate(offsets):
            agree += weights[o] * _shifted(padded_q, r, dy, dx, h, w)
        logits = unary + MEAN_FIELD_NEIGHBOURS * agree
    out = (logits - logits.max(0)) / MEAN_FIELD_SHARPNESS
    return np.maximum(out, -1.0).astype(np.float32)
