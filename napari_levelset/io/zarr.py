"""Zarr and OME-Zarr volumes: opened lazily with their axes and voxel size, label arrays made, regions read.

:func:`open_volume` opens a zarr array, or an OME-Zarr (NGFF) image group at its level 0,
without reading it (a :class:`Volume`: the array with the axes, voxel size and unit its
``multiscales`` metadata name); :func:`read_volume` reads one whole into memory, checked first
like an image file (a store whose chunks are missing reads as its fill value, so its declared
shape is bounded by the bytes it stores: see ``napari_levelset.io.read.check_claim``);
:func:`create_labels` makes an empty label array, or an
OME-Zarr (NGFF 0.4) image group holding it at level ``0``; :func:`read_region` reads one
region of any array (numpy, zarr, dask) with edge replication past its end.  zarr is
imported when a store is opened or made (``pip install 'napari-levelset[scale]'``).
Sources: zarr (https://zarr.dev), the OME-NGFF specification (https://ngff.openmicroscopy.org).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_levelset.errors import InputError
from napari_levelset.io.read import check_claim

__all__ = ["Volume", "create_labels", "open_volume", "read_region", "read_volume"]


@dataclass
class Volume:
    """A lazily read array with what its file says (see :func:`open_volume`).

    Parameters
    ----------
    data : array-like
        A ``zarr.Array``, or any array (numpy, dask): ``(*S)`` or ``(C, *S)``.
    axes : str or None
        One letter per axis (``ZYX``, ``CZYX``, ...); None when unknown.
    spacing : tuple of float or None
        Physical voxel size per spatial axis, in ``unit``.
    unit : str or None
        The unit of ``spacing`` (``µm`` for micrometres).
    """

    data: Any
    axes: str | None = None
    spacing: tuple[float, ...] | None = None
    unit: str | None = None

    @property
    def channel_axis(self) -> int | None:
        """The index of C in ``axes``, or None (no C, or no axes known)."""
        return self.axes.index("C") if self.axes and "C" in self.axes else None


def open_volume(path: str | os.PathLike) -> Volume:
    """Open a zarr array or an OME-Zarr image (its level 0) for lazy reading.

    Parameters
    ----------
    path : str or os.PathLike
        A zarr array, or an OME-Zarr image group (NGFF ``multiscales`` metadata).

    Returns
    -------
    Volume
        Its ``data`` is the ``zarr.Array`` (nothing read yet); axes, voxel size and unit
        come from the OME-NGFF ``multiscales`` metadata when there is one.

    Raises
    ------
    InputError
        When ``path`` holds no zarr array (missing, foreign, or a group without
        ``multiscales``), or zarr is not installed.
    """
    zarr = _zarr()
    p = str(path)
    try:
        node = zarr.open(p, mode="r")
    except Exception as exc:  # zarr raises its own errors for missing / foreign stores
        raise InputError(f"cannot open {p} as zarr ({exc.__class__.__name__}: {exc})") from None
    if isinstance(node, zarr.Array):
        return Volume(node)
    attrs = dict(node.attrs)
    ms = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")
    if not ms:
        raise InputError(f"{p} is a zarr group without OME-Zarr 'multiscales' metadata: give the path of an array")
    level = ms[0]["datasets"][0]
    data = node[level["path"]]
    axes_meta = ms[0].get("axes") or []
    axes = "".join(a["name"].upper() if isinstance(a, dict) else str(a).upper() for a in axes_meta) or None
    spacing = unit = None
    for t in level.get("coordinateTransformations", []):
        if t.get("type") == "scale" and axes:
            spatial = [i for i, a in enumerate(axes) if a in "ZYX"]
            spacing = tuple(float(t["scale"][i]) for i in spatial)
    for a in axes_meta:
        if isinstance(a, dict) and a.get("type") == "space" and a.get("unit"):
            unit = "µm" if a["unit"] == "micrometer" else a["unit"]
    return Volume(data, axes, spacing, unit)


def read_volume(source, *, allow_large: bool = False) -> Volume:
    """Read a zarr array or an OME-Zarr image (its level 0) whole into memory.

    Chunks missing from the store read as the array's fill value, so a store of a few
    bytes can declare terabytes: the declared shape is checked before anything is read,
    as an image file's (``napari_levelset.io.read.check_claim``, with the bytes the
    store holds as the file's size).  Volumes larger than memory are segmented chunk by
    chunk instead (``napari_levelset.scale.chunked``), which never reads them whole.

    Parameters
    ----------
    source : str or os.PathLike or Volume
        A zarr array or OME-Zarr image group (see :func:`open_volume`), or a ``Volume``
        it returned.
    allow_large : bool
        Read a store that declares more than its bytes can honestly hold (mostly missing
        chunks); what memory cannot hold is refused all the same.

    Returns
    -------
    Volume
        Its ``data`` a numpy array (the store's dtype, shape ``(*S)`` or ``(C, *S)``), with
        the axes, voxel size and unit of :func:`open_volume`.

    Raises
    ------
    InputError
        What :func:`open_volume` raises; or when the declared shape is more than the store
        may claim or than memory can hold.
    """
    vol = source if isinstance(source, Volume) else open_volume(source)
    data = vol.data
    if isinstance(data, np.ndarray):
        return vol
    name = Path(str(source)).name if not isinstance(source, Volume) else "the volume"
    check_claim(name, tuple(data.shape), data.dtype, _stored_bytes(data, source), allow_large)
    try:
        values = np.asarray(data[...])
    except Exception as exc:  # a chunk that cannot be decoded
        raise InputError(f"cannot read {name} ({exc.__class__.__name__}: {exc})".splitlines()[0]) from None
    return Volume(values, vol.axes, vol.spacing, vol.unit)


def _stored_bytes(data, source) -> int:
    """The bytes a zarr array's store holds for it (its chunks and metadata)."""
    try:
        return int(data.nbytes_stored())
    except Exception:  # not a zarr array, or a store that cannot list its keys
        pass
    if isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
        return sum(f.stat().st_size for f in Path(source).rglob("*") if f.is_file())
    return 0


def _zarr():
    try:
        import zarr
    except ImportError:
        raise InputError("zarr volumes need zarr: pip install 'napari-levelset[scale]'") from None
    return zarr


def read_region(data, channel: int | None, region: Sequence[tuple[int, int]]) -> np.ndarray:
    """``data[(channel,) + region]`` as a numpy array, with edge replication past the high end of each axis.

    ``region`` is one ``(start, stop)`` per spatial axis, ``start`` inside the
    array (``stop`` may pass its end: the last plane is repeated, as the
    networks pad to a multiple).  ``channel`` None reads every channel of a
    channels-first array, or the array itself when it has none (then pass
    ``channel=-1``).  Only this region is read from a lazy (zarr, dask) array.

    Parameters
    ----------
    data : array-like
        ``(*S)`` or ``(C, *S)``, numpy, zarr or dask.
    channel : int or None
        A channel index; None: every channel; -1: the array has no channel axis.
    region : sequence of tuple of int
        ``(start, stop)`` per spatial axis, pixels.

    Returns
    -------
    numpy.ndarray
        ``data``'s dtype, ``(*R)`` or ``(C, *R)`` with ``R`` the region's sizes.

    Examples
    --------
    >>> import numpy as np
    >>> read_region(np.arange(4).reshape(2, 2), -1, [(1, 3), (0, 2)]).tolist()
    [[2, 3], [2, 3]]
    """
    spatial_shape = data.shape[-len(region) :]
    sl = tuple(slice(a, min(b, s)) for (a, b), s in zip(region, spatial_shape))
    if channel == -1:
        block = np.asarray(data[sl])
    elif channel is None:
        block = np.asarray(data[(slice(None),) + sl])
    else:
        block = np.asarray(data[(channel,) + sl])
    pad = [(0, max(0, b - s)) for (a, b), s in zip(region, spatial_shape)]
    if any(p[1] for p in pad):
        block = np.pad(block, [(0, 0)] * (block.ndim - len(pad)) + pad, mode="edge")
    return block


def create_labels(
    path: str | os.PathLike,
    shape,
    chunks,
    dtype,
    *,
    axes: str | None = None,
    spacing=None,
    unit: str | None = None,
    ome: bool = False,
    overwrite: bool = False,
):
    """Make an empty zarr label array at ``path`` (or an OME-Zarr image group with it at level ``0``).

    ``axes`` letters (e.g. ``ZYX``), ``spacing`` per spatial axis and
    ``unit`` go into the OME-NGFF 0.4 ``multiscales`` metadata.

    Parameters
    ----------
    path : str or os.PathLike
        Where the zarr (format 2) array or group is made.
    shape : sequence of int
        The labels' shape.
    chunks : sequence of int
        Chunk shape.
    dtype : numpy.dtype or type
        Label dtype (e.g. ``napari_levelset.io.write.labels_dtype(n_classes)``).
    axes : str or None
        Axis letters for the OME metadata (None: the last ``len(shape)`` of ``ZYX``).
    spacing : sequence of float or None
        Voxel size per spatial axis, in ``unit``.
    unit : str or None
        ``µm``, ``nm``, ``mm`` (written as NGFF unit names) or another name.
    ome : bool
        Make an OME-Zarr image group with the array at ``0``.
    overwrite : bool
        Replace what is at ``path``.

    Returns
    -------
    zarr.Array
        Filled with 0.

    Raises
    ------
    InputError
        When ``path`` exists and ``overwrite`` is false, or zarr is not installed.
    """
    zarr = _zarr()
    p = Path(path)
    if p.exists() and not overwrite:
        raise InputError(f"{p} exists (give overwrite=True / --overwrite to replace it)")
    if not ome:
        return zarr.create_array(
            str(p),
            shape=tuple(shape),
            chunks=tuple(chunks),
            dtype=dtype,
            fill_value=0,
            overwrite=overwrite,
            zarr_format=2,
        )
    root = zarr.open_group(str(p), mode="w" if overwrite else "w-", zarr_format=2)
    arr = root.create_array("0", shape=tuple(shape), chunks=tuple(chunks), dtype=dtype, fill_value=0)
    axes = axes or "ZYX"[-len(shape) :]
    names = {"T": "time", "C": "channel", "Z": "space", "Y": "space", "X": "space"}
    unit_name = {"µm": "micrometer", "nm": "nanometer", "mm": "millimeter"}.get(unit or "", unit)
    ax_meta = []
    for a in axes:
        entry = {"name": a.lower(), "type": names.get(a, "space")}
        if entry["type"] == "space" and unit_name:
            entry["unit"] = unit_name
        ax_meta.append(entry)
    scale = [1.0] * len(shape)
    if spacing is not None:
        spatial = [i for i, a in enumerate(axes) if a in "ZYX"]
        for i, s in zip(spatial, spacing):
            scale[i] = float(s)
    root.attrs["multiscales"] = [
        {
            "version": "0.4",
            "name": "labels",
            "axes": ax_meta,
            "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": scale}]}],
        }
    ]
    return arr
