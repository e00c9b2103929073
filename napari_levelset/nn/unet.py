"""A pretrained U-Net for the level-set loss: any class count from one shared body.

Design
------
``LevelSetUNet`` = a U-Net *body* that maps the normalised image ``(B, C, *S)``
to an embedding ``(B, E, *S)`` at full resolution, plus one small *head per
class count* ``N`` (a 1x1 convolution of ``[embedding, image]`` to ``N``
logits).  All heads are trained together, unsupervised, with the level-set
loss (``napari_levelset.training.train``), so one model serves every ``N`` it has a head
for (the shipped model: 2..16) at the cost of a few hundred parameters per
head.  Feeding the image itself to the head gives it the same direct colour
path as the per-image CNN's ``skip``.

``build_network`` returns a ``PretrainedNetwork`` for one ``N``: channel
adapter + body + the head for ``N``.  What a per-image fine-tune with the
``Segmenter`` trains is ``finetune``: ``"head"`` (default: the body is frozen,
so each iteration costs a 1x1 convolution plus the loss), ``"last"`` (the last
full-resolution block of the body too) or ``"all"``.  The frozen part's output
is computed once per image and cached, so the fine-tune loop runs only the
trainable part.

Normalisation is a per-pixel LayerNorm over channels (``ChannelNorm``): it uses
no batch statistics (train and eval behave the same, any batch size) and, unlike
GroupNorm/InstanceNorm, no statistics over the image either, so the network is
*local*: every output pixel depends only on inputs within ``receptive_radius``
pixels.  That is what makes tiled inference (``napari_levelset.nn.tiling``) equal
to whole-image inference.  Inputs are padded (edge replication) to a multiple
of ``2**levels`` and the output is cropped back.

Model files
-----------
``save_model`` writes a ``torch.save`` dict of plain types and tensors only:
``format``, ``format_version``, ``metadata`` (a JSON string: architecture and
hyper-parameters, heads, normalisation, package version, training settings)
and ``state_dict``.  ``load_model`` reads it back with
``torch.load(weights_only=True)``, so no arbitrary code can run; anything else
(a missing, corrupt or foreign file, a mismatching state dict) raises
``napari_levelset.io.images.InputError`` with a one-line message.  Every architecture
value the metadata declares is bounded (``ARCH_LIMITS``, ``HEAD_CLASSES``), and
the declared network is built on torch's meta device and compared with the
stored weights (names and shapes) before any memory is allocated for it.  Training
checkpoints use the same format plus the optimiser state, so they load too.

References
----------
.. [1] O. Ronneberger, P. Fischer and T. Brox, "U-Net: convolutional networks for
   biomedical image segmentation", MICCAI 2015: the body's architecture.
.. [2] B. Kim and J. C. Ye, "Mumford-Shah loss functional for image segmentation with
   deep learning", IEEE Transactions on Image Processing 29, 1856-1866 (2020): the
   unsupervised loss the heads are trained with.
.. [3] J. L. Ba, J. R. Kiros and G. E. Hinton, "Layer normalization", arXiv:1607.06450
   (2016): ``ChannelNorm`` (``torch.nn.functional.layer_norm`` over channels).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from napari_levelset.errors import InputError
from napari_levelset.io.images import atomic_write
from napari_levelset.nn.models import conv_layer

__all__ = [
    "ChannelNorm",
    "UNet",
    "LevelSetUNet",
    "PretrainedNetwork",
    "build_network",
    "save_model",
    "load_model",
    "pretrained_path",
    "FORMAT",
    "FORMAT_VERSION",
    "MAX_CLASSES",
]

FORMAT = "napari-levelset-unet"
FORMAT_VERSION = 1
MAX_CLASSES = 16
WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
#: Shipped pretrained models, by name.
PRETRAINED = {"unet": "unet_bsds.pt"}
#: Largest embedding (bytes) kept between calls when the body is frozen.
CACHE_BYTES = 1 << 30
#: Normalisation the models are trained with and given (``napari_levelset.io.images.normalize`` with
#: ``structures=False``: the percentile rule the shipped model learned; with the brightest-structure
#: rule of the per-image CNN it scores lower on BSDS500 val, SC 0.574 -> 0.561 at N 32, merged).
NORMALISATION = ("per-channel linear map of the 0.5th..99.5th percentiles to [0, 1], clipped "
                 "(napari_levelset.io.images.normalize)")
#: ``structures`` argument of ``prepare_image`` for U-Nets (see ``NORMALISATION``)
STRUCTURES = False
NORMALISATION_LAB = ("CIELAB scaled by 1/100 (napari_levelset.io.images.to_lab); a grey image goes in as lightness, "
                     "normalised as for rgb, with a = b = 0")


# ----------------------------------------------------------------------------- layers
class ChannelNorm(nn.Module):
    """LayerNorm over the channel axis at every pixel (no batch or spatial statistics).

    Parameters
    ----------
    channels : int
        Number of channels C (size of the learnt ``weight`` and ``bias``).
    eps : float
        Added to the variance.

    Examples
    --------
    >>> import torch
    >>> y = ChannelNorm(8)(torch.rand(2, 8, 5, 5))
    >>> y.shape, bool(y.mean(1).abs().max() < 1e-5)
    (torch.Size([2, 8, 5, 5]), True)
    """

    def __init__(self, channels: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``x`` over its channels at every pixel.

        Parameters
        ----------
        x : torch.Tensor
            Float ``(B, C, *S)``.

        Returns
        -------
        torch.Tensor
            ``(B, C, *S)``: zero mean, unit variance over C, times ``weight`` plus ``bias``.
        """
        # channels-last view + the fused layer_norm kernel: several times faster than
        # mean/var arithmetic on the (B, C, *S) layout
        perm = (0,) + tuple(range(2, x.dim())) + (1,)
        inv = (0, x.dim() - 1) + tuple(range(1, x.dim() - 1))
        return F.layer_norm(x.permute(perm), (x.shape[1],), self.weight, self.bias, self.eps).permute(inv)


def _block(conv, cin: int, cout: int, convs: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(convs):
        layers += [conv(cin if i == 0 else cout, cout, 3, padding=1), ChannelNorm(cout), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class UNet(nn.Module):
    """U-Net body: ``(B, C, *S)`` -> embedding ``(B, embed, *S)``.

    ``levels`` down-samplings by 2 (max-pool) with ``base * 2**l`` channels at
    level ``l``, ``convs`` 3x3 convolutions (+ ChannelNorm + ReLU) per block,
    transposed-convolution up-sampling and skip connections, and a final 1x1
    convolution to ``embed`` channels.  Works in 2D and 3D (``ndim``).

    Parameters
    ----------
    in_channels : int
        Input channels C (>= 1).
    base : int
        Channels of the first level (>= 1).
    levels : int
        Down-samplings by 2 (>= 0); inputs are padded to a multiple of ``2**levels``.
    embed : int
        Channels of the output embedding (>= 1).
    ndim : int
        2 or 3 spatial axes.
    convs : int
        3x3 convolutions per block (>= 1).

    Raises
    ------
    ValueError
        When a count is below its minimum, or ``ndim`` is not 2 or 3.

    References
    ----------
    .. [1] Ronneberger, Fischer & Brox 2015, see the module's references.

    Examples
    --------
    >>> import torch
    >>> body = UNet(in_channels=1, levels=2)
    >>> body(torch.rand(1, 1, 30, 30)).shape, body.multiple, body.receptive_radius
    (torch.Size([1, 32, 30, 30]), 4, 26)
    """

    def __init__(self, in_channels: int = 3, base: int = 16, levels: int = 3, embed: int = 32, ndim: int = 2,
                 convs: int = 2):
        super().__init__()
        if min(in_channels, base, embed, convs) < 1 or levels < 0:
            raise ValueError("need in_channels, base, embed, convs >= 1 and levels >= 0")
        conv = conv_layer(ndim)
        convT = nn.ConvTranspose2d if ndim == 2 else nn.ConvTranspose3d
        self.pool = nn.MaxPool2d(2) if ndim == 2 else nn.MaxPool3d(2)
        widths = [base * 2**lvl for lvl in range(levels + 1)]
        self.enc = nn.ModuleList([_block(conv, in_channels if lvl == 0 else widths[lvl - 1], widths[lvl], convs)
                                  for lvl in range(levels + 1)])
        self.up = nn.ModuleList([convT(widths[lvl + 1], widths[lvl], 2, stride=2) for lvl in range(levels)])
        self.dec = nn.ModuleList([_block(conv, 2 * widths[lvl], widths[lvl], convs) for lvl in range(levels)])
        self.out = conv(widths[0], embed, 1)
        self.config = dict(in_channels=in_channels, base=base, levels=levels, embed=embed, ndim=ndim, convs=convs)

    @property
    def multiple(self) -> int:
        """Spatial sizes the network needs (inputs are padded to a multiple of this)."""
        return 2 ** self.config["levels"]

    @property
    def receptive_radius(self) -> int:
        """Bound on how far (pixels, per axis) an output depends on the input.

        Each 3x3 convolution at level ``l`` adds ``2**l``, each pooling from
        level ``l`` and each up-sampling to level ``l`` at most ``2**l``.
        """
        levels, convs = self.config["levels"], self.config["convs"]
        r = 2 * convs * sum(2**lvl for lvl in range(levels)) + convs * 2**levels
        return r + 2 * sum(2**lvl for lvl in range(levels))

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` padded at the high end of each spatial axis (edge replication) to a multiple.

        Parameters
        ----------
        x : torch.Tensor
            ``(B, C, *S)``.

        Returns
        -------
        torch.Tensor
            ``(B, C, *P)``, ``P`` the next multiples of ``multiple`` (``x`` itself when none
            is needed).
        """
        m = self.multiple
        pad = [(-s) % m for s in x.shape[2:]]
        return _pad_replicate(x, pad) if any(pad) else x

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """Everything before the last block: the input of ``tail`` (``x`` a multiple in size).

        Parameters
        ----------
        x : torch.Tensor
            ``(B, C, *P)``, every spatial size a multiple of ``multiple``.

        Returns
        -------
        torch.Tensor
            ``(B, 2 * base, *P)`` (``(B, base, *P)`` with ``levels=0``).
        """
        skips = []
        h = x
        for lvl, block in enumerate(self.enc):
            if lvl:
                h = self.pool(h)
            h = block(h)
            skips.append(h)
        for lvl in reversed(range(len(self.up))):
            h = self.up[lvl](h)
            h = torch.cat([h, skips[lvl]], 1)
            if lvl:
                h = self.dec[lvl](h)
        return h

    def tail(self, h: torch.Tensor) -> torch.Tensor:
        """The last full-resolution block and the 1x1 embedding convolution.

        Parameters
        ----------
        h : torch.Tensor
            What :meth:`trunk` returned.

        Returns
        -------
        torch.Tensor
            The embedding ``(B, embed, *P)``.
        """
        if len(self.dec):
            h = self.dec[0](h)
        return self.out(h)

    def tail_modules(self) -> list[nn.Module]:
        """The modules :meth:`tail` runs (those ``finetune="last"`` trains).

        Returns
        -------
        list of torch.nn.Module
            The last decoder block (when ``levels > 0``) and the 1x1 output convolution.
        """
        return ([self.dec[0]] if len(self.dec) else []) + [self.out]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The embedding of ``x``, any spatial size (padded, then cropped back).

        Parameters
        ----------
        x : torch.Tensor
            Float ``(B, in_channels, *S)``.

        Returns
        -------
        torch.Tensor
            Float ``(B, embed, *S)``.
        """
        spatial = x.shape[2:]
        y = self.tail(self.trunk(self.pad(x)))
        if tuple(y.shape[2:]) != tuple(spatial):
            y = y[(slice(None), slice(None)) + tuple(slice(0, s) for s in spatial)]
        return y


def _pad_replicate(x: torch.Tensor, pad: list[int]) -> torch.Tensor:
    """Pad the trailing spatial axes at their high end by edge replication (any amount)."""
    for ax, p in enumerate(pad):
        if p:
            dim = 2 + ax
            edge = x.narrow(dim, x.shape[dim] - 1, 1)
            x = torch.cat([x, edge.expand(*x.shape[:dim], p, *x.shape[dim + 1:])], dim)
    return x


class LevelSetUNet(nn.Module):
    """U-Net body plus one 1x1 head per class count (``heads``: e.g. 2..16).

    Each head is a 1x1 convolution of ``[embedding, image]`` (``embed + in_channels``
    channels) to ``n`` logits.

    Parameters
    ----------
    in_channels : int
        Input channels C.
    heads : iterable of int
        Class counts to make heads for (each >= 2; duplicates ignored).
    base : int
        As for :class:`UNet`.
    levels : int
        As for :class:`UNet`.
    embed : int
        As for :class:`UNet`.
    ndim : int
        2 or 3.
    convs : int
        As for :class:`UNet`.

    Raises
    ------
    ValueError
        When ``heads`` is empty or has a count below 2, or the body's values are invalid.

    Examples
    --------
    >>> import torch
    >>> net = LevelSetUNet(in_channels=3, heads=[2, 4], levels=2)
    >>> out = net(torch.rand(1, 3, 32, 32))
    >>> sorted(out), out[4].shape
    ([2, 4], torch.Size([1, 4, 32, 32]))
    """

    def __init__(self, in_channels: int = 3, heads: Iterable[int] = range(2, MAX_CLASSES + 1), base: int = 16,
                 levels: int = 3, embed: int = 32, ndim: int = 2, convs: int = 2):
        super().__init__()
        heads = sorted({int(n) for n in heads})
        if not heads or heads[0] < 2:
            raise ValueError(f"heads must be class counts >= 2, got {heads}")
        self.body = UNet(in_channels, base, levels, embed, ndim, convs)
        conv = conv_layer(ndim)
        self.heads = nn.ModuleDict({str(n): conv(embed + in_channels, n, 1) for n in heads})
        self.ndim = ndim
        self.in_channels = in_channels

    @property
    def config(self) -> dict:
        """The architecture as a dict (``arch``, the body's values, ``heads``, ``norm``, ``head``)."""
        return dict(arch="unet", **self.body.config, heads=self.head_counts, norm="channel-layernorm",
                    head="1x1 conv of [embedding, image] per class count")

    @property
    def head_counts(self) -> list[int]:
        """The class counts with a head, sorted."""
        return sorted(int(k) for k in self.heads)

    @property
    def multiple(self) -> int:
        """Spatial sizes the body needs (``2**levels``; inputs are padded to it)."""
        return self.body.multiple

    @property
    def receptive_radius(self) -> int:
        """The body's receptive radius, pixels per axis (the heads are 1x1)."""
        return self.body.receptive_radius

    def head(self, feats: torch.Tensor, x: torch.Tensor, n: int) -> torch.Tensor:
        """The head for ``n`` classes on the embedding and the image.

        Parameters
        ----------
        feats : torch.Tensor
            The embedding ``(B, embed, *S)``.
        x : torch.Tensor
            The image ``(B, in_channels, *S)``.
        n : int
            A class count in :attr:`head_counts`.

        Returns
        -------
        torch.Tensor
            Logits ``(B, n, *S)``.

        Raises
        ------
        KeyError
            When there is no head for ``n``.
        """
        return self.heads[str(n)](torch.cat([feats, x], 1))

    def forward(self, x: torch.Tensor, n: int | None = None) -> torch.Tensor | dict[int, torch.Tensor]:
        """Logits for ``n`` classes, or a dict ``{n: logits}`` of every head when ``n`` is None.

        Parameters
        ----------
        x : torch.Tensor
            Float ``(B, in_channels, *S)``, the normalised image.
        n : int or None
            The class count (a head must exist for it); None: every head.

        Returns
        -------
        torch.Tensor or dict of int to torch.Tensor
            Logits ``(B, n, *S)``, or ``{n: (B, n, *S)}`` for every head.
        """
        feats = self.body(x)
        if n is not None:
            return self.head(feats, x, n)
        return {k: self.head(feats, x, k) for k in self.head_counts}


# ----------------------------------------------------------------------------- the network the engine uses
class PretrainedNetwork(nn.Module):
    """One class count of a ``LevelSetUNet``, ready for ``Segmenter``.

    Maps the normalised image ``(B, C, *S)`` to logits ``(B, N, *S)``.  Handles
    the channel adaptation (``adapt``: ``repeat`` grey to the trained channels,
    ``lightness`` grey as CIELAB L with a = b = 0 for a CIELAB model,
    ``drop-alpha`` 4 to 3, ``mean`` colour to grey, or none) and a 2D model on
    a 3D image (applied slice by slice along the first spatial axis).

    ``finetune`` says what a ``Segmenter`` run trains: ``head`` (the 1x1 head;
    the body is frozen), ``last`` (the last full-resolution block of the body
    and the head) or ``all``.  The frozen part's output is computed without
    gradients and cached for the input tensor last seen, so the fine-tune loop
    (always the same image) only runs the trainable part.  Calls without
    gradients on inputs larger than ``tile`` go through
    ``napari_levelset.nn.tiling``, so only one tile's activations exist at a time.

    Parameters
    ----------
    unet : LevelSetUNet
        The loaded model; its body is shared (not copied), and so is the head for
        ``n_classes`` when it has one.
    n_classes : int
        N.  Without a trained head for N the head is new (zeros; ``head_trained`` False)
        and only usable from a k-means start (:meth:`init_from_centres`).
    in_channels : int
        Channels of the image given (adapted to the model's, see above).
    ndim : int
        Spatial axes of the image, 2 or 3.
    finetune : {"head", "last", "all"}
        What a ``Segmenter`` run trains.
    tile : int or None
        Tile size (pixels) for gradient-free calls on large inputs; None: 512 in 2D, 128 in 3D.
    extra_channels : int
        Trailing input channels (pixel coordinates) that go to the head only; their head
        weights start at zero.
    model_color : str
        The preparation the model was trained with (``rgb`` or ``lab``).

    Raises
    ------
    InputError
        When ``ndim`` is not 2 or 3, a 3D model gets a 2D image, ``finetune`` is unknown, or
        the model cannot take ``in_channels`` channels.
    """

    #: read by ``settings.model_kind``: a pretrained network takes the U-Net's per-model defaults
    pretrained = True

    def __init__(self, unet: LevelSetUNet, n_classes: int, in_channels: int, ndim: int, finetune: str = "head",
                 tile: int | None = None, extra_channels: int = 0, model_color: str = "rgb"):
        super().__init__()
        self.body = unet.body
        #: False for a class count the model has no trained head for: the head is then new
        #: (zeros) and only usable from a k-means start (``init_from_centres``)
        self.head_trained = str(n_classes) in unet.heads
        self.head_counts = list(unet.head_counts)
        if self.head_trained:
            self.head = unet.heads[str(n_classes)]
        else:
            ref = next(iter(unet.heads.values()))
            self.head = conv_layer(unet.ndim)(ref.in_channels, int(n_classes), 1)
            with torch.no_grad():
                self.head.weight.zero_()
                self.head.bias.zero_()
        self.extra_channels = int(extra_channels)
        if self.extra_channels:  # head-only inputs (pixel coordinates): new head columns, starting at zero
            old = self.head
            self.head = conv_layer(unet.ndim)(old.in_channels + self.extra_channels, old.out_channels, 1)
            with torch.no_grad():
                self.head.weight.zero_()
                self.head.weight[:, : old.in_channels] = old.weight
                self.head.bias.copy_(old.bias)
        self.n_classes = int(n_classes)
        self.model_channels = unet.in_channels
        self.in_channels = int(in_channels)
        #: the image preparation the model was trained with (``rgb`` or ``lab``)
        self.model_color = model_color
        self.adapt = _channel_adaptation(self.in_channels, self.model_channels, model_color)
        if ndim not in (2, 3):
            raise InputError(f"only 2D and 3D images are supported, got ndim={ndim}")
        if unet.ndim == 3 and ndim == 2:
            raise InputError("this is a 3D model: it cannot segment 2D images")
        self.ndim = int(ndim)
        self.slicewise = unet.ndim == 2 and ndim == 3
        if finetune not in ("head", "last", "all"):
            raise InputError(f"finetune must be 'head', 'last' or 'all', got {finetune!r}")
        self.finetune = finetune
        if finetune == "head":
            self.body.requires_grad_(False)
        elif finetune == "last":
            self.body.requires_grad_(False)
            for m in self.body.tail_modules():
                m.requires_grad_(True)
        self.tile = tile
        self._cache: tuple[Any, torch.Tensor, torch.Tensor] | None = None  # (key, output, input)

    # geometry for napari_levelset.nn.tiling
    @property
    def multiple(self) -> tuple[int, ...]:
        """Per spatial axis, the multiple inputs are padded to (1 along the slices of a 2D model on 3D data)."""
        m = self.body.multiple
        return (1, m, m) if self.slicewise else (m,) * self.ndim

    @property
    def receptive_radius(self) -> tuple[int, ...]:
        """Per spatial axis, the body's receptive radius in pixels (0 across slices of a 2D model on 3D data)."""
        r = self.body.receptive_radius
        return (0, r, r) if self.slicewise else (r,) * self.ndim

    def _split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The image channels and the head-only extra channels of the input."""
        if x.shape[1] != self.in_channels + self.extra_channels:
            raise InputError(
                f"the network was built for {self.in_channels + self.extra_channels} channels, got {x.shape[1]}"
            )
        if not self.extra_channels:
            return x, None
        return x[:, : self.in_channels], x[:, self.in_channels :]

    def _adapt(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.in_channels:
            raise InputError(f"the network was built for {self.in_channels} channels, got {x.shape[1]}")
        if self.adapt == "repeat":
            x = x.expand(x.shape[0], self.model_channels, *x.shape[2:])
        elif self.adapt == "drop-alpha":
            x = x[:, :3]
        elif self.adapt == "mean":
            x = x.mean(1, keepdim=True)
        elif self.adapt == "lightness":  # grey = CIELAB lightness with a = b = 0
            x = torch.cat([x, x.new_zeros((x.shape[0], self.model_channels - 1, *x.shape[2:]))], 1)
        return x

    def _slices(self, fn, x: torch.Tensor) -> torch.Tensor:
        """``fn`` on ``x`` as it is, or slice by slice for a 2D body on 3D data."""
        if not self.slicewise:
            return fn(x)
        b, c, z = x.shape[:3]
        y = fn(x.transpose(1, 2).reshape(b * z, c, *x.shape[3:]))
        return y.reshape(b, z, y.shape[1], *y.shape[2:]).transpose(1, 2)

    def _crop(self, y: torch.Tensor, spatial) -> torch.Tensor:
        if tuple(y.shape[2:]) == tuple(spatial):
            return y
        return y[(slice(None), slice(None)) + tuple(slice(0, s) for s in spatial)]

    @staticmethod
    def _head_cat(feats: torch.Tensor, xa: torch.Tensor, extra: torch.Tensor | None) -> torch.Tensor:
        """The head's input: ``[embedding, image]`` and the extra (position) channels if any."""
        return torch.cat([feats, xa] if extra is None else [feats, xa, extra], 1)

    def _head(self, feats: torch.Tensor, xa: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        return self._head_conv(self._head_cat(feats, xa, extra))

    def _head_conv(self, z: torch.Tensor) -> torch.Tensor:
        if self.slicewise:  # the 2D 1x1 head on every slice = a 1x1x1 3D convolution
            return F.conv3d(z, self.head.weight.unsqueeze(2), self.head.bias)
        return self.head(z)

    def _whole(self, x: torch.Tensor) -> torch.Tensor:
        """Logits from scratch (no cache, no tiling)."""
        x, extra = self._split(x)
        xa = self._adapt(x)
        return self._head(self._slices(self.body, xa), xa, extra)

    # the frozen part (cached) and the trainable part of the network
    def _frozen_fn(self, xa: torch.Tensor) -> torch.Tensor:
        if self.finetune == "last":  # the trunk, on the input padded to a multiple
            return self._slices(lambda t: self.body.trunk(self.body.pad(t)), xa)
        return self._slices(self.body, xa)

    def _trainable(self, frozen: torch.Tensor, xa: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        if self.finetune == "last":
            feats = self._crop(self._slices(self.body.tail, frozen), xa.shape[2:])
        else:
            feats = frozen
        return self._head(feats, xa, extra)

    def _frozen(self, x: torch.Tensor) -> torch.Tensor:
        """The frozen part's output, without gradients, tiled when large, cached for the last input."""
        key = _cache_key(x, self.finetune)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        with torch.no_grad():
            xa = self._adapt(x)
            if self._big(x):
                from napari_levelset.nn.tiling import tiled_apply

                if self.finetune == "last":  # tile the padded input: the output keeps the padding
                    xa = self._slices(self.body.pad, xa)
                    fn = lambda t: self._slices(self.body.trunk, t)  # noqa: E731
                else:
                    fn = self._frozen_fn
                out = tiled_apply(fn, xa, radius=self.receptive_radius, multiple=self.multiple,
                                  tile=self._tile(), out_device=x.device)
            else:
                out = self._frozen_fn(xa)
        if out.numel() * out.element_size() <= CACHE_BYTES:
            self._cache = (key, out, x)  # x is held so that its memory cannot pass to another input
        return out

    def _tile(self) -> int:
        return self.tile or (512 if self.ndim == 2 else 128)

    def _big(self, x: torch.Tensor) -> bool:
        t = self._tile()
        return any(s > t for s in (x.shape[3:] if self.slicewise else x.shape[2:]))

    def clear_cache(self) -> None:
        """Forget the cached output of the frozen part (it is recomputed on the next call)."""
        self._cache = None

    @property
    def takes_centres(self) -> bool:
        """Whether ``init_from_centres`` can start the head: the image's channels reach it unchanged."""
        return self.adapt != "mean"

    @torch.no_grad()
    def init_from_centres(self, centres: torch.Tensor, spread: float) -> None:
        """Restart the head from this image's k-means, keeping the pretrained body.

        The head is a 1x1 convolution of ``[embedding, image]``: its image part is
        set to the soft nearest-centre assignment (as ``PerImageCNN.init_from_centres``)
        and its embedding part to zero, so the first labels are the k-means ones
        and a fine-tune learns how to use the body's features for this image's
        classes.  Needs the image channels to reach the head unchanged (no colour
        to grey adaptation).  ``centres`` may go on over the extra (position)
        channels, which then get their part of the assignment too.

        Parameters
        ----------
        centres : torch.Tensor
            Float ``(n_classes, k)``: class means over the image channels, optionally
            followed by the extra channels (e.g. ``cluster.init_centres``).
        spread : float
            Mean squared distance of a pixel to its centre (floored at 1e-4).

        Raises
        ------
        InputError
            When the model averages colour to grey (``takes_centres`` is False).
        """
        if not self.takes_centres:
            raise InputError("a k-means start needs the model's input channels; this model averages colour to grey")
        s = max(float(spread), 1e-4)
        centres = centres.to(self.head.weight)
        k = min(int(centres.shape[1]), self.in_channels, self.model_channels)
        e = min(max(int(centres.shape[1]) - self.in_channels, 0), self.extra_channels)
        used = torch.cat([centres[:, :k], centres[:, self.in_channels : self.in_channels + e]], 1)
        w = torch.zeros_like(self.head.weight)
        flat = w.view(self.n_classes, -1)
        feats = w.shape[1] - self.model_channels - self.extra_channels
        flat[:, feats : feats + k] = centres[:, :k] / s
        if e:
            start = feats + self.model_channels
            flat[:, start : start + e] = centres[:, self.in_channels : self.in_channels + e] / s
        self.head.weight.copy_(w)
        self.head.bias.copy_(-(used**2).sum(1) / (2 * s))
        self.head_trained = True  # started from this image: usable as it is

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for ``x`` (cached frozen part, tiled when large and without gradients).

        Parameters
        ----------
        x : torch.Tensor
            Float ``(B, in_channels + extra_channels, *S)``, the prepared image.

        Returns
        -------
        torch.Tensor
            Float ``(B, n_classes, *S)``.

        Raises
        ------
        InputError
            When ``x`` has another number of channels.
        """
        if self.finetune == "all" and torch.is_grad_enabled() and any(p.requires_grad for p in self.body.parameters()):
            return self._whole(x)
        if self.finetune == "all":  # nothing is frozen: no cache (the body changes), tiled when large
            if self._big(x):
                from napari_levelset.nn.tiling import tiled_apply

                return tiled_apply(self._whole, x, radius=self.receptive_radius, multiple=self.multiple,
                                   tile=self._tile(), out_device=x.device)
            return self._whole(x)
        img, extra = self._split(x)
        if self.finetune == "head":  # everything but the 1x1 head is fixed: keep its whole input
            return self._head_conv(self._head_input(x, img, extra))
        return self._trainable(self._frozen(img), self._adapt(img), extra)

    def _head_input(self, x: torch.Tensor, img: torch.Tensor, extra: torch.Tensor | None) -> torch.Tensor:
        """``[embedding, image, extra]`` for the head, cached for the last input (in place of the embedding)."""
        key = _cache_key(x, "head-input")
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        z = self._head_cat(self._frozen(img), self._adapt(img), extra)
        if z.numel() * z.element_size() <= CACHE_BYTES:
            self._cache = (key, z, x)  # replaces the embedding's entry: one copy, not two
        return z

    def _apply(self, fn, *args, **kwargs):  # .to(device) etc. invalidate the cache
        self._cache = None
        return super()._apply(fn, *args, **kwargs)


def _cache_key(x: torch.Tensor, what: str) -> tuple:
    """What identifies an input tensor's contents while the cache holds the tensor.

    The cache keeps a reference to the input, so no other tensor can take over
    its memory (crops and tiles are temporaries whose memory is reused); the
    version counter, shared by all views of that memory, changes on every
    in-place write.
    """
    return (x.data_ptr(), x._version, tuple(x.shape), x.stride(), x.dtype, str(x.device), what)


def _channel_adaptation(cin: int, cmodel: int, model_color: str = "rgb") -> str:
    if cin == cmodel:
        return "none"
    if cin == 1:
        return "lightness" if model_color == "lab" and cmodel == 3 else "repeat"
    if cin == 4 and cmodel == 3:
        return "drop-alpha"
    if cmodel == 1:
        return "mean"
    raise InputError(
        f"the model was trained on {cmodel}-channel images and cannot take {cin} channels"
        " (grey images are repeated, RGBA loses alpha, colour becomes grey for a grey model)"
    )


def _ranges(ns: list[int]) -> str:
    if ns and ns == list(range(ns[0], ns[-1] + 1)) and len(ns) > 2:
        return f"{ns[0]}..{ns[-1]}"
    return ", ".join(str(n) for n in ns)


# ----------------------------------------------------------------------------- files
def pretrained_path(name: str = "unet") -> Path:
    """Where the shipped model ``name`` lives (in the package's ``weights`` folder).

    Parameters
    ----------
    name : str
        A key of ``PRETRAINED`` (``"unet"``).

    Returns
    -------
    pathlib.Path
        The file (it may be missing from an installation without weights).

    Raises
    ------
    KeyError
        When ``name`` is not a shipped model.

    Examples
    --------
    >>> pretrained_path().name
    'unet_bsds.pt'
    """
    return WEIGHTS_DIR / PRETRAINED[name]


def _resolve_model_path(model: str | os.PathLike) -> Path:
    if isinstance(model, str) and model in PRETRAINED:
        p = pretrained_path(model)
        if not p.is_file():
            raise InputError(f"the pretrained model {model!r} is not installed (expected {p})")
        return p
    p = Path(model)
    if not p.exists():
        raise InputError(f"no such model file: {p} (use 'cnn', 'unet' or the path of a model file)")
    if p.is_dir():
        raise InputError(f"{p} is a directory, not a model file")
    return p


def save_model(path: str | os.PathLike, net: nn.Module, metadata: dict | None = None, **extra: Any) -> Path:
    """Write ``net`` (a ``LevelSetUNet`` or ``PretrainedNetwork``) with its metadata, atomically.

    ``metadata`` (JSON-serialisable) is merged over the architecture, head and
    normalisation description and the package version; a ``PretrainedNetwork``
    (e.g. after a fine-tune) also keeps the metadata of the file it came from,
    its colour handling included.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write (``atomic_write``: a failure leaves the old file as it was).
    net : torch.nn.Module
        A ``LevelSetUNet``, or a ``PretrainedNetwork`` (saved as a one-head ``LevelSetUNet``).
    metadata : dict or None
        JSON-serialisable; merged over the architecture, head and normalisation description
        and the package version.
    **extra
        Entries stored beside (plain types and tensors, e.g. an optimiser state).

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    InputError
        For a ``PretrainedNetwork`` with position channels or with a new, untrained head,
        metadata that is not JSON-serialisable, or a folder that does not exist.
    TypeError
        When ``net`` is neither a ``LevelSetUNet`` nor a ``PretrainedNetwork``.

    Examples
    --------
    >>> import tempfile, os
    >>> out = os.path.join(tempfile.mkdtemp(), "tiny.pt")
    >>> _ = save_model(out, LevelSetUNet(1, [2], base=4, levels=1, embed=4), {"note": "tiny"})
    >>> load_model(out)[1]["note"]
    'tiny'
    """
    from napari_levelset import __version__

    if isinstance(net, PretrainedNetwork):
        if net.extra_channels:
            raise InputError("a network with position channels cannot be saved: the model format has no "
                             "place for head-only inputs (segment with position=0 to get one that can)")
        if not net.head_trained:
            raise InputError(f"the head for {net.n_classes} classes is new and untrained: start it from an "
                             "image's k-means (init='kmeans') and fine-tune it before saving")
        inherited = {k: v for k, v in (getattr(net, "metadata", None) or {}).items()
                     if k not in ("architecture", "normalisation", "package_version")}
        metadata = {**inherited, "color": net.model_color, **(metadata or {})}
        unet = LevelSetUNet(net.model_channels, [net.n_classes], **_body_kwargs(net.body.config))
        unet.body = net.body
        unet.heads[str(net.n_classes)] = net.head
        net = unet
    if not isinstance(net, LevelSetUNet):
        raise TypeError(f"save_model needs a LevelSetUNet or PretrainedNetwork, got {type(net).__name__}")
    lab = (metadata or {}).get("color") == "lab"
    meta = dict(architecture=net.config, normalisation=NORMALISATION_LAB if lab else NORMALISATION,
                package_version=__version__)
    meta.update(metadata or {})
    try:
        meta_json = json.dumps(meta, sort_keys=True)
    except TypeError as exc:
        raise InputError(f"model metadata must be JSON-serialisable: {exc}") from None
    state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    blob = dict(format=FORMAT, format_version=FORMAT_VERSION, metadata=meta_json, state_dict=state, **extra)
    return atomic_write(path, lambda tmp: torch.save(blob, tmp))


def _body_kwargs(arch: dict) -> dict:
    return {k: arch[k] for k in ("base", "levels", "embed", "ndim", "convs")}


def read_model_file(path: str | os.PathLike) -> dict:
    """The raw dict of a model or checkpoint file, checked (``InputError`` otherwise).

    Parameters
    ----------
    path : str or os.PathLike
        The file, read with ``torch.load(weights_only=True)`` on the CPU.

    Returns
    -------
    dict
        ``format``, ``format_version``, ``metadata`` (parsed from its JSON string into a
        dict), ``state_dict`` and any extra entries (a checkpoint's optimiser state).

    Raises
    ------
    InputError
        When the file is missing or unreadable, not of this ``FORMAT``, of a newer
        ``FORMAT_VERSION``, or lacks readable metadata or weights.
    """
    p = Path(path)
    try:
        blob = torch.load(p, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputError(f"no such model file: {p}") from None
    except Exception as exc:
        text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()  # torch colours some messages for terminals
        msg = text.splitlines()[0][:160] if text else exc.__class__.__name__
        raise InputError(f"cannot read model file {p}: not a napari-levelset model ({msg})") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise InputError(f"{p} is not a napari-levelset U-Net model file")
    version = blob.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise InputError(f"{p} has model format version {version!r}; this napari-levelset reads up to "
                         f"{FORMAT_VERSION}: update it")
    if not isinstance(blob.get("metadata"), str) or not isinstance(blob.get("state_dict"), dict):
        raise InputError(f"model file {p} is incomplete (no metadata or weights)")
    try:
        blob["metadata"] = json.loads(blob["metadata"])
    except ValueError:
        raise InputError(f"model file {p} has unreadable metadata") from None
    if not isinstance(blob["metadata"], dict):
        raise InputError(f"model file {p} has unreadable metadata (not a record of named fields)")
    return blob


_FILE_CACHE: dict = {}
_FILES_READ = [0]


def files_read() -> int:
    """How many model files this process has read from disk.

    ``load_model`` reads a file once while it is unchanged: batches and dask workers read
    a model once, not once per image.

    Returns
    -------
    int
        The count since the process started.
    """
    return _FILES_READ[0]


def _read_cached(p: Path) -> dict:
    """``read_model_file`` remembered by (path, size, mtime): the widget, batches and benchmarks build
    many networks."""
    try:
        st = p.stat()
        key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    except OSError:
        return read_model_file(p)
    if key not in _FILE_CACHE:
        blob = read_model_file(p)
        _FILES_READ[0] += 1
        _FILE_CACHE.clear()  # keep one file only
        kept = ("format", "format_version", "metadata", "state_dict")
        _FILE_CACHE[key] = {k: v for k, v in blob.items() if k in kept}
    blob = _FILE_CACHE[key]
    return dict(blob, metadata=json.loads(json.dumps(blob["metadata"])))


#: Bounds on the architecture a model file may declare (inclusive): what ``train`` can make
#: (``--base``/``--embed`` up to 1024, ``--levels`` up to 8, class counts 2..255), with room for
#: multi-channel images.  The shipped model: in_channels 3, base 16, levels 3, embed 32, convs 2.
ARCH_LIMITS: dict[str, tuple[int, int]] = dict(in_channels=(1, 64), base=(1, 1024), levels=(0, 8),
                                                 embed=(1, 1024), convs=(1, 8), ndim=(2, 3))
#: Class counts a head may have, and so the most heads a model may declare (one per count).
HEAD_CLASSES = (2, 255)
MAX_HEADS = HEAD_CLASSES[1] - HEAD_CLASSES[0] + 1


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_architecture(arch: Any, p: Path) -> tuple[int, list[int], dict]:
    """``(in_channels, heads, body kwargs)`` of a model file's declared architecture, every value bounded."""
    if not isinstance(arch, dict) or arch.get("arch") != "unet":
        raise InputError(f"model file {p} describes an architecture this version cannot build (unknown architecture)")
    values = {}
    for key, (lo, hi) in ARCH_LIMITS.items():
        if key not in arch:
            raise InputError(f"model file {p} describes an architecture this version cannot build (no {key!r})")
        v = arch[key]
        if not _is_int(v) or not lo <= v <= hi:
            raise InputError(f"model file {p} declares {key} {repr(v)[:40]}; this version builds {key} {lo}..{hi}")
        values[key] = v
    heads = arch.get("heads")
    lo, hi = HEAD_CLASSES
    if not isinstance(heads, list) or not 1 <= len(heads) <= MAX_HEADS:
        n = len(heads) if isinstance(heads, list) else type(heads).__name__
        raise InputError(f"model file {p} declares heads {str(n)[:40]}; this version builds 1..{MAX_HEADS} heads "
                         f"(class counts {lo}..{hi})")
    for n in heads:
        if not _is_int(n) or not lo <= n <= hi:
            raise InputError(f"model file {p} declares a head for {repr(n)[:40]} classes; heads have {lo}..{hi}")
    if len(set(heads)) != len(heads):
        raise InputError(f"model file {p} declares a head twice (heads {_ranges(sorted(heads))[:80]})")
    in_channels = values.pop("in_channels")
    return in_channels, sorted(heads), values


def _check_weights(state: dict, skeleton: nn.Module, p: Path) -> None:
    """The stored weights against the declared network (built on the meta device: no memory), one line if not."""
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    bad_keys = [k for k in state if not isinstance(k, str)]
    if bad_keys:
        raise InputError(f"model file {p} does not match its architecture: a weight is named {bad_keys[0]!r:.40}")
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        parts = ([f"missing {len(missing)} weights (e.g. {missing[0]})"] if missing else []) + (
            [f"{len(unexpected)} unexpected weights (e.g. {unexpected[0][:60]})"] if unexpected else [])
        raise InputError(f"model file {p} does not match its architecture: " + ", ".join(parts))
    for k, shape in expected.items():
        t = state[k]
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            raise InputError(f"model file {p} does not match its architecture: {k} is not a floating-point tensor")
        if tuple(t.shape) != shape:
            raise InputError(f"model file {p} does not match its architecture: {k} has shape {tuple(t.shape)}, "
                             f"the architecture needs {shape}")


def load_model(path: str | os.PathLike) -> tuple[LevelSetUNet, dict]:
    """Load a model file written by ``save_model`` (or a training checkpoint).

    Every architecture value is bounded (``ARCH_LIMITS``, ``HEAD_CLASSES``) and the
    declared network is first built on torch's meta device and compared, name by name
    and shape by shape, with the stored weights: memory is only allocated for a network
    the file holds.  A file unchanged since it was last read is not read again.

    Parameters
    ----------
    path : str or os.PathLike
        The model file.

    Returns
    -------
    net : LevelSetUNet
        In eval mode, on the CPU.
    metadata : dict
        The file's metadata (``architecture``, ``normalisation``, ``package_version``,
        ``color``, training settings, ...).

    Raises
    ------
    InputError
        For anything that is not a valid napari-levelset U-Net file: missing, unreadable,
        foreign, out-of-bounds architecture, weights that do not match it, or NaN or
        infinite weights.

    Examples
    --------
    >>> net, meta = load_model(pretrained_path("unet"))
    >>> net.head_counts[0], net.head_counts[-1], meta["architecture"]["levels"]
    (2, 16, 3)
    """
    p = Path(path)
    blob = _read_cached(p)
    meta = blob["metadata"]
    in_channels, heads, body = _check_architecture(meta.get("architecture"), p)
    with torch.device("meta"):
        skeleton = LevelSetUNet(in_channels, heads, **body)
    _check_weights(blob["state_dict"], skeleton, p)
    del skeleton
    net = LevelSetUNet(in_channels, heads, **body)
    try:
        net.load_state_dict(blob["state_dict"], strict=True)
    except (RuntimeError, KeyError, TypeError) as exc:
        first = str(exc).strip().splitlines()
        detail = " ".join(s.strip() for s in first[:2])[:200]
        raise InputError(f"model file {p} does not match its architecture: {detail}") from None
    for t in net.state_dict().values():
        if not torch.isfinite(t).all():
            raise InputError(f"model file {p} contains NaN or infinite weights")
    net.eval()
    return net, meta


def model_color(model: str | os.PathLike = "unet") -> str:
    """The image preparation (``rgb`` or ``lab``) a model file was trained with.

    Parameters
    ----------
    model : str or os.PathLike
        ``"unet"`` (the shipped model) or the path of a model file.

    Returns
    -------
    str
        The ``color`` of its metadata, ``"rgb"`` when it names none.

    Raises
    ------
    InputError
        When the model is not installed, the file is missing, or it is not a valid model file.
    """
    return load_model(_resolve_model_path(model))[1].get("color", "rgb")


def build_network(model: str | os.PathLike = "unet", in_channels: int = 3, n_classes: int = 4, ndim: int = 2,
                  *, finetune: str = "head", tile: int | None = None, color: str | None = None,
                  extra_channels: int = 0) -> PretrainedNetwork:
    """The network ``Segmenter`` uses for ``model`` other than ``cnn``.

    ``model`` is ``"unet"`` (the shipped model, trained on BSDS500) or the path
    of a model file.  ``in_channels`` of the image (grey is repeated for an
    RGB model and goes in as lightness for a CIELAB one), ``n_classes`` (a
    head must exist for it), ``ndim`` 2 or 3 (a 2D model is applied per slice
    of a volume).  ``finetune``: ``"head"``
    (default; the body is frozen and its embedding cached), ``"last"`` (the
    last full-resolution block trains too) or ``"all"``.
    ``tile``: tile size for gradient-free inference on large inputs.
    ``color``: the image preparation the caller uses (``rgb`` or ``lab``);
    when given it must be the one the model was trained with (or ``rgb``, i.e.
    normalised, for a grey image and a CIELAB model).
    ``extra_channels``: trailing input channels (pixel coordinates) that go to
    the class head only, beside the embedding and the image; their head
    weights start at zero (or from a k-means start) and are learnt in a
    fine-tune.

    Parameters
    ----------
    model : str or os.PathLike
        ``"unet"`` (the shipped model) or the path of a model file.
    in_channels : int
        Channels of the prepared image.
    n_classes : int
        N (>= 2).
    ndim : int
        Spatial axes of the image, 2 or 3.
    finetune : {"head", "last", "all"}
        What a fine-tune trains.
    tile : int or None
        Tile size (pixels) for gradient-free inference on large inputs.
    color : str or None
        The image preparation the caller uses (``rgb`` or ``lab``), checked against the model's.
    extra_channels : int
        Head-only trailing input channels (pixel coordinates).

    Returns
    -------
    PretrainedNetwork
        With ``metadata`` (the model file's) as an attribute.

    Raises
    ------
    InputError
        When ``n_classes < 2``, the model cannot be found or read, ``color`` differs from the
        model's, or the network cannot take the image (see :class:`PretrainedNetwork`).

    Examples
    --------
    >>> import torch
    >>> net = build_network("unet", in_channels=1, n_classes=3)
    >>> net(torch.rand(1, 1, 64, 64)).shape, net.finetune, net.head_trained
    (torch.Size([1, 3, 64, 64]), 'head', True)
    """
    n_classes = int(n_classes)
    if n_classes < 2:
        raise InputError(f"need at least 2 classes, got {n_classes}")
    net, meta = load_model(_resolve_model_path(model))
    trained = meta.get("color", "rgb")
    # a grey image is normalised (color "rgb") and goes into a CIELAB model as lightness
    grey_on_lab = color == "rgb" and _channel_adaptation(int(in_channels), net.in_channels, trained) == "lightness"
    if color is not None and color != trained and not grey_on_lab:
        raise InputError(f"this model was trained on {trained!r} input, not {color!r}: use color={trained!r}")
    out = PretrainedNetwork(net, n_classes, in_channels=int(in_channels), ndim=int(ndim), finetune=finetune,
                            tile=tile, extra_channels=extra_channels, model_color=trained)
    out.metadata = meta
    return out
