"""A U-Net for the level-set loss: any class count from one shared body.

Design
------
``LevelSetUNet`` = a U-Net *body* that maps the normalised image ``(B, C, *S)``
to an embedding ``(B, E, *S)`` at full resolution, plus one small *head per
class count* ``N`` (a 1x1 convolution of ``[embedding, image]`` to ``N``
logits).  All heads are trained together, unsupervised, with the level-set
loss (``napari_levelset.training.train``), so one model serves every ``N`` it has a head
for (the shipped model: 2..16) at the cost of a few hundred parameters per
head.  Feeding the image itself to the head gives it the same direct colour
path as the per-image CNN's ``skip``.  The network a ``Segmenter`` runs for one ``N``
is ``napari_levelset.nn.pretrained.PretrainedNetwork``; model files are read and
written by ``napari_levelset.nn.model_files``.

Normalisation is a per-pixel LayerNorm over channels (``ChannelNorm``): it uses
no batch statistics (train and eval behave the same, any batch size) and, unlike
GroupNorm/InstanceNorm, no statistics over the image either, so the network is
*local*: every output pixel depends only on inputs within ``receptive_radius``
pixels.  That is what makes tiled inference (``napari_levelset.nn.tiling``) equal
to whole-image inference.  Inputs are padded (edge replication) to a multiple
of ``2**levels`` and the output is cropped back.

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

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from napari_levelset.nn.models import conv_layer

__all__ = ["MAX_CLASSES", "ChannelNorm", "LevelSetUNet", "UNet"]

#: The class counts the shipped model has heads for go up to this (``LevelSetUNet``'s default heads: 2..16).
MAX_CLASSES = 16


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

    def __init__(
        self, in_channels: int = 3, base: int = 16, levels: int = 3, embed: int = 32, ndim: int = 2, convs: int = 2
    ):
        super().__init__()
        if min(in_channels, base, embed, convs) < 1 or levels < 0:
            raise ValueError("need in_channels, base, embed, convs >= 1 and levels >= 0")
        conv = conv_layer(ndim)
        convT = nn.ConvTranspose2d if ndim == 2 else nn.ConvTranspose3d
        self.pool = nn.MaxPool2d(2) if ndim == 2 else nn.MaxPool3d(2)
        widths = [base * 2**lvl for lvl in range(levels + 1)]
        self.enc = nn.ModuleList(
            [
                _block(conv, in_channels if lvl == 0 else widths[lvl - 1], widths[lvl], convs)
                for lvl in range(levels + 1)
            ]
        )
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
            x = torch.cat([x, edge.expand(*x.shape[:dim], p, *x.shape[dim + 1 :])], dim)
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

    def __init__(
        self,
        in_channels: int = 3,
        heads: Iterable[int] = range(2, MAX_CLASSES + 1),
        base: int = 16,
        levels: int = 3,
        embed: int = 32,
        ndim: int = 2,
        convs: int = 2,
    ):
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
        return dict(
            arch="unet",
            **self.body.config,
            heads=self.head_counts,
            norm="channel-layernorm",
            head="1x1 conv of [embedding, image] per class count",
        )

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
