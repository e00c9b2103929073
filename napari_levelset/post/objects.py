"""Dark or bright objects, and outlines on the linear signal, for instances.

Two readings of a microscopy image that ``napari_levelset.post.instances`` builds on:

- **Dark or bright objects** (``napari_levelset.settings.object_contrast``).  Fluorescence shows bright objects
  on a dark field; bright-field and stained (H&E-like) images show dark objects on a
  light field.  The median brightness, the field, tells them apart.  Dark objects are
  made bright (``transmitted_prepared``): the haematoxylin of colour deconvolution for
  a colour image, the inverted brightness less its cytoplasm background for a grey one,
  on a linear contrast.
- **Outlines** (``outline_on_linear``).  The log-compressed fluorescence contrast finds
  faint objects but widens every outline into the signal's faint tail; each object is
  outlined again on the linear, background-removed signal (``linear_signal``) at a
  fixed fraction of the way from its surroundings to its peak.

numpy, scipy and scikit-image only; no torch.

References
----------
.. [1] A. C. Ruifrok and D. A. Johnston, "Quantification of histochemical staining by
   color deconvolution", Analytical and Quantitative Cytology and Histology 23(4),
   291-299 (2001): the haematoxylin of ``transmitted_signal``
   (``skimage.color.rgb2hed``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from napari_levelset.io.axes import infer_axes
from napari_levelset.io.prepare import Prepared, prepare_image
from napari_levelset.post.diameter import (
    MAX_DIAMETER_EXTENTS,
    NOISE_BLUR,
    _check_diameter,
    _spacing,
    as_spacing,
    estimate_diameter,
)
from napari_levelset.post.instances import (
    BACKGROUND_DIAMETERS,
    _background,
    _default_min_region,
    _drop_and_renumber,
    _number_items,
)

__all__ = [
    "MIN_SOLIDITY",
    "OUTLINE_FRACTION",
    "drop_concave",
    "linear_signal",
    "outline_on_linear",
    "outlines_on_linear",
    "transmitted_prepared",
    "transmitted_signal",
]

#: ``transmitted``: the linear contrast's unit is this percentile of the background-removed signal
TRANSMITTED_TOP = 99.9
#: ``transmitted``: objects keep at least this many pixels across on the working copy
TRANSMITTED_MIN_PX = 8.0
#: grey ``transmitted`` images: the diameters estimated again on what the cytoplasm's removal leaves are no
#: smaller than the first estimate (on the whole image, which sees the cells) over this
TRANSMITTED_CELL_NUCLEUS = 3.0
#: grey ``transmitted`` images: the first diameter estimate (on the whole image) looks for objects no larger
#: than this fraction of the image's shortest extent (``estimate_diameter``'s ``largest``)
TRANSMITTED_LARGEST = 0.18
#: grey ``transmitted`` images: the working copy holds at most about this many times ``INSTANCE_PIXELS``
TRANSMITTED_CAP = 2.0
#: grey bright-field images (cytoplasm removed): objects less convex than this (area over the convex
#: hull's, scikit-image's ``solidity``) are left out: nuclei are convex, the rims and borders of cells
#: that the removal of the cytoplasm leaves are not
MIN_SOLIDITY = 0.9
#: ``fluorescence``: each object's outline is redrawn on the linear (background-removed) signal where it
#: crosses this fraction of the way from the object's surroundings to its peak (``outline_on_linear``)
OUTLINE_FRACTION = 0.3
#: the peak of an object: this percentile of its linear signal
OUTLINE_PEAK = 95.0
#: pieces the outline separates become objects of their own (at least ``min_region`` large)
SPLIT_PIECES = True


def transmitted_signal(
    image, channel_axis: int | None = None, spatial_dims: int | None = None
) -> tuple[np.ndarray, str]:
    """Dark objects made bright: one grey signal.

    An RGB(A) image (3 or 4 channels, last axis) is taken as a haematoxylin stain: the
    haematoxylin optical density of colour deconvolution (scikit-image ``rgb2hed``;
    Ruifrok & Johnston 2001), which leaves the eosin-stained tissue out.  Other images:
    the brightness (the largest channel) inverted.

    Parameters
    ----------
    image : array_like
        The image as given, grey or multichannel, 2D or 3D.
    channel_axis, spatial_dims : int, optional
        As for ``napari_levelset.io.prepare.prepare_image`` (None: guessed).

    Returns
    -------
    signal : ndarray of float32
        The image's non-channel shape; objects bright.
    how : str
        What was done, for the run's record.

    Raises
    ------
    InputError
        For a shape whose axes cannot be read (``infer_axes``).
    """
    arr = np.asarray(image)
    ch_ax, _ = infer_axes(arr.shape, channel_axis, spatial_dims)
    if ch_ax is not None and ch_ax == arr.ndim - 1 and arr.shape[-1] in (3, 4):
        from skimage.color import rgb2hed

        return rgb2hed(arr[..., :3]).astype(np.float32)[..., 0], "haematoxylin (colour deconvolution)"
    v = arr.astype(np.float32) if ch_ax is None else arr.astype(np.float32).max(axis=ch_ax)
    return float(v.max()) - v, "inverted brightness"


def drop_concave(labels: np.ndarray, spatial_ndim: int, min_solidity: float = MIN_SOLIDITY) -> np.ndarray:
    """``labels`` without the objects less convex than ``min_solidity``, ids renumbered over the stack.

    Solidity is an object's area (volume) over that of its convex hull (scikit-image's
    ``regionprops``); a disc or an ellipse has about 1, a crescent or a bent line much less.

    Parameters
    ----------
    labels : ndarray of int
        Instances, 0 background: batch axes, then ``spatial_ndim`` spatial axes.
    spatial_ndim : int
        2 or 3.
    min_solidity : float
        In [0, 1]; objects with a lower solidity become background.

    Returns
    -------
    ndarray
        ``labels``' shape and dtype: 0 background, ids 1..K over the whole stack.
    """
    from skimage.measure import regionprops

    shape = labels.shape
    items = labels.reshape((-1,) + shape[len(shape) - spatial_ndim :])

    def kept(item: np.ndarray) -> np.ndarray:
        item = item.copy()
        concave = [r.label for r in regionprops(item) if r.solidity < min_solidity]
        item[np.isin(item, concave)] = 0
        return _drop_and_renumber(item, None, item.dtype)

    return _number_items(np.empty_like(items), (kept(item) for item in items)).reshape(shape)


def transmitted_prepared(
    image,
    channel_axis: int | None = None,
    spatial_dims: int | None = None,
    diameter: float | None = None,
    spacing: Sequence[float] | None = None,
) -> tuple[Prepared, float, str]:
    """An image of dark objects (``object_contrast`` ``"transmitted"``) prepared for instances.

    The objects are made bright (``transmitted_signal``).  A grey image's background, the
    light field and the cytoplasm or tissue around the objects, is removed as a grey
    opening over ``BACKGROUND_DIAMETERS`` diameters (the three phases of a bright-field
    smear become two); the diameter is estimated on the image (objects no larger than
    ``TRANSMITTED_LARGEST`` of its shortest extent) and again on what the
    opening leaves, twice, each time no larger than before (``estimate_diameter``'s
    ``max_diameter``), so that large cells do not pass for objects, and no smaller than
    the first estimate (which sees the cells) over ``TRANSMITTED_CELL_NUCLEUS``, so that
    the texture within the nuclei does not pass for them either; an estimate that gives
    back the diameter it was bounded by ends the chain (the next would see the same image).  A stain's
    deconvolution already leaves the tissue out, so its haematoxylin is used as it is
    (less its 0.5th percentile).  The contrast stays linear (no log compression: outlines
    where the signal falls off, not in its faint tail), in units of its ``TRANSMITTED_TOP``
    percentile, clipped to [0, 1].

    Parameters
    ----------
    image : array_like
        The image as given, grey or multichannel, 2D or 3D.
    channel_axis, spatial_dims : int, optional
        As for ``napari_levelset.io.prepare.prepare_image``.
    diameter : float, optional
        Expected object diameter, in the unit of ``spacing`` (pixels without it); None:
        estimated.
    spacing : sequence of float, optional
        Physical pixel (voxel) size per spatial axis.

    Returns
    -------
    prepared : napari_levelset.io.prepare.Prepared
        One channel, float32 in [0, 1], ``(B, 1, *S)``.
    diameter : float
        The diameter given or estimated (unit of ``spacing``).
    how : str
        What was done, for the run's record.

    Raises
    ------
    InputError
        For a bad image, or a ``spacing`` or ``diameter`` that asks for more than the
        image holds (``napari_levelset.post.instances.check_scale``).
    """
    signal, how = transmitted_signal(image, channel_axis, spatial_dims)
    prepared = prepare_image(signal, None, spatial_dims)
    data = prepared.data
    shape = data.shape[2:]
    sp = _spacing(spacing, len(shape), shape)
    x0 = data[0, 0]
    remove = how.startswith("inverted")

    def removed(x: np.ndarray, d: float) -> np.ndarray:  # the light field and the cytoplasm taken away
        return np.maximum(x - _background(x, np.maximum(3.0, BACKGROUND_DIAMETERS * float(d) / sp)), 0.0)

    first = None  # (diameter, what the removal leaves of x0) where the estimates made it already
    if diameter is not None:
        d = _check_diameter(diameter, shape, sp)
    else:
        d = estimate_diameter(x0, spacing, largest=TRANSMITTED_LARGEST if remove else None)
        if remove:
            floor = d / TRANSMITTED_CELL_NUCLEUS
            for _ in range(2):
                r = removed(x0, d)
                new = max(estimate_diameter(r, spacing, max_diameter=d), floor)
                first = (d, r)
                if abs(new - d) <= 1e-6 * d:  # the same diameter: the next estimate would see the same image
                    break
                d = new
        d = min(float(d), MAX_DIAMETER_EXTENTS * float((np.asarray(shape) * sp).min()))
    out = np.empty_like(data)
    for b in range(data.shape[0]):
        x = data[b, 0]
        if remove:
            r = first[1] if b == 0 and first is not None and first[0] == d else removed(x, d)
        else:
            r = x - float(np.percentile(x, 0.5))
        top = float(np.percentile(r, TRANSMITTED_TOP))
        out[b, 0] = np.clip(r / top, 0.0, 1.0) if top > 0 else 0.0
    how += ", background (cytoplasm) removed" if remove else ""
    return replace(prepared, data=out), float(d), how + ", linear contrast"


def linear_signal(data: np.ndarray, diameter: float, spacing: Sequence[float] | None = None) -> np.ndarray:
    """The background-removed, uncompressed signal of ``fluorescence_contrast``.

    ``max(x - b, 0)`` of the channel mean ``x`` (``b``: the same grey opening over
    ``BACKGROUND_DIAMETERS`` diameters), smoothed with a Gaussian of ``NOISE_BLUR`` pixels
    so that outlines drawn on it do not follow the pixel noise.

    Parameters
    ----------
    data : ndarray, shape (B, C, *S)
        The prepared image (``Prepared.data``) before the fluorescence contrast.
    diameter : float
        Expected object diameter, in the unit of ``spacing`` (pixels without it).
    spacing : sequence of float, optional
        Physical pixel (voxel) size per spatial axis.

    Returns
    -------
    ndarray of float32, shape (B, *S)
        The linear signal per batch item.

    Raises
    ------
    InputError
        When ``spacing`` is not one positive number per spatial axis.
    """
    from scipy import ndimage

    data = np.asarray(data, dtype=np.float32)
    nd = data.ndim - 2
    sp = _spacing(spacing, nd)
    window = np.maximum(3.0, BACKGROUND_DIAMETERS * float(diameter) / sp)
    out = np.empty((data.shape[0],) + data.shape[2:], np.float32)
    for b in range(data.shape[0]):
        x = data[b].mean(0)
        out[b] = ndimage.gaussian_filter(np.maximum(x - _background(x, window), 0.0), NOISE_BLUR)
    return out


def outline_on_linear(
    labels: np.ndarray,
    signal: np.ndarray,
    diameter: float,
    spacing: Sequence[float] | None = None,
    fraction: float | None = None,
    grow: float = 0.0,
    min_region: float | None = None,
) -> np.ndarray:
    """Objects found on the log contrast, outlined on the linear signal (2D or 3D).

    Each object is kept where ``signal`` exceeds ``s0 + fraction (peak - s0)``, with ``peak``
    the ``OUTLINE_PEAK`` percentile of the signal inside the object and ``s0`` the median
    of the background pixels (no object) within a quarter diameter around it: the log
    contrast finds faint objects but widens every outline into the signal's faint tail.
    Holes are filled.  Pieces the threshold separates become objects of their own when at
    least ``min_region`` large (``SPLIT_PIECES``), else the largest piece is kept; objects
    under ``min_region`` are left out.

    Parameters
    ----------
    labels : ndarray of int, shape (*S)
        Objects 1..K, 0 background.
    signal : ndarray of float, shape (*S)
        The linear signal (``linear_signal``, one batch item).
    diameter : float
        Expected object diameter, in the unit of ``spacing`` (pixels without it).
    spacing : sequence of float, optional
        Physical pixel (voxel) size per spatial axis.
    fraction : float, optional
        Where the outline lies between ``s0`` and ``peak``; default ``OUTLINE_FRACTION``
        (0 or less: ``labels`` returned as they are).
    grow : float
        Diameters by which an object may also grow into the background around it.
    min_region : float, optional
        Smallest object kept, in pixels (voxels); None: no object is left out for its size.

    Returns
    -------
    ndarray, ``labels``' shape and dtype
        Objects renumbered 1..K', 0 background.

    Raises
    ------
    InputError
        When ``spacing`` is not one positive number per spatial axis.
    """
    from scipy import ndimage

    f = OUTLINE_FRACTION if fraction is None else float(fraction)
    lab = np.asarray(labels)
    if lab.max() == 0 or f <= 0:
        return lab
    d_px = float(diameter) / _spacing(spacing, lab.ndim)
    margin = np.maximum(2, np.round(0.25 * d_px)).astype(int)
    region = lab
    if grow > 0:
        from skimage.segmentation import expand_labels

        region = expand_labels(lab, distance=float(grow * d_px.min()))
    out = np.zeros_like(lab)
    nxt = 0
    for i, sl in enumerate(ndimage.find_objects(region), start=1):
        if sl is None:
            continue
        big = tuple(slice(max(0, s.start - m), min(n, s.stop + m)) for s, m, n in zip(sl, margin, lab.shape))
        own = lab[big] == i
        if not own.any():
            continue
        sig = signal[big]
        bg = (lab[big] == 0) & (region[big] == 0) if grow > 0 else lab[big] == 0
        s0 = float(np.median(sig[bg])) if bg.sum() >= 8 else 0.0
        peak = float(np.percentile(sig[own], OUTLINE_PEAK))
        view = out[big]
        if peak <= s0:
            nxt += 1
            view[own & (view == 0)] = nxt
            continue
        keep = ndimage.binary_fill_holes((region[big] == i) & (sig > s0 + f * (peak - s0)))
        nxt = _place_pieces(view, keep, nxt, min_region)
    return _drop_and_renumber(out, min_region, out.dtype)


def _place_pieces(view: np.ndarray, keep: np.ndarray, nxt: int, min_region: float | None) -> int:
    """Write the pieces of ``keep`` into the free pixels of ``view`` as ids after ``nxt``; the last id used.

    Several pieces: each at least ``min_region`` large is an object (the largest alone
    where none is) with ``SPLIT_PIECES``, else the largest piece is the object."""
    from scipy import ndimage

    comp, n = ndimage.label(keep)
    if n > 1:
        sizes = np.bincount(comp.ravel())
        sizes[0] = 0
        if SPLIT_PIECES:  # pieces the linear signal separates are objects of their own when large enough
            big_enough = np.flatnonzero(sizes >= (min_region or 0.0))
            if big_enough.size == 0:
                big_enough = np.array([int(np.argmax(sizes))])
            for k in big_enough:
                nxt += 1
                view[(comp == k) & (view == 0)] = nxt
            return nxt
        keep = comp == int(np.argmax(sizes))  # the piece that holds most of the object
    nxt += 1
    view[keep & (view == 0)] = nxt
    return nxt


def outlines_on_linear(
    labels: np.ndarray,
    linear: np.ndarray,
    diameter: float,
    spacing: Sequence[float] | None = None,
    min_region: float | None = None,
) -> np.ndarray:
    """``outline_on_linear`` per batch item of ``labels``; ids stay unique over the stack.

    Parameters
    ----------
    labels : ndarray of int
        Instances, the image's non-channel shape (batch axes, then ``linear``'s spatial axes).
    linear : ndarray of float, shape (B, *S)
        The linear signal (``linear_signal``), B the number of batch items of ``labels``.
    diameter : float
        Expected object diameter, in the unit of ``spacing`` (pixels without it).
    spacing : sequence of float, optional
        Physical pixel (voxel) size per spatial axis.
    min_region : float, optional
        Smallest object kept, in pixels (voxels); None: ``MIN_OBJECT`` of the area
        (volume) of a disc (ball) of ``diameter``.

    Returns
    -------
    ndarray
        ``labels``' shape and dtype: 0 background, ids 1..K over the whole stack.

    Raises
    ------
    InputError
        When ``spacing`` is not one positive number per spatial axis.
    """
    shape = labels.shape
    nd = linear.ndim - 1
    spacing = as_spacing(spacing, nd)
    lab = labels.reshape((-1,) + shape[len(shape) - nd :])
    if min_region is None:
        min_region = _default_min_region(
            float(diameter) / (np.ones(nd) if spacing is None else np.asarray(spacing, float))
        )
    items = (
        outline_on_linear(item, signal, diameter, spacing, min_region=min_region) for item, signal in zip(lab, linear)
    )
    return _number_items(np.empty_like(lab), items).reshape(shape)
