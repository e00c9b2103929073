"""Writing label images, atomically, with their axes and voxel size.

``write_labels`` stores labels with their axes and voxel size (an ImageJ
hyperstack where ImageJ can hold the labels, else OME-XML, else tifffile's
JSON description), as :func:`~napari_levelset.io.read.read_image_file` reads
them back; every file is written by ``atomic_write``: a temporary file renamed
over the target only when complete.  tifffile and imageio are imported when a
file is written.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from fractions import Fraction
from pathlib import Path

import numpy as np

from napari_levelset.errors import InputError
from napari_levelset.io.axes import _UM, AXES, _norm_unit
from napari_levelset.io.read import LABELS_AXES_KEY, LABELS_SHAPE_KEY, TIFF_EXT

__all__ = ["atomic_write", "labels_dtype", "write_labels"]

#: ImageJ stores these dtypes only (other labels fall back, see ``write_labels``).
_IMAGEJ_DTYPES = (np.uint8, np.uint16, np.float32)
_OME_DTYPES = (np.int8, np.int16, np.int32, np.uint8, np.uint16, np.uint32, np.float32, np.float64)


def write_labels(
    path: str | os.PathLike, labels: np.ndarray, axes: str | None = None, spacing=None, unit: str | None = None
) -> Path:
    """Write a label image (TIFF or PNG by extension) atomically.

    The data go to a temporary file in the same folder that is renamed over
    ``path`` only when complete, so a failure never leaves a half-written file.
    What is written reads back as it was: ``read_image`` / ``read_image_file``
    return the same values and the same shape, axes of length 1 included.

    ``axes`` (letters of ``AXES``, ending in YX), ``spacing`` (one value per
    Z, Y, X axis) and ``unit`` go into a TIFF as an ImageJ hyperstack (axes,
    voxel size and unit, as Fiji reads them), for labels that ImageJ can hold:
    uint8, uint16, float32, or whole values 0..65535 of any type (stored as
    uint16), with a pixel size its resolution tags hold exactly.  Other labels
    (region ids beyond 65535, negative values) and axes ImageJ cannot name (Q,
    a repeated letter) are written as a plain TIFF with the metadata as
    OME-XML (which Fiji's Bio-Formats reads), or, for axes or dtypes (64-bit
    integers) OME cannot hold either, as tifffile's JSON description (with the
    X/Y pixel size in the resolution tags too); ``read_image_file`` reads all
    three back.  Without any of the three a TIFF names its axes ``Q…QYX``.  A
    PNG stores 2D labels of whole values 0..65535 only (uint8, else uint16),
    without axes or pixel size.

    Parameters
    ----------
    path : str or os.PathLike
        Ends in ``.tif``, ``.tiff`` or ``.png``; its folder must exist.
    labels : numpy.ndarray
        Integer, bool or float labels, at least 2D (``(..., Y, X)``) and not empty; 2D
        whole values 0..65535 for a PNG.
    axes : str or None
        One letter of ``AXES`` per axis, ending in YX, with Z, C, Y and X at most once
        (None: ``Q…Q`` then the last 2 or 3 of ``ZYX``, by the spacing's length).
    spacing : sequence of float or None
        Physical size of a pixel along each Z, Y, X axis in ``axes`` (without ``axes``:
        2 values, Y and X, or 3, Z, Y and X), in ``unit``, between ``MIN_SPACING`` (1e-12)
        and ``MAX_SPACING`` (1e12).
    unit : str or None
        The unit of ``spacing`` (``µm``, ``nm``, ...; None: none named); one printable line.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    InputError
        When the extension is not ``.tif``/``.tiff``/``.png``; the labels are not numbers,
        have under 2 axes or no pixel; a PNG gets labels that are not 2D, not whole (a
        fraction, NaN) or beyond 0..65535; ``axes``, ``spacing`` or ``unit`` are not as
        above or do not fit the labels; or the folder does not exist.
    OSError
        When the file cannot be written (the old file is then left as it was).

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> from napari_levelset.io.read import read_image_file
    >>> out = os.path.join(tempfile.mkdtemp(), "labels.tif")
    >>> _ = write_labels(out, np.ones((4, 8, 8), np.uint16), axes="ZYX", spacing=(2.0, 0.5, 0.5), unit="µm")
    >>> f = read_image_file(out)
    >>> f.axes, f.spacing, f.unit
    ('ZYX', (2.0, 0.5, 0.5), 'µm')
    """
    p = Path(path)
    ext = p.suffix.lower()
    if ext not in TIFF_EXT | {".png"}:
        raise InputError(f"output must end in .tif, .tiff or .png, got {p.name!r}")
    labels = _check_labels(labels)
    if ext in TIFF_EXT:
        return atomic_write(p, _tiff_writer(labels, axes, spacing, unit))
    if axes is not None:  # a PNG keeps no axes, but axes that cannot be the labels' are a mistake all the same
        _check_axes(axes, labels.ndim, None)
    labels = _png_labels(labels)
    import imageio.v3 as iio

    # encoded in memory, then written with a file object closed here: imageio's own file, on a full disk,
    # failed again when its destructor closed it (an "Exception ignored" traceback after the error)
    data = iio.imwrite("<bytes>", labels, extension=".png")
    return atomic_write(p, lambda tmp: _write_bytes(tmp, data))


def _check_labels(labels) -> np.ndarray:
    try:
        labels = np.asarray(labels)
    except (ValueError, TypeError) as exc:
        raise InputError(f"labels must be an array of numbers ({exc})".splitlines()[0]) from None
    if labels.dtype.kind not in "biuf":
        raise InputError(f"labels must be integers, booleans or floats, got dtype {labels.dtype}")
    if labels.ndim < 2:
        raise InputError(f"labels need at least 2 axes (Y, X), got shape {labels.shape}")
    if labels.size == 0:
        raise InputError(f"the labels are empty (shape {labels.shape})")
    return labels


def _png_labels(labels: np.ndarray) -> np.ndarray:
    """``labels`` as a PNG holds them (uint8 or uint16, the same values), or ``InputError``."""
    if labels.ndim != 2:
        raise InputError(f"PNG holds 2D labels only; these have shape {labels.shape}: write a .tif instead")
    if labels.dtype == bool:
        return labels.astype(np.uint8)
    if labels.dtype in (np.uint8, np.uint16):
        return labels
    if labels.dtype.kind == "f" and not (np.isfinite(labels).all() and np.array_equal(labels, np.round(labels))):
        raise InputError("PNG holds whole labels 0..65535; these have fractions or NaN: write a .tif instead")
    lo, hi = labels.min(), labels.max()
    if hi > 65535:
        raise InputError(f"PNG holds labels up to 65535; these go up to {hi}: write a .tif instead")
    if lo < 0:
        raise InputError(f"PNG holds labels 0..65535; these go down to {lo}: write a .tif instead")
    return labels.astype(np.uint8 if labels.dtype.itemsize == 1 else np.uint16)


def _write_bytes(path: str, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)


def _check_axes(axes: str | None, ndim: int, spacing: tuple[float, ...] | None) -> str:
    if axes is None:  # spatial axes by the spacing's length (2 without one), the others unnamed
        n = len(spacing) if spacing is not None else 2
        if n not in (2, 3) or n > ndim:
            raise InputError(
                f"spacing must have one value per spatial axis: 2 (Y, X) or 3 (Z, Y, X) for labels "
                f"with {ndim} axes, got {n}; or give axes"
            )
        return "Q" * (ndim - n) + "ZYX"[3 - n :]
    if not isinstance(axes, str):
        raise InputError(f"axes must be letters of {AXES!r}, got {axes!r}")
    axes = axes.upper()
    if len(axes) != ndim or any(a not in AXES for a in axes):
        raise InputError(f"axes {axes!r} do not fit labels with {ndim} axes (letters: {AXES})")
    if axes[-2:] != "YX":
        raise InputError(f"axes {axes!r} must end in YX")
    if any(axes.count(a) > 1 for a in "ZCYX"):
        raise InputError(f"axes {axes!r} name Z, C, Y or X more than once")
    return axes


#: The range of a pixel size ``write_labels`` stores (in any unit): beyond it, a mistake.
MIN_SPACING, MAX_SPACING = 1e-12, 1e12


def _check_spacing(spacing) -> tuple[float, ...] | None:
    if spacing is None:
        return None
    arr = np.asarray(spacing, dtype=object) if isinstance(spacing, (str, bytes)) else np.asarray(spacing)
    if arr.dtype.kind not in "iuf":
        raise InputError(f"spacing must be numbers (one per spatial axis), got {spacing!r}".splitlines()[0])
    out = tuple(float(v) for v in arr.ravel())
    if not out or not all(MIN_SPACING <= v <= MAX_SPACING for v in out):
        raise InputError(f"spacing must be pixel sizes between {MIN_SPACING:g} and {MAX_SPACING:g}, got {out}")
    return out


def _check_unit(unit) -> str | None:
    if unit is not None and (not isinstance(unit, str) or not unit.isprintable() or len(unit) > 64):
        raise InputError(f"unit must be a name on one line (µm, nm, ...), got {unit!r}"[:200])
    return _norm_unit(unit)


def _exact_rational(value: float) -> bool:
    """Whether a TIFF rational (two 32-bit unsigned integers) holds ``value`` to 1e-9 relative."""
    top = 2**32 - 1
    if not 0 < value <= top:
        return False
    f = Fraction(value).limit_denominator(max(1, min(top, int(top / value))))
    return f.numerator <= top and abs(float(f) - value) <= 1e-9 * value


def _tiff_writer(labels: np.ndarray, axes, spacing, unit):
    """A ``write(tmp)`` for ``atomic_write`` that stores ``labels`` with their metadata (see ``write_labels``)."""
    import tifffile

    spacing = _check_spacing(spacing)
    unit = _check_unit(unit)
    plain = axes is None and spacing is None and unit is None
    axes = _check_axes(axes, labels.ndim, spacing)
    if plain:  # minisblack: labels of a 3- or 4-slice stack are not an RGB(A) picture
        return lambda tmp: tifffile.imwrite(tmp, labels, photometric="minisblack", metadata={"axes": axes})
    spatial = "".join(a for a in axes if a in "ZYX")
    if spacing is not None and len(spacing) != len(spatial):
        raise InputError(f"spacing must be {len(spatial)} numbers (one per axis of {spatial!r}), got {spacing}")
    size = dict(zip(spatial, spacing)) if spacing is not None else {}
    data = labels.astype(np.uint8) if labels.dtype == bool else labels
    other_integers = data.dtype not in _IMAGEJ_DTYPES and data.dtype.kind in "iu" and data.size
    if other_integers and data.min() >= 0 and data.max() <= 65535:
        data = data.astype(np.uint16)
    ij_unit = "micron" if unit == "µm" else unit
    unique = len(set(axes)) == len(axes)
    in_order = unique and [a for a in "TZCYX" if a in axes] == list(axes)
    # ImageJ and OME drop axes of length 1: the labels' own axes and shape are stored beside them
    layout = {LABELS_AXES_KEY: axes, LABELS_SHAPE_KEY: ",".join(str(n) for n in data.shape)}
    exact = all(_exact_rational(1.0 / size[a]) for a in "XY" if a in size)
    if data.dtype in _IMAGEJ_DTYPES and in_order and exact and (ij_unit is None or ij_unit.isascii()):
        meta = {"axes": axes, **layout}
        if "Z" in size:
            meta["spacing"] = size["Z"]
        if ij_unit is not None:
            meta["unit"] = ij_unit
        res = (1.0 / size["X"], 1.0 / size["Y"]) if size else None
        return lambda tmp: tifffile.imwrite(tmp, data, imagej=True, metadata=meta, resolution=res)
    if unique and "Q" not in axes and data.dtype in _OME_DTYPES:
        meta = {"axes": axes, "MapAnnotation": layout}
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
    per_cm = {a: 1e4 / (size[a] * _UM[unit]) for a in "XY"} if size and unit in _UM else {}
    if per_cm and all(_exact_rational(v) for v in per_cm.values()):  # the X/Y pixel size for other readers too
        kw = dict(
            resolution=(1e4 / (size["X"] * _UM[unit]), 1e4 / (size["Y"] * _UM[unit])),
            resolutionunit=tifffile.RESUNIT.CENTIMETER,
        )
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
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise
    return p


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
