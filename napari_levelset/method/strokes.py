"""Stroke-guided segmentation: the smaller working copy a ``Segmenter`` with strokes optimises on.

A few brush strokes (scribbles: 0 unpainted, ``k`` class ``k``) switch on the
α·cross-entropy term of the loss and seed their classes' means in the k-means
start (``napari_levelset.method.cluster.init_centres``), where the data term then keeps
them (``stroke_means``).  Such a run is about regions
the user pointed at, not about pixel-exact boundaries of every fine structure, so
``Segmenter`` optimises it on a copy of the image resampled to at most
``STROKE_PIXELS`` pixels per batch item (slice or frame; voxels of a volume),
and labels and probabilities are the working copy's logits interpolated back to
the full grid.  On BSDS500 train (the first 20 images, the protocol of
``benchmarks/strokes.py``) 60 000 pixels and 40 iterations gave mean IoU 0.745
against 0.761 at full size (154 000 pixels) with 100 iterations, in about a quarter
of the time (40 000 pixels: 0.740; 100 000: 0.757; 60 000 with 30 iterations: 0.729,
with 60: 0.755; all before the means were kept); see ``benchmarks/RESULTS.md``,
section "Strokes".

Strokes are carried to the working grid by their coordinates (each painted pixel
lands in the working pixel that holds it), so a stroke one pixel wide stays a
connected stroke however far the copy is shrunk.  A stroke on one slice of a
volume (``spatial_dims=3``) trains the 3D network that labels every slice, so it
acts in 3D.

Images here are ``(B, C, *S)`` arrays and strokes ``(B, *S)`` arrays, with two or
three spatial axes ``S``.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from napari_levelset.method.stroke_look import (
    _log_likelihoods,
    appearance_features,
    mean_field,
    refit_features,
)
from napari_levelset.post.instances import _background, estimate_diameter, noise_sigma, resample_prepared
from napari_levelset.settings import STROKE_ITERATIONS, STROKE_PIXELS, stroke_contrast

__all__ = [
    "STROKE_ITERATIONS",
    "STROKE_PIXELS",
    "appearance_features",
    "geodesic_distances",
    "local_contrast",
    "refit_features",
    "scribbles_to_grid",
    "segment_average",
    "stroke_channels",
    "stroke_contrast",
    "stroke_means",
    "stroke_prior",
    "stroke_separation",
    "upsample_logits",
    "working_copy",
]

#: ``local_contrast``: the local maximum an object is normalised by is taken over this many diameters
NORMALISE_DIAMETERS = 1.0
#: ``local_contrast``: the least divisor of the normalisation, in noise standard deviations
NORMALISE_FLOOR_NOISE = 10.0
#: ``stroke_channels``: the least ``stroke_separation`` of the strokes in the local-contrast maps
MIN_SEPARATION = 1.0
#: ``local_contrast``: the log compression's unit, in noise standard deviations
LOCAL_LOG_UNIT_NOISE = 1.0


def working_copy(prepared, max_pixels: int, diameter: float | None = None, spacing=None):
    """``prepared`` resampled by one zoom on every spatial axis to at most ``max_pixels`` pixels per batch item.

    Parameters
    ----------
    prepared : napari_levelset.io.prepare.Prepared
        The prepared image, ``data`` float32 ``(B, C, *S)``.
    max_pixels : int
        Most pixels (voxels) of one batch item on the working copy (``Segmenter``'s
        ``work_pixels``; ``STROKE_PIXELS`` by default).
    diameter : float or None
        Expected object diameter, in the unit of ``spacing`` (pixels without it), known
        for fluorescence contrast; the zoom keeps such objects at least 12 pixels across,
        even if that leaves more pixels.  None: no such bound.
    spacing : sequence of float or None
        Physical pixel (voxel) size per spatial axis (the largest one converts
        ``diameter`` to pixels), or None (pixels).

    Returns
    -------
    prepared : napari_levelset.io.prepare.Prepared
        The working copy: ``data`` float32 ``(B, C, *S')``, ``spatial_shape`` ``S'``
        (each axis ``round(zoom * S)``, at least 2 pixels; the pixel bound holds up to
        that rounding), or ``prepared`` itself when ``zoom == 1.0``.
    zoom : float
        The zoom factor, <= 1; 1.0 also where shrinking would save less than 5 % per
        axis (a zoom of 0.95 or more) or would not change the shape.

    Notes
    -----
    Linear interpolation with Gaussian anti-aliasing (scikit-image ``resize``, via
    ``napari_levelset.post.instances.resample_prepared``).
    """
    return resample_prepared(prepared, float(max_pixels), diameter, spacing)


def local_contrast(x: np.ndarray, diameter_px=None) -> np.ndarray:
    """Two local-contrast maps of one grey channel: log-compressed, and normalised by the local maximum.

    Parameters
    ----------
    x : numpy.ndarray
        One grey channel, 2D or 3D ``(*S)``, any real dtype (computed in float32).
    diameter_px : float or sequence of float or None
        The objects' diameter in pixels of ``x``, a scalar or one per axis; None
        estimates it (``napari_levelset.post.instances.estimate_diameter`` on
        ``log(1 + max(x, 0) / (3 σ))``).

    Returns
    -------
    numpy.ndarray
        float32 ``(2, *S)``, both maps in [0, 1]: ``[0]`` the log-compressed map,
        ``[1]`` the map normalised by its local maximum (see Notes).

    Notes
    -----
    ``r = max(x - b, 0)``, ``b`` the background (a grey opening over two object
    diameters, at least 3 pixels, ``napari_levelset.post.instances``'s), ``σ`` the noise
    standard deviation (``napari_levelset.post.instances.noise_sigma``, at least 1e-5):

    - ``log(1 + r / (LOCAL_LOG_UNIT_NOISE σ))``, divided by its maximum;
    - ``r'`` (``r`` smoothed by a Gaussian of 1 px) over its local maximum (a maximum
      filter over ``NORMALISE_DIAMETERS`` diameters, at least 3 pixels, smoothed by a
      Gaussian of a quarter diameter, at least 1 pixel), that maximum held at least
      ``NORMALISE_FLOOR_NOISE σ``; clipped to [0, 1].  Every object, dim or bright,
      comes out near 1 inside and at about a half at its edge, the background near 0:
      so a class mean seeded on bright objects' strokes also covers dim ones.

    Examples
    --------
    A dim and a bright disc, 24 pixels across, on a flat background:

    >>> import numpy as np
    >>> yy, xx = np.mgrid[:96, :128]
    >>> dim = (yy - 30) ** 2 + (xx - 30) ** 2 < 12**2
    >>> bright = (yy - 60) ** 2 + (xx - 90) ** 2 < 12**2
    >>> noise = 0.002 * np.random.default_rng(0).standard_normal(dim.shape)
    >>> maps = local_contrast(0.1 + 0.05 * dim + 0.8 * bright + noise, 24)
    >>> maps.shape, maps.dtype
    ((2, 96, 128), dtype('float32'))
    >>> bool(np.median(maps[1][dim]) > 0.7 and np.median(maps[1][bright]) > 0.7)
    True
    """
    from scipy import ndimage as ndi

    x = np.asarray(x, np.float32)
    sigma = max(noise_sigma(x), 1e-5)
    if diameter_px is None:
        diameter_px = estimate_diameter(np.log1p(np.maximum(x, 0) / (3.0 * sigma)))
    d = np.broadcast_to(np.asarray(diameter_px, np.float64), (x.ndim,))
    r = np.maximum(x - _background(x, np.maximum(3.0, 2.0 * d)), 0.0)
    log = np.log1p(r / (LOCAL_LOG_UNIT_NOISE * sigma))
    r = ndi.gaussian_filter(r, 1.0)
    size = tuple(int(v) for v in np.maximum(3, np.round(NORMALISE_DIAMETERS * d)))
    top = ndi.gaussian_filter(ndi.maximum_filter(r, size=size), np.maximum(1.0, d / 4))
    norm = np.clip(r / np.maximum(top, NORMALISE_FLOOR_NOISE * sigma), 0.0, 1.0)
    return np.stack([log / max(float(log.max()), 1e-6), norm]).astype(np.float32)


def stroke_separation(data: np.ndarray, scribbles: np.ndarray) -> float:
    """How far apart the stroked classes lie in ``data``: Fisher's ratio of the strokes.

    Parameters
    ----------
    data : numpy.ndarray
        Float ``(B, C, *S)``.
    scribbles : numpy.ndarray
        Integer ``(B, *S)`` on the grid of ``data``: 0 none, ``k`` class ``k``.

    Returns
    -------
    float
        The squared (Euclidean, over the ``C`` channels) distance of the closest pair of
        stroke means over the mean within-stroke variance (summed over channels; 1e-12
        added); ``inf`` with fewer than two stroked classes.

    Examples
    --------
    >>> import numpy as np
    >>> data = np.array([0.0, 0.2, 1.0, 1.2]).reshape(1, 1, 1, 4)
    >>> round(stroke_separation(data, np.array([[[1, 1, 2, 2]]])), 6)  # gap 1, variance 0.01
    100.0
    >>> stroke_separation(data, np.array([[[1, 1, 0, 0]]]))
    inf
    """
    flat = np.moveaxis(data, 1, -1).reshape(-1, data.shape[1])
    s = np.asarray(scribbles).reshape(-1)
    ks = [k for k in np.unique(s) if k > 0]
    if len(ks) < 2:
        return float("inf")
    means = np.stack([flat[s == k].mean(0) for k in ks])
    spread = float(np.mean([flat[s == k].var(0).sum() for k in ks])) + 1e-12
    gaps = [float(((means[i] - means[j]) ** 2).sum()) for i in range(len(ks)) for j in range(i)]
    return min(gaps) / spread


def stroke_channels(work, zoom: float = 1.0, diameter: float | None = None, spacing=None, scribbles=None):
    """The working copy with each channel replaced by its two ``local_contrast`` maps.

    What the per-image CNN sees and the data term measures on a grey or fluorescence
    image (not RGB) with strokes.

    Parameters
    ----------
    work : napari_levelset.io.prepare.Prepared
        The working copy (``working_copy``), ``data`` float32 ``(B, C, *S)``.
    zoom : float
        The working copy's zoom (``working_copy``'s second result).
    diameter : float or None
        The objects' diameter at full size, in the unit of ``spacing`` (pixels without
        it), or None (estimated on each item and channel).
    spacing : sequence of float or None
        Physical pixel (voxel) size per spatial axis, or None (pixels); ``diameter``
        times ``zoom`` over each axis's spacing is the diameter in working pixels.
    scribbles : numpy.ndarray or None
        Integer strokes ``(B, *S)`` on the working grid (0 none, ``k`` class ``k``;
        ``scribbles_to_grid``), or None.

    Returns
    -------
    napari_levelset.io.prepare.Prepared
        ``work`` with ``data`` float32 ``(B, 2C, *S)`` (channel ``c``'s two maps at
        ``2c`` and ``2c + 1``), its other fields unchanged; or ``work`` itself where
        ``scribbles`` are given and the maps do not tell the stroked classes apart
        (``stroke_separation`` below ``MIN_SEPARATION``: stroke means closer than their
        spread).

    Notes
    -----
    On the strokes benchmark (``benchmarks/strokes.py``, three stroked nuclei and the
    background) foreground Dice GOWT1 0.853 -> 0.93, HeLa 0.856 -> 0.92, NIH3T3
    0.687 -> 0.81; see ``benchmarks/RESULTS.md``, "Strokes".

    The maps are left out on an image of flat grey phases rather than objects on a
    background: on bands of 0.1 / 0.5 / 0.9 the strokes' separation is 0.01 in the maps
    and 11.7 in the image (the 14 nuclei images: 4.1-355; scikit-image's coins: 45).
    """
    data = work.data
    d = None
    if diameter is not None:
        sp = np.ones(data.ndim - 2) if spacing is None else np.asarray(spacing, np.float64)
        d = float(diameter) * float(zoom) / sp
    out = np.stack(
        [np.concatenate([local_contrast(data[b, c], d) for c in range(data.shape[1])]) for b in range(data.shape[0])]
    )
    if scribbles is not None and stroke_separation(out, scribbles) < MIN_SEPARATION:
        return work  # the maps do not tell the strokes apart: grey phases, not objects on a background
    return replace(work, data=np.ascontiguousarray(out, np.float32))


def scribbles_to_grid(scribbles: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Strokes carried, by their coordinates, to a grid of spatial shape ``shape``.

    Parameters
    ----------
    scribbles : array_like
        Integer strokes ``(B, *S)``: 0 none, ``k`` class ``k``.
    shape : tuple of int
        The spatial shape of the grid (usually the working copy's, no larger than
        ``S``), as many axes as ``S``.

    Returns
    -------
    numpy.ndarray
        int64 ``(B, *shape)``, 0 where no stroke lands.

    Raises
    ------
    ValueError
        When ``shape`` does not have as many axes as ``S``.

    Notes
    -----
    Each painted pixel ``i`` along an axis of ``S`` pixels goes to working pixel
    ``floor(i * shape / S)`` (the one whose area holds it), so thin strokes stay
    connected; where strokes of two classes meet in one working pixel the later
    one in C order wins.

    Examples
    --------
    >>> import numpy as np
    >>> s = np.zeros((1, 4, 6), np.uint8)
    >>> s[0, 1, :] = 1  # a line one pixel wide
    >>> s[0, 3, 5] = 2
    >>> scribbles_to_grid(s, (2, 3))
    array([[[1, 1, 1],
            [0, 0, 2]]])
    """
    scribbles = np.asarray(scribbles)
    full = scribbles.shape[1:]
    if len(full) != len(shape):
        raise ValueError(f"scribbles of spatial shape {full} cannot go to a grid of shape {shape}")
    out = np.zeros(scribbles.shape[:1] + tuple(shape), np.int64)
    where = np.nonzero(scribbles)
    if not where[0].size:
        return out
    small = [np.minimum((i * s) // f, s - 1) for i, f, s in zip(where[1:], full, shape)]
    out[(where[0], *small)] = scribbles[where]
    return out


def stroke_means(x, scribbles, n_classes: int):
    """The class means the level-set data term keeps for stroked classes.

    Parameters
    ----------
    x : torch.Tensor
        Float ``(B, C, *S)``, the image the network sees.
    scribbles : torch.Tensor or None
        Integer ``(B, *S)`` on the grid of ``x``: 0 none, ``j`` network class ``j - 1``
        (``j`` at most ``n_classes``); or None.
    n_classes : int
        ``N``, the number of classes.

    Returns
    -------
    stroked : torch.Tensor
        bool ``(N,)``, True for the stroked classes.  The result is None instead of the
        pair ``(stroked, centres)`` when ``scribbles`` is None.
    centres : torch.Tensor
        ``(N, C)``, dtype and device of ``x``: the mean of ``x`` over each stroked class's
        painted pixels, zeros for the others.

    Notes
    -----
    ``Segmenter`` puts these in place of the soft class means of the stroked classes at
    every step, so a class stays what its strokes showed instead of drifting to whatever
    it covers (Kim & Ye's data term with the means of the stroked phases fixed).  On the
    strokes benchmark (same strokes, defaults otherwise): BSDS500 train mean IoU 0.745 ->
    0.750, nuclei foreground Dice GOWT1 0.854 -> 0.853, HeLa 0.862 -> 0.856, NIH3T3
    0.677 -> 0.711.

    Examples
    --------
    >>> import torch
    >>> x = torch.tensor([0.0, 1.0, 3.0]).reshape(1, 1, 1, 3)
    >>> stroked, centres = stroke_means(x, torch.tensor([[[2, 2, 0]]]), 3)
    >>> stroked.tolist(), centres[:, 0].tolist()
    ([False, True, False], [0.0, 0.5, 0.0])
    """
    import torch

    if scribbles is None:
        return None
    flat = scribbles.reshape(-1)
    pixels = x.transpose(0, 1).reshape(x.shape[1], -1)
    centres = torch.zeros(n_classes, x.shape[1], device=x.device, dtype=x.dtype)
    stroked = torch.zeros(n_classes, dtype=torch.bool, device=x.device)
    for j in torch.unique(flat[flat > 0]).tolist():
        centres[j - 1] = pixels[:, flat == j].mean(1)
        stroked[j - 1] = True
    return stroked, centres


def upsample_logits(logits, shape: tuple[int, ...]):
    """Logits interpolated (bi/trilinear) to the spatial shape ``shape``.

    Parameters
    ----------
    logits : torch.Tensor
        Float ``(B, N, *s)``, two or three spatial axes ``s``.
    shape : tuple of int
        The spatial shape wanted, as many axes as ``s``.

    Returns
    -------
    torch.Tensor
        ``(B, N, *shape)``, dtype and device of ``logits``; ``logits`` itself when its
        spatial shape is already ``shape``.

    Notes
    -----
    Pixel centres are aligned as scikit-image's ``resize`` does
    (``torch.nn.functional.interpolate`` with ``align_corners=False``).

    Examples
    --------
    >>> import torch
    >>> upsample_logits(torch.zeros(1, 3, 8, 10), (16, 20)).shape
    torch.Size([1, 3, 16, 20])
    """
    import torch.nn.functional as F

    if tuple(logits.shape[2:]) == tuple(shape):
        return logits
    mode = "bilinear" if len(shape) == 2 else "trilinear"
    return F.interpolate(logits, size=tuple(shape), mode=mode, align_corners=False)


#: ``geodesic_distances``: the edge cost's weight (a step of one pixel costs
#: ``1 + GEODESIC_EDGE * (g / mean(g)) ** GEODESIC_POWER``)
GEODESIC_EDGE = 10.0
#: ``geodesic_distances``: the power of the normalised gradient in the edge cost (2: an edge costs far more
#: than noise or fine texture of the same mean)
GEODESIC_POWER = 2.0
#: ``geodesic_distances`` and ``stroke_prior``: most pixels per item the distances (and the evidence map) are
#: computed on (then resized); above ``PHOTO_STROKE_PIXELS``, so a photograph's default working copy is taken
#: as it is (BSDS500 fit sets, short strokes, first labels: 20 000 pixels 0.710 / 0.719 / 0.705, the working
#: copy 0.711 / 0.724 / 0.713; see ``benchmarks/RESULTS.md``)
GEODESIC_PIXELS = 40_000


def _geodesic_copy(item: np.ndarray) -> np.ndarray:
    """One item ``(C, *S)`` resized (linear, anti-aliased) to at most ``GEODESIC_PIXELS`` pixels, float32."""
    from skimage.transform import resize

    spatial = item.shape[1:]
    zoom = min(1.0, (GEODESIC_PIXELS / float(np.prod(spatial))) ** (1.0 / len(spatial)))
    small = tuple(max(2, round(zoom * n)) for n in spatial)
    if small == tuple(spatial):
        return np.asarray(item, np.float32)
    return resize(item, (item.shape[0], *small), order=1, anti_aliasing=True).astype(np.float32)


def geodesic_distances(
    data: np.ndarray,
    scribbles: np.ndarray,
    n_classes: int,
    edge: float | None = None,
    unlike: np.ndarray | None = None,
    power: float | None = None,
    boundary: np.ndarray | None = None,
):
    """The geodesic distance of every pixel to each class's strokes, over the longest side.

    Parameters
    ----------
    data : numpy.ndarray
        Float ``(B, C, *S)``, the image as the network sees it (its edges make the cost).
    scribbles : numpy.ndarray
        Integer ``(B, *S)`` on the grid of ``data``: 0 none, ``k`` class ``k`` (1..``n_classes``).
    n_classes : int
        ``N``.
    edge : float or None
        The edge cost's weight; None: ``GEODESIC_EDGE``.
    unlike : numpy.ndarray or None
        Float ``(B, N, *S)`` >= 0 on the grid of ``data``: a cost of each class's own added
        to every step onto a pixel (``stroke_prior``'s appearance term), or None.
    power : float or None
        The power of the normalised gradient; None: ``GEODESIC_POWER``.
    boundary : numpy.ndarray or None
        Float ``(B, *S)`` >= 0 on the grid of ``data``: an edge strength that takes the
        gradient's place in the cost (``napari_levelset.nn.regions.region_features``' boundary
        probability), or None for the gradient.

    Returns
    -------
    numpy.ndarray
        float32 ``(B, N, *S)``; ``inf`` for a class with no stroke on an item.

    Notes
    -----
    The least cost of a path (``skimage.graph.MCP_Geometric``) over a cost of
    ``1 + edge * (g / mean(g)) ** power (+ unlike[k])`` per pixel step, ``g`` the gradient magnitude
    of the image (Gaussian derivatives of 1 px, over its channels), on a copy of at most
    ``GEODESIC_PIXELS`` pixels, divided by that copy's longest side.

    Examples
    --------
    A wall of high contrast between the stroke and the right half:

    >>> import numpy as np
    >>> image = np.zeros((1, 1, 20, 20)); image[..., 12:] = 1.0
    >>> strokes = np.zeros((1, 20, 20), int); strokes[0, 10, 2] = 1
    >>> d = geodesic_distances(image, strokes, 1)
    >>> bool(d[0, 0, 10, 18] > 5 * d[0, 0, 10, 9])
    True
    """
    from scipy import ndimage as ndi
    from skimage.graph import MCP_Geometric
    from skimage.transform import resize

    edge = GEODESIC_EDGE if edge is None else edge
    power = GEODESIC_POWER if power is None else power
    data = np.asarray(data, np.float32)
    spatial = data.shape[2:]
    out = np.full((data.shape[0], n_classes, *spatial), np.inf, np.float32)
    for b in range(data.shape[0]):
        item = _geodesic_copy(data[b])
        small_shape = item.shape[1:]
        if boundary is None:
            grad = np.sqrt(sum(ndi.gaussian_gradient_magnitude(c, 1.0) ** 2 for c in item))
        else:
            grad = np.asarray(boundary[b], np.float64)
            grad = grad if grad.shape == small_shape else resize(grad, small_shape, order=1)
        cost = 1.0 + edge * (grad / max(float(grad.mean()), 1e-12)) ** power
        strokes = scribbles_to_grid(scribbles[b : b + 1], small_shape)[0]
        for k in range(1, n_classes + 1):
            starts = np.argwhere(strokes == k)
            if not len(starts):
                continue
            step = cost
            if unlike is not None:
                extra = unlike[b, k - 1]
                step = cost + (extra if extra.shape == small_shape else resize(extra, small_shape, order=1))
            dist, _ = MCP_Geometric(step).find_costs(starts)
            dist = dist / max(small_shape)
            out[b, k - 1] = dist if small_shape == spatial else resize(dist, spatial, order=1)
    return out


#: ``stroke_prior``: log-likelihood units per unit of a class's unlikeness
PRIOR_UNLIKE_UNIT = 3.0
#: ``stroke_prior``: the unlikeness is clipped at this many units
PRIOR_UNLIKE_MAX = 20.0
#: ``stroke_prior``: what a step onto a pixel costs per unit of the class's unlikeness there (a step on an
#: edge-free pixel that looks like the class costs 1)
PRIOR_UNLIKE_COST = 100.0
#: ``stroke_prior``: distance gaps (over the longest side) are clipped at this, then scaled to [-1, 0]
PRIOR_CLIP = 5.0
#: ``stroke_prior``: the weight of the second map, log-likelihood minus plain geodesic distance (the first:
#: 1 - PRIOR_BLEND); its edge cost ``1 + 30 g / mean(g)``, a distance of ``PRIOR_TAU`` worth one unit of
#: log-likelihood, gaps clipped at ``PRIOR_LL_CLIP`` units
PRIOR_BLEND = 0.5
PRIOR_PLAIN_EDGE = 30.0
PRIOR_TAU = 0.3
PRIOR_LL_CLIP = 50.0
#: ``stroke_prior``: the map is pulled this share of the way to its mean over each of the image's segments
#: (``skimage.segmentation.felzenszwalb`` of the copy's colour with ``scale`` ``PRIOR_SEGMENT_SCALE``, ``sigma``
#: ``PRIOR_SEGMENT_SIGMA``, ``min_size`` ``PRIOR_SEGMENT_MIN``), so a segment of one look goes to one class
PRIOR_SEGMENT_SHARE = 0.5
PRIOR_SEGMENT_SCALE = 50.0
PRIOR_SEGMENT_SIGMA = 0.5
PRIOR_SEGMENT_MIN = 20
#: ``stroke_prior``: the weight of the second look (``refit_features``' Gaussian of each class over the pixels
#: its first map won, each weighted by its margin over the runner-up in units of ``PRIOR_REFIT_MARGIN``, at
#: most 1, and its strokes) in the log-likelihood of the second map; 0: one map
PRIOR_REFIT = 0.5
PRIOR_REFIT_MARGIN = 1.0
#: ``stroke_prior``: how many times the look is learnt again, each time from the map before (1: a second map
#: alone; BSDS500 fit sets, short strokes, the region network's output averaged with its mirror image's:
#: 2 gives 0.780 / 0.779 / 0.743 against 0.768 / 0.772 / 0.744 with 1, ``PRIOR_REFIT_MARGIN`` 1)
PRIOR_LOOKS = 2
#: ``stroke_prior`` with ``regions``: the boundary probability makes the reach's edges only above this quantile
#: of its values over the item (0.5: its median; what is below, the inside of regions, costs nothing)
PRIOR_BOUNDARY_FLOOR = 0.5


def reach_edges(boundary: np.ndarray) -> np.ndarray:
    """The edges a stroke's reach stops at, from a boundary probability: what is above its ``PRIOR_BOUNDARY_FLOOR``.

    Parameters
    ----------
    boundary : numpy.ndarray
        Float ``(*S)`` in [0, 1], ``napari_levelset.nn.regions.region_features``' boundary.

    Returns
    -------
    numpy.ndarray
        float64 ``(*S)`` >= 0: ``max(b - q, 0)``, ``q`` the ``PRIOR_BOUNDARY_FLOOR`` quantile of ``b``
        over the item (its median).  The network's boundary is soft, well above 0 inside a
        textured region, so without the floor every step inside a large region would cost more
        than one and a short stroke at one end would reach the far end dearly.  BSDS500 fit sets,
        short strokes: ``benchmarks/RESULTS.md``, "Short strokes: edges above the median, a third
        look".
    """
    b = np.asarray(boundary, np.float64)
    return np.maximum(b - np.quantile(b, PRIOR_BOUNDARY_FLOOR), 0.0)


def _evidence(
    item, grid, n_classes: int, ks: list[int], ll: np.ndarray, plain: np.ndarray | None, segments, boundary=None
):
    """``(len(ks), *S)``: ``stroke_prior``'s map of one item from the classes' log-likelihoods ``ll``, averaged
    over ``segments`` (``_colour_segments`` of the item); ``boundary`` ``(*S)`` (or None) the reach's edges."""
    small = item.shape[1:]
    unlike = np.zeros((1, n_classes, *small), np.float32)
    for i, k in enumerate(ks):
        u = np.minimum((ll.max(0) - ll[i]) / PRIOR_UNLIKE_UNIT, PRIOR_UNLIKE_MAX)
        unlike[0, k - 1] = PRIOR_UNLIKE_COST * u.reshape(small)
    edges = None if boundary is None else boundary[None]
    dist = geodesic_distances(item[None], grid, n_classes, unlike=unlike, boundary=edges)[0]
    dist = np.stack([dist[k - 1] for k in ks])
    gap = (1.0 - PRIOR_BLEND) * np.maximum(dist.min(0) - dist, -PRIOR_CLIP) / PRIOR_CLIP
    if plain is not None:
        score = ll.reshape(len(ks), *small) - plain / PRIOR_TAU
        gap += PRIOR_BLEND * np.maximum(score - score.max(0), -PRIOR_LL_CLIP) / PRIOR_LL_CLIP
    return segment_average(item, gap, segments=segments)


def _colour_segments(item: np.ndarray) -> np.ndarray | None:
    """Flat int labels ``(H W,)`` of the Felzenszwalb segments of a 2D item ``(C, H, W)``'s colour (see
    ``segment_average``), or None for an item that is not 2D."""
    from skimage.segmentation import felzenszwalb

    if item.ndim != 3:
        return None
    return felzenszwalb(
        np.moveaxis(np.asarray(item, np.float64), 0, -1),
        scale=PRIOR_SEGMENT_SCALE,
        sigma=PRIOR_SEGMENT_SIGMA,
        min_size=PRIOR_SEGMENT_MIN,
    ).ravel()


def segment_average(
    item: np.ndarray, maps: np.ndarray, share: float | None = None, segments: np.ndarray | None = None
) -> np.ndarray:
    """``maps`` pulled ``share`` of the way to their mean over each segment of ``item``'s colour.

    Parameters
    ----------
    item : numpy.ndarray
        Float ``(C, H, W)``, one 2D item of the image (its channels are the colour the
        segments are drawn on).
    maps : numpy.ndarray
        Float ``(M, H, W)``, the maps to average (one per class).
    share : float or None
        In [0, 1]: 0 leaves ``maps`` as they are, 1 gives each segment its mean; None:
        ``PRIOR_SEGMENT_SHARE``.
    segments : numpy.ndarray, optional
        ``_colour_segments(item)`` where the caller has them already.

    Returns
    -------
    numpy.ndarray
        float32 ``(M, H, W)``; ``maps`` unchanged (as float32) for an item that is not 2D.

    Notes
    -----
    The segments are Felzenszwalb & Huttenlocher's graph-based segmentation (IJCV 2004;
    ``skimage.segmentation.felzenszwalb`` with ``PRIOR_SEGMENT_SCALE``, ``PRIOR_SEGMENT_SIGMA``
    and ``PRIOR_SEGMENT_MIN``): small pieces of one colour that follow the image's edges.

    Examples
    --------
    Two flat halves, a map that is noisy within each (the segments' smoothing leaves thin ones
    along the edge between them):

    >>> import numpy as np
    >>> item = np.zeros((3, 20, 20)); item[:, :, 10:] = 1.0
    >>> noisy = np.random.default_rng(0).normal(size=(1, 20, 20))
    >>> flat = segment_average(item, noisy, 1.0)
    >>> bool(np.ptp(flat[0, :, :7]) < 1e-6 and np.ptp(flat[0, :, 13:]) < 1e-6)
    True
    """
    share = PRIOR_SEGMENT_SHARE if share is None else share
    maps = np.asarray(maps, np.float32)
    if item.ndim != 3 or not share:
        return maps
    seg = _colour_segments(item) if segments is None else segments
    count = np.maximum(np.bincount(seg), 1)
    means = np.stack([(np.bincount(seg, m.ravel(), minlength=len(count)) / count)[seg] for m in maps])
    return ((1.0 - share) * maps + share * means.reshape(maps.shape)).astype(np.float32)


def stroke_prior(data: np.ndarray, scribbles: np.ndarray, n_classes: int, regions: bool = False):
    """Each stroked class's evidence at every pixel: how far its strokes reach along pixels that look like them.

    Parameters
    ----------
    data : numpy.ndarray
        Float ``(B, C, *S)``, the image as the network sees it.
    scribbles : numpy.ndarray
        Integer ``(B, *S)`` on the grid of ``data``: 0 none, ``k`` class ``k`` (1..``n_classes``).
    n_classes : int
        ``N``.
    regions : bool
        Whether the image is a colour photograph as ``napari_levelset.io.prepare`` makes it with
        ``color="lab"`` (three channels, 2D): then what ``napari_levelset.nn.regions`` learnt from
        people's segmentations of photographs makes the reach's edges and part of the later looks
        (see the notes).  ``Segmenter`` sets it for such images.

    Returns
    -------
    numpy.ndarray
        float32 ``(B, N, *S)`` in [-1, 0] for the stroked classes ``k``:
        ``(1 - PRIOR_BLEND) max(d_min - d_k, -PRIOR_CLIP) / PRIOR_CLIP + PRIOR_BLEND
        max(s_k - s_max, -PRIOR_LL_CLIP) / PRIOR_LL_CLIP``, ``d_k`` and ``s_k`` below, ``d_min``
        and ``s_max`` their best over the stroked classes (on a 2D item then averaged over
        segments and passed through ``mean_field``); -0.5 for unstroked classes.  The
        best stroked class scores near 0 everywhere, so an unstroked class could never win a
        pixel against it: ``Segmenter`` uses the map only when every class has a stroke.

    Notes
    -----
    On a copy of at most ``GEODESIC_PIXELS`` pixels: ``f`` the ``appearance_features``,
    ``l_k`` the log-likelihood of a Gaussian of ``f`` over class ``k``'s painted pixels (their
    mean; their covariance pulled toward ``PRIOR_SHRINK_SCALE`` times the image's as if by
    ``PRIOR_SHRINK`` more pixels, ``PRIOR_RIDGE`` on the diagonal), and the class's unlikeness
    ``u_k = min((max_j l_j - l_k) / PRIOR_UNLIKE_UNIT, PRIOR_UNLIKE_MAX)``, 0 where the class
    is the likeliest.  ``d_k`` is the geodesic distance from class ``k``'s strokes
    (``geodesic_distances``) where a step costs ``1 + GEODESIC_EDGE (g / mean(g))^2 +
    PRIOR_UNLIKE_COST u_k``: a stroke reaches along the pixels that look like it and stops
    where its region gives way to another's look or at a strong edge, however short it is
    (the nearest stroke's class by a geodesic distance, as in geodesic segmentation:
    Bai & Sapiro, IJCV 2009; Criminisi, Sharp & Blake, ECCV 2008).  ``s_k = l_k - d'_k /
    PRIOR_TAU`` (``d'_k`` the geodesic distance over ``1 + PRIOR_PLAIN_EDGE g / mean(g)``)
    keeps some of the look alone, which serves longer strokes.

    On BSDS500 (``benchmarks/strokes.py``, first labels; train images 0-20, 20-50 and val
    images 20-40), mean IoU against ``s_k`` alone (what the map was before): one short stroke
    per region 0.667 / 0.662 / 0.649 -> 0.710 / 0.718 / 0.705, two 0.807 / 0.816 / 0.793 ->
    0.789 / 0.810 / 0.819, long strokes 0.841 / 0.831 / 0.809 -> 0.834 / 0.830 / 0.825
    (``d_k`` alone: 0.709 / 0.716 / 0.707, 0.782 / 0.803 / 0.817, 0.825 / 0.824 / 0.825);
    see ``benchmarks/RESULTS.md``.

    Every class's covariance is half its shrunk own, half ``PRIOR_SHRINK_SCALE`` times the
    image's (``PRIOR_SHRINK_FLOOR``), and the map is pulled halfway to its mean over each
    Felzenszwalb segment (``segment_average``).  Then a second map: each class's look is
    learnt again, on ``refit_features``, from the pixels the first map gave it, weighted by
    how sure it was (its margin over the runner-up, ``PRIOR_REFIT_MARGIN``), and from its
    strokes; that Gaussian's log-likelihood is ``PRIOR_REFIT`` of ``l_k`` in the second map
    (self-training).  Short strokes, the fit sets above: 0.711 / 0.724 / 0.713 -> 0.742 /
    0.752 / 0.726; all 100 val images 0.663 -> 0.679 (``benchmarks/RESULTS.md``, "Short
    strokes: segments, a covariance floor and a second look").  The look is learnt again
    ``PRIOR_LOOKS`` times, each time from the map before (the log-likelihood of each new look is
    ``PRIOR_REFIT`` of the one before).  Last, the map is made to agree with its like-coloured
    neighbours (``napari_levelset.method.stroke_look.mean_field``).

    With ``regions``, ``napari_levelset.nn.regions.region_features`` gives each pixel an
    embedding and a boundary probability learnt from people's segmentations of photographs
    (BSDS500 train): the boundary, less its median over the item (``PRIOR_BOUNDARY_FLOOR``; what
    is below costs nothing), takes the gradient's place in the cost of ``d_k``, and the
    embedding joins ``refit_features`` in the later looks, so regions of a like colour and
    texture that people tell apart stay apart.  Short strokes, all 100 val images: see
    ``benchmarks/RESULTS.md``, "Short strokes: a region network learnt from people's
    segmentations" and "Short strokes: edges above the median, a third look".
    """
    from skimage.transform import resize

    data = np.asarray(data, np.float32)
    spatial = data.shape[2:]
    out = np.full((data.shape[0], n_classes, *spatial), -0.5, np.float32)
    for b in range(data.shape[0]):
        item = _geodesic_copy(data[b])
        small = item.shape[1:]
        strokes = scribbles_to_grid(scribbles[b : b + 1], small)[0].reshape(-1)
        ks = [k for k in range(1, n_classes + 1) if np.any(strokes == k)]
        if not ks:
            continue
        feats = appearance_features(item)
        flat = feats.reshape(len(feats), -1).T
        ll = _log_likelihoods(flat, [(strokes == k).astype(np.float64) for k in ks])
        grid = strokes.reshape(1, *small)
        plain = None
        if PRIOR_BLEND:
            plain = geodesic_distances(item[None], grid, n_classes, edge=PRIOR_PLAIN_EDGE, power=1.0)[0]
            plain = np.stack([plain[k - 1] for k in ks])
        segments = _colour_segments(item) if PRIOR_SEGMENT_SHARE else None  # made once for both maps
        embedding = boundary = None
        if regions and item.ndim == 3 and len(item) == 3:
            from napari_levelset.nn.regions import region_features

            embedding, boundary = region_features(item)
            boundary = reach_edges(boundary)
        gap = _evidence(item, grid, n_classes, ks, ll, plain, segments, boundary)
        looks = PRIOR_LOOKS if PRIOR_REFIT and len(ks) > 1 else 0
        if looks:  # the later looks' features, made once for all of them
            rich = refit_features(item)
            if embedding is not None:
                rich = np.concatenate([rich, embedding])
            rich = rich.reshape(len(rich), -1).T
        for _ in range(looks):  # the next look: learnt from the pixels the map before is sure of
            top = np.sort(gap.reshape(len(ks), -1), 0)
            sure = np.clip((top[-1] - top[-2]) / PRIOR_REFIT_MARGIN, 0.0, 1.0)
            won = gap.reshape(len(ks), -1).argmax(0)
            weights = [sure * (won == i) + (strokes == k) for i, k in enumerate(ks)]
            refit = _log_likelihoods(rich, weights)
            ll = PRIOR_REFIT * refit + (1.0 - PRIOR_REFIT) * ll
            gap = _evidence(item, grid, n_classes, ks, ll, plain, segments, boundary)
        gap = mean_field(item, gap)  # each pixel leans to its like-coloured neighbours
        if small != spatial:
            gap = resize(gap, (len(ks), *spatial), order=1)
        for i, k in enumerate(ks):
            out[b, k - 1] = gap[i]
    return out
