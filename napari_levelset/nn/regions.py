"""What the strokes' evidence map learns from people's segmentations of photographs: ``RegionNet``.

A short stroke shows only a few pixels of its region.  Where two regions of a photograph
look alike in colour and local texture (a camel's head against its body, a snake on pine
needles), those features cannot tell them apart.  ``RegionNet`` is a small convolutional
network trained on the human segmentations of BSDS500's *train* images (Arbelaez et al.,
TPAMI 2011) to give, at every pixel,

* an **embedding** in which pixels of one region lie near each other and those of
  different regions far apart (the discriminative loss of De Brabandere, Neven & Van Gool,
  2017: each pixel pulled within ``0.5`` of its region's mean, the means pushed ``3``
  apart), and
* a **boundary** probability: how many of the people who segmented the image drew a region
  boundary there (class-balanced cross-entropy, as in Xie & Tu's HED, ICCV 2015).

``napari_levelset.method.strokes.stroke_prior`` uses both on a colour photograph: the
boundary makes the cost of the strokes' geodesic reach, and the embedding is part of the
look each class learns from the pixels its first map gave it.  The network is trained by
``benchmarks/train_regions.py`` and shipped as ``weights/regions_bsds.pt``.

torch is imported here: import this module only where torch is wanted.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["REGIONS_FILE", "RegionNet", "load_region_net", "region_features", "standardise"]

#: The shipped network's weights (``benchmarks/train_regions.py`` on BSDS500 train).
REGIONS_FILE = Path(__file__).resolve().parents[1] / "weights" / "regions_bsds.pt"


class RegionNet(nn.Module):
    """Per-pixel region embedding and boundary logit of a 2D colour image.

    Three scales: two convolutions at full resolution, two at half, and at a quarter four
    dilated residual convolutions (dilation 1, 2, 4, 8: a receptive field of about 130
    pixels); each coarser scale is upsampled (bilinear) and joined to the finer one.

    Parameters
    ----------
    in_channels : int
        C, the image's channels (3: CIELAB as ``napari_levelset.io.prepare`` makes it).
    dim : int
        D, the embedding's dimensions.
    widths : tuple of int
        Channels at full, half and quarter resolution.

    Notes
    -----
    ``forward(x)`` maps ``(B, C, H, W)`` float32 (``standardise``\\ d) to ``(embedding (B, D,
    H, W), boundary logit (B, H, W))``.
    """

    def __init__(self, in_channels: int = 3, dim: int = 16, widths: tuple[int, int, int] = (24, 48, 64)):
        super().__init__()
        c1, c2, c3 = widths
        self.a1 = nn.Conv2d(in_channels, c1, 3, padding=1)
        self.a2 = nn.Conv2d(c1, c1, 3, padding=1)
        self.b1 = nn.Conv2d(c1, c2, 3, padding=1)
        self.b2 = nn.Conv2d(c2, c2, 3, padding=1)
        self.c0 = nn.Conv2d(c2, c3, 3, padding=1)
        self.cs = nn.ModuleList([nn.Conv2d(c3, c3, 3, padding=d, dilation=d) for d in (1, 2, 4, 8)])
        self.bm = nn.Conv2d(c2 + c3, c2, 3, padding=1)
        self.am = nn.Conv2d(c1 + c2, 32, 3, padding=1)
        self.emb = nn.Conv2d(32, dim, 1)
        self.edge = nn.Conv2d(32, 1, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, w = x.shape[-2:]
        a = F.relu(self.a2(F.relu(self.a1(x))))
        b = F.avg_pool2d(a, 2, ceil_mode=True)
        b = F.relu(self.b2(F.relu(self.b1(b))))
        c = F.relu(self.c0(F.avg_pool2d(b, 2, ceil_mode=True)))
        for conv in self.cs:
            c = c + F.relu(conv(c))
        c = F.interpolate(c, size=b.shape[-2:], mode="bilinear", align_corners=False)
        b = F.relu(self.bm(torch.cat([b, c], 1)))
        b = F.interpolate(b, size=(h, w), mode="bilinear", align_corners=False)
        m = F.relu(self.am(torch.cat([a, b], 1)))
        return self.emb(m), self.edge(m)[:, 0]


def standardise(item) -> torch.Tensor:
    """One item ``(C, H, W)`` with each channel at mean 0 and standard deviation 1 over it, float32 tensor."""
    x = torch.as_tensor(np.asarray(item, np.float32))
    mean = x.mean((1, 2), keepdim=True)
    std = x.std((1, 2), keepdim=True) + 1e-6
    return (x - mean) / std


#: the last item's key (weights file, shape, a hash of its values) and features, for ``region_features``
_LAST: dict = {}


def load_region_net(path: str | None = None) -> RegionNet:
    """The trained ``RegionNet`` of ``path`` (None: ``REGIONS_FILE``), on the CPU, in eval mode (cached).

    Raises
    ------
    FileNotFoundError
        When the file is missing.
    """
    return _load_region_net(_weights_file(path))


def _weights_file(path: str | None) -> str:
    """The weights file ``path`` names (None: ``REGIONS_FILE``), as the caches key it."""
    return str(REGIONS_FILE if path is None else path)


@lru_cache(maxsize=2)
def _load_region_net(path: str) -> RegionNet:
    """``load_region_net`` of a resolved path: one network per file, whichever way it was named."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    net = RegionNet(**state["config"])
    net.load_state_dict({k: v.float() for k, v in state["weights"].items()})
    return net.to(memory_format=torch.channels_last).eval()


def region_features(item: np.ndarray, path: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The learnt embedding and boundary probability of one 2D colour item.

    Parameters
    ----------
    item : numpy.ndarray
        Float ``(C, H, W)``, one item of a photograph as ``napari_levelset.io.prepare`` makes
        it with ``color="lab"`` (each channel is standardised here, so any per-channel linear
        scaling gives the same result).
    path : str or None
        A weights file; None: the shipped ``REGIONS_FILE``.

    Returns
    -------
    embedding : numpy.ndarray
        float64 ``(D, H, W)``, read-only.
    boundary : numpy.ndarray
        float64 ``(H, W)`` in [0, 1], read-only.  The last item's features are kept, so a
        call on an item of the same values (new strokes on the same image) gives them back
        without running the network.

    Raises
    ------
    ValueError
        When ``item`` is not ``(C, H, W)`` with the network's channel count.
    """
    net = load_region_net(path)
    if item.ndim != 3 or item.shape[0] != net.a1.in_channels:
        raise ValueError(f"an item of shape {item.shape} for a network of {net.a1.in_channels} channels in 2D")
    item = np.ascontiguousarray(item, np.float32)
    key = (_weights_file(path), item.shape, hashlib.blake2b(item.tobytes(), digest_size=16).digest())
    if _LAST.get("key") != key:  # new strokes on the same image (the widget) do not run the network again
        with torch.inference_mode():  # channels last: a third faster on a CPU
            emb, edge = net(standardise(item)[None].contiguous(memory_format=torch.channels_last))
        features = emb[0].contiguous().double().numpy(), torch.sigmoid(edge[0]).contiguous().double().numpy()
        for array in features:
            array.setflags(write=False)
        _LAST.update(key=key, features=features)
    return _LAST["features"]
