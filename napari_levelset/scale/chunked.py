"""Volumes larger than memory: labels computed chunk by chunk, from zarr / OME-Zarr to zarr / OME-Zarr.

A volume ``(*S)`` (grey) or ``(C, *S)`` (``channel_axis=0``) is read lazily
from a zarr array (or any array: numpy, dask, zarr) and segmented without ever
holding more than one tile of it in float:

1. **Normalisation**, the rule of ``napari_levelset.io.prepare.normalize``, with the
   statistics of the whole volume, computed chunk by chunk and *exactly*: the
   0.5th / 99.5th percentiles from a histogram of every value (integers of up
   to 16 bits) or by selecting the order statistics in passes (other dtypes),
   and the brightest 3-pixel structure as the maximum of a 3-pixel minimum
   filter over chunks with a one-pixel halo.  Each tile is then mapped with
   those values, so it equals the same region of the whole normalised volume.
2. **The network.**  ``model="unet"`` (or a model file) is used as trained;
   the per-image CNN (``model="cnn"``) is optimised by ``Segmenter`` on
   ``crops`` random crops of ``crop`` pixels per axis drawn from the volume (a
   batch with one shared network; with ``max_pixels`` the steps take random
   subsets of them and the class means come from running statistics, see
   ``Segmenter``).  A U-Net may be fine-tuned the same way (``iterations``).
3. **Labels over tiles** of ``tile`` pixels whose inputs are grown by a halo at
   least the network's receptive radius and aligned to its down-sampling grid
   (``napari_levelset.nn.tiling.tile_grid``: the exact tiling the in-memory code
   uses), in eval mode, so every label equals whole-volume inference with the
   same network.  Tiles are tasks of a dask graph: they run in this process
   (``scheduler="sync"`` or ``"threads"``) or on a ``dask.distributed``
   cluster (``client=``), each task writing its own chunks of the output
   zarr.  Label *k* is network class ``order[k-1]`` (``Segmenter.settings()``);
   a U-Net used directly orders its classes darkest first by the class means
   of the whole volume, which a first pass sums tile by tile (the labels are
   then relabelled chunk by chunk).

Output: a zarr array of labels 1..N (uint8, uint16 beyond 255 classes) with
the volume's spatial shape, chunked like the tiles; ``ome=True`` writes an
OME-Zarr (NGFF 0.4) image group with its axes and voxel size, whose level
``0`` holds the labels.  Opening, making and reading the zarr arrays is
:mod:`napari_levelset.io.zarr`'s.  Sources: zarr (https://zarr.dev), dask
(https://dask.org), the OME-NGFF specification (https://ngff.openmicroscopy.org).

Examples
--------
>>> import numpy as np
>>> vol = np.random.default_rng(0).random((24, 48, 48)).astype(np.float32)
>>> labels = segment_volume(vol, n_classes=2, iterations=2, crop=16, crops=2, tile=32)
>>> labels.shape, labels.dtype
((24, 48, 48), dtype('uint8'))
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from napari_levelset import validate
from napari_levelset.errors import InputError
from napari_levelset.io.prepare import Prepared
from napari_levelset.io.write import labels_dtype
from napari_levelset.io.zarr import Volume, create_labels
from napari_levelset.method.segmentation import run_with_progress
from napari_levelset.method.segmenter import Segmenter
from napari_levelset.nn.tiling import tile_grid
from napari_levelset.resources import available_memory
from napari_levelset.scale.statistics import (
    _as_volume,
    _compute,
    _layout,
    _per_axis_tile,
    _read,
    _scheduler,
    _tiles,
    normalize_block,
    value_range,
)
from napari_levelset.settings import Settings, model_kind

__all__ = ["VolumeModel", "fit_volume", "from_segmenter", "normalize_block", "segment_volume", "value_range"]

#: fewest pixels the crops may hold when a network is fitted on them (its batch normalisation needs more than one)
MIN_FIT_PIXELS = 16


@dataclass
class VolumeModel:
    """What labels a volume chunk by chunk (made by :func:`fit_volume` or :func:`from_segmenter`).

    Parameters
    ----------
    network : torch.nn.Module
        ``(B, C, *S) -> (B, N, *S)`` logits, used in eval mode.
    ranges : list
        The normalisation ``(lo, hi)`` per channel (``value_range``).
    n_classes : int
        N.
    order : numpy.ndarray or None
        Label *k* is network class ``order[k-1]``; None: computed from the whole volume's
        class means.
    working_dtype : type
        The float type tiles are computed in.
    settings : dict
        The ``Segmenter``'s settings.
    """

    network: Any
    ranges: list
    n_classes: int
    order: np.ndarray | None = None
    working_dtype: Any = np.float32
    settings: dict = field(default_factory=dict)

    @property
    def radius(self) -> tuple[int, ...] | int:
        """The network's receptive radius in pixels (per axis, or one for all)."""
        return getattr(self.network, "receptive_radius", getattr(self.network, "depth", 8))

    @property
    def multiple(self):
        """The multiple (per axis, or one for all) the network's input sizes must be."""
        return getattr(self.network, "multiple", 1)


def _check_crops_fit(count: int, crop: int, spatial, channels: int) -> None:
    """Refuse crops whose copies (raw, normalised, the network's input: float32) memory cannot hold."""
    need = 3 * 4 * count * channels * int(np.prod([min(crop, s) for s in spatial], dtype=np.float64))
    free = available_memory()
    if need > free:
        raise InputError(
            f"{count} crops of {crop} pixels per axis need about {need / 2**30:.1f} GiB, more than the "
            f"{free / 2**30:.1f} GiB this process may use: give fewer crops or a smaller crop"
        )


def _random_crops(data, ch, spatial, crop, count, seed) -> np.ndarray:
    rng = np.random.default_rng(seed)
    size = tuple(min(int(crop), s) for s in spatial)
    out = []
    for _ in range(int(count)):
        start = [int(rng.integers(0, s - c + 1)) for s, c in zip(spatial, size)]
        region = tuple((a, a + c) for a, c in zip(start, size))
        out.append(_read(data, None if ch == 0 else -1, region))
    return np.stack(out)  # (K, *size) or (K, C, *size)


def fit_volume(
    volume,
    n_classes: int | None = None,
    *,
    model: Any = "cnn",
    iterations: int | None = None,
    lam: float | None = None,
    crop: int = 64,
    crops: int = 8,
    max_pixels: int | None = None,
    seed: int = 0,
    channel_axis: int | None = None,
    device: str = "auto",
    ranges=None,
    progress: bool = False,
    scheduler=None,
    client=None,
    **kwargs,
) -> VolumeModel:
    """Prepare the network that labels ``volume`` chunk by chunk (see the module's steps 1-2).

    ``model="cnn"``: the per-image CNN optimised for ``iterations`` (default
    100) on ``crops`` random crops of ``crop`` pixels per axis (seeded by
    ``seed``), normalised with the whole volume's statistics; ``max_pixels``
    (default: two crops) bounds the pixels of one step.  ``model="unet"`` or a
    model file: used as trained, or fine-tuned on the crops for
    ``iterations`` > 0.  Other keyword arguments go to ``Segmenter`` (``lr``,
    ``width``, ``depth``, ``init``, ``finetune``).

    Parameters
    ----------
    volume : str or os.PathLike or Volume or array-like
        A zarr / OME-Zarr path, a ``Volume``, or an array ``(*S)`` or ``(C, *S)``.
    n_classes : int or None
        N (None: the default, ``settings.Settings.resolved``).
    model : str or os.PathLike
        ``"cnn"``, ``"unet"`` or a model file.
    iterations : int or None
        Optimisation steps (None: the default for the CNN, 0 for a U-Net).
    lam : float or None
        Weight of the level-set loss's length term (None: the default).
    crop : int
        Pixels per axis of a random crop.
    crops : int
        Number of random crops.
    max_pixels : int or None
        Most pixels of one step (None: two crops for the CNN).
    seed : int
        Seed of the crops and of the network.
    channel_axis : int or None
        0 for channels first (None: from the volume's axes).
    device : str
        torch device, or ``"auto"``.
    ranges : list or None
        The normalisation per channel (None: ``value_range`` of the volume).
    progress : bool
        Show a progress bar.
    scheduler : str or None
        dask scheduler for ``value_range``.
    client : dask.distributed.Client or None
        Cluster for ``value_range``.
    **kwargs
        Go to ``Segmenter``.

    Returns
    -------
    VolumeModel
        The network in eval mode, without gradients, with ``ranges`` and the label order.

    Raises
    ------
    InputError
        For bad settings or data (as :func:`value_range`), ``crop`` or ``crops`` not a whole
        number >= 1, or crops that memory cannot hold.
    """
    vol = _as_volume(volume)
    ch, spatial = _layout(vol, channel_axis)
    scheduler = _scheduler(scheduler)
    crop, crops = validate.integer("crop", crop, 1, None), validate.integer("crops", crops, 1, None)
    # the per-model defaults (N, lam, iterations, the start) as segment() resolves them
    s = Settings(
        n_classes=n_classes, lam=lam, iterations=iterations, model=model, seed=seed, device=device, **kwargs
    ).resolved()
    n_classes, lam, iterations = s.n_classes, s.lam, s.iterations
    per_image = model_kind(model) == "cnn"
    if ranges is None:
        ranges = value_range(vol, ch, structures=per_image, scheduler=scheduler, client=client)
    crop, crops = crop if iterations or per_image else 16, crops if iterations else 1
    held = crops * int(np.prod([min(crop, n) for n in spatial], dtype=np.float64))
    if iterations and held < MIN_FIT_PIXELS:
        raise InputError(
            f"{crops} crop(s) of up to {crop} pixels per axis of a volume of shape {tuple(spatial)} hold {held} "
            f"pixels; a network is fitted on at least {MIN_FIT_PIXELS}: give a larger crop (or more crops)"
        )
    _check_crops_fit(crops, crop, spatial, 1 if ch is None else int(vol.data.shape[0]))
    raw = _random_crops(vol.data, ch, spatial, crop, crops, seed)
    if ch is None:
        raw = raw[:, np.newaxis]
    data = np.stack([normalize_block(r, ranges) for r in raw])  # (K, C, *crop)
    prepared = Prepared(
        data=np.ascontiguousarray(data),
        batch_shape=(data.shape[0],),
        spatial_shape=tuple(data.shape[2:]),
        channel_axis=None if ch is None else 0,
        color="rgb",
    )
    if max_pixels is None and per_image:
        max_pixels = 2 * int(np.prod(data.shape[2:]))
    # no position channels: a volume's chunks are labelled each on its own grid
    seg = Segmenter(
        None,
        settings=s.replace(max_pixels=max_pixels, color="rgb", position=0.0 if s.position is None else s.position),
        prepared=prepared,
    )
    run_with_progress(seg, iterations, progress, desc="level-set (crops)")
    settings = seg.settings
    # a k-means start fixes label k = class k - 1 (ids darkest first); otherwise the order
    # comes from the class means of the whole volume
    order = np.asarray(settings["order"]) if settings.get("init") == "kmeans" else None
    net = seg.model
    net.eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return VolumeModel(net, list(ranges), int(n_classes), order, settings=settings)


def from_segmenter(seg, ranges) -> VolumeModel:
    """A ``VolumeModel`` from a trained ``Segmenter`` (its network, in eval mode, and its label order).

    ``ranges``: the normalisation of the volume to label (``value_range``,
    with ``structures=True`` for the per-image CNN, False for a U-Net), which
    must be what ``seg`` was prepared with for its labels to carry over (as
    for a Segmenter made on the same data, or on crops normalised with them).
    With a k-means start the order is the Segmenter's own (label *k* = class
    *k* - 1); otherwise its order, decided on its image, is kept too.  Only a
    model without position channels can be used tile by tile.

    Parameters
    ----------
    seg : napari_levelset.method.segmenter.Segmenter
        A trained Segmenter.
    ranges : sequence of tuple of float
        The normalisation per channel of the volume to label.

    Returns
    -------
    VolumeModel
        Sharing ``seg``'s network (put in eval mode).

    Raises
    ------
    InputError
        When the Segmenter has position channels (``position > 0``).
    """
    settings = seg.settings
    if settings.get("position"):
        raise InputError(
            "a Segmenter with position channels (position > 0) cannot label tiles: their coordinates "
            "are the whole image's"
        )
    net = seg.model
    net.eval()
    return VolumeModel(net, list(ranges), int(seg.n_classes), np.asarray(settings["order"]), settings=settings)


def _inference_fn(net):
    return getattr(net, "_whole", net)


def _tile_logits(vm: VolumeModel, data, ch, region):
    import torch

    block = _read(data, None if ch == 0 else -1, region)
    if ch is None:
        block = block[np.newaxis]
    x = torch.from_numpy(normalize_block(block, vm.ranges))[None]
    dev = next(iter(vm.network.parameters()), torch.empty(0)).device
    with torch.no_grad():
        logits = _inference_fn(vm.network)(x.to(dev))
    return x, logits


def _grid(vm: VolumeModel, spatial, tile):
    return tile_grid(spatial, radius=vm.radius, multiple=vm.multiple, tile=tile, overlap=0)


def segment_volume(
    volume,
    output=None,
    n_classes: int | None = None,
    *,
    model: Any = "cnn",
    iterations: int | None = None,
    lam: float | None = None,
    tile=None,
    crop: int = 64,
    crops: int = 8,
    max_pixels: int | None = None,
    seed: int = 0,
    channel_axis: int | None = None,
    device: str = "auto",
    ome: bool | None = None,
    overwrite: bool = False,
    scheduler: str | None = None,
    client=None,
    progress: bool = False,
    fitted: VolumeModel | None = None,
    **kwargs,
):
    """Segment a volume chunk by chunk; returns the labels (a zarr array at ``output``, or numpy).

    ``volume``: a zarr / OME-Zarr path, a ``Volume``, or any array ``(*S)`` or
    ``(C, *S)`` (``channel_axis=0``).  ``output``: a path for the labels
    (zarr; an OME-Zarr image group with ``ome=True``, the default when the
    input is one), or None for an in-memory numpy result.  ``tile``: pixels
    per axis of a task (default: the input's chunks, 128 where it has none);
    the output is chunked by it.  Model settings as ``fit_volume`` (or pass
    ``fitted``).  ``scheduler``: a dask scheduler for the tiles (``"sync"``,
    the default, one at a time; ``"threads"``), or ``client`` a
    ``dask.distributed.Client``.  Labels are 1..N, uint8 (uint16 beyond 255
    classes), equal to whole-volume inference with the same network.

    Parameters
    ----------
    volume : str or os.PathLike or Volume or array-like
        A zarr / OME-Zarr path, a ``Volume``, or an array ``(*S)`` or ``(C, *S)``.
    output : str or os.PathLike or None
        Zarr path for the labels, or None for numpy.
    n_classes : int or None
        As :func:`fit_volume`.
    model : str or os.PathLike
        As :func:`fit_volume`.
    iterations : int or None
        As :func:`fit_volume`.
    lam : float or None
        As :func:`fit_volume`.
    tile : int or sequence of int or None
        Pixels per axis of a task (rounded up to the network's multiple).
    crop : int
        As :func:`fit_volume`.
    crops : int
        As :func:`fit_volume`.
    max_pixels : int or None
        As :func:`fit_volume`.
    seed : int
        As :func:`fit_volume`.
    channel_axis : int or None
        0 for channels first (None: from the volume's axes).
    device : str
        torch device, or ``"auto"``.
    ome : bool or None
        Write an OME-Zarr image group (None: when the input has axes).
    overwrite : bool
        Replace an existing ``output``.
    scheduler : str or None
        dask scheduler for the tiles.
    client : dask.distributed.Client or None
        Cluster for the tiles (needs ``output``).
    progress : bool
        Show progress bars.
    fitted : VolumeModel or None
        Use this model instead of fitting one.
    **kwargs
        Go to ``Segmenter`` (through :func:`fit_volume`).

    Returns
    -------
    zarr.Array or numpy.ndarray
        Labels 1..N with the volume's spatial shape.

    Raises
    ------
    InputError
        For bad input (as :func:`fit_volume`), when ``output`` exists without ``overwrite``, or
        a ``client`` is given without ``output``.
    """
    vol = _as_volume(volume)
    ch, spatial = _layout(vol, channel_axis)
    scheduler = _scheduler(scheduler)
    tile = _per_axis_tile(tile, vol.data, spatial)
    if output is not None and Path(output).exists() and not overwrite:
        raise InputError(f"{output} exists (give --overwrite to replace it)")
    vm = fitted or fit_volume(
        vol,
        n_classes,
        model=model,
        iterations=iterations,
        lam=lam,
        crop=crop,
        crops=crops,
        max_pixels=max_pixels,
        seed=seed,
        channel_axis=ch,
        device=device,
        progress=progress,
        scheduler=scheduler,
        client=client,
        **kwargs,
    )
    mult = vm.multiple
    mult = (int(mult),) * len(spatial) if isinstance(mult, (int, np.integer)) else tuple(int(m) for m in mult)
    # cores on the down-sampling grid, one output chunk each (parallel tasks never share a chunk)
    tile = tuple(-(-t // m) * m for t, m in zip(_per_axis_tile(tile, vol.data, spatial), mult))
    dtype = labels_dtype(vm.n_classes)
    target = _label_store(vol, output, spatial, tile, dtype, ome, overwrite)
    grid = _grid(vm, spatial, tile)
    combos = list(itertools.product(*grid))
    lut = None if vm.order is None else _lut(vm.order, dtype)
    if output is None and client is not None:
        raise InputError("a dask.distributed cluster writes its labels to a zarr output: give output=")
    results = _label_tiles(vm, vol.data, ch, combos, target, lut, dtype, scheduler, client, progress)
    if lut is None:
        _order_darkest_first(vm, results, target, spatial, tile, dtype)
    return target


def _label_tiles(vm: VolumeModel, data, ch, combos, target, lut, dtype, scheduler, client, progress) -> list:
    """One dask task per tile of ``combos`` (``tile_grid`` entries), each writing its labels into ``target``.

    With ``lut`` the labels are ``lut[class]``; without, the network's classes, and each task
    returns its class sums (``sum p x`` and ``sum p`` over its pixels) for the order.
    """
    from dask import delayed

    # the network goes to each worker once (not once per task): a scattered copy
    net_ref = client.scatter(vm, broadcast=True, hash=False) if client is not None else None

    def run_tile(vm, combo, store):
        import torch

        region = tuple((e[2], e[3]) for e in combo)
        x, logits = _tile_logits(vm, data, ch, region)
        keep = tuple(slice(e[4] - e[2], e[5] - e[2]) for e in combo)
        cls = logits.argmax(1)[0][keep].numpy()
        dst = tuple(slice(e[4], e[5]) for e in combo)
        sums = None
        if lut is None:  # class sums for the darkest-first order: sum p x and sum p over the kept pixels
            p = torch.softmax(logits.float(), 1)[0][(slice(None),) + keep].flatten(1).double()
            xs = x[0][(slice(None),) + keep].flatten(1).double()
            sums = torch.cat([p @ xs.T, p.sum(1, keepdim=True)], 1).numpy()
            store[dst] = cls.astype(dtype)
        else:
            store[dst] = lut[cls]
        return sums

    if client is not None:
        tasks = [delayed(run_tile)(net_ref, combo, target) for combo in combos]
    else:
        tasks = [delayed(lambda combo: run_tile(vm, combo, target))(combo) for combo in combos]
    if progress and client is None:
        results = []
        for t in tqdm(tasks, unit="tile", desc="labels", leave=False):
            results.extend(_compute([t], scheduler, None))
    else:
        results = _compute(tasks, scheduler, client)
    return results


def _label_store(vol: Volume, output, spatial, tile, dtype, ome, overwrite):
    """The labels' array: a zarr array (or OME-Zarr image) at ``output`` chunked by ``tile``, or numpy zeros."""
    if output is None:
        return np.zeros(spatial, dtype)
    if ome is None:
        ome = vol.axes is not None
    out_axes = vol.axes.replace("C", "") if vol.axes else None
    return create_labels(
        output, spatial, tile, dtype, axes=out_axes, spacing=vol.spacing, unit=vol.unit, ome=ome, overwrite=overwrite
    )


def _order_darkest_first(vm: VolumeModel, results, target, spatial, tile, dtype) -> None:
    """Order the classes by the whole volume's class means (the tiles' sums), then relabel chunk by chunk."""
    tot = np.sum([r for r in results if r is not None], axis=0)
    means = tot[:, :-1] / (tot[:, -1:] + 1e-8)
    bright = means[:, : vm.settings.get("brightness_channels", means.shape[1])].mean(1)
    order = np.argsort(bright, kind="stable")
    vm.order = order
    lut = _lut(order, dtype)
    for core, _ in _tiles(spatial, tile):
        sl = tuple(slice(a, b) for a, b in core)
        target[sl] = lut[np.asarray(target[sl])]


def _lut(order, dtype):
    lut = np.empty(len(order), dtype=dtype)
    lut[np.asarray(order)] = np.arange(1, len(order) + 1)
    return lut
