"""Object size: the pixel size (``spacing``) checked, and the expected object diameter estimated or measured.

- **Scale checks** (``check_scale``, ``as_spacing``).  What ``spacing`` and ``diameter`` may ask
  for is bounded by the image itself, so that the work stays proportional to its pixel count: a
  pixel may be no longer along one axis than the image is along any axis, and a given diameter
  at most ``MAX_DIAMETER_EXTENTS`` times the image's extent along its thinnest axis.  Anything
  beyond is refused with a one-line ``InputError``.
- **The diameter before a run** (``estimate_diameter``).  The field's usual setting is the
  expected diameter (Cellpose, StarDist, CellProfiler); estimated when not given from the median
  scale of scale-normalised Laplacian-of-Gaussian blobs, which neither a slowly varying
  background nor touching objects inflate; where a bound on the diameter makes its copy's
  pixels fine, in the windows of it holding the most detail (``BOUNDED_ESTIMATE_PIXELS``).
- **The diameter of what a run found** (``foreground_diameter``): twice the area-weighted median
  largest inscribed radius of the foreground's pieces.

numpy, scipy and scikit-image only; no torch.

References
----------
.. [1] T. Lindeberg, "Feature detection with automatic scale selection", International
   Journal of Computer Vision 30, 79-116 (1998): the blobs of ``estimate_diameter``
   (``skimage.feature.blob_log``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from napari_levelset.errors import InputError

__all__ = [
    "BOUNDED_ESTIMATE_PIXELS",
    "ESTIMATE_PIXELS",
    "ESTIMATE_WINDOWS",
    "ESTIMATE_WINDOW_DIAMETERS",
    "FALLBACK_DIAMETER",
    "MAX_DIAMETER_EXTENTS",
    "NOISE_BLUR",
    "as_spacing",
    "check_scale",
    "estimate_diameter",
    "foreground_diameter",
]

#: most pixels (2D) or voxels (3D) of the resampled copy ``estimate_diameter`` searches
ESTIMATE_PIXELS = {2: 65_000, 3: 500_000}
#: ``estimate_diameter`` with ``max_diameter``: where its (fine) copy holds more pixels (voxels) than this,
#: the blobs are searched in windows of it spread over the image, together at most this many, margins included
BOUNDED_ESTIMATE_PIXELS = {2: 130_000, 3: 2_000_000}
#: ... in at most this many windows per axis (this number to the power of the axes), those with the most detail
ESTIMATE_WINDOWS = 3
#: ... each window at least this many largest diameters (``max_diameter``) wide
ESTIMATE_WINDOW_DIAMETERS = 4.0
#: ``estimate_diameter`` smooths its copy with a Gaussian of this many (coarse) pixels
NOISE_BLUR = 1.0
#: diameter (pixels) assumed when an image has no foreground pieces to measure
FALLBACK_DIAMETER = 16.0
#: a given diameter is at most this many times the image's extent along its thinnest axis
MAX_DIAMETER_EXTENTS = 10.0


def as_spacing(spacing: Sequence[float] | float | None, ndim: int) -> tuple[float, ...] | None:
    """``spacing`` as ``ndim`` positive floats (a single number for every axis), or None.

    Parameters
    ----------
    spacing : sequence of float or float or None
        Physical pixel size per spatial axis, or one value for all of them.
    ndim : int
        Number of spatial axes.

    Returns
    -------
    tuple of float or None
        ``ndim`` values, or None when ``spacing`` is None.

    Raises
    ------
    InputError
        For anything but ``ndim`` (or 1) finite positive numbers.

    Examples
    --------
    >>> as_spacing(0.5, 3), as_spacing(None, 2)
    ((0.5, 0.5, 0.5), None)
    """
    return None if spacing is None else tuple(float(v) for v in _spacing(spacing, ndim))


def _spacing(spacing: Sequence[float] | None, ndim: int, shape: Sequence[int] | None = None) -> np.ndarray:
    """``spacing`` as ``ndim`` floats, checked; against the spatial ``shape`` too where given."""
    if spacing is None:
        return np.ones(ndim)
    try:
        s = np.asarray(spacing, dtype=float).ravel()
    except (TypeError, ValueError):
        s = np.zeros(0)
    if s.size == 1:
        s = np.repeat(s, ndim)
    if s.size != ndim or not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise InputError(f"spacing must be {ndim} positive numbers (one per spatial axis), got {spacing!r}")
    if shape is not None:
        extent = np.asarray(shape, dtype=float) * s
        long, short = int(np.argmax(s)), int(np.argmin(extent))
        if s[long] > extent[short]:
            raise InputError(
                f"spacing {tuple(float(v) for v in s)} makes a pixel {s[long]:.4g} long along axis {long}, longer "
                f"than the image is along axis {short} ({int(shape[short])} pixels of {s[short]:.4g}): give the "
                "physical pixel size per spatial axis"
            )
    return s


def _check_diameter(diameter: float, shape: Sequence[int], sp: np.ndarray) -> float:
    """``diameter`` as a float, at most ``MAX_DIAMETER_EXTENTS`` times the thinnest extent of ``shape``."""
    try:
        d = float(diameter)
    except (TypeError, ValueError):
        d = float("nan")
    if not (np.isfinite(d) and d > 0):
        raise InputError(f"diameter must be a positive number, got {diameter!r}")
    extent = np.asarray(shape, dtype=float) * sp
    short = int(np.argmin(extent))
    if d > MAX_DIAMETER_EXTENTS * extent[short]:
        raise InputError(
            f"diameter {d:.4g} is more than {MAX_DIAMETER_EXTENTS:g} times the image's extent along axis {short} "
            f"({int(shape[short])} pixels of {sp[short]:.4g}): give the objects' diameter in the unit of spacing "
            "(pixels without one)"
        )
    return d


def check_scale(
    spatial_shape: Sequence[int], spacing: Sequence[float] | float | None = None, diameter: float | None = None
) -> None:
    """Check that ``spacing`` and ``diameter`` ask for no more than the image can hold.

    The work of the instance steps (resampling to isotropic pixels, background and
    seed windows) grows with what these two ask for; bounded by the image's own
    extent, it stays proportional to its pixel count.

    Parameters
    ----------
    spatial_shape : sequence of int
        The image's spatial shape (2 or 3 axes, pixels).
    spacing : sequence of float or float or None
        Physical pixel size per spatial axis (one value for all), or None (1).
    diameter : float or None
        Expected object diameter, in the unit of ``spacing`` (pixels without it), or None.

    Raises
    ------
    InputError
        When ``spacing`` is not one finite positive number per axis or makes a pixel
        longer along one axis than the image is along another, or when ``diameter`` is
        not a finite positive number or exceeds ``MAX_DIAMETER_EXTENTS`` times the
        image's extent along its thinnest axis.

    Examples
    --------
    >>> check_scale((64, 64), (1.0, 2.0), diameter=20.0)
    >>> try:
    ...     check_scale((16, 16), (1.0, 1e9))
    ... except InputError as exc:
    ...     print(str(exc)[:58])
    spacing (1.0, 1000000000.0) makes a pixel 1e+09 long along
    """
    shape = tuple(int(n) for n in spatial_shape)
    sp = _spacing(spacing, len(shape), shape)
    if diameter is not None:
        _check_diameter(diameter, shape, sp)


def estimate_diameter(
    image: np.ndarray,
    spacing: Sequence[float] | None = None,
    max_diameter: float | None = None,
    largest: float | None = None,
) -> float:
    """Typical diameter of the bright objects in a grey image (2D or 3D).

    Parameters
    ----------
    image : ndarray, shape (*S)
        A grey image in which objects are brighter than the background (for
        example ``fluorescence_contrast``'s output or a log-compressed image).
    spacing : sequence of float, optional
        Physical pixel (voxel) size per axis; the result is in that unit.
    max_diameter : float, optional
        Objects are no larger than this (unit of ``spacing``): the copy's pixels are made
        fine enough for it and the blob scales searched go up to it only.  Where the copy then
        holds more than ``BOUNDED_ESTIMATE_PIXELS``, the blobs are searched in up to
        ``ESTIMATE_WINDOWS`` ** ndim windows of it, those holding the most detail (the copy
        less its smooth part) among the windows tiling it without overlap (an image of a few
        objects is searched where they are), each at least ``ESTIMATE_WINDOW_DIAMETERS`` times
        ``max_diameter`` wide and all together (margins included) at most that many pixels (one
        window where one of that width holds more).
        The blobs within them are those the whole copy gives there, but for the threshold:
        0.2 of the largest response within the windows, not within the whole copy; their
        median scale is that of a sample of the image.
    largest : float, optional
        In (0, 1]; without ``max_diameter`` (ignored with it): objects are no larger than this
        fraction of the image's shortest extent; the largest blob scales (default: up to a
        quarter of the copy's shortest side, objects of about 0.7 of it) are left out of the
        search, the others being the same.

    Returns
    -------
    float
        ``2 sqrt(2)`` times the median scale of the blobs found by scikit-image's
        ``blob_log`` (scale-normalised Laplacian of Gaussian; Lindeberg, "Feature
        detection with automatic scale selection", IJCV 1998), on a copy resampled
        to isotropic pixels of at most ``ESTIMATE_PIXELS`` in all.  A disc of radius
        r peaks at scale r / sqrt(2).  Band-pass by nature, it is not misled by a
        slowly varying background or by touching objects.  ``FALLBACK_DIAMETER``
        pixels when no blob is found.

    Raises
    ------
    InputError
        When ``spacing`` is not one positive number per axis, or makes a pixel longer along
        one axis than the image is along another (``check_scale``); when ``largest`` is not
        in (0, 1].

    Examples
    --------
    >>> from napari_levelset.evaluation.synthetic import nuclei
    >>> image, _ = nuclei((128, 128), n_objects=10, diameter=20.0)
    >>> 10 < estimate_diameter(image.astype("float32")) < 40
    True
    """
    from skimage.feature import blob_log
    from skimage.filters import gaussian
    from skimage.transform import resize

    if largest is not None and not (np.isfinite(float(largest)) and 0.0 < float(largest) <= 1.0):
        raise InputError(f"largest must be a fraction of the image's extent in (0, 1], got {largest!r}")
    x = np.asarray(image, dtype=np.float32)
    sp = _spacing(spacing, x.ndim, x.shape)
    # isotropic coarse pixels of size g (physical units), at most ESTIMATE_PIXELS of them
    extent = np.asarray(x.shape) * sp
    g = max(float(sp.min()), float((np.prod(extent) / ESTIMATE_PIXELS[x.ndim]) ** (1.0 / x.ndim)))
    if max_diameter is not None:  # objects no larger than this: finer pixels, scales up to it only
        g = max(float(sp.min()), min(g, float(max_diameter) / (2.0 * np.sqrt(2.0) * 6.0)))
    shape = tuple(int(max(3, round(e / g))) for e in extent)
    small = resize(x, shape, order=1, anti_aliasing=True) if shape != x.shape else x
    top = float(small.max() - small.min())
    if top <= 0:
        return float(FALLBACK_DIAMETER * sp.min())
    small = gaussian(small, NOISE_BLUR)  # pixel noise is no blob
    small = (small - small.min()) / top
    max_sigma = max(2.0, min(shape) / 4.0)
    if max_diameter is not None:
        max_sigma = max(2.0, min(max_sigma, float(max_diameter) / (2.0 * np.sqrt(2.0) * g)))
    num_sigma = int(4 * np.log2(max_sigma)) + 1
    if max_diameter is None and largest is not None:  # the same scales, the largest of them left out
        sigmas = np.logspace(0.0, np.log10(max_sigma), num_sigma)
        num_sigma = max(2, int(np.sum(sigmas <= float(largest) * min(shape) / (2.0 * np.sqrt(2.0)))))
        max_sigma = float(sigmas[num_sigma - 1])
    if max_diameter is not None and small.size > BOUNDED_ESTIMATE_PIXELS[x.ndim]:
        blobs = _windowed_blobs(small, max_sigma, num_sigma, BOUNDED_ESTIMATE_PIXELS[x.ndim])
    else:
        blobs = blob_log(
            small,
            min_sigma=1.0,
            max_sigma=max_sigma,
            num_sigma=num_sigma,
            log_scale=True,
            threshold=None,
            threshold_rel=0.2,
            exclude_border=False,
        )
    if len(blobs) == 0:
        return float(FALLBACK_DIAMETER * sp.min())
    return float(2.0 * np.sqrt(2.0) * np.median(blobs[:, -1]) * g)


def _windows(
    detail: np.ndarray, margin: int, inner: int, count: int
) -> list[tuple[tuple[slice, ...], tuple[slice, ...]]]:
    """The ``count`` windows of ``inner`` pixels a side holding the most ``detail`` (its sum) among the
    windows tiling the image without overlap (a strip narrower than a window left at the far end), each
    with ``margin`` more pixels around it within the image: ``(outer slices, inner slices within them)``.
    The objects are where the detail is, so an image of a few objects is searched where they are, not in
    its empty field."""
    import itertools

    w = [min(inner, n) for n in detail.shape]
    starts = [list(range(0, n - wi + 1, wi)) for n, wi in zip(detail.shape, w)]
    corners = list(itertools.product(*starts))
    signal = [float(detail[tuple(slice(a, a + wi) for a, wi in zip(c, w))].sum()) for c in corners]
    out = []
    for i in np.argsort(signal, kind="stable")[::-1][:count]:
        corner = corners[int(i)]
        outer = tuple(slice(max(0, a - margin), min(n, a + wi + margin)) for a, wi, n in zip(corner, w, detail.shape))
        out.append((outer, tuple(slice(a - o.start, a - o.start + wi) for a, wi, o in zip(corner, w, outer))))
    return out


def _windowed_blobs(small: np.ndarray, max_sigma: float, num_sigma: int, budget: int) -> np.ndarray:
    """``blob_log``'s blobs (``estimate_diameter``'s settings) of windows of ``small`` together at most
    ``budget`` pixels, as the whole image would give them there: each window is searched with a margin of the
    Gaussian kernels' reach (scipy's ``truncate`` 4), its blobs kept within it, and the threshold is 0.2 of the
    largest response within all windows (in place of ``threshold_rel`` over the whole copy)."""
    from scipy import ndimage
    from skimage.feature import blob_log

    nd = small.ndim
    margin = int(np.ceil(4.0 * max_sigma))
    least = int(np.ceil(ESTIMATE_WINDOW_DIAMETERS * 2.0 * np.sqrt(2.0) * max_sigma))
    k = ESTIMATE_WINDOWS
    inner = int(budget ** (1.0 / nd) / k) - 2 * margin
    while k > 1 and inner < least:  # fewer, larger windows
        k -= 1
        inner = int(budget ** (1.0 / nd) / k) - 2 * margin
    inner = max(inner, least)
    # where the objects are: the copy less its smooth part (a background ramp is no object)
    detail = np.maximum(small - ndimage.gaussian_filter(small, 2.0 * max_sigma, truncate=2.0), 0.0)
    windows = _windows(detail, margin, inner, k**nd)
    sigmas = np.logspace(0.0, np.log10(max_sigma), num_sigma)
    top = max(
        float((-ndimage.gaussian_laplace(small[outer], s) * s * s)[within].max())
        for outer, within in windows
        for s in sigmas
    )
    found = []
    for outer, within in windows:
        b = blob_log(
            small[outer],
            min_sigma=1.0,
            max_sigma=max_sigma,
            num_sigma=num_sigma,
            log_scale=True,
            threshold=0.2 * top,
            threshold_rel=None,
            exclude_border=False,
        )
        inside = np.all([(b[:, i] >= w.start) & (b[:, i] < w.stop) for i, w in enumerate(within)], axis=0)
        found.append(b[inside])
    return np.concatenate(found)


def _mask_diameter(mask: np.ndarray, spacing: np.ndarray, pieces=None) -> float:
    """Twice the area-weighted median largest inscribed radius of a mask's pieces (scipy's distance
    transform), so clusters of touching objects do not inflate it; pieces under 9 pixels ignored.
    ``mask`` may hold batch items ahead of its ``len(spacing)`` spatial axes: each is measured on its own.
    ``pieces``: ``(labels, n, distance)`` of a one-item ``mask`` where the caller already has them."""
    from scipy import ndimage

    nd = len(spacing)
    radii, weights = [], []
    for item in mask.reshape((-1,) + mask.shape[mask.ndim - nd :]):
        if pieces is not None:
            lab, n, dt = pieces
        else:
            lab, n = ndimage.label(item)
            dt = ndimage.distance_transform_edt(item, sampling=spacing) if n else None
        if n == 0:
            continue
        sizes = np.bincount(lab.ravel(), minlength=n + 1)[1:]
        top = np.zeros(n + 1)  # each piece's largest distance (ndimage.maximum's, without its per-label sort)
        np.maximum.at(top, lab.ravel(), dt.ravel())
        radius = top[1:] + 0.5 * spacing.min()
        radii.append(radius[sizes >= 9])
        weights.append(sizes[sizes >= 9].astype(float))
    r = np.concatenate(radii) if radii else np.zeros(0)
    if r.size == 0:
        return float(FALLBACK_DIAMETER * spacing.min())
    w = np.concatenate(weights)
    order = np.argsort(r)
    cum = np.cumsum(w[order])
    return float(2.0 * r[order][np.searchsorted(cum, 0.5 * cum[-1])])


def foreground_diameter(foreground_prob: np.ndarray, spacing: Sequence[float] | None = None) -> float:
    """The typical diameter of the objects a foreground probability map shows (2D or 3D, batch items first).

    Twice the area-weighted median of the largest inscribed radius of each piece of the
    foreground (where ``foreground_prob`` exceeds 0.5, holes filled), from scipy's distance
    transform: touching objects do not inflate it as their pieces' areas would.  Pieces under
    9 pixels are left out; ``FALLBACK_DIAMETER`` pixels when none is left.

    Parameters
    ----------
    foreground_prob : ndarray, float, shape (..., *S)
        Foreground probability; the last ``len(spacing)`` axes (2 without ``spacing``) are
        spatial, any axes before them are batch items measured on their own.
    spacing : sequence of float, optional
        Physical pixel (voxel) size per spatial axis; the result is in that unit.

    Returns
    -------
    float
        The diameter, in the unit of ``spacing`` (pixels without it).

    Raises
    ------
    InputError
        When ``spacing`` is not one positive number per spatial axis.

    Examples
    --------
    >>> import numpy as np
    >>> yy, xx = np.mgrid[:60, :60]
    >>> 18 <= foreground_diameter(((yy - 30) ** 2 + (xx - 30) ** 2 < 100).astype(float)) <= 22
    True
    """
    from scipy import ndimage

    p = np.asarray(foreground_prob, dtype=np.float32)
    nd = 2 if spacing is None else len(spacing)
    spatial = p.shape[p.ndim - nd :]
    sp = _spacing(spacing, nd, spatial)
    items = (p > 0.5).reshape((-1,) + spatial)
    mask = np.stack([ndimage.binary_fill_holes(item) for item in items])
    return _mask_diameter(mask, sp)
