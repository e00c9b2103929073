"""Reading image files: the pixels, with their axes and physical pixel size.

``read_image_file`` returns an :class:`~napari_levelset.io.axes.ImageFile`: the
array with its axes (T, Z, C, Y, X; Q for an axis the file does not name) and
its physical pixel size, as ImageJ hyperstacks, OME-TIFFs and calibrated TIFFs
give them (and as :func:`~napari_levelset.io.write.write_labels` stores them).
``read_image`` returns the array only, as the file stores it.  A file that is
missing or cannot be decoded raises :class:`~napari_levelset.errors.InputError`.

What a file may claim
---------------------
A file's header declares its shape and dtype; decoding allocates that many bytes
whatever the file holds.  A compressed file can honestly declare many bytes per
byte it stores (deflate reaches about 1,032 : 1, LZW about 1,400 : 1, and
1-bit pixels decode to a byte each, 8 times more), but a forged or sparse one
(a tiled TIFF whose missing tiles decode as zeros) can declare gigabytes in a
few hundred bytes.  So the readers check the header before decoding (see
:func:`check_claim`): the decoded array may take at most the larger of
``CLAIM_RATIO`` (4,096) times the bytes the file stores and ``CLAIM_FLOOR``
(256 MiB), and never more than ``MEMORY_SHARE`` (half) of the memory this
process may still use (``napari_levelset.resources.available_memory``).
``allow_large=True`` lifts the first rule for genuine giants (a nearly empty
zstd-compressed or sparse tiled file); an image that memory cannot hold is
always refused.

Notes
-----
Files are read with tifffile (TIFF, ImageJ and OME metadata) and imageio / Pillow
(PNG, JPEG), each imported when a file is read.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from napari_levelset.errors import InputError
from napari_levelset.io.axes import _UM, ImageFile, _norm_unit
from napari_levelset.resources import available_memory

__all__ = [
    "CLAIM_FLOOR",
    "CLAIM_RATIO",
    "MEMORY_SHARE",
    "PLAIN_EXT",
    "TIFF_EXT",
    "check_claim",
    "claim_limit",
    "read_image",
    "read_image_file",
]

TIFF_EXT = {".tif", ".tiff"}
PLAIN_EXT = {".png", ".jpg", ".jpeg", ".bmp", ".gif"}
#: tifffile's axis letters as ``ImageFile.axes`` has them (S, samples, becomes C; others: T).
_TIFF_AXES = {"T": "T", "Z": "Z", "C": "C", "Y": "Y", "X": "X", "S": "S", "I": "Q", "Q": "Q"}
#: Decoded bytes a file may declare per byte it stores (see "What a file may claim").
CLAIM_RATIO = 4096
#: Decoded bytes any file may declare, however small (256 MiB).
CLAIM_FLOOR = 256 * 2**20
#: Share of the available memory one decoded image may take.
MEMORY_SHARE = 0.5
#: Keys of the labels' axes and shape that ``write_labels`` stores in an ImageJ description or an OME-XML
#: map annotation (ImageJ and OME drop axes of length 1).
LABELS_AXES_KEY, LABELS_SHAPE_KEY = "labels_axes", "labels_shape"


def read_image(path: str | os.PathLike, labels: bool = False, *, allow_large: bool = False) -> np.ndarray:
    """Read a PNG/JPEG/TIFF (2D, RGB or a 3D stack) into a numpy array, as the file stores it.

    Grey-with-alpha PNGs lose their alpha.  ``read_image_file`` also returns the axes
    and the pixel size.  The header is checked before decoding (see "What a file may
    claim" in the module docstring).

    Parameters
    ----------
    path : str or os.PathLike
        A ``.tif``/``.tiff`` (its first series, as ``tifffile.imread`` reads it) or a file
        Pillow reads (PNG, JPEG, BMP, GIF, ...).
    labels : bool
        Read a palette (indexed) PNG as its indices, the way label images are stored, not
        as colours.
    allow_large : bool
        Read a file that declares more pixels than its size can honestly hold (more than
        ``CLAIM_RATIO`` times its bytes, over ``CLAIM_FLOOR``): a sparse or highly
        compressed genuine image.  What memory cannot hold is refused all the same.

    Returns
    -------
    numpy.ndarray
        The pixels in the file's dtype and axis order (RGB(A) last).  Axes of length 1
        that ``write_labels`` stored are kept.

    Raises
    ------
    InputError
        When the file does not exist, is a directory, cannot be decoded as an image, or
        declares more pixels than it may claim (see :func:`check_claim`).

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

            with tifffile.TiffFile(p) as tif:
                return _tiff_data(tif, p, allow_large)[0]
        if labels and p.suffix.lower() == ".png":
            from PIL import Image

            with Image.open(p) as im:
                if im.mode == "P":
                    _check_plain(p, im, allow_large)
                    return np.asarray(im)
        return _read_plain(p, allow_large)

    return _reading(p, read)


def read_image_file(path: str | os.PathLike, *, allow_large: bool = False) -> ImageFile:
    """Read an image file with its axes and physical pixel size (see ``ImageFile``).

    TIFF (tifffile, with imagecodecs for LZW, deflate, zstd or JPEG
    compression): the first series, its axes as tifffile names them (with the
    axes of length 1 that ``write_labels`` stored); the pixel
    size from ImageJ's metadata (X/YResolution and ``spacing``, ``unit``), an
    OME-TIFF's PhysicalSizeX/Y/Z, the metadata ``write_labels`` stores, or else
    the resolution tags when their unit is a length (centimetre: micrometres
    then; inch resolutions, 72 dpi by default in most software, are ignored).
    PNG/JPEG: YX or YXC (RGB(A)), no pixel size.  The header is checked before
    decoding (see "What a file may claim" in the module docstring).

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    allow_large : bool
        Read a file that declares more pixels than its size can honestly hold (see
        ``read_image``); what memory cannot hold is refused all the same.

    Returns
    -------
    ImageFile
        The data with its axes (non-channel axes ordered T/Q, Z, Y, X), spacing and unit.

    Raises
    ------
    InputError
        When the file does not exist, is a directory, cannot be decoded as an image, or
        declares more pixels than it may claim (see :func:`check_claim`).

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
            return _read_tiff(p, allow_large)
        arr = _read_plain(p, allow_large)
        axes, rgb = _plain_axes(arr)
        return ImageFile(data=arr, axes=axes, rgb=rgb)

    return _reading(p, read)


def claim_limit(stored_bytes: int, allow_large: bool = False) -> int | None:
    """The most bytes a file storing ``stored_bytes`` may declare for its decoded pixels (memory aside).

    Parameters
    ----------
    stored_bytes : int
        The file's size in bytes (all its files, for a multi-file image or a zarr store).
    allow_large : bool
        Lift the rule: no limit from the file's size.

    Returns
    -------
    int or None
        ``max(CLAIM_RATIO * stored_bytes, CLAIM_FLOOR)`` bytes; None with ``allow_large``.

    Examples
    --------
    >>> claim_limit(1_000_000) == 4096 * 1_000_000
    True
    >>> claim_limit(1312) == CLAIM_FLOOR
    True
    """
    if allow_large:
        return None
    return max(CLAIM_RATIO * int(stored_bytes), CLAIM_FLOOR)


def check_claim(name: str, shape, dtype, stored_bytes: int, allow_large: bool = False) -> None:
    """Refuse, before decoding, an image whose declared pixels its file cannot honestly hold or memory cannot.

    Parameters
    ----------
    name : str
        The file's name, for the message.
    shape : tuple of int
        The shape its header declares (pixels per axis).
    dtype : numpy.dtype or str
        The dtype it decodes to.
    stored_bytes : int
        The bytes the file (or store) really holds.
    allow_large : bool
        Lift the size rule (``claim_limit``); the memory rule stays.

    Raises
    ------
    InputError
        When ``prod(shape) * itemsize`` is over ``claim_limit(stored_bytes, allow_large)``, or
        over ``MEMORY_SHARE`` of ``napari_levelset.resources.available_memory()``.

    Examples
    --------
    >>> check_claim("small.tif", (512, 512), "uint16", 1000)  # 512 KiB: under the floor
    >>> try:
    ...     check_claim("bomb.tif", (32, 16_776_960), "uint8", 1312)
    ... except InputError as exc:
    ...     print(str(exc)[:57])
    bomb.tif declares 32 x 16776960 pixels of uint8 (512 MiB)
    """
    declared = int(np.prod([int(n) for n in shape], dtype=object)) * np.dtype(dtype).itemsize
    dims = " x ".join(str(int(n)) for n in shape) or "1"
    what = f"{name} declares {dims} pixels of {np.dtype(dtype)} ({_size(declared)})"
    free = available_memory()
    if declared > MEMORY_SHARE * free:
        raise InputError(f"{what}: more than half the memory available ({_size(free)}), it cannot be read whole")
    limit = claim_limit(stored_bytes, allow_large)
    if limit is not None and declared > limit:
        raise InputError(
            f"{what} in {_size(stored_bytes)}: more than a file of that size may claim "
            f"({_size(limit)}); if it is a genuine image, read it with allow_large=True (--allow-large)"
        )


def _size(n: int) -> str:
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KB", 1000)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}" if n < 1000 * scale or unit == "TiB" else f"{n / scale:.0f} {unit}"
    return f"{n} bytes"


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


#: bytes per band of Pillow's modes (others: 1)
_PIL_BAND_BYTES = {"I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2, "I": 4, "F": 4}


def _check_plain(p: Path, im, allow_large: bool) -> None:
    """``check_claim`` for a picture Pillow opened (its header read, nothing decoded)."""
    w, h = im.size
    frames = int(getattr(im, "n_frames", 1) or 1)
    bands = 4 if im.mode in ("P", "PA") else len(im.getbands())  # a palette may become RGBA
    shape = ((frames,) if frames > 1 else ()) + (h, w) + ((bands,) if bands > 1 else ())
    dtype = {2: np.uint16, 4: np.float32}.get(_PIL_BAND_BYTES.get(im.mode, 1), np.uint8)
    check_claim(p.name, shape, dtype, p.stat().st_size, allow_large)


def _read_plain(p: Path, allow_large: bool = False) -> np.ndarray:
    import imageio.v3 as iio
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(p) as im:
            _check_plain(p, im, allow_large)
    except UnidentifiedImageError:
        if p.suffix.lower() in PLAIN_EXT:  # Pillow's own formats: nothing else decodes them
            raise
    arr = np.asarray(iio.imread(p))
    return arr[..., 0] if arr.ndim == 3 and arr.shape[-1] == 2 else arr  # grey + alpha


def _stored_bytes(tif, p: Path) -> int:
    """The bytes of the TIFF at ``p`` and of the files its OME-XML names (a multi-file OME-TIFF)."""
    total = p.stat().st_size
    if tif.is_ome:
        names = set(re.findall(r'FileName="([^"]+)"', tif.ome_metadata or "")) - {p.name}
        for name in names:
            other = p.parent / Path(name).name
            if other.is_file():
                total += other.stat().st_size
    return total


def _written_layout(tif) -> tuple[str, tuple[int, ...]] | None:
    """The labels' axes and shape ``write_labels`` stored in an ImageJ or OME-TIFF, or None."""
    if tif.is_imagej:
        meta = tif.imagej_metadata or {}
        axes, shape = meta.get(LABELS_AXES_KEY), meta.get(LABELS_SHAPE_KEY)
    elif tif.is_ome:
        xml = tif.ome_metadata or ""
        found = [re.search(rf'<M K="{key}">([^<]*)</M>', xml) for key in (LABELS_AXES_KEY, LABELS_SHAPE_KEY)]
        axes, shape = (m.group(1) if m else None for m in found)
    else:
        return None
    if not isinstance(axes, str) or not axes or any(a not in "TZCYX" for a in axes):
        return None
    try:
        dims = tuple(int(n) for n in str(shape).split(","))
    except ValueError:
        return None
    return (axes, dims) if len(dims) == len(axes) else None


def _tiff_data(tif, p: Path, allow_large: bool) -> tuple[np.ndarray, str]:
    """The first series of ``tif``, checked before decoding, in the shape ``write_labels`` stored."""
    series = tif.series[0]
    check_claim(p.name, series.shape, series.dtype, _stored_bytes(tif, p), allow_large)
    data = np.asarray(tif.asarray())
    axes = series.axes
    written = _written_layout(tif)
    if written is not None and int(np.prod(written[1])) == data.size:  # axes of length 1 that tifffile dropped
        axes, data = written[0], data.reshape(written[1])
    return data, axes


def _read_tiff(p: Path, allow_large: bool = False) -> ImageFile:
    import tifffile

    with tifffile.TiffFile(p) as tif:
        data, raw_axes = _tiff_data(tif, p, allow_large)
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
            per_um = {
                tifffile.RESUNIT.CENTIMETER: 1e-4,
                tifffile.RESUNIT.MILLIMETER: 1e-3,
                tifffile.RESUNIT.MICROMETER: 1.0,
            }.get(None if res_unit is None else res_unit.value)
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
