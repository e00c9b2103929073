"""Keeping every class of a run alive, and saying why a run gives fewer than N labels.

The level-set loss has local minima in which a class holds no pixel: the softmax then gives
it no gradient, and it stays empty however long the run goes on.  On a four-level phantom
with noise (``evaluation.synthetic.phantom``, noise 0.15) the per-image CNN let the second
class shrink into the first over 30 iterations, although the four-class truth has the lower
loss (0.0166 against 0.0196).  A ``Segmenter`` therefore checks every ``CHECK_EVERY``
iterations whether the optimisation emptied a class, and restarts such a class once from the
pixels that its class fits worst (:func:`worst_fit_centre`); the loss then decides whether
it stays.  A run that still gives fewer than N labels says so (:func:`fewer_classes`):
a ``FewerClassesWarning`` and the record ``classes`` in the run's settings.

Shapes: ``x`` is the network's input ``(B, C, *S)``; ``winners`` the arg-max class per
pixel ``(B, *S)``.
"""

from __future__ import annotations

import numpy as np
import torch

from napari_levelset.errors import FewerClassesWarning
from napari_levelset.method.cluster import smooth, sq_dist

__all__ = ["CHECK_EVERY", "ClassWatch", "FewerClassesWarning", "class_counts", "fewer_classes", "worst_fit_centre"]

#: iterations between two checks for a class the optimisation emptied
CHECK_EVERY = 5
#: Lloyd iterations of the two-means split of the worst-fitting class
SPLIT_ITERATIONS = 10
#: a class holding less than this share of the pixels is lost: restarted during a run (``ClassWatch``), named
#: when the run ends (``fewer_classes``)
FEW = 0.001
#: a class counts as emptied by the optimisation (not as small from the start) once it held this share at a check
HELD = 0.01


@torch.no_grad()
def class_counts(winners: torch.Tensor, n_classes: int) -> np.ndarray:
    """Pixels per class, int64 ``(N,)``, of the arg-max classes ``winners`` (any shape)."""
    return torch.bincount(winners.flatten(), minlength=n_classes).cpu().numpy()


class ClassWatch:
    """Which classes a run's optimisation emptied, and when each was restarted.

    A class is *emptied* when it holds less than ``FEW`` (0.1 %) of the pixels after
    holding at least ``HELD`` (1 %) at an earlier check: a class that was small from the
    start (a few spots) is left alone.  Each class is restarted at most once.

    Parameters
    ----------
    n_classes : int
        N.
    """

    def __init__(self, n_classes: int):
        self.n_classes = int(n_classes)
        #: the largest share of the pixels each network class held at a check, float ``(N,)``
        self.peak = np.zeros(self.n_classes)
        #: network class -> the iteration it was restarted at
        self.reseeded: dict[int, int] = {}

    def emptied(self, winners: torch.Tensor) -> list[int]:
        """The network classes emptied and not yet restarted, after a check of ``winners`` ``(B, *S)``."""
        share = class_counts(winners, self.n_classes) / max(winners.numel(), 1)
        self.peak = np.maximum(self.peak, share)
        return [k for k in range(self.n_classes) if share[k] < FEW and self.peak[k] >= HELD and k not in self.reseeded]


@torch.no_grad()
def worst_fit_centre(x: torch.Tensor, winners: torch.Tensor, n_classes: int) -> tuple[torch.Tensor, int]:
    """A new class mean: the far half of the class that fits its pixels worst.

    On a lightly smoothed copy of ``x`` (``cluster.smooth``, as the k-means start, so the
    noise counts as little as the total variation will let it), the class with the largest
    sum of squared distances of its pixels to its mean is split in two by two-means (Lloyd
    iterations from its mean moved by one standard deviation along each of its channels'
    largest spread); the centre of the half farther from the class mean is returned.  A
    class that covers two levels has its larger part near its mean, so the far half is the
    level it swallowed.

    Parameters
    ----------
    x : torch.Tensor
        Float ``(B, C, *S)``, the network's input.
    winners : torch.Tensor
        Integer ``(B, *S)``: each pixel's class, ``0..n_classes-1``.
    n_classes : int
        N.

    Returns
    -------
    centre : torch.Tensor
        Float ``(C,)`` on ``x``'s device.
    split : int
        The class split.
    """
    c = x.shape[1]
    xs = smooth(x.float()).transpose(0, 1).reshape(c, -1).t()  # P, C
    w = winners.reshape(-1)
    counts = torch.bincount(w, minlength=n_classes).to(xs)
    sums = torch.zeros(n_classes, c, device=xs.device).index_add_(0, w, xs)
    means = sums / counts.clamp_min(1)[:, None]
    residual = ((xs - means[w]) ** 2).sum(1)
    cost = torch.zeros(n_classes, device=xs.device).index_add_(0, w, residual)
    j = int(cost.argmax())
    pts = xs[w == j]
    mean = means[j]
    spread = pts.std(0) if pts.shape[0] > 1 else torch.zeros_like(mean)
    axis = torch.zeros_like(mean)
    axis[int(spread.argmax())] = float(spread.max())
    centres = torch.stack([mean - axis, mean + axis])
    for _ in range(SPLIT_ITERATIONS):
        near = sq_dist(pts, centres).argmin(1)
        for h in range(2):
            if bool((near == h).any()):
                centres[h] = pts[near == h].mean(0)
    far = int(((centres - mean) ** 2).sum(1).argmax())
    return centres[far], j


def fewer_classes(
    labels: np.ndarray, order: np.ndarray, reseeded: dict[int, int], trained_head: bool, lam: float
) -> str | None:
    """Why a run's ``labels`` hold fewer labels than it has classes, or None when every label is there.

    A label with fewer than ``FEW`` (0.1 %) of the pixels counts as lost: a class the
    optimisation shrank to a few scattered pixels is no class of the image.

    Parameters
    ----------
    labels : numpy.ndarray
        The run's labels, ``1..N``, any shape.
    order : numpy.ndarray
        int ``(N,)``: label ``k`` is network class ``order[k - 1]``.
    reseeded : dict of int to int
        Network class -> iteration at which it was restarted from the worst-fitting pixels.
    trained_head : bool
        Whether the labels come from a pretrained network's trained head (no k-means start).
    lam : float
        The run's λ.

    Returns
    -------
    str or None
        One paragraph: which labels are empty, why, and what to change.
    """
    n_classes = len(order)
    counts = np.bincount(np.asarray(labels).ravel(), minlength=n_classes + 1)[1:]
    label_of = {int(c): k + 1 for k, c in enumerate(order)}
    reseeded = {label_of[c]: it for c, it in reseeded.items()}
    lost = [k + 1 for k in range(n_classes) if counts[k] < FEW * counts.sum()]
    if not lost:
        return None
    empty = [k for k in lost if counts[k - 1] == 0]
    few = [f"label {k} holds {counts[k - 1]} pixel{'s' if counts[k - 1] > 1 else ''}" for k in lost if counts[k - 1]]
    held = [f"label{'s' * (len(empty) > 1)} {', '.join(map(str, empty))} empty"] if empty else []
    it, label = ("they", "labels") if len(lost) > 1 else ("it", "label")
    head = (
        f"{n_classes - len(lost)} of the {n_classes} classes asked for hold {FEW:.1%} of the pixels or more "
        f"({'; '.join(held + few)})"
    )
    if trained_head:
        return (
            f"{head}: the pretrained network's trained head gives {'them' if len(lost) > 1 else 'it'} "
            "(almost) no pixel of this image; start the head from the image's k-means (init='kmeans', as a "
            "fine-tune with finetune_iterations=20 does by default) or ask for fewer classes"
        )
    again = [k for k in lost if k in reseeded]
    if again:
        return (
            f"{head}: the optimisation emptied {'them' if len(lost) > 1 else 'it'}, and restarted from "
            f"the pixels fitted worst ({label} {', '.join(f'{k} at iteration {reseeded[k]}' for k in again)}) "
            f"{it} shrank again: the image shows fewer than {n_classes} levels that λ {lam:g} keeps apart; "
            "ask for fewer classes or lower lam"
        )
    return (
        f"{head}: the image shows fewer than {n_classes} distinct levels to the k-means start or the "
        "optimisation; ask for fewer classes or lower lam"
    )
