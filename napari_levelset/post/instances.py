"""One label per object: fluorescence contrast, object size, and splitting touching objects.

Microscopy images of nuclei or cells differ from photographs in three ways this
module handles:

- **Contrast** (``fluorescence_contrast``).  Objects of very uneven brightness sit
  on a background that may vary slowly (out-of-focus haze, uneven illumination).
  The background is estimated as a grey-scale opening (scipy) wider than the
  objects and subtracted, and what is left is compressed logarithmically in units
  of the image's noise, ``log(1 + r / (k σ))``, so a dim nucleus and a bright one
  differ by a few units, not by a factor of ten, while noise stays near 0.  The
  level-set loss then separates objects from background on this image.
- **Object size** (``estimate_diameter``, in ``napari_levelset.post.diameter`` with the
  checks of ``spacing`` and ``diameter``, and imported here).  The field's usual setting
  is the expected diameter (Cellpose, StarDist, CellProfiler); estimated when not given.
- **Instances** (``instance_labels``).  The foreground (the brightest class unless
  told otherwise) is cut into objects by a seeded watershed (scikit-image) on the
  distance transform: seeds are the maxima of the smoothed distance transform at
  least a third of a diameter apart, so two touching round objects give two
  seeds; pieces smaller than a fifth of the expected object area are left out as
  debris.

All of it works on 2D and 3D images, with anisotropic voxels given as
``spacing`` (physical size per spatial axis; ``diameter`` in the same unit).
numpy, scipy and scikit-image only; no torch.

What ``spacing`` and ``diameter`` may ask for is bounded by the image itself
(``check_scale``), so that the work stays proportional to its pixel count: a pixel
may be no longer along one axis than the image is along any axis, and a given
diameter at most ``MAX_DIAMETER_EXTENTS`` times the image's extent along its
thinnest axis.  Anything beyond is refused with a one-line ``InputError``.

References
----------
.. [1] J. Immerkær, "Fast noise variance estimation", Computer Vision and Image
   Understanding 64(2), 300-302 (1996): ``noise_sigma``.
.. [2] T. Lindeberg, "Feature detection with automatic scale selection", International
   Journal of Computer Vision 30, 79-116 (1998): the blobs of ``estimate_diameter``
   (``skimage.feature.blob_log``).
.. [3] The watershed of ``instance_labels`` is ``skimage.segmentation.watershed``, seeded by
   ``skimage.feature.peak_local_max`` of ``scipy.ndimage.distance_transform_edt``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from napari_levelset.errors import InputError
from napari_levelset.post.diameter import (
    MAX_DIAMETER_EXTENTS,
    _check_diameter,
    _mask_diameter,
    _spacing,
    as_spacing,
    check_scale,
    estimate_diameter,
    foreground_diameter,
)

__all__ = [
    "CONTRAST_MODES",
    "as_spacing",
    "check_scale",
    "contrast_color",
    "estimate_diameter",
    "fluorescence_contrast",
    "foreground_classes",
    "foreground_diameter",
    "instance_labels",
    "instance_labels_per_item",
    "noise_sigma",
]

#: ``linear``: the normalised image as it is; ``fluorescence``: background removed, log-compressed;
#: ``transmitted``: dark objects on a light field (bright-field, H&E-like stains), see
#: ``napari_levelset.post.objects.transmitted_prepared``
CONTRAST_MODES = ("linear", "fluorescence", "transmitted")

#: the background window spans this many expected object diameters
BACKGROUND_DIAMETERS = 2.0
#: the log compression's unit, in noise standard deviations
LOG_UNIT_NOISE = 3.0
#: seeds of the watershed lie at least this many diameters apart
SEED_DISTANCE = 1.0 / 3.0
#: the distance transform is smoothed with a Gaussian of this many diameters before seeding
SEED_SMOOTHING = 1.0 / 16.0
#: objects smaller than this fraction of the expected object's area (volume) are debris
MIN_OBJECT = 0.2


def contrast_color(contrast: str, color: str) -> str:
    """The ``color`` setting to prepare an image with under ``contrast``.

    ``fluorescence`` treats the channels as fluorescence, never as a colour photo:
    ``color="auto"`` becomes ``"rgb"`` (each channel normalised on its own);
    ``transmitted`` always prepares ``"rgb"`` (its objects are made bright from the
    image as given, ``napari_levelset.post.objects.transmitted_prepared``).

    Parameters
    ----------
    contrast : str
        One of ``CONTRAST_MODES``.
    color : str
        The ``color`` asked for (``"auto"``, ``"rgb"`` or ``"lab"``, see ``io.prepare_image``).

    Returns
    -------
    str
        ``color``, or ``"rgb"`` for ``"auto"`` under ``fluorescence`` and for any
        ``color`` under ``transmitted``.

    Raises
    ------
    InputError
        For an unknown ``contrast``, or ``fluorescence`` with ``color="lab"``.

    Examples
    --------
    >>> contrast_color("fluorescence", "auto"), contrast_color("linear", "auto")
    ('rgb', 'auto')
    """
    if contrast not in CONTRAST_MODES:
        raise InputError(f"contrast must be one of {', '.join(CONTRAST_MODES)}; got {contrast!r}")
    if contrast == "transmitted":
        return "rgb"
    if contrast == "fluorescence":
        if color == "lab":
            raise InputError(
                "contrast='fluorescence' is for fluorescence channels; it cannot be combined with color='lab'"
            )
        if color == "auto":
            return "rgb"
    return color


def noise_sigma(x: np.ndarray) -> float:
    """Standard deviation of white Gaussian noise in ``x`` (2D or 3D float array).

    Immerkær's estimator ("Fast noise variance estimation", CVIU 64(2), 1996): the
    mean absolute response to a Laplacian-difference mask that cancels smooth
    image structure, over each 2D slice of the last two axes.

    Parameters
    ----------
    x : numpy.ndarray
        Float, 2D or 3D (any leading axes: slices of the last two).

    Returns
    -------
    float
        ``sqrt(pi / 2) / 6`` times the mean absolute mask response (``scipy.ndimage.convolve``,
        borders left out), in the units of ``x``; >= 0.  The plain standard deviation
        where a slice has under 3 pixels along an axis.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(0, 0.1, (256, 256))
    >>> round(noise_sigma(x), 2)
    0.1
    """
    from scipy import ndimage

    mask = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)
    planes = x.reshape((-1,) + x.shape[-2:])
    if min(planes.shape[1:]) < 3:
        return float(np.std(x))
    total = 0.0
    for p in planes:
        total += float(np.abs(ndimage.convolve(p.astype(np.float32), mask)[1:-1, 1:-1]).mean())
    return float(np.sqrt(np.pi / 2.0) * total / (6.0 * len(planes)))


def _background(x: np.ndarray, window_px: np.ndarray) -> np.ndarray:
    """Slowly varying background of ``x`` (spatial array): a grey opening wider than the objects.

    Computed on a block-averaged copy (scikit-image's ``downscale_local_mean``) so that
    its cost does not grow with the window, then smoothed and brought back to full size.
    """
    from scipy import ndimage
    from skimage.transform import downscale_local_mean, resize

    factors = tuple(int(max(1, w // 12)) for w in window_px)
    # whole blocks only: downscale_local_mean pads a partial block with zeros, which an opening would keep
    shape = tuple(max(1, n // f) for n, f in zip(x.shape, factors))
    if max(factors) > 1:
        small = downscale_local_mean(x[tuple(slice(0, s * f) for s, f in zip(shape, factors))], factors)
    else:
        small = x
    size = tuple(int(max(3, round(w / f))) for w, f in zip(window_px, factors))
    size = tuple(min(s, n) for s, n in zip(size, small.shape))
    bg = ndimage.uniform_filter(ndimage.grey_opening(small, size=size), size)
    return resize(bg, x.shape, order=1, mode="edge", anti_aliasing=False).astype(np.float32)


def fluorescence_contrast(data: np.ndarray, diameter: float, spacing: Sequence[float] | None = None) -> np.ndarray:
    """Background-subtracted, log-compressed contrast of fluorescence images.

    Parameters
    ----------
    data : ndarray, float32, shape (B, C, *S)
        A prepared image (``napari_levelset.io.prepare.prepare_image``), channels in [0, 1].
    diameter : float
        Expected object diameter, in the unit of ``spacing`` (pixels without it).
    spacing : sequence of float, optional
        Physical size of a pixel (voxel) along each spatial axis.

    Returns
    -------
    ndarray, float32, shape (B, C, *S)
        Per channel ``log(1 + max(x - b, 0) / (k σ))`` with ``b`` the background (a
        grey opening over ``BACKGROUND_DIAMETERS`` diameters, scipy), ``σ`` the noise
        (``noise_sigma``) and ``k = LOG_UNIT_NOISE``, divided by its maximum so it
        lies in [0, 1].  A channel with no structure left becomes 0.

    Raises
    ------
    InputError
        When ``spacing`` or ``diameter`` ask for more than the image holds (``check_scale``).

    Notes
    -----
    The background is ``scipy.ndimage.grey_opening`` on a block mean
    (``skimage.transform.downscale_local_mean``), smoothed with ``uniform_filter`` and
    resized back (``skimage.transform.resize``).

    Examples
    --------
    >>> import numpy as np
    >>> from napari_levelset.evaluation.synthetic import nuclei
    >>> from napari_levelset.io.prepare import prepare_image
    >>> image, _ = nuclei((128, 128), n_objects=8, diameter=16.0)
    >>> out = fluorescence_contrast(prepare_image(image).data, diameter=16.0)
    >>> out.shape, out.dtype, float(out.max())
    ((1, 1, 128, 128), dtype('float32'), 1.0)
    """
    data = np.asarray(data, dtype=np.float32)
    shape = data.shape[2:]
    sp = _spacing(spacing, len(shape), shape)
    return _contrast(data, _check_diameter(diameter, shape, sp), sp)


def _contrast(data: np.ndarray, diameter: float, sp: np.ndarray) -> np.ndarray:
    """``fluorescence_contrast`` of float32 ``data`` with ``diameter`` and spacing ``sp`` checked."""
    window = np.maximum(3.0, BACKGROUND_DIAMETERS * float(diameter) / sp)
    out = np.empty_like(data)
    for b in range(data.shape[0]):
        for c in range(data.shape[1]):
            x = data[b, c]
            sigma = noise_sigma(x)
            r = np.maximum(x - _background(x, window), 0.0)
            unit = LOG_UNIT_NOISE * max(sigma, 1e-4)
            y = np.log1p(r / unit)
            top = float(y.max())
            out[b, c] = y / top if top > 0 else 0.0
    return out


def foreground_classes(n_classes: int, foreground: Sequence[int] | int | None = None) -> list[int]:
    """The class labels (1..N) that count as foreground.

    Default rule: the brightest class, label N (labels are ordered darkest first),
    as for fluorescence, where objects are brighter than the background.

    Parameters
    ----------
    n_classes : int
        N, the number of classes.
    foreground : int or sequence of int or None
        Class labels (1..N) that are foreground; None: the default rule.

    Returns
    -------
    list of int
        Sorted, distinct labels in 1..N, fewer than N.

    Raises
    ------
    InputError
        For labels outside 1..N (or not whole numbers), or a choice that names none or
        all of the classes (no background).

    Examples
    --------
    >>> foreground_classes(3), foreground_classes(4, [3, 2, 3])
    ([3], [2, 3])
    """
    if foreground is None:
        return [int(n_classes)]
    fg = [foreground] if np.isscalar(foreground) else list(foreground)
    out = []
    for k in fg:
        if isinstance(k, bool) or not float(k).is_integer() or not 1 <= int(k) <= n_classes:
            raise InputError(f"foreground classes must be labels 1..{n_classes}, got {k!r}")
        out.append(int(k))
    if not out or len(set(out)) >= n_classes:
        raise InputError(f"foreground must name some but not all of the {n_classes} classes, got {foreground!r}")
    return sorted(set(out))


def instance_labels(
    foreground_prob: np.ndarray,
    *,
    diameter: float | None = None,
    spacing: Sequence[float] | None = None,
    min_region: float | None = None,
) -> np.ndarray:
    """One label per object of a foreground probability map (2D or 3D).

    Parameters
    ----------
    foreground_prob : ndarray, float, shape (*S)
        Probability that each pixel is foreground (the sum of the foreground
        classes' level-set probabilities); the foreground is where it exceeds 0.5.
    diameter : float, optional
        Expected object diameter, in the unit of ``spacing`` (pixels without it).
        Default: ``estimate_diameter`` of the foreground.
    spacing : sequence of float, optional
        Physical pixel (voxel) size per spatial axis (anisotropic volumes).
    min_region : float, optional
        Smallest object kept, in pixels (voxels).  Default: ``MIN_OBJECT`` times
        the area (volume) of a disc (ball) of the expected diameter.

    Returns
    -------
    ndarray, uint32, shape (*S)
        0 for background, 1..K one id per object.  Touching objects are split by a
        seeded watershed on the distance transform (scikit-image ``watershed``,
        seeds from ``peak_local_max`` of the smoothed distance transform, at least
        ``SEED_DISTANCE`` diameters apart); smaller objects are left out.

    Raises
    ------
    InputError
        When ``diameter`` is not a positive number, or ``spacing`` not one positive number
        per axis, or either asks for more than the image holds (``check_scale``).

    Examples
    --------
    >>> import numpy as np
    >>> yy, xx = np.mgrid[:40, :60]
    >>> two = ((yy - 20) ** 2 + (xx - 20) ** 2 < 100) | ((yy - 20) ** 2 + (xx - 38) ** 2 < 100)
    >>> int(instance_labels(two.astype(np.float32), diameter=20).max())  # two touching discs
    2
    """
    from scipy import ndimage
    from skimage.feature import peak_local_max
    from skimage.segmentation import watershed

    p = np.asarray(foreground_prob, dtype=np.float32)
    nd = p.ndim
    sp = _spacing(spacing, nd, p.shape)
    if diameter is not None:
        diameter = _check_diameter(diameter, p.shape, sp)
    mask = ndimage.binary_fill_holes(p > 0.5)
    if not mask.any():
        return np.zeros(p.shape, np.uint32)
    dt = ndimage.distance_transform_edt(mask, sampling=sp)
    comp, n_comp = ndimage.label(mask)
    d = diameter if diameter is not None else _mask_diameter(mask, sp, pieces=(comp, n_comp, dt))
    if not (np.isfinite(d) and d > 0):
        raise InputError(f"diameter must be a positive number, got {diameter!r}")
    d_px = d / sp  # per axis, in pixels
    if min_region is None:
        min_region = _default_min_region(d_px)
    smooth = ndimage.gaussian_filter(dt, sigma=np.maximum(SEED_SMOOTHING * d_px, 0.5))
    min_dist = max(1, round(SEED_DISTANCE * float(d_px.min())))
    peaks = peak_local_max(smooth, min_distance=min_dist, labels=comp, exclude_border=False)
    markers = np.zeros(p.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    # every piece gets at least one seed (a piece too flat for a peak keeps its own label)
    unseeded = np.setdiff1d(np.unique(comp[mask]), np.unique(comp[markers > 0]))
    if unseeded.size:
        extra = np.isin(comp, unseeded)
        markers[extra] = (comp[extra] + len(peaks)).astype(np.int32)
    lab = watershed(-smooth, markers, mask=mask)
    return _drop_and_renumber(lab, min_region, np.uint32)


def instance_labels_per_item(
    foreground_prob: np.ndarray,
    *,
    diameter: float | None = None,
    spacing: Sequence[float] | None = None,
    min_region: float | None = None,
) -> np.ndarray:
    """``instance_labels`` of each batch item (slice of a stack, frame of a time-lapse) on its own.

    Parameters
    ----------
    foreground_prob : ndarray, float, shape (B, *S)
        Foreground probability of ``B`` items, each 2D or 3D.
    diameter, spacing, min_region : optional
        As for ``instance_labels``, the same for every item.

    Returns
    -------
    ndarray, uint32, shape (B, *S)
        0 for background; the objects of item ``i`` follow those of the items before it,
        so ids are numbered 1..K over the whole array.

    Raises
    ------
    InputError
        As ``instance_labels``.
    """
    items = (
        instance_labels(item, diameter=diameter, spacing=spacing, min_region=min_region) for item in foreground_prob
    )
    return _number_items(np.zeros(foreground_prob.shape, np.uint32), items)


def _default_min_region(d_px: np.ndarray) -> float:
    """The smallest object kept, in pixels: ``MIN_OBJECT`` of a ball of diameter ``d_px`` (pixels per axis)."""
    unit_ball = np.pi / 4 if len(d_px) == 2 else np.pi / 6
    return MIN_OBJECT * unit_ball * float(np.prod(d_px))


def _drop_and_renumber(labels: np.ndarray, min_region: float | None, dtype) -> np.ndarray:
    """``labels`` without objects under ``min_region`` pixels (None: all kept), ids renumbered 1..K as ``dtype``."""
    if min_region is not None:
        sizes = np.bincount(labels.ravel())
        small = sizes < float(min_region)
        small[0] = True
        labels[small[labels]] = 0
    ids = np.unique(labels)
    ids = ids[ids > 0]
    lut = np.zeros(int(labels.max()) + 1, dtype)
    lut[ids] = np.arange(1, len(ids) + 1, dtype=dtype)
    return lut[labels]


def _number_items(out: np.ndarray, items) -> np.ndarray:
    """``out`` ``(B, *S)`` filled with the label images ``items``, each item's ids after those of the ones before."""
    offset = 0
    for i, lab in enumerate(items):
        out[i] = np.where(lab > 0, lab + offset, 0)
        offset += int(lab.max())
    return out


def fluorescence_prepared(prepared, diameter: float | None = None, spacing: Sequence[float] | None = None):
    """``prepared`` (a ``napari_levelset.io.prepare.Prepared``) with ``fluorescence_contrast`` applied.

    Parameters
    ----------
    prepared : napari_levelset.io.prepare.Prepared
        The prepared image, ``data`` float32 ``(B, C, *S)``.
    diameter : float or None
        Expected object diameter, in the unit of ``spacing`` (pixels without it); None:
        estimated.
    spacing : sequence of float or None
        Physical pixel size per spatial axis.

    Returns
    -------
    prepared : napari_levelset.io.prepare.Prepared
        A copy with the contrast applied to ``data`` (same shape).
    diameter : float
        The diameter given, or the median of ``estimate_diameter`` over up to 5 batch
        items (their channel mean, log-compressed in noise units, before background
        removal, whose window needs it), at most ``MAX_DIAMETER_EXTENTS`` times the
        image's extent along its thinnest axis.

    Raises
    ------
    InputError
        When ``spacing`` or a given ``diameter`` ask for more than the image holds
        (``check_scale``).
    """
    data = prepared.data
    shape = data.shape[2:]
    sp = _spacing(spacing, len(shape), shape)
    if diameter is not None:
        diameter = _check_diameter(diameter, shape, sp)
    else:  # the median over up to 5 batch items (frames, slices) spread over the stack
        estimates = []
        for b in np.unique(np.linspace(0, data.shape[0] - 1, min(5, data.shape[0])).round().astype(int)):
            x = data[b].mean(0)
            unit = LOG_UNIT_NOISE * max(noise_sigma(x), 1e-4)
            estimates.append(estimate_diameter(np.log1p(np.maximum(x, 0) / unit), spacing))
        diameter = min(float(np.median(estimates)), MAX_DIAMETER_EXTENTS * float((np.asarray(shape) * sp).min()))
    return replace(prepared, data=_contrast(np.asarray(data, dtype=np.float32), diameter, sp)), float(diameter)


def resample_prepared(
    prepared,
    max_pixels: float,
    diameter: float | None,
    spacing=None,
    min_diameter_px: float = 12.0,
    cap_pixels: float | None = None,
):
    """A copy of ``prepared`` zoomed by one factor z <= 1 on every spatial axis.

    The factor makes a batch item at most ``max_pixels`` pixels, but objects keep at least
    ``min_diameter_px`` pixels across.  Uses scikit-image's ``resize`` (linear, with
    anti-aliasing).

    Parameters
    ----------
    prepared : napari_levelset.io.prepare.Prepared
        The prepared image, ``data`` float32 ``(B, C, *S)``.
    max_pixels : float
        Most pixels (voxels) of one batch item after zooming.
    diameter : float or None
        Expected object diameter, in the unit of ``spacing`` (None: no lower bound on z).
    spacing : sequence of float or None
        Physical pixel size per spatial axis (the largest one converts ``diameter``).
    min_diameter_px : float
        Fewest pixels an object of ``diameter`` keeps across.
    cap_pixels : float, optional
        Most pixels of one batch item whatever ``min_diameter_px`` asks for (None: no cap).

    Returns
    -------
    prepared : napari_levelset.io.prepare.Prepared
        The zoomed copy (``data`` float32 ``(B, C, *S')``, ``spatial_shape`` ``S'``), or
        ``prepared`` itself when ``z == 1``.
    z : float
        The zoom factor (1.0 when z would be 0.95 or more, or the shape would not change).

    Raises
    ------
    InputError
        When ``spacing`` makes a pixel longer along one axis than the image is along another
        (``check_scale``).
    """
    from skimage.transform import resize

    spatial = prepared.spatial_shape
    sp = _spacing(spacing, len(spatial), spatial)
    z = min(1.0, float(max_pixels / np.prod(spatial)) ** (1.0 / len(spatial)))
    if diameter is not None:
        d_px = float(diameter) / float(sp.max())
        z = max(z, min(1.0, min_diameter_px / max(d_px, 1e-6)))
    if cap_pixels is not None:
        z = min(z, float(cap_pixels / np.prod(spatial)) ** (1.0 / len(spatial)))
    shape = tuple(max(2, round(s * z)) for s in spatial)
    if z >= 0.95 or shape == tuple(spatial):
        return prepared, 1.0
    data = prepared.data
    small = resize(data, data.shape[:2] + shape, order=1, anti_aliasing=True, preserve_range=True)
    return replace(prepared, data=np.ascontiguousarray(small, dtype=np.float32), spatial_shape=shape), z


def upsample(probs: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Linear interpolation of ``(..., *S_small)`` maps to ``(..., *shape)`` (scikit-image ``resize``).

    Parameters
    ----------
    probs : numpy.ndarray
        Float ``(..., *S_small)``.
    shape : tuple of int
        The spatial shape wanted, ``len(shape)`` trailing axes.

    Returns
    -------
    numpy.ndarray
        float32 ``(..., *shape)``.
    """
    from skimage.transform import resize

    lead = probs.shape[: probs.ndim - len(shape)]
    return resize(probs, lead + tuple(shape), order=1, anti_aliasing=False, preserve_range=True).astype(np.float32)
