"""Fitting the optimisation in memory: the C heap kept between steps, and crops for large images.

A ``Segmenter`` (``napari_levelset.method.segmenter``) whose image would not fit in memory
optimises on random crops (``plan_crops``, ``random_window``), estimates the whole-image
class means from running statistics over the crops (``running_means``) and computes its
labels tile by tile (``tiled_logits``).  When an allocation fails anyway it gives the C
heap's free memory back (``release_heap``) and plans smaller crops.

Shapes: the network's input ``x`` is ``(B, C, *S)`` (``B`` batch items, ``C`` channels,
2 or 3 spatial axes ``S``); class probabilities are ``(B, N, *S)``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from typing import Any

import numpy as np
import torch

from napari_levelset.nn.tiling import tiled_apply
from napari_levelset.resources import available_memory

__all__ = [
    "CROP_MEAN_RATE",
    "free_memory",
    "keep_step_buffers",
    "plan_crops",
    "random_window",
    "release_heap",
    "running_means",
    "smaller_crops",
    "start_statistics",
    "tiled_logits",
]

#: glibc ``mallopt`` parameters (malloc.h) and the values ``keep_step_buffers`` sets
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_MMAP_THRESHOLD, _TRIM_THRESHOLD = 2**30, 2**31 - 1
_libc: Any = None

#: weight of the newest crop in the running class statistics of crop mode
CROP_MEAN_RATE = 0.1


def keep_step_buffers() -> bool:
    """Let the C heap keep the large buffers one optimisation step frees, for the next step.

    glibc serves allocations of 32 MiB and more (its largest dynamic ``mmap``
    threshold) with ``mmap`` and returns them to the system when freed, so every
    step of a large image maps its activations afresh and page-faults them in: at
    1024² the per-image CNN took 323 000 minor page faults and 2.3 s per step on one
    thread, against 0 faults and 0.6-0.9 s with the buffers kept (system time 3.9 s
    against 0.5 s for five steps).  This raises the ``mmap`` threshold to 1 GiB and
    the heap-trim threshold to 2 GiB (``mallopt``, see ``man mallopt``), once per process:
    the heap then keeps up to 2 GiB of freed memory for reuse (beyond that glibc hands it
    back).  It is not trimmed after each run: the widget calls ``Segmenter.run`` for a few
    iterations at a time.  Results are unchanged.

    Returns
    -------
    bool
        Whether the setting was made (False where the C library is not glibc).
    """
    global _libc
    if _libc is None:
        _libc = False
        if sys.platform.startswith("linux"):
            try:
                lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                lib.mallopt  # noqa: B018 - glibc only
            except (OSError, AttributeError):
                pass
            else:
                if lib.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD) and lib.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD):
                    _libc = lib
    return bool(_libc)


def release_heap() -> None:
    """Give the C heap's free memory back to the system (glibc ``malloc_trim``), after an allocation
    failed: under an address-space limit the memory ``keep_step_buffers`` keeps would otherwise stop
    other threads (oneDNN's) from getting any."""
    if _libc:
        _libc.malloc_trim(0)


def free_memory(device: torch.device) -> int:
    """Bytes free for activations on ``device``.

    Parameters
    ----------
    device : torch.device
        Where the run computes.

    Returns
    -------
    int
        A CUDA device's free memory, else the host memory this process can still allocate
        (:func:`napari_levelset.resources.available_memory`: within its rlimit and cgroup).
    """
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    return available_memory()  # host memory, within the process's rlimit and cgroup


def plan_crops(
    shape: tuple[int, ...], n_classes: int, max_pixels: int | None, width: int, device: torch.device
) -> dict | None:
    """Whether optimisation steps must work on crops, and on which.

    Parameters
    ----------
    shape : tuple of int
        The network input's shape ``(B, C, *S)``.
    n_classes : int
        N.
    max_pixels : int or None
        Most pixels (voxels, over the batch) one step may see; None: half the memory free on
        ``device`` (:func:`free_memory`) over an estimate of the bytes a pixel takes
        (``4 * (8 * width + 12 * N + 6 * C)``).
    width : int
        The per-image CNN's width (``Settings.width``), for that estimate.
    device : torch.device
        Where the run computes.

    Returns
    -------
    dict or None
        None when the whole input fits; else ``items`` (batch items per step), ``shape``
        (the crop's spatial shape, at least 16 pixels a side where the image has them) and
        ``max_pixels``.
    """
    B, C = shape[:2]
    spatial = tuple(shape[2:])
    per_item = int(np.prod(spatial))
    if max_pixels is None:
        bytes_per_pixel = 4 * (8 * width + 12 * n_classes + 6 * C)
        max_pixels = int(0.5 * free_memory(device) / bytes_per_pixel)
    max_pixels = max(int(max_pixels), 1)
    if B * per_item <= max_pixels:
        return None
    if per_item <= max_pixels:  # whole slices, a random subset of them per step
        return dict(items=max(1, max_pixels // per_item), shape=spatial, max_pixels=max_pixels)
    scale = (max_pixels / per_item) ** (1.0 / len(spatial))
    crop = tuple(max(min(s, 16), min(s, int(s * scale))) for s in spatial)
    return dict(items=1, shape=crop, max_pixels=max_pixels)


def smaller_crops(shape: tuple[int, ...], crop: dict | None) -> int | None:
    """After a failed allocation: the pixels for crops of a quarter of the pixels a step now uses.

    Parameters
    ----------
    shape : tuple of int
        The network input's shape ``(B, C, *S)``.
    crop : dict or None
        The crops now used (:func:`plan_crops`), None for the whole input.

    Returns
    -------
    int or None
        The ``max_pixels`` to plan crops with (at least 16 pixels a side where the image has
        them); None when the crops are already that small.
    """
    spatial = tuple(shape[2:])
    if crop is None:
        used = shape[0] * int(np.prod(spatial))
    else:
        used = crop["items"] * int(np.prod(crop["shape"]))
    smallest = int(np.prod([min(s, 16) for s in spatial]))
    if used <= smallest:
        return None
    return max(used // 4, smallest)


def random_window(
    rng: np.random.Generator, crop: dict, shape: tuple[int, ...], device: torch.device
) -> tuple[torch.Tensor, tuple[slice, ...]]:
    """The batch items and the window of one crop step, drawn from ``rng``.

    Parameters
    ----------
    rng : numpy.random.Generator
        The run's generator (seeded: the same crops on every run with the same seed).
    crop : dict
        What :func:`plan_crops` returned.
    shape : tuple of int
        The network input's shape ``(B, C, *S)``.
    device : torch.device
        Where the item indices go.

    Returns
    -------
    items : torch.Tensor
        int64 ``(k,)``, sorted batch indices (``k = min(B, crop["items"])``).
    window : tuple of slice
        ``(:, :, *spatial slices)``, indexing ``x[items]``.
    """
    B = shape[0]
    k = min(B, crop["items"])
    items = torch.from_numpy(np.sort(rng.choice(B, size=k, replace=False))).to(device)
    window = [slice(None), slice(None)]
    for size, full in zip(crop["shape"], shape[2:]):
        start = int(rng.integers(0, full - size + 1))
        window.append(slice(start, start + size))
    return items, tuple(window)


def start_statistics(centres: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Running crop statistics (see :func:`running_means`) that start at the k-means centres, equal class weights.

    Parameters
    ----------
    centres : torch.Tensor
        The class means ``(N, C)`` the network starts from.
    x : torch.Tensor
        The network input ``(B, C, *S)`` (its batch size, device and dtype are used).

    Returns
    -------
    torch.Tensor
        ``(B, N, C + 1)``: per batch item, each centre times ``1/N``, then ``1/N``.
    """
    n = centres.shape[0]
    c = centres.to(x.device, x.dtype)
    w = torch.full((n, 1), 1.0 / n, device=c.device, dtype=c.dtype)
    return torch.cat([c * w, w], 1).unsqueeze(0).repeat(x.shape[0], 1, 1)


def running_means(
    stats: torch.Tensor | None, probs: torch.Tensor, x: torch.Tensor, items: torch.Tensor, n_items: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Whole-image class means for a crop step, from running statistics over crops.

    The means of one crop alone would follow whatever the crop holds: a class
    the crop hardly contains gets a mean from a few stray pixels and can be
    lost for good.  Instead the per-pixel sums of ``y x`` and ``y`` are
    averaged over recent crops (exponentially, rate ``CROP_MEAN_RATE``; they
    start from the k-means centres), which estimates the whole-image means
    the full loss would use.

    Parameters
    ----------
    stats : torch.Tensor or None
        The running statistics ``(n_items, N, C + 1)`` (per batch item: the sums of ``y x``
        per channel, then of ``y``, per pixel), updated in place; None before the first crop.
    probs : torch.Tensor
        Class probabilities of the crop, ``(k, N, *s)`` (detached).
    x : torch.Tensor
        The crop, ``(k, C, *s)``.
    items : torch.Tensor
        The crop's batch items, int64 ``(k,)``.
    n_items : int
        Batch items of the whole input (``B``).

    Returns
    -------
    stats : torch.Tensor
        The updated statistics (``stats`` itself, or new ones when it was None).
    means : torch.Tensor
        Class means ``(k, N, C)``.
    """
    y = probs.flatten(2)
    xf = x.flatten(2)
    crop_stats = torch.cat([torch.bmm(y, xf.transpose(1, 2)), y.sum(-1, keepdim=True)], 2) / y.shape[-1]
    if stats is None:
        stats = torch.zeros((n_items,) + crop_stats.shape[1:], device=x.device, dtype=x.dtype)
        stats[items] = crop_stats
    else:
        r = CROP_MEAN_RATE
        stats[items] = (1 - r) * stats[items] + r * crop_stats
    s = stats[items]
    return stats, s[..., :-1] / (s[..., -1:] + 1e-8)


@torch.no_grad()
def tiled_logits(model: torch.nn.Module, x: torch.Tensor, max_pixels: int, device: torch.device) -> torch.Tensor:
    """Whole-image logits computed tile by tile (eval mode: BatchNorm's running statistics).

    Parameters
    ----------
    model : torch.nn.Module
        The network; its ``receptive_radius`` (else ``depth``, else 8) and ``multiple``
        (else 1) set the tiles' overlap and size multiple.  Its training mode is restored.
    x : torch.Tensor
        The input ``(B, C, *S)``.
    max_pixels : int
        Pixels of one tile, about (its side is the ``len(S)``-th root, at least 16).
    device : torch.device
        Where the logits go.

    Returns
    -------
    torch.Tensor
        Logits ``(B, N, *S)`` on ``device``.
    """
    radius = getattr(model, "receptive_radius", getattr(model, "depth", 8))
    multiple = getattr(model, "multiple", 1)
    side = max(16, int(max_pixels ** (1.0 / (x.dim() - 2))))
    was_training = model.training
    model.eval()
    try:
        chunks = [
            tiled_apply(
                model, x[b : b + 1], radius=radius, multiple=multiple, tile=side, output="raw", out_device=device
            )
            for b in range(x.shape[0])
        ]
    finally:
        model.train(was_training)
    return torch.cat(chunks)
