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
           "scribbles_to_grid", "upsample_logits"]

#: most pixels (voxels) per batch item a run with strokes optimises on (``Segmenter``'s ``work_pixels``)
STROKE_PIXELS = 60_000
#: ``segment``'s iterations with strokes and the per-image CNN, when none are given
STROKE_ITERATIONS = 40


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
