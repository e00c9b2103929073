"""Networks that map an image ``(B, C, *S)`` to ``N`` logits per pixel ``(B, N, *S)``.

``PerImageCNN`` is the small randomly initialised network of Kanezaki's
"Unsupervised segmentation by backpropagation", optimised on one image:
``depth`` blocks of 3x3 convolution + ReLU + BatchNorm, then a 1x1 head.
It works on 2D (``ndim=2``) and 3D (``ndim=3``) images.

References
----------
.. [1] A. Kanezaki, "Unsupervised image segmentation by backpropagation", IEEE
   International Conference on Acoustics, Speech and Signal Processing (ICASSP), 2018.
.. [2] B. Kim and J. C. Ye, "Mumford-Shah loss functional for image segmentation with
   deep learning", IEEE Transactions on Image Processing 29, 1856-1866 (2020): the loss
   the network is optimised with here (``napari_levelset.method.loss``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["PerImageCNN", "conv_layer", "forward_keeping_statistics", "init_parameters", "norm_layer"]


@torch.no_grad()
def init_parameters(module: nn.Module, generator: torch.Generator) -> nn.Module:
    """Draw ``module``'s convolution and linear weights from ``generator`` (in place).

    The same draws, in the same order, as PyTorch's own ``reset_parameters``
    (Kaiming-uniform weights with ``a = sqrt(5)``, biases uniform in
    ``±1/sqrt(fan_in)``), but from a private generator instead of the global one,
    so that a seed gives the same network however many threads build networks at
    once.  Normalisation layers keep their deterministic start (weight 1, bias 0).

    Parameters
    ----------
    module : torch.nn.Module
        Its ``Conv1d``/``Conv2d``/``Conv3d``/``Linear`` submodules (itself included) are redrawn.
    generator : torch.Generator
        A seeded generator on the parameters' device.

    Returns
    -------
    torch.nn.Module
        ``module`` itself.

    Examples
    --------
    >>> import torch
    >>> a = init_parameters(torch.nn.Conv2d(1, 4, 3), torch.Generator().manual_seed(0))
    >>> b = init_parameters(torch.nn.Conv2d(1, 4, 3), torch.Generator().manual_seed(0))
    >>> torch.equal(a.weight, b.weight)
    True
    """
    for m in module.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=generator)
            if m.bias is not None:
                fan_in, _ = nn.init._calculate_fan_in_and_fan_out(m.weight)
                bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
                nn.init.uniform_(m.bias, -bound, bound, generator=generator)
    return module


def forward_keeping_statistics(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``model(x)`` as in training (BatchNorm on the batch's statistics), without moving BatchNorm's
    running statistics or its batch count.

    Reading a run's labels must not change the network a result layer saves.

    Parameters
    ----------
    model : torch.nn.Module
        Any network; its BatchNorm layers in training mode that track running statistics
        are called with momentum 0, then given back their momentum and batch count.
    x : torch.Tensor
        Its input.

    Returns
    -------
    torch.Tensor
        What ``model(x)`` returns.

    Examples
    --------
    >>> bn = torch.nn.BatchNorm2d(1)
    >>> _ = forward_keeping_statistics(bn, torch.rand(2, 1, 4, 4) + 5)
    >>> float(bn.running_mean), int(bn.num_batches_tracked)
    (0.0, 0)
    """
    norms = [
        m
        for m in model.modules()
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats
    ]
    saved = [(m.momentum, m.num_batches_tracked.clone()) for m in norms]
    try:
        for m in norms:
            m.momentum = 0.0  # running = (1 - 0) * running + 0 * batch
        return model(x)
    finally:
        for m, (momentum, count) in zip(norms, saved):
            m.momentum = momentum
            m.num_batches_tracked.copy_(count)


def conv_layer(ndim: int):
    """The convolution class for ``ndim`` spatial axes.

    Parameters
    ----------
    ndim : int
        2 or 3.

    Returns
    -------
    type
        ``torch.nn.Conv2d`` or ``torch.nn.Conv3d``.

    Raises
    ------
    ValueError
        When ``ndim`` is neither 2 nor 3.
    """
    if ndim == 2:
        return nn.Conv2d
    if ndim == 3:
        return nn.Conv3d
    raise ValueError(f"only 2D and 3D images are supported, got ndim={ndim}")


def norm_layer(ndim: int):
    """The batch-normalisation class for ``ndim`` spatial axes.

    Parameters
    ----------
    ndim : int
        2, or 3 (anything but 2 gives the 3D class).

    Returns
    -------
    type
        ``torch.nn.BatchNorm2d`` or ``torch.nn.BatchNorm3d``.
    """
    return nn.BatchNorm2d if ndim == 2 else nn.BatchNorm3d


class PerImageCNN(nn.Module):
    """Kanezaki-style per-image CNN.

    ``depth`` blocks of 3x3 (3x3x3) convolution + ReLU + BatchNorm, then a 1x1 head, plus
    a 1x1 path from the input straight to the logits (see :meth:`init_from_centres`).
    Maps ``(B, in_channels, *S)`` to logits ``(B, n_classes, *S)``, any S.

    Parameters
    ----------
    in_channels : int
        Input channels (at least 1).
    n_classes : int
        Number of output classes (logits), at least 2.
    width : int
        Feature channels of every 3x3 block (Kanezaki used 100).
    depth : int
        Number of 3x3 conv + ReLU + BatchNorm blocks (Kanezaki used 2).
    ndim : int
        2 for images, 3 for volumes.

    Raises
    ------
    ValueError
        When ``in_channels < 1``, ``n_classes < 2``, ``width < 1`` or ``depth < 1``, or
        ``ndim`` is not 2 or 3.

    References
    ----------
    .. [1] Kanezaki 2018, see the module's references.

    Examples
    --------
    >>> import torch
    >>> net = PerImageCNN(in_channels=3, n_classes=4)
    >>> net(torch.rand(1, 3, 32, 32)).shape
    torch.Size([1, 4, 32, 32])
    """

    def __init__(
        self,
        in_channels: int,
        n_classes: int,
        width: int = 32,
        depth: int = 2,
        ndim: int = 2,
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
        # A 1x1 path from the input straight to the logits.  ``init_from_centres``
        # sets it so that the softmax starts as the posterior of a Gaussian mixture
        # with the given class means; the CNN learns spatial corrections on top.
        self.skip = Conv(in_channels, n_classes, 1)
        self.ndim = ndim
        self.in_channels = in_channels
        self.n_classes = n_classes
        self.width = width
        self.depth = depth

    @property
    def receptive_radius(self) -> int:
        """Each output pixel depends on inputs at most this far away (per axis)."""
        return self.depth

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for ``x``.

        Parameters
        ----------
        x : torch.Tensor
            Float ``(B, in_channels, *S)``.

        Returns
        -------
        torch.Tensor
            Float ``(B, n_classes, *S)``.
        """
        return self.head(self.body(x)) + self.skip(x)

    @torch.no_grad()
    def init_from_centres(self, centres: torch.Tensor, spread: float) -> None:
        """Start from soft nearest-centre assignment.

        ``centres`` is ``(n_classes, k)`` with ``k <= in_channels`` (the first ``k``
        input channels are the ones the centres live in); ``spread`` is the mean
        squared distance of a pixel to its centre.  Then
        ``logit_n = -|x - mu_n|^2 / (2 s) + const`` with ``s = spread``, which is
        linear in ``x``, and the CNN branch starts at zero.

        Parameters
        ----------
        centres : torch.Tensor
            Float ``(n_classes, k)``, ``k <= in_channels`` (e.g. from ``cluster.init_centres``).
        spread : float
            Mean squared distance of a pixel to its centre (floored at 1e-4).
        """
        s = max(float(spread), 1e-4)
        k = centres.shape[1]
        w = torch.zeros_like(self.skip.weight)
        w.view(self.n_classes, -1)[:, :k] = centres.to(w) / s
        self.skip.weight.copy_(w)
        self.skip.bias.copy_(-(centres.to(w) ** 2).sum(1) / (2 * s))
        self.head.weight.zero_()
        self.head.bias.zero_()

    @torch.no_grad()
    def seed_class(self, k: int, centre: torch.Tensor, spread: float, like: int | None = None) -> None:
        """Restart class ``k`` from a new mean, as ``init_from_centres`` would have started it.

        The 1x1 path's row ``k`` becomes the Gaussian-mixture term of ``centre``, and the
        CNN branch's row ``k`` the mean of the other classes' rows, so that what the branch
        learned against class ``k`` (while it had no pixels) no longer holds it back.  Used
        when a class is stroked for the first time during a run: its stroked pixels then
        change label at the next step instead of after tens of steps.  With ``like`` the
        CNN branch's row ``k`` becomes a copy of row ``like`` instead: ``k`` and ``like``
        then differ only by their means, so ``k`` takes the pixels of ``like`` that lie
        nearer its new mean (a class emptied during a run, restarted from part of
        ``like``'s pixels: ``napari_levelset.method.classes``).

        Parameters
        ----------
        k : int
            Network class index, 0..n_classes-1.
        centre : torch.Tensor
            Float ``(k_channels,)``, ``k_channels <= in_channels``: the class's new mean in the
            first input channels.
        spread : float
            The mixture's variance, as given to ``init_from_centres`` (floored at 1e-4).
        like : int or None
            Network class whose CNN-branch row class ``k`` copies (None: the mean of the others).
        """
        s = max(float(spread), 1e-4)
        w = self.skip.weight.view(self.n_classes, -1)
        c = centre.to(w)
        w[k] = 0
        w[k, : c.shape[0]] = c / s
        self.skip.bias[k] = -(c**2).sum() / (2 * s)
        others = [j for j in range(self.n_classes) if j != k] if like is None else [like]
        head = self.head.weight.view(self.n_classes, -1)
        head[k] = head[others].mean(0)
        self.head.bias[k] = self.head.bias[others].mean()
