"""Whole-volume statistics of a volume larger than memory, computed chunk by chunk and exactly.

The normalisation of :mod:`napari_levelset.scale.chunked` uses the rule of
``napari_levelset.io.prepare.normalize`` with the statistics of the whole volume: the 0.5th /
99.5th percentiles from a histogram of every value (integers of up to 16 bits) or by selecting
the order statistics in passes (other dtypes), and the brightest 3-pixel structure as the
maximum of a 3-pixel minimum filter over chunks with a one-pixel halo (``value_range``); each
tile is then mapped with them (``normalize_block``), so it equals the same region of the whole
normalised volume.  Also here: how a volume is opened and read by region, and the dask
schedulers tiles may run on.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence

import numpy as np

from napari_levelset import validate
from napari_levelset.errors import InputError
from napari_levelset.io.prepare import _map_range, _structure_max
from napari_levelset.io.zarr import Volume, open_volume, read_region
from napari_levelset.resources import is_out_of_memory

__all__ = ["ChannelRange", "normalize_block", "value_range"]

#: percentiles of the normalisation rule (``napari_levelset.io.prepare.normalize``)
PMIN, PMAX = 0.5, 99.5
#: the dask schedulers of this process that tiles may run on (a cluster is given as ``client=``)
SCHEDULERS = (None, "sync", "synchronous", "single-threaded", "threads", "threading")


def _as_volume(source) -> Volume:
    if isinstance(source, Volume):
        vol = source
    elif isinstance(source, (str, os.PathLike)):
        vol = _open(source)
    else:
        if not hasattr(source, "shape") or not hasattr(source, "dtype"):
            source = np.asarray(source)
        vol = Volume(source)
    if not (hasattr(vol.data, "shape") and hasattr(vol.data, "dtype")):
        raise InputError(f"a volume is an array: got {type(vol.data).__name__}")
    return vol


def _open(path) -> Volume:
    """``open_volume(path)``, its OME-Zarr metadata checked: anything malformed is an ``InputError``."""
    try:
        vol = open_volume(path)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        detail = (str(exc).strip().splitlines() or [""])[0][:120]
        raise InputError(
            f"{path} is not a readable OME-Zarr image: its 'multiscales' metadata is malformed "
            f"({exc.__class__.__name__}: {detail})"
        ) from None
    if not (hasattr(vol.data, "shape") and hasattr(vol.data, "dtype")):
        raise InputError(f"{path} is not a readable OME-Zarr image: its level 0 is not an array")
    if 0 in tuple(vol.data.shape):
        raise InputError(f"{path} holds an empty array (shape {tuple(vol.data.shape)}): there is nothing to segment")
    return vol


def _read(data, channel, region) -> np.ndarray:
    """``read_region``, a chunk that cannot be read or decoded (damaged, missing) being an ``InputError``."""
    try:
        return read_region(data, channel, region)
    except InputError:
        raise
    except Exception as exc:
        if is_out_of_memory(exc):
            raise
        where = str(getattr(data, "store_path", "the volume")).removeprefix("file://")
        detail = (str(exc).strip().splitlines() or [""])[0][:120]
        raise InputError(
            f"cannot read {where} at {[tuple(r) for r in region]}: a damaged chunk? "
            f"({exc.__class__.__name__}: {detail})"
        ) from None


def _scheduler(scheduler):
    if not (scheduler is None or isinstance(scheduler, str)) or scheduler not in SCHEDULERS:
        raise InputError(
            f"scheduler must be one of {', '.join(map(repr, SCHEDULERS[1:]))} or None "
            f"(a cluster is given as client=), got {scheduler!r}"
        )
    return scheduler


def _layout(vol: Volume, channel_axis: int | None) -> tuple[int | None, tuple[int, ...]]:
    """The channel axis (0 or None) and the spatial shape of ``vol``."""
    shape = tuple(int(s) for s in vol.data.shape)
    if not shape:
        raise InputError("a chunked volume has 2 or 3 spatial axes (and optionally channels first), got a scalar")
    if channel_axis is not None:
        channel_axis = validate.integer("channel_axis", channel_axis, bounded=False)
    ch = vol.channel_axis if channel_axis is None else int(channel_axis) % len(shape)
    if ch not in (None, 0):
        raise InputError(f"a chunked volume keeps its channels on the first axis, got channel_axis={ch}")
    spatial = shape[1:] if ch == 0 else shape
    if len(spatial) not in (2, 3):
        raise InputError(f"a chunked volume has 2 or 3 spatial axes (and optionally channels first), got shape {shape}")
    if vol.data.dtype.kind not in "biuf":
        raise InputError(f"unsupported volume dtype {vol.data.dtype}")
    if 0 in shape:
        raise InputError(f"the volume is empty (shape {shape})")
    if int(np.prod(spatial)) < 2:
        raise InputError(f"the volume has {int(np.prod(spatial))} pixel(s): there is nothing to segment")
    return ch, spatial


# -- exact normalisation statistics over chunks ------------------------------------------------
class ChannelRange(tuple):
    """``(lo, hi)`` of one channel, with ``dtype``: the float type ``io.prepare._working_copy`` computes it in.

    float32 where every value of the channel is a float32 number, else float64.

    Parameters
    ----------
    lo : float
        The value mapped to 0.
    hi : float
        The value mapped to 1.
    dtype : numpy.dtype or type or str
        The float type the channel is mapped in.
    """

    def __new__(cls, lo: float, hi: float, dtype=np.float32):
        t = super().__new__(cls, (float(lo), float(hi)))
        t.dtype = np.dtype(dtype)
        return t

    def __reduce__(self):  # to a dask worker and back
        return ChannelRange, (self[0], self[1], self.dtype.str)


def _lerp(a, b, t):
    """numpy's ``_lerp`` (``np.percentile``'s linear interpolation), so the result is the same number."""
    diff = b - a
    out = np.add(a, diff * t)
    np.subtract(b, diff * (1 - t), out=out, where=t >= 0.5, casting="unsafe")
    return out


def _percentiles(ranks_value, n: int, dtype) -> tuple[float, float]:
    """``np.percentile(x, [PMIN, PMAX])`` of ``n`` values of float ``dtype`` from ``ranks_value(k)``, the
    ``k``-th smallest value (0-based)."""
    q = np.true_divide(np.asarray([PMIN, PMAX]), 100)
    vi = (n - 1) * q
    prev = np.floor(vi).astype(np.intp)
    nxt = np.minimum(prev + 1, n - 1)
    gamma = np.asanyarray(vi - prev)
    a = np.array([ranks_value(int(k)) for k in prev], dtype=dtype)
    b = np.array([ranks_value(int(k)) for k in nxt], dtype=dtype)
    r = _lerp(a, b, gamma)
    return float(r[0]), float(r[1])


def _tiles(spatial, tile, halo=0):
    """``(core, region)`` per tile of ``tile`` pixels per axis; ``region`` the core grown by ``halo``,
    clipped to the array."""
    axes = []
    for s, t in zip(spatial, tile):
        axes.append([(a, min(a + t, s)) for a in range(0, s, t)])
    for core in itertools.product(*axes):
        region = tuple((max(0, a - halo), min(s, b + halo)) for (a, b), s in zip(core, spatial))
        yield core, region


def _compute(tasks, scheduler=None, client=None):
    import dask

    if not tasks:
        return []
    if client is not None:
        return list(client.gather(client.compute(tasks)))
    return list(dask.compute(*tasks, scheduler=scheduler or "sync"))


def _chunk_tile(data, spatial, default=128):
    chunks = getattr(data, "chunksize", None) or getattr(data, "chunks", None)  # dask's chunksize, zarr's chunks
    if chunks and not isinstance(chunks[0], tuple) and len(chunks) >= len(spatial):
        return tuple(int(c) for c in chunks[-len(spatial) :])
    return (default,) * len(spatial)


def value_range(
    volume, channel_axis: int | None = None, structures: bool = True, *, tile=None, scheduler=None, client=None
) -> list[tuple[float, float]]:
    """Per channel, the ``(lo, hi)`` that ``napari_levelset.io.prepare.normalize`` maps to 0 and 1, from chunks.

    Equal to what ``normalize`` computes on the whole array in memory (its
    0.5th / 99.5th percentiles interpolated as ``np.percentile`` does, and
    with ``structures`` the maximum of its 3-pixel minimum filter).  Integers
    of up to 16 bits (and bool) are counted in a histogram; other dtypes are
    read as float32 (float16, float32, and integers within +-2**24) or float64,
    and their order statistics selected by a histogram over [min, max] and a
    pass that gathers the values of the bins holding them.

    Parameters
    ----------
    volume : str or os.PathLike or Volume or array-like
        A zarr / OME-Zarr path, a ``Volume``, or an array ``(*S)`` or ``(C, *S)``.
    channel_axis : int or None
        0 for channels first (None: from the volume's axes, else none).
    structures : bool
        Let the brightest 3-pixel structure raise ``hi`` (as ``io.prepare.normalize``).
    tile : int or sequence of int or None
        Pixels per axis of a task (default: the array's chunks, 128 without).
    scheduler : str or None
        dask scheduler (``"sync"`` by default, ``"threads"``).
    client : dask.distributed.Client or None
        Computes the tasks on a cluster instead.

    Returns
    -------
    list of ChannelRange
        One ``(lo, hi)`` per channel (a tuple of two floats with a ``dtype``).

    Raises
    ------
    InputError
        For NaN or infinite values, a volume whose layout or dtype is not supported (or that is
        empty, or malformed OME-Zarr), a chunk that cannot be read, a ``tile`` that is not whole
        numbers >= 1, or a ``scheduler`` not in ``SCHEDULERS``.

    Examples
    --------
    >>> import numpy as np
    >>> from napari_levelset.io.prepare import normalize
    >>> vol = np.random.default_rng(0).integers(0, 4000, (16, 32, 32)).astype(np.uint16)
    >>> ranges = value_range(vol, tile=8)
    >>> np.array_equal(normalize_block(vol[None], ranges), normalize(vol[None]))
    True
    """
    vol = _as_volume(volume)
    ch, spatial = _layout(vol, channel_axis)
    scheduler = _scheduler(scheduler)
    data = vol.data
    tile = _per_axis_tile(tile, data, spatial)
    channels = [-1] if ch is None else list(range(int(data.shape[0])))
    out = []
    for c in channels:
        out.append(_channel_range(data, c, spatial, tile, structures, scheduler, client))
    return out


def _per_axis_tile(tile, data, spatial):
    """Pixels per axis of a task: ``tile`` checked (whole numbers >= 1, one or one per axis), at most the volume."""
    if tile is None:
        tile = _chunk_tile(data, spatial)
    elif np.ndim(tile) == 0 and not isinstance(tile, (str, bytes)):
        tile = (validate.integer("tile", tile, 1, None),) * len(spatial)
    else:
        if isinstance(tile, (str, bytes)) or not hasattr(tile, "__len__") or len(tile) != len(spatial):
            raise InputError(
                f"tile must be a whole number >= 1 or one per spatial axis ({len(spatial)}), got {tile!r:.60}"
            )
        tile = tuple(validate.integer("tile", t, 1, None) for t in tile)
    return tuple(max(1, min(int(t), s)) for t, s in zip(tile, spatial))


def _channel_range(data, c, spatial, tile, structures, scheduler, client):
    from dask import delayed

    small_int = data.dtype == bool or (data.dtype.kind in "iu" and data.dtype.itemsize <= 2)

    def stats(region):
        block = _read(data, c, region)
        if block.dtype.kind == "f" and not np.isfinite(block).all():
            raise InputError("the volume contains NaN or infinite values")
        lo, hi = (block.min(), block.max())
        if small_int or block.dtype in (np.float16, np.float32):
            exact32 = True
        elif block.dtype.kind in "iu":  # io.prepare._working_copy's rule for wider integers
            exact32 = bool(lo >= -(2**24) and hi <= 2**24)
        else:
            exact32 = bool(np.array_equal(block.astype(np.float32), block))
        hist = None
        if small_int:
            off = 0 if block.dtype.kind != "i" else -int(np.iinfo(block.dtype).min)
            hist = np.bincount((block.astype(np.int64) + off).ravel(), minlength=1 << (8 * block.dtype.itemsize))
        return hist, lo, hi, exact32

    def smax(region, core):
        block = _read(data, c, region).astype(wdtype)
        return _structure_max(block[np.newaxis], len(spatial))

    cores = list(_tiles(spatial, tile))
    parts = _compute([delayed(stats)(core) for core, _ in cores], scheduler, client)
    vmin = min(p[1] for p in parts)
    vmax = max(p[2] for p in parts)
    n = int(np.prod(spatial))
    if small_int:
        hist = np.sum([p[0] for p in parts], axis=0)
        off = 0 if data.dtype.kind != "i" else -int(np.iinfo(data.dtype).min)
        cum = np.cumsum(hist)

        def kth(k):
            return float(np.searchsorted(cum, k, side="right") - off)

        wdtype = np.float32
    else:
        # io.prepare._working_copy: float32 where every value is a float32 number
        wdtype = np.float32 if all(p[3] for p in parts) else np.float64
        kth = _selector(data, c, spatial, tile, wdtype, float(vmin), float(vmax), scheduler, client)
    lo, hi = _percentiles(kth, n, wdtype) if n > 1 else (float(vmin), float(vmin))
    if structures:
        grown = list(_tiles(spatial, tile, halo=1))
        hi = max(hi, max(_compute([delayed(smax)(region, core) for core, region in grown], scheduler, client)))
    if hi <= lo:
        lo, hi = float(np.asarray(vmin, wdtype)), float(np.asarray(vmax, wdtype))
    return ChannelRange(lo, hi, wdtype)


def _selector(data, c, spatial, tile, wdtype, vmin, vmax, scheduler, client, bins=1 << 16):
    """``kth(k)``: the k-th smallest value of channel ``c`` (as ``wdtype``), found by a histogram and a gather."""
    from dask import delayed

    edges = np.linspace(vmin, vmax, bins + 1)
    cores = [core for core, _ in _tiles(spatial, tile)]

    def hist(region):
        v = _read(data, c, region).astype(wdtype).astype(np.float64).ravel()
        return np.histogram(v, bins=edges)[0]

    counts = np.sum(_compute([delayed(hist)(r) for r in cores], scheduler, client), axis=0)
    cum = np.cumsum(counts)
    cache: dict[int, np.ndarray] = {}

    def kth(k):
        b = int(np.searchsorted(cum, k, side="right"))
        if b not in cache:
            lo_e, hi_e = edges[b], edges[b + 1]
            last = b == bins - 1

            def gather(region):
                v = _read(data, c, region).astype(wdtype).astype(np.float64).ravel()
                # np.histogram's bins: [lo, hi) except the last, [lo, hi]
                return v[(v >= lo_e) & ((v <= hi_e) if last else (v < hi_e))]

            cache[b] = np.sort(np.concatenate(_compute([delayed(gather)(r) for r in cores], scheduler, client)))
        before = int(cum[b - 1]) if b > 0 else 0
        return float(cache[b][k - before])

    return kth


def normalize_block(block: np.ndarray, ranges: Sequence[tuple[float, float]]) -> np.ndarray:
    """``(C, *s)`` raw values to float32 in [0, 1] with the whole volume's ``(lo, hi)`` per channel.

    Computed in each range's ``dtype`` (``value_range``), exactly as
    ``napari_levelset.io.prepare.normalize`` maps them.

    Parameters
    ----------
    block : numpy.ndarray
        ``(C, *s)`` raw values, any real dtype.
    ranges : sequence of tuple of float
        ``(lo, hi)`` per channel (``value_range``); ``hi <= lo`` maps the channel to 0.

    Returns
    -------
    numpy.ndarray
        float32 ``(C, *s)`` in [0, 1].
    """
    out = np.empty(block.shape, np.float32)
    for i, (ch, r) in enumerate(zip(block, ranges)):
        lo, hi = r
        if hi <= lo:
            out[i] = 0.0
            continue
        _map_range(np.asarray(ch).astype(getattr(r, "dtype", np.float32)), lo, hi, out[i])
    return out


# -- the network and its labels over tiles ---------------------------------------------------------
