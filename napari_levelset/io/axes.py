"""Which axes of an image are what: channels, batch and spatial axes; the axes a file names.

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

Files name their axes with the letters of ``AXES`` (T, Z, C, Y, X; Q for an
axis the file does not name): an :class:`ImageFile` holds them with the
physical pixel size, and tells the layout :func:`infer_axes` would otherwise
guess.  Numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_levelset.errors import InputError

__all__ = ["AXES", "ImageFile", "infer_axes"]

#: Letters of ``ImageFile.axes``: time (and any other axis segmented slice by slice), depth,
#: channels, height, width, and Q for an axis the file does not name (pages of a plain stack).
AXES = "TZCYXQ"
#: Lengths in micrometres, for spacings given in mixed units.
_UM = {"pm": 1e-6, "nm": 1e-3, "µm": 1.0, "mm": 1e3, "cm": 1e4, "m": 1e6, "Å": 1e-4}


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
