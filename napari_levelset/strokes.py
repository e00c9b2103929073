"""Stroke-guided segmentation: the smaller working copy a ``Segmenter`` with strokes optimises on.

A few brush strokes (scribbles: 0 unpainted, ``k`` class ``k``) switch on the
α·cross-entropy term of the loss and seed their classes' means in the k-means
start (``napari_levelset.cluster.init_centres``), where the data term then keeps
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

Everything here works on ``(B, C, *S)`` arrays with two or three spatial axes.
"""

from __future__ import annotations

import numpy as np

__all__ = ["STROKE_PIXELS", "STROKE_ITERATIONS", "stroke_contrast", "stroke_means", "working_copy",
           "stroke_channels", "stroke_separation", "local_contrast", "scribbles_to_grid", "upsample_logits"]

#: most pixels (voxels) per batch item a run with strokes optimises on (``Segmenter``'s ``work_pixels``)
STROKE_PIXELS = 60_000
#: ``segment``'s iterations with strokes and the per-image CNN, when none are given
STROKE_ITERATIONS = 40
#: ``local_contrast``: the local maximum an object is normalised by is taken over this many diameters
NORMALISE_DIAMETERS = 1.0
#: ``local_contrast``: the least divisor of the normalisation, in noise standard deviations
NORMALISE_FLOOR_NOISE = 10.0
#: ``stroke_channels``: the least ``stroke_separation`` of the strokes in the local-contrast maps
MIN_SEPARATION = 1.0
#: ``local_contrast``: the log compression's unit, in noise standard deviations
LOCAL_LOG_UNIT_NOISE = 1.0


def stroke_contrast(image, channel_axis: int | None = None) -> str:
    """The ``contrast`` ``segment`` uses with strokes when none is given: ``fluorescence`` for
    integer data of more than 8 bits that is not an RGB(A) picture, else ``linear``.

    The napari widget's *auto* contrast follows the same rule, so a run there and
    ``segment`` prepare an image alike.  8-bit grey images stay ``linear``: on grey
    copies of BSDS500 train photographs the fluorescence preparation lowered the
    strokes' mean IoU from 0.45 to 0.38.
    """
    image = np.asarray(image)
    rgb = channel_axis is None and image.ndim in (3, 4) and image.shape[-1] in (3, 4)
    return "fluorescence" if image.dtype.kind in "ui" and image.dtype.itemsize > 1 and not rgb else "linear"


def working_copy(prepared, max_pixels: int, diameter: float | None = None, spacing=None):
    """``prepared`` (``napari_levelset.io.Prepared``) resampled so that a batch item has at most
    ``max_pixels`` pixels, by one zoom on every spatial axis.

    With an expected object ``diameter`` (unit of ``spacing``; pixels without it), known
    for fluorescence contrast, the zoom keeps objects at least 12 pixels across even if
    that leaves more pixels.  Returns ``(Prepared, zoom)``; ``zoom == 1.0`` returns
    ``prepared`` itself (also when shrinking would save less than 5 % per axis).  Linear
    interpolation with Gaussian anti-aliasing (scikit-image ``resize``, via
    ``napari_levelset.instances.resample_prepared``).
    """
    from .instances import resample_prepared

    return resample_prepared(prepared, float(max_pixels), diameter, spacing)


def local_contrast(x: np.ndarray, diameter_px=None) -> np.ndarray:
    """Two local-contrast maps of one grey channel ``x`` (2D or 3D float array), ``(2, *x.shape)``.

    ``r = max(x - b, 0)``, ``b`` the background (a grey opening over two object
    diameters, ``napari_levelset.instances``'s), ``σ`` the noise (``noise_sigma``):

    - ``log(1 + r / (LOCAL_LOG_UNIT_NOISE σ))``, divided by its maximum;
    - ``r'`` (``r`` smoothed by a Gaussian of 1 px) over its local maximum
      (``NORMALISE_DIAMETERS`` diameters, smoothed by a quarter diameter), that maximum
      held at least ``NORMALISE_FLOOR_NOISE σ``; clipped to [0, 1].  Every object, dim or
      bright, comes out near 1 inside and at about a half at its edge, the background
      near 0: so a class mean seeded on bright objects' strokes also covers dim ones.

    ``diameter_px``: the objects' diameter in pixels of ``x`` (scalar or one per axis);
    None estimates it (``napari_levelset.instances.estimate_diameter``).
    """
    from scipy import ndimage as ndi

    from .instances import _background, estimate_diameter, noise_sigma

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
    """How far apart the stroked classes lie in ``data`` ``(B, C, *S)``: the squared distance of
    the closest pair of stroke means over the mean within-stroke variance (Fisher's ratio;
    ``scribbles`` ``(B, *S)``, 0 none).  ``inf`` with fewer than two stroked classes."""
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
    """The working copy ``work`` (a ``Prepared``) with each channel replaced by its two
    ``local_contrast`` maps: what the per-image CNN sees and the data term measures on
    a grey or fluorescence image (not RGB) with strokes.

    ``zoom``: the working copy's zoom (``working_copy``); ``diameter`` in the unit of
    ``spacing`` (pixels without it) at full size, or None (estimated on each item).
    On the strokes benchmark (``benchmarks/strokes.py``, three stroked nuclei and the
    background) foreground Dice GOWT1 0.853 -> 0.93, HeLa 0.856 -> 0.92, NIH3T3
    0.687 -> 0.81; see ``benchmarks/RESULTS.md``, "Strokes".

    With ``scribbles`` ``(B, *S)`` on the working grid (0 none), ``work`` is returned as it
    is where the maps do not tell the stroked classes apart (``stroke_separation`` below
    ``MIN_SEPARATION``: stroke means closer than their spread), as on an image of flat grey
    phases rather than objects on a background (bands of 0.1 / 0.5 / 0.9: 0.01 in the maps,
    11.7 in the image; the 14 nuclei images 4.1-355, scikit-image's coins 45).
    """
    from dataclasses import replace

    data = work.data
    d = None
    if diameter is not None:
        sp = np.ones(data.ndim - 2) if spacing is None else np.asarray(spacing, np.float64)
        d = float(diameter) * float(zoom) / sp
    out = np.stack([np.concatenate([local_contrast(data[b, c], d) for c in range(data.shape[1])])
                    for b in range(data.shape[0])])
    if scribbles is not None and stroke_separation(out, scribbles) < MIN_SEPARATION:
        return work  # the maps do not tell the strokes apart: grey phases, not objects on a background
    return replace(work, data=np.ascontiguousarray(out, np.float32))


def scribbles_to_grid(scribbles: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Strokes ``(B, *S)`` (int, 0 = none) carried to a grid of spatial shape ``shape``.

    Each painted pixel ``i`` along an axis of ``S`` pixels goes to working pixel
    ``floor(i * shape / S)`` (the one whose area holds it), so thin strokes stay
    connected; where strokes of two classes meet in one working pixel the later
    one in C order wins.  Returns int64 ``(B, *shape)``.
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

    ``x`` ``(B, C, *S)`` (torch, the image the network sees), ``scribbles`` ``(B, *S)``
    (torch int, 0 = none, ``j`` = network class ``j - 1``) or None.  Returns ``(stroked,
    centres)``: bool ``(N,)`` and ``(N, C)`` the mean of ``x`` over each stroked class's
    painted pixels (zeros for the others), or None without strokes.  ``Segmenter`` puts
    these in place of the soft class means of the stroked classes at every step, so a
    class stays what its strokes showed instead of drifting to whatever it covers (Kim &
    Ye's data term with the means of the stroked phases fixed).  On the strokes benchmark
    (same strokes, defaults otherwise): BSDS500 train mean IoU 0.745 -> 0.750, nuclei
    foreground Dice GOWT1 0.854 -> 0.853, HeLa 0.862 -> 0.856, NIH3T3 0.677 -> 0.711.
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
    """Logits ``(B, N, *s)`` (torch) interpolated (bi/trilinear, pixel centres aligned as
    scikit-image's ``resize`` does) to spatial ``shape``."""
    import torch.nn.functional as F

    if tuple(logits.shape[2:]) == tuple(shape):
        return logits
    mode = "bilinear" if len(shape) == 2 else "trilinear"
    return F.interpolate(logits, size=tuple(shape), mode=mode, align_corners=False)
