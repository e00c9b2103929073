"""k-means++ in torch, used to start the level-set optimisation from sensible class means.

References
----------
.. [1] D. Arthur and S. Vassilvitskii, "k-means++: the advantages of careful seeding",
   Proc. ACM-SIAM Symposium on Discrete Algorithms (SODA), 1027-1035 (2007): the seeding.
.. [2] S. P. Lloyd, "Least squares quantization in PCM", IEEE Transactions on Information
   Theory 28, 129-137 (1982): the iterations.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["init_centres", "kmeans", "smooth"]


def sq_dist(points: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Squared distances ``(P, K)``; much faster than ``torch.cdist`` for few channels.

    Parameters
    ----------
    points : torch.Tensor
        Float ``(P, C)``.
    centres : torch.Tensor
        Float ``(K, C)``.

    Returns
    -------
    torch.Tensor
        ``(P, K)``, ``|points[p] - centres[k]|^2`` expanded as ``|p|^2 - 2 p.c + |c|^2`` and
        clamped at 0 (rounding).
    """
    d = (points * points).sum(1, keepdim=True) - 2 * points @ centres.t() + (centres * centres).sum(1)
    return d.clamp_min_(0)


def smooth(x: torch.Tensor, passes: int = 2) -> torch.Tensor:
    """Box-filter ``(B, C, *S)`` with 3-pixel windows ``passes`` times (edges renormalised).

    Axes shorter than 3 pixels are left unsmoothed.

    Parameters
    ----------
    x : torch.Tensor
        Float ``(B, C, H, W)`` or ``(B, C, D, H, W)``.
    passes : int
        How many times the 3-pixel mean (``avg_pool2d``/``avg_pool3d``, stride 1, padding
        not counted) is applied.

    Returns
    -------
    torch.Tensor
        Same shape and dtype as ``x``.

    Examples
    --------
    >>> import torch
    >>> smooth(torch.ones(1, 1, 5, 5)).allclose(torch.ones(1, 1, 5, 5))
    True
    """
    pool = F.avg_pool2d if x.dim() == 4 else F.avg_pool3d
    size = tuple(3 if s >= 3 else 1 for s in x.shape[2:])  # an axis of 1 or 2 pixels is not smoothed
    pad = tuple(k // 2 for k in size)
    for _ in range(passes):
        x = pool(x, size, stride=1, padding=pad, count_include_pad=False)
    return x


@torch.no_grad()
def init_centres(
    x: torch.Tensor, k: int, seed: int = 0, scribbles: torch.Tensor | None = None, order_channels: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Class means to start from: k-means on a lightly smoothed copy of ``x`` ``(B, C, *S)``.

    Returns ``(centres, spread)``: centres ``(k, C)`` darkest first, and the mean
    squared distance of a raw pixel to its nearest centre.

    With ``scribbles`` ``(B, *S)`` (0 none, ``j`` class ``j - 1``), each scribbled
    class's centre is the mean of its scribbled pixels and stays there; only the
    others are found by k-means and fill the remaining places, darkest first.
    "Darkest" is the mean over the first ``order_channels`` channels (all by
    default; extra feature channels such as coordinates are left out this way).

    Smoothing lowers the noise the way the TV term will, so a big noisy region is
    not split in two at the expense of a small distinct one.

    Parameters
    ----------
    x : torch.Tensor
        Float ``(B, C, *S)`` prepared image, 2 or 3 spatial axes.
    k : int
        Number of classes (centres).
    seed : int
        Seed of the k-means++ seeding and of the subsample of pixels.
    scribbles : torch.Tensor or None
        Integer ``(B, *S)``: 0 none, ``j`` class ``j - 1`` (at most ``k`` classes).
    order_channels : int or None
        How many leading channels define "darkest" (None: all).

    Returns
    -------
    centres : torch.Tensor
        Float32 ``(k, C)``, darkest first (scribbled classes keep their places).
    spread : torch.Tensor
        Scalar: the mean squared distance of a raw (unsmoothed) pixel to its nearest centre,
        over at most 16384 pixels drawn at random (in squared units of ``x``).

    Examples
    --------
    >>> import torch
    >>> x = torch.cat([torch.zeros(1, 1, 8, 4), torch.ones(1, 1, 8, 4)], dim=-1)
    >>> centres, spread = init_centres(x, 2)
    >>> centres.shape, bool(centres[0, 0] < centres[1, 0])  # darkest first
    (torch.Size([2, 1]), True)
    """
    flat = lambda t: t.transpose(0, 1).reshape(t.shape[1], -1).t()  # noqa: E731
    xs = flat(smooth(x.float()))
    fixed = {}
    if scribbles is not None:
        s = scribbles.reshape(-1)
        for j in torch.unique(s[s > 0]).tolist():
            fixed[int(j) - 1] = xs[s == j].mean(0)
    if fixed:
        free = [i for i in range(k) if i not in fixed]
        found, _ = (
            kmeans(xs, len(free), seed=seed, fixed=torch.stack(list(fixed.values())), order_channels=order_channels)
            if free
            else (None, 0)
        )
        centres = torch.empty(k, x.shape[1], device=x.device)
        for i, c in fixed.items():
            centres[i] = c
        if free:
            centres[free] = found
    else:
        centres, _ = kmeans(xs, k, seed=seed, order_channels=order_channels)
    # The temperature comes from the raw pixels' spread around those centres, so the
    # starting probabilities are as soft as the noise warrants (not saturated).
    raw = flat(x.float())
    if raw.shape[0] > 16384:
        gen = torch.Generator(device="cpu").manual_seed(int(seed))
        raw = raw[torch.randperm(raw.shape[0], generator=gen)[:16384].to(raw.device)]
    spread = (sq_dist(raw, centres)).min(1).values.mean()
    return centres, spread


@torch.no_grad()
def kmeans(
    points: torch.Tensor,
    k: int,
    seed: int = 0,
    iterations: int = 20,
    max_points: int = 16384,
    restarts: int = 3,
    fixed: torch.Tensor | None = None,
    order_channels: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cluster ``points`` ``(P, C)`` into ``k`` groups.

    k-means++ seeding, then Lloyd iterations, on a random subsample of at most
    ``max_points`` points (deterministic for a seed); the best of ``restarts``
    seedings (lowest mean squared distance) is kept.  ``fixed`` centres ``(F, C)``
    take part in the assignment but never move, and are not returned: the ``k``
    centres returned are the free ones.  Returns the centres
    ``(k, C)`` sorted by their mean over channels (darkest first; over the first
    ``order_channels`` channels when given), and the mean
    squared distance of a point to its centre (a scalar tensor).  Centres that end
    up empty keep their seed position; duplicates are allowed when there are
    fewer distinct points than ``k``.

    Parameters
    ----------
    points : torch.Tensor
        Float ``(P, C)``.
    k : int
        Number of free centres to find.
    seed : int
        Seed of the subsample and of the k-means++ draws (a CPU ``torch.Generator``).
    iterations : int
        Most Lloyd iterations per seeding (they stop early once the centres stay put).
    max_points : int
        Most points clustered; more are subsampled at random.
    restarts : int
        Number of seedings tried (at least 1).
    fixed : torch.Tensor or None
        ``(F, C)`` centres that take part in the assignment but never move.
    order_channels : int or None
        How many leading channels define "darkest" (None: all).

    Returns
    -------
    centres : torch.Tensor
        Float32 ``(k, C)``, darkest first.
    spread : torch.Tensor
        Scalar: the mean squared distance of a (subsampled) point to its nearest centre,
        fixed centres included.

    Notes
    -----
    k-means++ seeding (Arthur & Vassilvitskii 2007) and Lloyd's iterations (Lloyd 1982).

    Examples
    --------
    >>> import torch
    >>> points = torch.tensor([[0.0], [0.1], [1.0], [1.1]])
    >>> centres, spread = kmeans(points, 2)
    >>> [round(v, 2) for v in centres.flatten().tolist()]
    [0.05, 1.05]
    """
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    n = points.shape[0]
    if n > max_points:
        idx = torch.randperm(n, generator=gen)[:max_points].to(points.device)
        points = points[idx]
        n = max_points
    points = points.float()
    best = None
    for _ in range(max(1, restarts)):
        c, spread = _one_kmeans(points, k, gen, iterations, fixed)
        if best is None or float(spread) < float(best[1]):
            best = (c, spread)
    c, spread = best
    order = torch.argsort(c[:, :order_channels].mean(1), stable=True)
    return c[order], spread


def _one_kmeans(points: torch.Tensor, k: int, gen: torch.Generator, iterations: int, fixed=None):
    n = points.shape[0]
    nf = 0 if fixed is None else fixed.shape[0]
    if nf:
        centres = list(fixed.float())
        d2 = sq_dist(points, fixed.float()).min(1).values
        todo = k
    else:
        first = int(torch.randint(n, (1,), generator=gen))
        centres = [points[first]]
        d2 = ((points - centres[0]) ** 2).sum(1)
        todo = k - 1
    for _ in range(todo):
        total = d2.sum()
        if float(total) <= 0:
            nxt = int(torch.randint(n, (1,), generator=gen))
        else:
            probs = (d2 / total).cpu().double()
            nxt = int(torch.multinomial(probs, 1, generator=gen))
        centres.append(points[nxt])
        d2 = torch.minimum(d2, ((points - centres[-1]) ** 2).sum(1))
    c = torch.stack(centres)
    movable = torch.arange(c.shape[0], device=c.device) >= nf
    for _ in range(iterations):
        dist = sq_dist(points, c)
        assign = dist.argmin(1)
        sums = torch.zeros_like(c).index_add_(0, assign, points)
        counts = torch.bincount(assign, minlength=c.shape[0]).to(c.dtype)
        update = (counts > 0) & movable
        new = torch.where(update[:, None], sums / counts.clamp_min(1)[:, None], c)
        if torch.allclose(new, c):
            c = new
            break
        c = new
    dist = sq_dist(points, c)
    spread = dist.min(1).values.mean()
    return c[nf:], spread
