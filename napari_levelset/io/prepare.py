"""Images ready for the network: axes reordered, each channel normalised (or CIELAB).

:func:`prepare_image` checks an array, reads its axes (see
:mod:`napari_levelset.io.axes`) and returns a :class:`Prepared` ``(B, C, *S)``
float32 array; :func:`join_channels` makes one array of several channels.

Normalisation
-------------
One rule for every channel, whatever the dtype or layout: the channel is
mapped linearly so that ``lo`` goes to 0 and ``hi`` to 1, then clipped to
[0, 1], where ``lo`` is its 0.5th percentile and ``hi`` the larger of its
99.5th percentile and the brightest value that a structure at least 3 pixels
across reaches (the maximum of its 3-pixel minimum filter along the spatial
axes).  A few hot pixels or thin lines do not squash the contrast of
everything else, and a few small bright objects (nuclei, spots: under 0.5 %
of the pixels) are not clipped to the level of the brightest noise.  Where
``hi <= lo`` (a sparse image) the channel's min and max are used instead; a
channel that is constant becomes 0.  The result depends on the values only:
they are computed in float32 where every value is a float32 number (uint8,
uint16, and float copies of them alike), else in float64, scaled by a power of
two first where they could overflow, so uint16 data and a float32 or float64
copy of them prepare identically.  RGB images in CIELAB (``to_lab``) follow
the same principle: whole non-negative values are read by the bits their
largest value needs (8-bit data in any type, 12- or 16-bit data), and other
values by the rule above, over all three channels together.  Booleans become
0/1.  NaN or infinite values, an empty array, or an image where every channel
is constant are errors.

Errors in the input (shape, dtype, values) raise :class:`~napari_levelset.errors.InputError`,
whose message is meant for the user.

Notes
-----
Numpy only; CIELAB is ``skimage.color.rgb2lab`` (D65 white point), imported when used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_levelset.errors import InputError
from napari_levelset.io.axes import infer_axes

__all__ = ["MAX_COLOUR_BITS", "Prepared", "join_channels", "normalize", "prepare_image", "to_lab"]


@dataclass
class Prepared:
    """An image ready for the network (made by :func:`prepare_image`).

    Parameters
    ----------
    data : numpy.ndarray
        float32 ``(B, C, *S)``, C-contiguous.
    batch_shape : tuple of int
        The shape of the batch axes (``()`` when there are none, then ``B == 1``);
        ``B == prod(batch_shape)``.
    spatial_shape : tuple of int
        ``S``, 2 or 3 axes.
    channel_axis : int or None
        The input's channel axis, non-negative (None: no channel axis).
    rgb : bool
        True for an RGB(A) picture: 3 channels on the last axis, or 4 when the channel
        axis was guessed (then alpha is dropped and ``data`` holds 3).
    color : str
        The preparation used: ``rgb`` (channels normalised one by one) or ``lab`` (CIELAB).
    """

    data: np.ndarray
    batch_shape: tuple[int, ...]
    spatial_shape: tuple[int, ...]
    channel_axis: int | None
    rgb: bool = False
    color: str = "rgb"

    @property
    def out_shape(self) -> tuple[int, ...]:
        """Shape of a label image for this input (input shape minus channels): ``batch_shape + spatial_shape``."""
        return self.batch_shape + self.spatial_shape

    def to_output(self, labels: np.ndarray) -> np.ndarray:
        """Reshape ``(B, *S)`` labels to the input's non-channel shape.

        Parameters
        ----------
        labels : numpy.ndarray
            ``(B, *S)``, any dtype.

        Returns
        -------
        numpy.ndarray
            ``out_shape``, the same dtype (a view where numpy can make one).
        """
        return labels.reshape(self.out_shape)

    def to_batch(self, labels: np.ndarray) -> np.ndarray:
        """Reshape labels of the input's non-channel shape to ``(B, *S)``.

        Parameters
        ----------
        labels : array-like
            ``out_shape`` (e.g. scribbles drawn on the input), any dtype.

        Returns
        -------
        numpy.ndarray
            ``(B, *S)``, the same dtype.

        Raises
        ------
        InputError
            When ``labels`` does not have the shape ``out_shape``.
        """
        labels = np.asarray(labels)
        if labels.shape != self.out_shape:
            raise InputError(f"scribbles have shape {labels.shape}, but the image needs {self.out_shape}")
        return labels.reshape((-1,) + self.spatial_shape)


def prepare_image(
    image,
    channel_axis: int | None = None,
    spatial_dims: int | None = None,
    normalize: bool = True,
    color: str = "rgb",
    structures: bool = True,
) -> Prepared:
    """Check, reorder and normalise ``image`` into ``(B, C, *S)`` float32.

    ``color="lab"`` turns a 3-channel (RGB) image into CIELAB (see ``to_lab``)
    instead of normalising each channel on its own; ``color="auto"`` does so
    for RGB(A) images (see ``Prepared.rgb``) and normalises each channel of
    any other image.  A guessed RGBA image loses its alpha in every mode; with
    ``channel_axis`` given, every channel is used.

    Parameters
    ----------
    image : array-like
        Any real numeric or bool array with 2 or 3 spatial axes, an optional channel axis
        and leading batch axes (see "Axes" in :mod:`napari_levelset.io.axes`).
    channel_axis : int or None
        The channel axis (None: guessed, napari's RGB(A) rule).
    spatial_dims : int or None
        2 or 3 trailing non-channel axes segmented together (None: all of them, at most 3).
    normalize : bool
        Normalise each channel (the module's rule); False: the values as float32.
    color : {"rgb", "lab", "auto"}
        ``rgb``: channels normalised one by one; ``lab``: CIELAB (see :func:`to_lab`, needs
        3 channels); ``auto``: ``lab`` for RGB(A) pictures, else ``rgb``.
    structures : bool
        See :func:`normalize`.

    Returns
    -------
    Prepared
        ``data`` float32 ``(B, C, *S)``, with the batch and spatial shapes.

    Raises
    ------
    InputError
        When the image is empty, not numeric, complex, holds NaN or infinite values, has
        under 2 pixels, is constant, its axes cannot be told (see :func:`infer_axes`), or
        ``color`` is unknown or ``lab`` without 3 channels.

    Examples
    --------
    >>> import numpy as np
    >>> p = prepare_image(np.random.rand(4, 64, 64), spatial_dims=2)  # 4 slices
    >>> p.data.shape, p.batch_shape, p.spatial_shape
    ((4, 1, 64, 64), (4,), (64, 64))
    >>> rgb = np.random.randint(0, 256, (32, 32, 3), dtype=np.uint8)
    >>> prepare_image(rgb, color="auto").color
    'lab'
    """
    arr = np.asarray(image)
    if arr.size == 0:
        raise InputError(f"the image is empty (shape {arr.shape})")
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if not (np.issubdtype(arr.dtype, np.number)):
        raise InputError(f"unsupported image dtype {arr.dtype}")
    if np.iscomplexobj(arr):
        raise InputError("complex images are not supported")
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        raise InputError("the image contains NaN or infinite values")
    ch_ax, sdims = infer_axes(arr.shape, channel_axis, spatial_dims)
    # RGB(A): 3 channels last, or 4 when the channel axis was guessed (napari's RGBA rule, alpha
    # dropped); a channel axis given explicitly keeps every channel it holds
    guessed = channel_axis is None and ch_ax is not None
    last = ch_ax is not None and ch_ax == arr.ndim - 1
    rgb = last and (arr.shape[-1] == 3 or (guessed and arr.shape[-1] == 4))
    if ch_ax is None:
        arr = arr[np.newaxis]
    else:
        arr = np.moveaxis(arr, ch_ax, 0)
    if rgb:
        arr = arr[:3]
    spatial = arr.shape[arr.ndim - sdims :]
    batch = arr.shape[1 : arr.ndim - sdims]
    if int(np.prod(spatial)) < 2:
        raise InputError(f"the image has {int(np.prod(spatial))} pixel(s): there is nothing to segment")
    if color == "auto":
        color = "lab" if rgb else "rgb"
    if color == "lab":
        if arr.shape[0] != 3:
            hint = (
                " (an explicit channel_axis keeps all of them; leave it unset to read a last axis of 4 as RGBA)"
                if arr.shape[0] == 4
                else ""
            )
            raise InputError(f"color='lab' needs an RGB image (3 channels), this one has {arr.shape[0]}{hint}")
        data = to_lab(arr, spatial_dims=sdims, structures=structures)
        if np.ptp(data.reshape(data.shape[0], -1), axis=1).max() == 0:
            raise InputError("the image is constant: there is nothing to segment")
    elif color != "rgb":
        raise InputError(f"color must be 'auto', 'rgb' or 'lab', got {color!r}")
    else:
        data = _normalize(arr, spatial_dims=sdims, structures=structures) if normalize else arr.astype(np.float32)
    # (C, *batch, *S) -> (B, C, *S)
    data = data.reshape((data.shape[0], -1) + spatial)
    data = np.ascontiguousarray(np.swapaxes(data, 0, 1))
    return Prepared(
        data=data, batch_shape=tuple(batch), spatial_shape=tuple(spatial), channel_axis=ch_ax, rgb=rgb, color=color
    )


def normalize(
    data: np.ndarray, pmin: float = 0.5, pmax: float = 99.5, spatial_dims: int | None = None, structures: bool = True
) -> np.ndarray:
    """Per-channel normalisation of ``(C, ...)`` data to float32 in [0, 1] (the module's rule).

    ``spatial_dims``: how many trailing axes are spatial (default: all but the
    first); the brightest structure is looked for along those axes only.
    ``structures=False`` leaves the brightest structure out of ``hi`` (the
    99.5th percentile alone, clipping small bright objects: the rule before,
    with which the shipped U-Net was trained).

    Parameters
    ----------
    data : numpy.ndarray
        ``(C, ...)``, any real numeric or bool dtype.
    pmin : float
        Percentile (0..100) mapped to 0.
    pmax : float
        Percentile (0..100) mapped to 1 (or the brightest structure, when higher).
    spatial_dims : int or None
        How many trailing axes are spatial (default: all but the first); the brightest
        structure is looked for along those axes only.
    structures : bool
        Let a structure at least 3 pixels across raise ``hi`` above the ``pmax`` percentile.

    Returns
    -------
    numpy.ndarray
        float32, ``data.shape``, values in [0, 1]; a constant channel is 0.

    Raises
    ------
    InputError
        When every channel is constant.

    Examples
    --------
    >>> import numpy as np
    >>> out = normalize(np.arange(100, dtype=np.uint16).reshape(1, 10, 10))
    >>> out.dtype, float(out.min()), float(out.max())
    (dtype('float32'), 0.0, 1.0)
    """
    data = np.asarray(data)
    spatial_dims = data.ndim - 1 if spatial_dims is None else int(spatial_dims)
    out = np.empty(data.shape, dtype=np.float32)
    any_varies = False
    for ci, ch in enumerate(data):
        x = _fit_range(_working_copy(ch))
        lo, hi = _value_range(x, spatial_dims, pmin, pmax, structures)
        if hi <= lo:
            out[ci] = 0.0
            continue
        any_varies = True
        _map_range(x, lo, hi, out[ci])
    if not any_varies:
        raise InputError("the image is constant: there is nothing to segment")
    return out


def _working_copy(values: np.ndarray) -> np.ndarray:
    """``values`` as floats, exactly: float32 where every value is a float32 number, else float64.

    The choice depends on the values, not on the dtype, so that uint16 data and
    a float32 or float64 copy of them are computed with the same arithmetic.
    """
    a = np.asarray(values)
    if a.dtype == bool or (a.dtype.kind in "iu" and a.dtype.itemsize <= 2) or a.dtype in (np.float16, np.float32):
        return a.astype(np.float32)
    if a.dtype.kind in "iu" and a.size and a.min() >= -(2**24) and a.max() <= 2**24:
        return a.astype(np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        a32 = a.astype(np.float32)  # values beyond float32 become inf here, and differ
        return a32 if np.array_equal(a32, a) else a.astype(np.float64)


def _fit_range(x: np.ndarray) -> np.ndarray:
    """``x`` divided by a power of two (exactly) if its largest magnitude could overflow a difference."""
    big = max(-float(x.min()), float(x.max()))
    if big > np.finfo(x.dtype).max / 4:
        return np.ldexp(x, -int(np.frexp(big)[1])).astype(x.dtype, copy=False)
    return x


def _structure_max(x: np.ndarray, spatial_dims: int) -> float:
    """Brightest value a structure at least 3 pixels across (along every spatial axis) reaches.

    The maximum over ``x`` of its minimum filter of size 3 along the last
    ``spatial_dims`` axes (1 along the others): a hot pixel or a line one or two
    pixels wide does not count, an object 3 pixels across does.  An axis
    shorter than 3 takes its minimum over the whole axis.
    """
    y = x
    for ax in range(x.ndim - spatial_dims, x.ndim):
        n = y.shape[ax]
        if n < 3:
            y = y.min(axis=ax, keepdims=True)
            continue
        first = [slice(None)] * y.ndim
        mid, last = list(first), list(first)
        first[ax], mid[ax], last[ax] = slice(0, n - 2), slice(1, n - 1), slice(2, n)
        y = np.minimum(np.minimum(y[tuple(first)], y[tuple(mid)]), y[tuple(last)])
    return float(y.max())


def _value_range(
    x: np.ndarray, spatial_dims: int, pmin: float, pmax: float, structures: bool = True
) -> tuple[float, float]:
    """``(lo, hi)`` of the module's rule for the working copy ``x`` (all its values together)."""
    if x.size > 1:
        lo, hi = (float(v) for v in np.percentile(x, [pmin, pmax]))
    else:
        lo = hi = float(x.min())
    if structures:
        hi = max(hi, _structure_max(x, spatial_dims))
    if hi <= lo:
        lo, hi = float(x.min()), float(x.max())
    return lo, hi


def _map_range(x: np.ndarray, lo: float, hi: float, out: np.ndarray) -> None:
    """``out[...] = clip((x - lo) / (hi - lo), 0, 1)`` in ``x``'s precision."""
    t = np.subtract(x, x.dtype.type(lo))
    den = x.dtype.type(hi) - x.dtype.type(lo)  # 0 only where hi and lo round to one float32: a step
    t /= den if den > 0 else np.finfo(x.dtype).tiny
    np.clip(t, 0.0, 1.0, out=t)
    out[...] = t


#: The most bits whole non-negative colour values are read by (more: mapped by their range).
MAX_COLOUR_BITS = 32


_normalize = normalize  # for prepare_image, whose flag of the same name hides the function


def to_lab(rgb: np.ndarray, spatial_dims: int | None = None, structures: bool = True) -> np.ndarray:
    """``(3, ...)`` RGB (any range) to CIELAB scaled by 1/100, shape ``(3, ...)``.

    Whole non-negative values (of any dtype) are read as 0..2**bits - 1, with
    the bits their largest value needs (at least 8: 8-bit data in a wider type,
    12- or 16-bit data; at most ``MAX_COLOUR_BITS``); other values are mapped
    jointly (all channels together, keeping the colour balance) by the
    module's rule.  ``spatial_dims`` and ``structures`` as for ``normalize``.  L/100 lies in [0, 1]
    and a/100, b/100 roughly in [-1, 1], so squared distances are perceptual
    colour differences.

    Parameters
    ----------
    rgb : numpy.ndarray
        ``(3, ...)`` red, green, blue; any real dtype.
    spatial_dims : int or None
        Trailing spatial axes (default: all but the first), as for :func:`normalize`.
    structures : bool
        As for :func:`normalize` (used where values are mapped by their range).

    Returns
    -------
    numpy.ndarray
        float32 ``(3, ...)``, C-contiguous: L/100, a/100, b/100.

    Notes
    -----
    The conversion is ``skimage.color.rgb2lab`` (sRGB, D65 white point).

    Examples
    --------
    >>> import numpy as np
    >>> lab = to_lab(np.full((3, 2, 2), 255, np.uint8))  # white
    >>> lab.shape, bool(np.allclose(lab[:, 0, 0], [1.0, 0.0, 0.0], atol=1e-3))
    ((3, 2, 2), True)
    """
    from skimage.color import rgb2lab

    rgb = np.asarray(rgb)
    spatial_dims = rgb.ndim - 1 if spatial_dims is None else int(spatial_dims)
    x = _fit_range(_working_copy(rgb))
    top = float(x.max())
    if float(x.min()) >= 0 and top < 2.0**MAX_COLOUR_BITS and np.array_equal(x, np.floor(x)):
        bits = max(8, int(top).bit_length())
        x = x.astype(np.float32) / np.float32(2**bits - 1)
    else:  # one range for all three channels: the brightest structure of any of them counts
        lo, hi = _value_range(x, spatial_dims, 0.5, 99.5, structures)
        scaled = np.empty(x.shape, np.float32)
        if hi > lo:
            _map_range(x, lo, hi, scaled)
        else:
            scaled[...] = 0.0
        x = scaled
    lab = rgb2lab(np.moveaxis(x, 0, -1))
    return np.ascontiguousarray(np.moveaxis(lab, -1, 0).astype(np.float32) / 100.0)


def join_channels(image, to_grey: bool = False, join: str | None = None) -> np.ndarray:
    """One array from an image given as one array or as several same-shaped channel arrays.

    Parameters
    ----------
    image : array_like or sequence of array_like
        One image, or (with ``join``) a list of same-shaped arrays, such as napari layers
        holding one channel each.
    to_grey : bool
        Average the colour channels (the last axis, 3 or 4 long; alpha is dropped) into
        one grey channel, float32.
    join : {None, "stack", "concatenate"}
        ``"stack"``: the arrays become channels on a new first axis; ``"concatenate"``:
        they are joined along their own first (channel) axis; None: ``image`` is one array.

    Returns
    -------
    ndarray
        The joined image (its dtype; float32 after ``to_grey``).

    Raises
    ------
    InputError
        For ``to_grey`` on an array without colour channels last.
    ValueError
        For an unknown ``join``.

    Examples
    --------
    >>> import numpy as np
    >>> join_channels([np.zeros((4, 5)), np.ones((4, 5))], join="stack").shape
    (2, 4, 5)
    >>> join_channels(np.zeros((4, 5, 3), np.uint8), to_grey=True).shape
    (4, 5)
    """
    if join == "stack":
        arr = np.stack([np.asarray(a) for a in image], axis=0)
    elif join == "concatenate":
        arr = np.concatenate([np.asarray(a) for a in image], axis=0)
    elif join is None:
        arr = np.asarray(image)
    else:
        raise ValueError(f"join must be None, 'stack' or 'concatenate', got {join!r}")
    if to_grey:
        if arr.ndim < 3 or arr.shape[-1] not in (3, 4):
            raise InputError(f"'RGB -> grey' needs colour channels last, but the image has shape {arr.shape}")
        arr = arr[..., :3].astype(np.float32).mean(axis=-1)
    return arr
