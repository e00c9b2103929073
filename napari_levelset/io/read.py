"""Reading image files: the pixels, with their axes and physical pixel size.

``read_image_file`` returns an :class:`~napari_levelset.io.axes.ImageFile`: the
array with its axes (T, Z, C, Y, X; Q for an axis the file does not name) and
its physical pixel size, as ImageJ hyperstacks, OME-TIFFs and calibrated TIFFs
give them (and as :func:`~napari_levelset.io.write.write_labels` stores them).
``read_image`` returns the array only, as the file stores it.  A file that is
missing or cannot be decoded raises :class:`~napari_levelset.errors.InputError`.

Notes
-----
Files are read with tifffile (TIFF, ImageJ and OME metadata) and imageio / Pillow
(PNG, JPEG), each imported when a file is read.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from napari_levelset.errors import InputError
from napari_levelset.io.axes import _UM, ImageFile, _norm_unit

__all__ = ["TIFF_EXT", "PLAIN_EXT", "read_image", "read_image_file"]

TIFF_EXT = {".tif", ".tiff"}
PLAIN_EXT = {".png", ".jpg", ".jpeg", ".bmp", ".gif"}
#: tifffile's axis letters as ``ImageFile.axes`` has them (S, samples, becomes C; others: T).
_TIFF_AXES = {"T": "T", "Z": "Z", "C": "C", "Y": "Y", "X": "X", "S": "S", "I": "Q", "Q": "Q"}


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

