"""Writing label images, atomically, with their axes and voxel size.

``write_labels`` stores labels with their axes and voxel size (an ImageJ
hyperstack where ImageJ can hold the labels, else OME-XML, else tifffile's
JSON description), as :func:`~napari_levelset.io.read.read_image_file` reads
them back; every file is written by ``atomic_write``: a temporary file renamed
over the target only when complete.  tifffile and imageio are imported when a
file is written.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import numpy as np

from napari_levelset.errors import InputError
from napari_levelset.io.axes import _UM, AXES, _norm_unit
from napari_levelset.io.read import TIFF_EXT

__all__ = ["write_labels", "atomic_write", "labels_dtype"]

#: ImageJ stores these dtypes only (other labels fall back, see ``write_labels``).
_IMAGEJ_DTYPES = (np.uint8, np.uint16, np.float32)
_OME_DTYPES = (np.int8, np.int16, np.int32, np.uint8, np.uint16, np.uint32, np.float32, np.float64)


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
    >>> from napari_levelset.io.read import read_image_file
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

