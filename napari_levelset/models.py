"""Networks that map an image ``(B, C, *S)`` to ``N`` logits per pixel ``(B, N, *S)``.

``PerImageCNN`` is the small randomly initialised network of Kanezaki's
"Unsupervised segmentation by backpropagation", optimised on one image:
``depth`` blocks of 3x3 convolution + ReLU + BatchNorm, then a 1x1 head.
It works on 2D (``ndim=2``) and 3D (``ndim=3``) images.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["PerImageCNN", "conv_layer", "norm_layer"]


def conv_layer(ndim: int):
    if ndim == 2:
        return nn.Conv2d
    if ndim == 3:
        return nn.Conv3d
    raise ValueError(f"only 2D and 3D images are supported, got ndim={ndim}")


def norm_layer(ndim: int):
    return nn.BatchNorm2d if ndim == 2 else nn.BatchNorm3d


class PerImageCNN(nn.Module):
    """Kanezaki-style per-image CNN.

    Parameters
    ----------
    in_channels, n_classes:
        Input channels and number of output classes (logits).
    width:
        Feature channels of every 3x3 block (Kanezaki used 100).
    depth:
        Number of 3x3 conv + ReLU + BatchNorm blocks (Kanezaki used 2).
    ndim:
        2 for images, 3 for volumes.
    """

    def __init__(
        self,
        in_channels: int,
        n_classes: int,
        width: int = 32,
        depth: int = 2,
        ndim: int = 2,
        head_norm: bool = True,
        head_affine: bool = False,
    ):
        super().__init__()
        if in_channels < 1 or n_classes < 2 or width < 1 or depth < 1:
            raise ValueError("need in_channels >= 1, n_classes >= 2, width >= 1, depth >= 1")
        Conv, Norm = conv_layer(ndim), norm_layer(ndim)
        layers: list[nn.Module] = []
        c = in_channels
        for _ in range(depth):
            layers += [Conv(c, width, 3, padding=1), nn.ReLU(inplace=True), Norm(width)]
            c = width
        self.body = nn.Sequential(*layers)
        self.head = Conv(width, n_classes, 1)
        # BatchNorm on the logits (as in Kanezaki's network): every class keeps a
        # zero-mean, unit-variance response over the image, so no class can be
        # pushed to zero probability everywhere and lose its gradient for good.
        self.head_norm = Norm(n_classes, affine=head_affine) if head_norm else nn.Identity()
        self.ndim = ndim
        self.in_channels = in_channels
        self.n_classes = n_classes
        self.width = width
        self.depth = depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head_norm(self.head(self.body(x)))
