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

Normalisation
-------------
Each channel is mapped linearly so that its 0.5th percentile goes to 0 and its
99.5th percentile to 1, then clipped to [0, 1]: a few hot or dead pixels do not
squash the contrast of everything else.  Where the percentiles coincide (a
sparse image) the channel's min and max are used instead; a channel that is
constant becomes 0.  Booleans become 0/1.  NaN or infinite values, an empty
array, or an image where every channel is constant are errors.
"""

from __future__ import annotations

import os
import tempfile
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
    "write_labels",
    "atomic_write",
    "labels_dtype",
]

TIFF_EXT = {".tif", ".tiff"}
PLAIN_EXT = {".png", ".jpg", ".jpeg", ".bmp", ".gif"}


class InputError(ValueError):
    """Bad input from the user: the message is meant to be shown as it is."""


@dataclass
class Prepared:
    """An image ready for the network.

    ``data`` is float32 ``(B, C, *S)``; ``batch_shape`` the shape of the batch
    axes (``()`` when there are none, then ``B == 1``); ``spatial_shape`` is
    ``S``.  ``rgb`` is true for 3- or 4-channel images given with a channel axis
    last.  ``color`` is the preparation used: ``rgb`` (channels normalised one by
    one) or ``lab`` (CIELAB).
    """

    data: np.ndarray
    batch_shape: tuple[int, ...]
    spatial_shape: tuple[int, ...]
    channel_axis: int | None
    rgb: bool = False
    color: str = "rgb"

    @property
    def out_shape(self) -> tuple[int, ...]:
        """Shape of a label image for this input (input shape minus channels)."""
        return self.batch_shape + self.spatial_shape

    def to_output(self, labels: np.ndarray) -> np.ndarray:
        """Reshape ``(B, *S)`` labels to the input's non-channel shape."""
        return labels.reshape(self.out_shape)

    def to_batch(self, labels: np.ndarray) -> np.ndarray:
        """Reshape labels of the input's non-channel shape to ``(B, *S)``."""
        labels = np.asarray(labels)
        if labels.shape != self.out_shape:
            raise InputError(f"scribbles have shape {labels.shape}, but the image needs {self.out_shape}")
        return labels.reshape((-1,) + self.spatial_shape)


def infer_axes(
    shape: tuple[int, ...], channel_axis: int | None = None, spatial_dims: int | None = None
) -> tuple[int | None, int]:
    """Return ``(channel_axis, spatial_dims)`` for an array of ``shape``.

    ``channel_axis`` is returned non-negative (or None).
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


def normalize(data: np.ndarray, pmin: float = 0.5, pmax: float = 99.5) -> np.ndarray:
    """Robust per-channel normalisation of ``(C, ...)`` data to float32 in [0, 1]."""
    out = np.empty(data.shape, dtype=np.float32)
    any_varies = False
    for ci, ch in enumerate(data):
        # float64 stays float64 until scaled: its values may lie beyond float32's range
        ch = ch.astype(np.float64 if ch.dtype == np.float64 else np.float32, copy=False)
        lo, hi = np.percentile(ch, [pmin, pmax]) if ch.size > 1 else (ch.min(), ch.max())
        if hi <= lo:
            lo, hi = float(ch.min()), float(ch.max())
        if hi <= lo:
            out[ci] = 0.0
            continue
        any_varies = True
        np.clip((ch - lo) / (hi - lo), 0.0, 1.0, out=out[ci])
    if not any_varies:
        raise InputError("the image is constant: there is nothing to segment")
    return out


def to_lab(rgb: np.ndarray) -> np.ndarray:
    """``(3, ...)`` RGB (any range) to CIELAB scaled by 1/100, shape ``(3, ...)``.

    Non-negative integer images are read as 0..2**bits - 1, with the bits their
    largest value needs (at least 8: 8-bit data in a wider type, 12- or 16-bit
    data); other images are mapped jointly (all channels together, keeping the
    colour balance) so that their 0.5th-99.5th percentiles span [0, 1].  L/100
    lies in [0, 1] and a/100, b/100 roughly in [-1, 1], so squared distances are
    perceptual colour differences.
    """
    from skimage.color import rgb2lab

    if np.issubdtype(rgb.dtype, np.integer) and rgb.min() >= 0:
        bits = max(8, int(rgb.max()).bit_length())
        x = rgb.astype(np.float32) / float(2**bits - 1)
    else:
        lo, hi = np.percentile(rgb, [0.5, 99.5])
        x = np.clip((rgb.astype(np.float32) - lo) / max(hi - lo, 1e-12), 0, 1)
    lab = rgb2lab(np.moveaxis(x, 0, -1))
    return np.ascontiguousarray(np.moveaxis(lab, -1, 0).astype(np.float32) / 100.0)


def prepare_image(
    image,
    channel_axis: int | None = None,
    spatial_dims: int | None = None,
    normalise: bool = True,
    color: str = "rgb",
) -> Prepared:
    """Check, reorder and normalise ``image`` into ``(B, C, *S)`` float32.

    ``color="lab"`` turns a 3-channel (RGB) image into CIELAB (see ``to_lab``)
    instead of normalising each channel on its own; ``color="auto"`` does so
    for RGB(A) images (channels last, as napari reads them) and normalises
    each channel of any other image.
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
    if ch_ax is None:
        arr = arr[np.newaxis]
    else:
        arr = np.moveaxis(arr, ch_ax, 0)
    rgb = ch_ax is not None and ch_ax == len(np.shape(image)) - 1 and arr.shape[0] in (3, 4)
    spatial = arr.shape[arr.ndim - sdims :]
    batch = arr.shape[1 : arr.ndim - sdims]
    if int(np.prod(spatial)) < 2:
        raise InputError(f"the image has {int(np.prod(spatial))} pixel(s): there is nothing to segment")
    if color == "auto":
        color = "lab" if rgb else "rgb"
    if color == "lab":
        if arr.shape[0] not in (3, 4):
            raise InputError(f"color='lab' needs an RGB image (3 channels), this one has {arr.shape[0]}")
        data = to_lab(arr[:3])
        if np.ptp(data.reshape(data.shape[0], -1), axis=1).max() == 0:
            raise InputError("the image is constant: there is nothing to segment")
    elif color != "rgb":
        raise InputError(f"color must be 'auto', 'rgb' or 'lab', got {color!r}")
    else:
        data = normalize(arr) if normalise else arr.astype(np.float32)
    # (C, *batch, *S) -> (B, C, *S)
    data = data.reshape((data.shape[0], -1) + spatial)
    data = np.ascontiguousarray(np.swapaxes(data, 0, 1))
    return Prepared(data=data, batch_shape=tuple(batch), spatial_shape=tuple(spatial), channel_axis=ch_ax, rgb=rgb,
                    color=color)


def labels_dtype(n_classes: int):
    return np.uint8 if n_classes <= 255 else np.uint16


def read_image(path: str | os.PathLike, labels: bool = False) -> np.ndarray:
    """Read a PNG/JPEG/TIFF (2D, RGB or a 3D stack) into a numpy array.

    Grey-with-alpha PNGs lose their alpha.  ``labels=True`` reads a palette
    (indexed) PNG as its indices, the way label images are stored, not as colours.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"no such file: {p}")
    if p.is_dir():
        raise InputError(f"{p} is a directory, not an image file")
    try:
        if p.suffix.lower() in TIFF_EXT:
            import tifffile

            return np.asarray(tifffile.imread(p))
        if labels and p.suffix.lower() == ".png":
            from PIL import Image

            with Image.open(p) as im:
                if im.mode == "P":
                    return np.asarray(im)
        import imageio.v3 as iio

        arr = np.asarray(iio.imread(p))
        return arr[..., 0] if arr.ndim == 3 and arr.shape[-1] == 2 else arr  # grey + alpha
    except Exception as exc:  # any decoder error means: not an image we can read
        detail = (str(exc).strip().splitlines() or [""])[0]
        raise InputError(f"cannot read {p} as an image ({exc.__class__.__name__}: {detail})") from None


def write_labels(path: str | os.PathLike, labels: np.ndarray) -> Path:
    """Write a label image (TIFF or PNG by extension) atomically.

    The data go to a temporary file in the same folder that is renamed over
    ``path`` only when complete, so a failure never leaves a half-written file.
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

        # minisblack: labels of a 3- or 4-slice stack are not an RGB(A) picture
        return atomic_write(p, lambda tmp: tifffile.imwrite(tmp, labels, photometric="minisblack"))
    if labels.dtype.itemsize > 2:  # region ids (uint32): PNG holds 16 bits
        if labels.size and (labels.min() < 0 or labels.max() > 65535):
            raise InputError(f"PNG holds labels up to 65535; these go up to {labels.max()}: write a .tif instead")
        labels = labels.astype(np.uint16)
    import imageio.v3 as iio

    return atomic_write(p, lambda tmp: iio.imwrite(tmp, labels))


def atomic_write(path: str | os.PathLike, write) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it over ``path``.

    The temporary file keeps ``path``'s extension (writers choose formats by it)
    and gets the permissions a new file would get (``mkstemp`` makes 0600).  On
    any failure it is removed and ``path`` is left as it was.
    """
    p = Path(path)
    if not p.parent.exists():
        raise InputError(f"output folder does not exist: {p.parent}")
    fd, tmp = tempfile.mkstemp(prefix=f".{p.stem}.", suffix=p.suffix, dir=p.parent)
    os.close(fd)
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, p)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return p
