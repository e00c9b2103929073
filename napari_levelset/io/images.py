"""Reading and writing images, deciding which axes are what, and normalisation.

Numpy only (scikit-image and tifffile are imported when a file is read).

Axes
----
An array is split into a channel axis (optional), *batch* axes and 2 or 3
*spatial* axes.  Batch axes are segmented slice by slice with one shared
network (so labels agree between slices); spatial axes are segmented together.

Without ``channel_axis``: a 2D array is a grey image; a 3D array whose last axis
has length 3 or 4 is RGB(A) (napari's rule), unless ``spatial_dims=3``; any
other 3D array is a grey volume; a 4D array whose last axis has length 3 or 4
is an RGB(A) volume.  ``spatial_dims`` (2 or 3) says how many trailing
non-channel axes are segmented together; leading ones become batch axes, so a
z-stack with ``spatial_dims=2`` is segmented per slice.

Alpha is dropped only when the channel axis was guessed (napari's RGBA rule):
a channel axis given explicitly uses every channel it holds, so a
``(Y, X, 4)`` image with ``channel_axis=-1`` is four channels, not RGBA.  Three
channels on the last axis are RGB either way (CIELAB with ``color="auto"``).

Files
-----
``read_image_file`` returns an ``ImageFile``: the array with its axes (T, Z, C,
Y, X; Q for an axis the file does not name) and its physical pixel size, as
ImageJ hyperstacks, OME-TIFFs and calibrated TIFFs give them; ``write_labels``
stores labels with their axes and voxel size (an ImageJ hyperstack where
ImageJ can hold the labels, else OME-XML).  ``read_image`` returns the array
only, as the file stores it.

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

Errors in the input (shape, dtype, values, file names) raise :class:`InputError`,
whose message is meant for the user.

Notes
-----
Files are read with tifffile (TIFF, ImageJ and OME metadata) and imageio / Pillow
(PNG, JPEG); CIELAB is ``skimage.color.rgb2lab`` (D65 white point).
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "InputError",
    "Prepared",
    "infer_axes",
    "normalize",
    "prepare_image",
    "to_lab",
    "read_image",
    "ImageFile",
    "read_image_file",
    "write_labels",
    "atomic_write",
    "labels_dtype",
    "join_channels",
]

TIFF_EXT = {".tif", ".tiff"}
PLAIN_EXT = {".png", ".jpg", ".jpeg", ".bmp", ".gif"}


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


def infer_axes(
    shape: tuple[int, ...], channel_axis: int | None = None, spatial_dims: int | None = None
) -> tuple[int | None, int]:
    """Return ``(channel_axis, spatial_dims)`` for an array of ``shape``.

    The module's rules (see "Axes" in the module docstring): without ``channel_axis``
    a last axis of 3 or 4 is a colour axis for a 3D array (unless ``spatial_dims=3``)
    or a 4D one; ``spatial_dims`` defaults to all non-channel axes.

    Parameters
    ----------
    shape : tuple of int
        The array's shape.
    channel_axis : int or None
        The channel axis (negative counts from the end); None: guessed.
    spatial_dims : int or None
        2 or 3 trailing non-channel axes segmented together; None: all non-channel axes.

    Returns
    -------
    channel_axis : int or None
        Non-negative, or None for no channel axis.
    spatial_dims : int
        2 or 3.

    Raises
    ------
    InputError
        When ``spatial_dims`` is not 2 or 3, ``channel_axis`` is out of range, fewer than
        2 non-channel axes remain, ``spatial_dims`` exceeds them, or more than 3 remain
        and ``spatial_dims`` is not given.

    Examples
    --------
    >>> infer_axes((512, 512, 3))
    (2, 2)
    >>> infer_axes((30, 512, 512))
    (None, 3)
    >>> infer_axes((30, 512, 512), spatial_dims=2)
    (None, 2)
    """
    ndim = len(shape)
    if spatial_dims not in (None, 2, 3):
        raise InputError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    if channel_axis is not None:
        if not -ndim <= channel_axis < ndim:
            raise InputError(f"channel_axis {channel_axis} is out of range for an image with {ndim} axes")
        channel_axis %= ndim
        rest = ndim - 1
    else:
        rest = ndim
        if ndim == 3 and shape[-1] in (3, 4) and spatial_dims != 3:
            channel_axis, rest = 2, 2
        elif ndim == 4 and shape[-1] in (3, 4):
            channel_axis, rest = 3, 3
    if rest < 2:
        raise InputError(f"need at least 2 spatial axes, got an image of shape {shape}")
    if spatial_dims is None:
        if rest > 3:
            raise InputError(
                f"cannot tell the axes of an image of shape {shape}: give channel_axis and/or spatial_dims"
            )
        spatial_dims = rest
    if spatial_dims > rest:
        raise InputError(f"spatial_dims={spatial_dims} but the image of shape {shape} has only {rest} non-channel axes")
    return channel_axis, spatial_dims


def _working_copy(values: np.ndarray) -> np.ndarray:
    """``values`` as floats, exactly: float32 where every value is a float32 number, else float64.

    The choice depends on the values, not on the dtype, so that uint16 data and
    a float32 or float64 copy of them are computed with the same arithmetic.
    """
    a = np.asarray(values)
    if a.dtype == bool or (a.dtype.kind in "iu" and a.dtype.itemsize <= 2) or a.dtype in (np.float16, np.float32):
        return a.astype(np.float32)
    if a.dtype.kind in "iu" and a.size and -(2**24) <= a.min() and a.max() <= 2**24:
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


def _value_range(x: np.ndarray, spatial_dims: int, pmin: float, pmax: float,
                 structures: bool = True) -> tuple[float, float]:
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


def normalize(data: np.ndarray, pmin: float = 0.5, pmax: float = 99.5, spatial_dims: int | None = None,
              structures: bool = True) -> np.ndarray:
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
        and leading batch axes (see "Axes" in the module docstring).
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
            hint = (" (an explicit channel_axis keeps all of them; leave it unset to read a last axis of 4 as RGBA)"
                    if arr.shape[0] == 4 else "")
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
    return Prepared(data=data, batch_shape=tuple(batch), spatial_shape=tuple(spatial), channel_axis=ch_ax, rgb=rgb,
                    color=color)


def labels_dtype(n_classes: int):
    """The smallest unsigned dtype for class labels ``0..n_classes-1``.

    Parameters
    ----------
    n_classes : int
        Number of classes.

    Returns
    -------
    type
        ``numpy.uint8`` up to 255 classes, else ``numpy.uint16``.

    Examples
    --------
    >>> labels_dtype(4).__name__, labels_dtype(300).__name__
    ('uint8', 'uint16')
    """
    return np.uint8 if n_classes <= 255 else np.uint16


#: Letters of ``ImageFile.axes``: time (and any other axis segmented slice by slice), depth,
#: channels, height, width, and Q for an axis the file does not name (pages of a plain stack).
AXES = "TZCYXQ"
#: tifffile's axis letters as ``ImageFile.axes`` has them (S, samples, becomes C; others: T).
_TIFF_AXES = {"T": "T", "Z": "Z", "C": "C", "Y": "Y", "X": "X", "S": "S", "I": "Q", "Q": "Q"}
#: Lengths in micrometres, for spacings given in mixed units.
_UM = {"pm": 1e-6, "nm": 1e-3, "µm": 1.0, "mm": 1e3, "cm": 1e4, "m": 1e6, "Å": 1e-4}
#: ImageJ stores these dtypes only (other labels fall back, see ``write_labels``).
_IMAGEJ_DTYPES = (np.uint8, np.uint16, np.float32)
_OME_DTYPES = (np.int8, np.int16, np.int32, np.uint8, np.uint16, np.uint32, np.float32, np.float64)


@dataclass
class ImageFile:
    """An image as read from a file, with what the file says about its axes and pixel size.

    ``axes`` has one letter per axis of ``data`` (see ``AXES``), non-channel
    axes ordered T/Q, Z, Y, X; a channel axis C stays where the file has it,
    except colour samples, which come last (``rgb`` is then true for an RGB(A)
    picture of 3 or 4 samples).  ``spacing`` is the physical size of a pixel
    along each spatial axis (Z, Y, X or Y, X, as in ``axes``), in ``unit``
    (``µm`` for micrometres; None when the file names no unit), or None when
    the file says nothing about it.

    Parameters
    ----------
    data : numpy.ndarray
        The pixels, as read (any dtype).
    axes : str
        One letter of ``AXES`` per axis of ``data``.
    spacing : tuple of float or None
        Physical pixel size per spatial axis (Z, Y, X or Y, X), in ``unit``.
    unit : str or None
        The unit of ``spacing`` (``µm``, ``nm``, ...), None when not named.
    rgb : bool
        True for an RGB(A) picture of 3 or 4 colour samples on the last axis.
    """

    data: np.ndarray
    axes: str
    spacing: tuple[float, ...] | None = None
    unit: str | None = None
    rgb: bool = False

    @property
    def spatial_axes(self) -> str:
        """The letters of ``axes`` among Z, Y, X, in order (e.g. ``"ZYX"``)."""
        return "".join(a for a in self.axes if a in "ZYX")

    def layout(self) -> tuple[int | None, int | None]:
        """``(channel_axis, spatial_dims)`` for ``prepare_image`` from the axes.

        C is the channel axis; Z makes 3 spatial dims, else 2; leading T axes
        are batch axes.  An RGB(A) picture gives ``channel_axis=None`` where
        napari's rule finds the same axis, so that alpha is dropped as usual;
        an axis the file does not name (Q) gives ``spatial_dims=None``: guessed
        as for an array (a plain stack is a volume).

        Returns
        -------
        channel_axis : int or None
            Index of C in ``axes``, or None.
        spatial_dims : int or None
            3 with a Z axis, else 2; None with a Q axis.

        Examples
        --------
        >>> import numpy as np
        >>> ImageFile(np.zeros((2, 5, 3, 8, 8)), "TZCYX").layout()
        (2, 3)
        """
        rest = self.axes.replace("C", "")
        spatial_dims = None if "Q" in rest else (3 if "Z" in rest else 2)
        if "C" not in self.axes:
            return None, spatial_dims
        ch = self.axes.index("C")
        if self.rgb:
            try:
                if infer_axes(self.data.shape, None, spatial_dims)[0] == ch:
                    return None, spatial_dims
            except InputError:
                pass
        return ch, spatial_dims

    def label_axes(self, channel_axis: int | None) -> str | None:
        """Axes of labels made with ``channel_axis`` (the input's without C), or None if they disagree.

        Parameters
        ----------
        channel_axis : int or None
            The channel axis the image was segmented with (non-negative).

        Returns
        -------
        str or None
            ``axes`` without C, or None when ``channel_axis`` is not the file's C axis (or
            is None while the file has one).
        """
        if channel_axis is None:
            return None if "C" in self.axes else self.axes
        if self.axes[channel_axis] != "C":
            return None
        return self.axes[:channel_axis] + self.axes[channel_axis + 1 :]

    def spacing_of(self, axes: str) -> tuple[float, ...] | None:
        """The spacing of the spatial ``axes`` (e.g. ``"YX"`` of a ``"ZYX"`` file), or None if unknown.

        Parameters
        ----------
        axes : str
            Letters among Z, Y, X.

        Returns
        -------
        tuple of float or None
            One value per letter, in ``unit``; None when the file has no spacing or lacks
            one of the axes.

        Examples
        --------
        >>> import numpy as np
        >>> ImageFile(np.zeros((4, 8, 8)), "ZYX", spacing=(2.0, 0.5, 0.5), unit="µm").spacing_of("YX")
        (0.5, 0.5)
        """
        if self.spacing is None:
            return None
        size = dict(zip(self.spatial_axes, self.spacing))
        if not axes or any(a not in size for a in axes):
            return None
        return tuple(size[a] for a in axes)


def _norm_unit(unit) -> str | None:
    """One spelling per unit (``µm`` for micrometres); None for no unit or pixels."""
    if unit is None:
        return None
    u = str(unit).strip()
    if u.lower() in ("", "pixel", "pixels", "px", "none"):
        return None
    if u.lower() in ("micron", "microns", "um", "µm", "μm", "\\u00b5m", "micrometer", "micrometre"):
        return "µm"
    if u.lower() in ("nanometer", "nanometre"):
        return "nm"
    if u in ("A", "angstrom", "\\u00c5"):
        return "Å"
    return u


def _spacing_tuple(size: dict, axes: str) -> tuple[float, ...] | None:
    spatial = [a for a in axes if a in "ZYX"]
    try:
        out = tuple(float(size[a]) for a in spatial)
    except (KeyError, TypeError, ValueError):
        return None
    if not out or not all(np.isfinite(v) and v > 0 for v in out):
        return None
    return out


def _resolution(page, tag: str) -> float | None:
    """Pixels per unit from a resolution tag, or None."""
    t = page.tags.get(tag)
    if t is None:
        return None
    try:
        num, den = t.value
        return float(num) / float(den) if num and den else None
    except (TypeError, ValueError):
        return None


def _ome_spacing(xml: str) -> tuple[dict, str | None]:
    """Physical pixel sizes ``{'X': ..}`` of the first image of OME-XML, converted to one unit."""
    import xml.etree.ElementTree as ET

    root = ET.fromstring(xml)
    pixels = next((el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Pixels"), None)
    if pixels is None:
        return {}, None
    size, units = {}, {}
    for a in "XYZ":
        v = pixels.get(f"PhysicalSize{a}")
        if v is not None:
            size[a] = float(v)
            units[a] = _norm_unit(pixels.get(f"PhysicalSize{a}Unit", "µm"))
    found = set(units.values())
    if len(found) > 1:  # mixed units: all in micrometres where known
        if not all(u in _UM for u in found):
            return {}, None
        return {a: v * _UM[units[a]] for a, v in size.items()}, "µm"
    return size, (found.pop() if found else None)


def _read_tiff(p: Path) -> ImageFile:
    import tifffile

    with tifffile.TiffFile(p) as tif:
        series = tif.series[0]
        data = np.asarray(series.asarray())
        raw_axes = series.axes
        page = tif.pages[0]
        photometric = getattr(page, "photometric", None)
        size: dict = {}
        unit = None
        if tif.is_imagej:
            ij = tif.imagej_metadata or {}
            unit = _norm_unit(ij.get("unit"))
            x, y = _resolution(page, "XResolution"), _resolution(page, "YResolution")
            z = ij.get("spacing")
            calibrated = unit is not None or any(v not in (None, 1.0) for v in (x, y, z))
            if calibrated and x and y:
                size = {"X": 1.0 / x, "Y": 1.0 / y, "Z": float(z) if z else 1.0}  # ImageJ's default depth: 1
        elif tif.is_ome:
            size, unit = _ome_spacing(tif.ome_metadata)
        elif tif.is_shaped and tif.shaped_metadata and "spacing" in tif.shaped_metadata[0]:
            meta = tif.shaped_metadata[0]
            spatial = [a for a in raw_axes if a in "ZYX"]
            if len(meta["spacing"]) == len(spatial):
                size = dict(zip(spatial, meta["spacing"]))
                unit = _norm_unit(meta.get("unit"))
        if not size:  # a plain TIFF: its resolution tags, when they name a length (not inches: 72 dpi by default)
            res_unit = page.tags.get("ResolutionUnit")
            per_um = {tifffile.RESUNIT.CENTIMETER: 1e-4, tifffile.RESUNIT.MILLIMETER: 1e-3,
                      tifffile.RESUNIT.MICROMETER: 1.0}.get(None if res_unit is None else res_unit.value)
            x, y = _resolution(page, "XResolution"), _resolution(page, "YResolution")
            if per_um and x and y:
                size, unit = {"X": 1.0 / (x * per_um), "Y": 1.0 / (y * per_um)}, "µm"
    axes = "".join(_TIFF_AXES.get(a, "T") for a in raw_axes)
    rgb = False
    if "S" in axes:  # colour samples: a channel axis, last (with a C axis too, the two become one)
        s = axes.index("S")
        if "C" in axes:
            c = axes.index("C")
            order = [i for i in range(len(axes)) if i not in (c, s)] + [c, s]
            data = np.transpose(data, order)
            data = data.reshape(data.shape[:-2] + (-1,))
            axes = "".join(axes[i] for i in order[:-2]) + "C"
        else:
            data = np.moveaxis(data, s, -1)
            axes = axes[:s] + axes[s + 1 :] + "C"
            rgb = data.shape[-1] in (3, 4) and photometric in (tifffile.PHOTOMETRIC.RGB, tifffile.PHOTOMETRIC.YCBCR)
    # non-channel axes in the order T/Q, Z, Y, X (C keeps its place)
    rank = {"T": 0, "Q": 0, "Z": 1, "Y": 2, "X": 3}
    slots = [i for i, a in enumerate(axes) if a != "C"]
    ranked = sorted(slots, key=lambda i: rank[axes[i]])
    if ranked != slots:
        order = list(range(len(axes)))
        for slot, i in zip(slots, ranked):
            order[slot] = i
        data = np.transpose(data, order)
        axes = "".join(axes[i] for i in order)
    spacing = _spacing_tuple(size, axes) if size else None
    return ImageFile(data=data, axes=axes, spacing=spacing, unit=unit if spacing else None, rgb=rgb)


def _plain_axes(arr: np.ndarray) -> tuple[str, bool]:
    rgb = arr.ndim in (3, 4) and arr.shape[-1] in (3, 4)
    if rgb:
        return ("Q" if arr.ndim == 4 else "") + "YXC", True
    return "Q" * (arr.ndim - 2) + "YX", False


def _reading(p: Path, read):
    if not p.exists():
        raise InputError(f"no such file: {p}")
    if p.is_dir():
        raise InputError(f"{p} is a directory, not an image file")
    try:
        return read()
    except InputError:
        raise
    except Exception as exc:  # any decoder error means: not an image we can read
        detail = (str(exc).strip().splitlines() or [""])[0]
        raise InputError(f"cannot read {p} as an image ({exc.__class__.__name__}: {detail})") from None


def _read_plain(p: Path) -> np.ndarray:
    import imageio.v3 as iio

    arr = np.asarray(iio.imread(p))
    return arr[..., 0] if arr.ndim == 3 and arr.shape[-1] == 2 else arr  # grey + alpha


def read_image(path: str | os.PathLike, labels: bool = False) -> np.ndarray:
    """Read a PNG/JPEG/TIFF (2D, RGB or a 3D stack) into a numpy array, as the file stores it.

    Grey-with-alpha PNGs lose their alpha.  ``read_image_file`` also returns the axes
    and the pixel size.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.tif``/``.tiff`` (``tifffile.imread``) or a file imageio reads (PNG, JPEG, ...).
    labels : bool
        Read a palette (indexed) PNG as its indices, the way label images are stored, not
        as colours.

    Returns
    -------
    numpy.ndarray
        The pixels in the file's dtype and axis order (RGB(A) last).

    Raises
    ------
    InputError
        When the file does not exist, is a directory, or cannot be decoded as an image.

    Examples
    --------
    >>> from napari_levelset.napari._sample_data import sample_path
    >>> read_image(sample_path("coins.tif")).shape
    (303, 384)
    """
    p = Path(path)

    def read():
        if p.suffix.lower() in TIFF_EXT:
            import tifffile

            return np.asarray(tifffile.imread(p))
        if labels and p.suffix.lower() == ".png":
            from PIL import Image

            with Image.open(p) as im:
                if im.mode == "P":
                    return np.asarray(im)
        return _read_plain(p)

    return _reading(p, read)


def read_image_file(path: str | os.PathLike) -> ImageFile:
    """Read an image file with its axes and physical pixel size (see ``ImageFile``).

    TIFF (tifffile, with imagecodecs for LZW, deflate, zstd or JPEG
    compression): the first series, its axes as tifffile names them; the pixel
    size from ImageJ's metadata (X/YResolution and ``spacing``, ``unit``), an
    OME-TIFF's PhysicalSizeX/Y/Z, the metadata ``write_labels`` stores, or else
    the resolution tags when their unit is a length (centimetre: micrometres
    then; inch resolutions, 72 dpi by default in most software, are ignored).
    PNG/JPEG: YX or YXC (RGB(A)), no pixel size.

    Parameters
    ----------
    path : str or os.PathLike
        The file.

    Returns
    -------
    ImageFile
        The data with its axes (non-channel axes ordered T/Q, Z, Y, X), spacing and unit.

    Raises
    ------
    InputError
        When the file does not exist, is a directory, or cannot be decoded as an image.

    Examples
    --------
    >>> from napari_levelset.napari._sample_data import sample_path
    >>> f = read_image_file(sample_path("blobs3d.tif"))
    >>> f.data.shape, f.axes
    ((64, 64, 64), 'QYX')
    """
    p = Path(path)

    def read():
        if p.suffix.lower() in TIFF_EXT:
            return _read_tiff(p)
        arr = _read_plain(p)
        axes, rgb = _plain_axes(arr)
        return ImageFile(data=arr, axes=axes, rgb=rgb)

    return _reading(p, read)


def _check_axes(axes: str | None, ndim: int, spacing) -> str:
    if axes is None:  # spatial axes by the spacing's length (2 without one), the others unnamed
        n = min(ndim, len(spacing) if spacing is not None else 2)
        return "Q" * (ndim - n) + "ZYX"[3 - n :]
    axes = str(axes).upper()
    if len(axes) != ndim or any(a not in AXES for a in axes):
        raise InputError(f"axes {axes!r} do not fit labels with {ndim} axes (letters: {AXES})")
    if axes[-2:] != "YX":
        raise InputError(f"axes {axes!r} must end in YX")
    return axes


def write_labels(path: str | os.PathLike, labels: np.ndarray, axes: str | None = None,
                 spacing=None, unit: str | None = None) -> Path:
    """Write a label image (TIFF or PNG by extension) atomically.

    The data go to a temporary file in the same folder that is renamed over
    ``path`` only when complete, so a failure never leaves a half-written file.

    ``axes`` (letters of ``AXES``, ending in YX), ``spacing`` (one value per
    Z, Y, X axis) and ``unit`` go into a TIFF as an ImageJ hyperstack (axes,
    voxel size and unit, as Fiji reads them), for labels that ImageJ can hold:
    uint8, uint16, float32, or whole values 0..65535 of any type (stored as
    uint16).  Other labels (region ids beyond 65535, negative values) and axes
    ImageJ cannot name (Q, a repeated letter) are written as a plain TIFF with
    the metadata as OME-XML (which Fiji's Bio-Formats reads), or, for axes or
    dtypes (64-bit integers) OME cannot hold either, as tifffile's JSON
    description (with the X/Y pixel size in the resolution tags too);
    ``read_image_file`` reads all three back.
    Without any of the three a TIFF is written as before (no metadata).  A PNG
    stores the labels only.

    Parameters
    ----------
    path : str or os.PathLike
        Ends in ``.tif``, ``.tiff`` or ``.png``; its folder must exist.
    labels : numpy.ndarray
        Integer (or bool, float) labels; 2D for a PNG (ids up to 65535).
    axes : str or None
        One letter of ``AXES`` per axis, ending in YX (None: from the spacing's length).
    spacing : sequence of float or None
        Physical size of a pixel along each Z, Y, X axis in ``axes`` (positive, in ``unit``).
    unit : str or None
        The unit of ``spacing`` (``µm``, ``nm``, ...; None: none named).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    InputError
        When the extension is not ``.tif``/``.tiff``/``.png``, a PNG gets labels that are
        not 2D or go beyond 0..65535, ``axes`` or ``spacing`` do not fit the labels, or the
        folder does not exist.
    OSError
        When the file cannot be written (the old file is then left as it was).

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> out = os.path.join(tempfile.mkdtemp(), "labels.tif")
    >>> _ = write_labels(out, np.ones((4, 8, 8), np.uint16), axes="ZYX", spacing=(2.0, 0.5, 0.5), unit="µm")
    >>> f = read_image_file(out)
    >>> f.axes, f.spacing, f.unit
    ('ZYX', (2.0, 0.5, 0.5), 'µm')
    """
    p = Path(path)
    ext = p.suffix.lower()
    labels = np.asarray(labels)
    if ext not in TIFF_EXT | {".png"}:
        raise InputError(f"output must end in .tif, .tiff or .png, got {p.name!r}")
    if ext == ".png" and labels.ndim != 2:
        raise InputError(f"PNG holds 2D labels only; these have shape {labels.shape}: write a .tif instead")
    if ext in TIFF_EXT:
        import tifffile

        if axes is None and spacing is None and unit is None:
            # minisblack: labels of a 3- or 4-slice stack are not an RGB(A) picture
            return atomic_write(p, lambda tmp: tifffile.imwrite(tmp, labels, photometric="minisblack"))
        return atomic_write(p, _tiff_writer(labels, axes, spacing, unit))
    if labels.dtype.itemsize > 2:  # region ids (uint32): PNG holds 16 bits
        if labels.size and (labels.min() < 0 or labels.max() > 65535):
            raise InputError(f"PNG holds labels up to 65535; these go up to {labels.max()}: write a .tif instead")
        labels = labels.astype(np.uint16)
    import imageio.v3 as iio

    # encoded in memory, then written with a file object closed here: imageio's own file, on a full disk,
    # failed again when its destructor closed it (an "Exception ignored" traceback after the error)
    data = iio.imwrite("<bytes>", labels, extension=".png")
    return atomic_write(p, lambda tmp: _write_bytes(tmp, data))


def _write_bytes(path: str, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)


def _tiff_writer(labels: np.ndarray, axes, spacing, unit):
    """A ``write(tmp)`` for ``atomic_write`` that stores ``labels`` with their metadata (see ``write_labels``)."""
    import tifffile

    axes = _check_axes(axes, labels.ndim, spacing)
    spatial = "".join(a for a in axes if a in "ZYX")
    if spacing is not None:
        spacing = tuple(float(v) for v in np.ravel(spacing))
        if len(spacing) != len(spatial) or not all(np.isfinite(v) and v > 0 for v in spacing):
            raise InputError(f"spacing must be {len(spatial)} positive numbers (one per axis of {spatial!r}), "
                             f"got {spacing}")
    size = dict(zip(spatial, spacing)) if spacing is not None else {}
    unit = _norm_unit(unit)
    data = labels.astype(np.uint8) if labels.dtype == bool else labels
    if data.dtype not in _IMAGEJ_DTYPES and data.dtype.kind in "iu" and data.size:
        if data.min() >= 0 and data.max() <= 65535:
            data = data.astype(np.uint16)
    ij_unit = "micron" if unit == "µm" else unit
    unique = len(set(axes)) == len(axes)
    in_order = unique and [a for a in "TZCYX" if a in axes] == list(axes)
    if data.dtype in _IMAGEJ_DTYPES and in_order and (ij_unit is None or ij_unit.isascii()):
        meta = {"axes": axes}
        if "Z" in size:
            meta["spacing"] = size["Z"]
        if ij_unit is not None:
            meta["unit"] = ij_unit
        res = (1.0 / size["X"], 1.0 / size["Y"]) if size else None
        return lambda tmp: tifffile.imwrite(tmp, data, imagej=True, metadata=meta, resolution=res)
    if unique and "Q" not in axes and data.dtype in _OME_DTYPES:
        meta = {"axes": axes}
        for a, v in size.items():
            meta[f"PhysicalSize{a}"] = v
            meta[f"PhysicalSize{a}Unit"] = unit or "pixel"
        return lambda tmp: tifffile.imwrite(tmp, data, ome=True, photometric="minisblack", metadata=meta)
    meta = {"axes": axes}
    if spacing is not None:
        meta["spacing"] = list(spacing)
    if unit is not None:
        meta["unit"] = unit
    kw = {}
    if size and unit in _UM:  # the X/Y pixel size for other readers too, per centimetre
        kw = dict(resolution=(1e4 / (size["X"] * _UM[unit]), 1e4 / (size["Y"] * _UM[unit])),
                  resolutionunit=tifffile.RESUNIT.CENTIMETER)
    return lambda tmp: tifffile.imwrite(tmp, data, photometric="minisblack", metadata=meta, **kw)


def atomic_write(path: str | os.PathLike, write) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it over ``path``.

    The temporary file keeps ``path``'s extension (writers choose formats by it).
    It gets the permissions of the file it replaces, or those a new file would
    get (it is made 0600 first).  When ``path`` is a symbolic link, the file it
    points to is replaced and the link is kept.  On any failure or interrupt
    (Ctrl-C, or SIGTERM where the handler raises), from the moment the
    temporary file exists, it is removed and ``path`` is left as it was.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write (or replace).
    write : callable
        ``write(tmp: str) -> None`` writes the whole file at ``tmp``.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    InputError
        When the folder of ``path`` (of the link's target) does not exist.
    BaseException
        Whatever ``write`` raises, after the temporary file is removed.

    Examples
    --------
    >>> import tempfile, os
    >>> from pathlib import Path
    >>> out = os.path.join(tempfile.mkdtemp(), "notes.txt")
    >>> atomic_write(out, lambda tmp: Path(tmp).write_text("done")).read_text()
    'done'
    """
    p = Path(path)
    target = Path(os.path.realpath(p)) if p.is_symlink() else p  # a link's target is rewritten, not the link
    if not target.parent.exists():
        raise InputError(f"output folder does not exist: {target.parent}")
    tmp = None
    try:
        # the file is made inside the ``try``: an interrupt at any point after it exists removes it; a name
        # taken meanwhile (FileExistsError) is not ours and is left alone
        while True:
            tmp = str(target.parent / f".{target.stem}.{secrets.token_hex(4)}{target.suffix}")
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o600)
            except FileExistsError:
                tmp = None
                continue
            os.close(fd)
            break
        write(tmp)
        try:
            mode = target.stat().st_mode & 0o7777  # the replaced file's permissions
        except FileNotFoundError:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        if tmp is not None:
            try:
                os.unlink(tmp)
            except OSError:
                pass
        raise
    return p


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
