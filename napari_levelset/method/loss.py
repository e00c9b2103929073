"""The multiphase level-set (Mumford-Shah) loss of Kim & Ye, and the scribble term.

Shapes follow PyTorch conventions: ``probs`` is ``(B, N, *S)`` (softmax over N
classes), ``image`` is ``(B, C, *S)``, with ``S`` two or three spatial axes.

For one batch item with pixel set Omega the level-set loss is::

    [ sum_n sum_r sum_c (x_c(r) - c_{n,c})^2 y_n(r)
      + lam * sum_n sum_axes sum_r |y_n(r + e_axis) - y_n(r)| ] / |Omega|

with class means ``c_{n,c} = sum_r x_c(r) y_n(r) / (sum_r y_n(r) + eps)``
recomputed from ``y`` on every call.  Both terms are per-pixel means, so ``lam``
does not depend on the image size.  The batch loss is the mean over items.

Optimising on random crops of an image too large for one step, the means of the
crop alone would drift for a class the crop hardly contains; ``means=`` then
passes class means estimated over the whole image (treated as constants).

References
----------
.. [1] B. Kim and J. C. Ye, "Mumford-Shah loss functional for image segmentation with
   deep learning", IEEE Transactions on Image Processing 29, 1856-1866 (2020),
   arXiv:1904.02872.  The loss above is its multiphase loss, with the
   network's softmax outputs as the characteristic functions of the classes.
.. [2] L. A. Vese and T. F. Chan, "A multiphase level set framework for image
   segmentation using the Mumford and Shah model", International Journal of Computer
   Vision 50, 271-293 (2002): the piecewise-constant multiphase model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "class_means",
    "class_probs",
    "data_term",
    "levelset_loss",
    "scribble_loss",
    "total_variation",
]

EPS = 1e-8
#: logits more than this below the largest one are raised to it: exp(-40) ~ 4e-18
LOGIT_FLOOR = 40.0


def class_probs(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over the class axis (1) of logits floored at ``LOGIT_FLOOR`` below the largest.

    A confident network (a k-means start with well-separated colours, a
    converged run) can have logits hundreds apart; the softmax's backward pass
    then produces float32 numbers below 1e-38, which are subnormal, and CPU
    arithmetic on them is many times slower (a 20-iteration U-Net fine-tune
    from a k-means start spent 2.6 times as long in the backward pass).  With
    the floor every probability stays above ~1e-19; a floored class gets no
    gradient there, which it practically had not before either (its gradient
    scales with its probability).

    Parameters
    ----------
    logits : torch.Tensor
        Float ``(B, N, *S)`` network outputs, N classes on axis 1.

    Returns
    -------
    torch.Tensor
        Probabilities ``(B, N, *S)``, same dtype, summing to 1 over axis 1.  The shift by the
        largest logit is detached (it changes nothing but the rounding).

    Examples
    --------
    >>> import torch
    >>> p = class_probs(torch.tensor([[[[0.0]], [[1000.0]]]]))
    >>> p.shape, bool(p[0, 0] > 0)
    (torch.Size([1, 2, 1, 1]), True)
    """
    z = logits - logits.amax(dim=1, keepdim=True).detach()
    return torch.softmax(z.clamp_min(-LOGIT_FLOOR), dim=1)


def _check(probs: torch.Tensor, image: torch.Tensor) -> None:
    if probs.dim() not in (4, 5):
        raise ValueError(f"probs must be (B, N, *S) with 2 or 3 spatial axes, got shape {tuple(probs.shape)}")
    if image.dim() != probs.dim() or image.shape[0] != probs.shape[0] or image.shape[2:] != probs.shape[2:]:
        raise ValueError(
            f"image {tuple(image.shape)} does not match probs {tuple(probs.shape)}: "
            "expected (B, C, *S) with the same B and S"
        )


def class_means(probs: torch.Tensor, image: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """Soft class means ``c`` of shape ``(B, N, C)``.

    ``c[b, n, k] = sum_r x_k(r) y_n(r) / (sum_r y_n(r) + eps)``, the mean of channel ``k``
    weighted by the probability of class ``n`` (the class means of Kim & Ye 2020).

    Parameters
    ----------
    probs : torch.Tensor
        Float ``(B, N, *S)`` class probabilities ``y`` (softmax over N), 2 or 3 spatial axes.
    image : torch.Tensor
        Float ``(B, C, *S)`` image ``x``, same B and S as ``probs``.
    eps : float
        Added to each class's total probability (in pixels) so an empty class does not divide by 0.

    Returns
    -------
    torch.Tensor
        ``(B, N, C)``, the dtype of ``probs``; differentiable with respect to both inputs.

    Raises
    ------
    ValueError
        When ``probs`` is not 4D or 5D, or ``image`` does not match its B and S.

    Examples
    --------
    >>> import torch
    >>> probs = torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]]]])  # (1, 2, 1, 2)
    >>> image = torch.tensor([[[[0.2, 0.8]]]])  # (1, 1, 1, 2)
    >>> class_means(probs, image).flatten().tolist()  # doctest: +ELLIPSIS
    [0.2..., 0.8...]
    """
    _check(probs, image)
    y = probs.flatten(2)  # B N P
    x = image.flatten(2)  # B C P
    num = torch.bmm(y, x.transpose(1, 2))  # B N C
    den = y.sum(-1, keepdim=True) + eps  # B N 1
    return num / den


def data_term(
    probs: torch.Tensor, image: torch.Tensor, eps: float = EPS, means: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-item data term ``sum_n sum_r |x(r) - c_n|^2 y_n(r) / |Omega|``, shape ``(B,)``.

    Uses the expansion ``|x - c|^2 = |x|^2 - 2 x.c + |c|^2`` so that no
    ``(B, N, C, P)`` tensor is ever formed: memory stays O(B (N + C) P).

    Parameters
    ----------
    probs : torch.Tensor
        Float ``(B, N, *S)`` class probabilities ``y``, 2 or 3 spatial axes.
    image : torch.Tensor
        Float ``(B, C, *S)`` image ``x``, same B and S.
    eps : float
        As for :func:`class_means`.
    means : torch.Tensor or None
        ``(B, N, C)``: use these class means (no gradient through them) instead of the ones
        of ``probs``.

    Returns
    -------
    torch.Tensor
        ``(B,)``, the mean over the pixels of the squared distance to the class means,
        weighted by ``probs`` (units of the image's values, squared).

    Raises
    ------
    ValueError
        When the shapes do not fit: ``probs`` not 4D/5D, ``image`` another B or S, or
        ``means`` not ``(B, N, C)``.
    """
    if means is None:
        c = class_means(probs, image, eps)  # B N C
    else:
        _check(probs, image)
        if means.shape != (probs.shape[0], probs.shape[1], image.shape[1]):
            raise ValueError(
                f"means must be (B, N, C) = {(probs.shape[0], probs.shape[1], image.shape[1])}, "
                f"got {tuple(means.shape)}"
            )
        c = means.detach()
    y = probs.flatten(2)  # B N P
    x = image.flatten(2)  # B C P
    npix = y.shape[-1]
    x2 = (x * x).sum(1)  # B P
    ysum = y.sum(-1)  # B N
    # sum_n sum_r y_n |x|^2  -  2 sum_n c_n . (sum_r y_n x)  +  sum_n |c_n|^2 sum_r y_n
    t1 = (y.sum(1) * x2).sum(-1)  # B
    yx = torch.bmm(y, x.transpose(1, 2))  # B N C
    t2 = (c * yx).sum((1, 2))
    t3 = ((c * c).sum(-1) * ysum).sum(-1)
    return (t1 - 2.0 * t2 + t3) / npix


def total_variation(probs: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation (forward differences) per pixel, shape ``(B,)``.

    ``sum_n sum_axes sum_r |y_n(r + e_axis) - y_n(r)| / |Omega|``: the length term of Kim &
    Ye 2020 with the L1 norm of the forward differences (none across the last pixel).

    Parameters
    ----------
    probs : torch.Tensor
        Float ``(B, N, *S)`` class probabilities, 2 or 3 spatial axes.

    Returns
    -------
    torch.Tensor
        ``(B,)``, divided by the pixel count ``prod(S)``.

    Raises
    ------
    ValueError
        When ``probs`` is not 4D or 5D.

    Examples
    --------
    >>> import torch
    >>> probs = torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]]]])  # two classes, 2 pixels, one edge
    >>> total_variation(probs).tolist()
    [1.0]
    """
    if probs.dim() not in (4, 5):
        raise ValueError(f"probs must be (B, N, *S) with 2 or 3 spatial axes, got shape {tuple(probs.shape)}")
    npix = probs[0, 0].numel()
    tv = probs.new_zeros(probs.shape[0])
    for ax in range(2, probs.dim()):
        d = torch.diff(probs, dim=ax)
        tv = tv + d.abs().flatten(1).sum(-1)
    return tv / npix


def levelset_loss(
    probs: torch.Tensor, image: torch.Tensor, lam: float, eps: float = EPS, means: torch.Tensor | None = None
) -> torch.Tensor:
    """The multiphase level-set loss, averaged over the batch (a scalar).

    ``data_term + lam * total_variation`` per item, then the mean over the batch (see the
    module docstring for the formula).

    Parameters
    ----------
    probs : torch.Tensor
        Float ``(B, N, *S)`` class probabilities (softmax over N, e.g. :func:`class_probs`),
        2 or 3 spatial axes.
    image : torch.Tensor
        Float ``(B, C, *S)`` image, same B and S; normalised to about [0, 1] (``io.prepare_image``).
    lam : float
        Weight of the total-variation term; both terms are per-pixel means, so it does not
        depend on the image size.  0 leaves the term out.
    eps : float
        As for :func:`class_means`.
    means : torch.Tensor or None
        Fixed class means ``(B, N, C)`` to use instead of those of ``probs`` (see ``data_term``).

    Returns
    -------
    torch.Tensor
        A scalar (0-dim) tensor, differentiable with respect to ``probs``.

    Raises
    ------
    ValueError
        When the shapes do not fit (see :func:`data_term`).

    Notes
    -----
    The multiphase Mumford-Shah loss of Kim & Ye 2020 (see the module's references).

    Examples
    --------
    >>> import torch
    >>> image = torch.rand(1, 1, 16, 16)
    >>> logits = torch.randn(1, 3, 16, 16, requires_grad=True)
    >>> loss = levelset_loss(class_probs(logits), image, lam=0.01)
    >>> loss.backward()
    >>> loss.dim(), logits.grad.shape
    (0, torch.Size([1, 3, 16, 16]))
    """
    per_item = data_term(probs, image, eps, means=means)
    if lam:
        per_item = per_item + lam * total_variation(probs)
    return per_item.mean()


def scribble_loss(logits: torch.Tensor, scribbles: torch.Tensor | None, check: bool = True) -> torch.Tensor:
    """Cross-entropy on labelled pixels only.

    Parameters
    ----------
    logits : torch.Tensor
        Float ``(B, N, *S)`` network outputs (before the softmax).
    scribbles : torch.Tensor or None
        Integer ``(B, *S)``: 0 means unlabelled and value ``k`` means class ``k - 1``.
        None: no scribbles.
    check : bool
        With ``check=False`` (scribbles validated once by the caller) the scribble values
        are not checked against the class count, and nothing waits for the device.

    Returns
    -------
    torch.Tensor
        A scalar: the mean cross-entropy (``torch.nn.functional.cross_entropy``) over labelled
        pixels, or a zero that keeps the graph when nothing is labelled (or ``scribbles`` is None).

    Raises
    ------
    ValueError
        When ``scribbles`` is not ``(B, *S)`` of ``logits``, or (with ``check``) a scribble
        value exceeds the number of classes N.

    Examples
    --------
    >>> import torch
    >>> logits = torch.zeros(1, 2, 2, 2)
    >>> scribbles = torch.tensor([[[1, 0], [0, 2]]])
    >>> round(float(scribble_loss(logits, scribbles)), 4)  # log 2
    0.6931
    """
    if scribbles is None:
        return logits.sum() * 0.0
    if scribbles.shape != logits.shape[:1] + logits.shape[2:]:
        raise ValueError(f"scribbles {tuple(scribbles.shape)} do not match logits {tuple(logits.shape)}")
    target = scribbles.long() - 1  # -1 = ignore
    if check and int(target.max()) >= logits.shape[1]:
        raise ValueError(f"scribble value {int(target.max()) + 1} exceeds the number of classes {logits.shape[1]}")
    # sum / count instead of the mean: no NaN when nothing is labelled, no host sync
    total = F.cross_entropy(logits, target, ignore_index=-1, reduction="sum")
    return total / (target >= 0).sum().clamp_min(1)
