"""Fully-convolutional inference over overlapping tiles, equal to whole-image inference.

A *local* network (every output pixel depends only on inputs within
``radius`` pixels per axis; see ``napari_levelset.nn.unet``) that needs sizes that
are a multiple of ``multiple`` (its down-sampling factor) is applied to an
image ``(B, C, *S)`` tile by tile:

* The image is conceptually padded by edge replication to ``P``, the next
  multiple of ``multiple`` along each axis -- the same padding the network uses
  on a whole image -- and ``[0, P)`` is cut into *cores* of ``tile`` pixels
  (``tile`` rounded up to a multiple of ``multiple``).
* Each core is grown by a *halo* of ``h >= radius + overlap`` pixels (rounded up
  to a multiple of ``multiple``, and clipped to ``[0, P)``), so tile origins lie
  on the down-sampling grid; the network runs on that tile alone (only one
  tile's activations exist at a time, on ``device``).
* From each tile the core grown by ``overlap`` pixels is kept -- at least
  ``radius`` pixels from any cut edge, hence exact -- and neighbouring tiles are
  blended over those ``2 * overlap`` pixels with a cosine ramp (the weights of
  the tiles covering a pixel sum to 1).  With the default halo the blend mixes
  equal values, so the result equals whole-image inference to float rounding;
  with a halo smaller than the receptive field it hides the seams.

The output (``raw`` network output, ``probs`` = softmax over channels, or
``labels`` = the arg-max, without any ``(K, *S)`` buffer) is assembled on
``out_device`` (the CPU by default).

Notes
-----
This is overlap-tile inference as in U-Net (Ronneberger, Fischer & Brox, MICCAI 2015),
with the halo taken from the network's receptive field so that tiling changes nothing,
and a cosine (``sin**2``) cross-fade where a smaller halo is asked for.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

from napari_levelset.nn.devices import resolve_device

__all__ = ["predict", "tile_grid", "tiled_apply"]


def _per_axis(value, ndim: int, name: str) -> tuple[int, ...]:
    if isinstance(value, (int, np.integer)):
        return (int(value),) * ndim
    value = tuple(int(v) for v in value)
    if len(value) != ndim:
        raise ValueError(f"{name} needs {ndim} values (one per spatial axis), got {value}")
    return value


def _round_up(v: int, m: int) -> int:
    return -(-v // m) * m


def tile_grid(shape: Sequence[int], *, radius, multiple=1, tile=512, overlap=8, halo=None) -> list[list[tuple]]:
    """Per axis, the list of ``(core_start, core_stop, in_start, in_stop, keep_start, keep_stop)``.

    Coordinates are in the image padded to a multiple of ``multiple``; keep
    ranges are clipped to the real size.

    Parameters
    ----------
    shape : sequence of int
        Spatial shape ``S`` of the image, pixels.
    radius : int or sequence of int
        Receptive radius of the network, pixels (one value, or one per axis).
    multiple : int or sequence of int
        Sizes the network needs are multiples of this (its down-sampling factor).
    tile : int or sequence of int
        Core size, pixels, rounded up to a multiple of ``multiple``.
    overlap : int or sequence of int
        Pixels each core is grown by on a shared border and blended over (at most half a tile).
    halo : int or sequence of int or None
        Input margin around a core, pixels (rounded up to ``multiple``); None:
        ``radius + overlap``.

    Returns
    -------
    list of list of tuple
        One list per axis of 6-tuples of int: the core ``[core_start, core_stop)``, the input
        read ``[in_start, in_stop)`` and the range kept ``[keep_start, keep_stop)``.  An axis
        that fits in one tile has the one entry ``(0, P, 0, P, 0, s)``.

    Raises
    ------
    ValueError
        When a per-axis value does not have one entry per axis of ``shape``.

    Examples
    --------
    >>> tile_grid((100,), radius=4, tile=64, overlap=8)
    [[(0, 64, 0, 76, 0, 72), (64, 100, 52, 100, 56, 100)]]
    """
    nd = len(shape)
    radius = _per_axis(radius, nd, "radius")
    multiple = _per_axis(multiple, nd, "multiple")
    tile = _per_axis(tile, nd, "tile")
    overlap = _per_axis(overlap, nd, "overlap")
    grid = []
    for ax in range(nd):
        s, m = int(shape[ax]), max(1, multiple[ax])
        padded = _round_up(s, m)
        t = max(m, _round_up(tile[ax], m))
        o = max(0, overlap[ax])
        if t >= padded:  # one tile along this axis: no halo needed
            grid.append([(0, padded, 0, padded, 0, s)])
            continue
        o = min(o, t // 2)
        h = _round_up(radius[ax] + o, m) if halo is None else _round_up(_per_axis(halo, nd, "halo")[ax], m)
        o = min(o, h)
        entries = []
        for c0 in range(0, padded, t):
            c1 = min(c0 + t, padded)
            lo = c0 - o if c0 > 0 else 0
            hi = c1 + o if c1 < padded else padded
            entries.append((c0, c1, max(0, c0 - h), min(padded, c1 + h), lo, min(s, hi)))
        grid.append(entries)
    return grid


def _ramp(entry: tuple, overlap: int, padded: int) -> torch.Tensor:
    """Blend weights over one tile's keep range along one axis (cosine ramps at shared borders)."""
    c0, c1, _, _, k0, k1 = entry
    i = torch.arange(k0, k1, dtype=torch.float64) + 0.5
    w = torch.ones_like(i)
    if overlap > 0:
        if c0 > 0:
            t = ((i - (c0 - overlap)) / (2 * overlap)).clamp(0, 1)
            w = w * torch.sin(t * math.pi / 2) ** 2
        if c1 < padded:
            t = (((c1 + overlap) - i) / (2 * overlap)).clamp(0, 1)
            w = w * torch.sin(t * math.pi / 2) ** 2
    return w.float()


@torch.no_grad()
def tiled_apply(
    fn: Callable[[torch.Tensor], torch.Tensor],
    x,
    *,
    radius,
    multiple=1,
    tile=None,
    overlap=8,
    halo=None,
    output: str = "raw",
    device=None,
    out_device="cpu",
) -> torch.Tensor:
    """Apply the local, fully-convolutional ``fn`` to ``x`` ``(B, C, *S)`` tile by tile.

    Parameters
    ----------
    fn : callable
        ``(B, C, *T) -> (B, K, *T)`` tensor function, local within ``radius``, that keeps the
        batch and spatial shape (a network in eval mode, under ``torch.no_grad``).
    x : torch.Tensor or array-like
        Float ``(B, C, *S)``.
    radius : int or sequence of int
        Receptive radius of ``fn``, pixels per spatial axis.
    multiple : int or sequence of int
        Tile sizes ``fn`` needs are multiples of this.
    tile : int or sequence of int or None
        Core size, pixels; defaults to 512 in 2D, 128 in 3D.
    overlap : int or sequence of int
        Pixels of cosine blend on each side of a shared border (0 for ``labels``).
    halo : int or sequence of int or None
        Input margin around a core, pixels; defaults to ``radius + overlap`` rounded up to
        ``multiple`` (exact: equal to whole-image inference to float rounding).
    output : {"raw", "probs", "labels"}
        ``raw``: ``fn``'s output; ``probs``: softmax over ``K``; ``labels``: the arg-max,
        written core by core (the blend is not needed there).
    device : str or torch.device or None
        Where the tiles run (default: ``x``'s device).
    out_device : str or torch.device or None
        Where the result is assembled (None: ``x``'s device).

    Returns
    -------
    torch.Tensor
        ``raw``/``probs``: float32 ``(B, K, *S)``; ``labels``: ``(B, *S)``, uint8 when
        ``K <= 256`` else int32.  On ``out_device``.

    Raises
    ------
    ValueError
        When ``output`` is unknown, ``x`` has fewer than 3 axes, a per-axis value has the
        wrong length, or ``fn`` changes the batch or spatial shape.

    Examples
    --------
    >>> import torch
    >>> conv = torch.nn.Conv2d(1, 2, 3, padding=1, padding_mode="replicate")
    >>> x = torch.rand(1, 1, 40, 40)
    >>> y = tiled_apply(conv, x, radius=1, tile=16, overlap=2)
    >>> y.shape, torch.allclose(y, conv(x), atol=1e-5)
    (torch.Size([1, 2, 40, 40]), True)
    """
    if output not in ("raw", "probs", "labels"):
        raise ValueError(f"output must be 'raw', 'probs' or 'labels', got {output!r}")
    x = torch.as_tensor(x)
    if x.dim() < 3:
        raise ValueError(f"x must be (B, C, *S), got shape {tuple(x.shape)}")
    spatial = tuple(x.shape[2:])
    nd = len(spatial)
    if tile is None:
        tile = 512 if nd <= 2 else 128
    device = torch.device(device) if device is not None else x.device
    out_device = torch.device(out_device) if out_device is not None else x.device
    ov = _per_axis(overlap, nd, "overlap")
    if output == "labels":
        ov = (0,) * nd
    grid = tile_grid(spatial, radius=radius, multiple=multiple, tile=tile, overlap=ov, halo=halo)
    padded = [g[-1][1] for g in grid]
    # the overlap each axis really uses (tile_grid may shrink it)
    used_ov = [(g[1][0] - g[1][4]) if len(g) > 1 else 0 for g in grid]
    out = None
    for combo in itertools.product(*grid):
        index = [torch.arange(e[2], e[3]).clamp_(max=s - 1) for e, s in zip(combo, spatial)]
        xt = x
        for ax, idx in enumerate(index):  # gather the tile (edge replication beyond the image)
            xt = xt.index_select(2 + ax, idx.to(x.device))
        y = fn(xt.to(device))
        if y.shape[0] != x.shape[0] or tuple(y.shape[2:]) != tuple(xt.shape[2:]):
            raise ValueError(f"fn must keep the batch and spatial shape: {tuple(xt.shape)} -> {tuple(y.shape)}")
        # crop to the keep range
        keep = tuple(slice(e[4] - e[2], e[5] - e[2]) for e in combo)
        y = y[(slice(None), slice(None)) + keep]
        dst = tuple(slice(e[4], e[5]) for e in combo)
        if output == "labels":
            if out is None:
                dtype = torch.uint8 if y.shape[1] <= 256 else torch.int32
                out = torch.zeros((x.shape[0],) + spatial, dtype=dtype, device=out_device)
            out[(slice(None),) + dst] = y.argmax(1).to(out.dtype).to(out_device)
            continue
        if output == "probs":
            y = torch.softmax(y.float(), 1)
        if out is None:
            out = torch.zeros((x.shape[0], y.shape[1]) + spatial, dtype=torch.float32, device=out_device)
        w = None
        for ax, e in enumerate(combo):
            wa = _ramp(e, used_ov[ax], padded[ax]).to(y.device)
            wa = wa.view((-1,) + (1,) * (nd - 1 - ax))
            w = wa if w is None else w * wa
        out[(slice(None), slice(None)) + dst] += (y.float() * w).to(out_device)
    return out


def predict(
    net: torch.nn.Module, x, *, tile=None, overlap=8, halo=None, output: str = "probs", device="auto", out_device="cpu"
) -> torch.Tensor:
    """Tiled inference with a network that has ``receptive_radius`` and ``multiple``.

    Parameters
    ----------
    net : torch.nn.Module
        A local, fully-convolutional network with ``receptive_radius`` and ``multiple``
        (``unet.LevelSetUNet``, ``pretrained.PretrainedNetwork``); put in eval mode for the call,
        its training mode restored after.
    x : numpy.ndarray or torch.Tensor
        The prepared image, float32 ``(B, C, *S)`` (e.g.
        ``napari_levelset.io.prepare.prepare_image(...).data``).
    tile : int or sequence of int or None
        Core size, pixels (see :func:`tiled_apply`).
    overlap : int or sequence of int
        Blend width, pixels (see :func:`tiled_apply`).
    halo : int or sequence of int or None
        Input margin, pixels (see :func:`tiled_apply`).
    output : {"probs", "raw", "labels"}
        What to return.
    device : str or torch.device
        Where the network runs; ``"auto"``: as ``napari_levelset.nn.devices.resolve_device`` chooses.
    out_device : str or torch.device or None
        Where the result is assembled.

    Returns
    -------
    torch.Tensor
        float32 ``(B, N, *S)`` logits (``output="raw"``) or probabilities, or ``(B, *S)``
        labels 0..N-1 (uint8 for N <= 256), on ``out_device``.

    Examples
    --------
    >>> import numpy as np
    >>> from napari_levelset.io.prepare import prepare_image
    >>> from napari_levelset.nn.pretrained import build_network
    >>> net = build_network("unet", in_channels=1, n_classes=3)
    >>> x = prepare_image(np.random.rand(64, 64)).data
    >>> predict(net, x, output="labels", device="cpu").shape
    torch.Size([1, 64, 64])
    """

    dev = resolve_device(device)
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
    was_training = net.training
    net.to(dev).eval()
    fn = getattr(net, "_whole", net)
    try:
        return tiled_apply(
            fn,
            x,
            radius=net.receptive_radius,
            multiple=net.multiple,
            tile=tile,
            overlap=overlap,
            halo=halo,
            output=output,
            device=dev,
            out_device=out_device,
        )
    finally:
        net.train(was_training)
