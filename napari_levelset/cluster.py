"""k-means++ in torch, used to start the level-set optimisation from sensible class means."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["kmeans", "smooth", "init_centres"]


def smooth(x: torch.Tensor, passes: int = 2) -> torch.Tensor:
    """Box-filter ``(B, C, *S)`` with 3-pixel windows ``passes`` times (edges renormalised)."""
    pool = F.avg_pool2d if x.dim() == 4 else F.avg_pool3d
    for _ in range(passes):
        x = pool(x, 3, stride=1, padding=1, count_include_pad=False)
    return x


@torch.no_grad()
def init_centres(x: torch.Tensor, k: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Class means to start from: k-means on a lightly smoothed copy of ``x`` ``(B, C, *S)``.

    Smoothing lowers the noise the way the TV term will, so a big noisy region is
    not split in two at the expense of a small distinct one.
    """
    xs = smooth(x.float())
    pts = xs.transpose(0, 1).reshape(x.shape[1], -1).t()
    return kmeans(pts, k, seed=seed)


@torch.no_grad()
def kmeans(
    points: torch.Tensor,
    k: int,
    seed: int = 0,
    iterations: int = 20,
    max_points: int = 65536,
    restarts: int = 3,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cluster ``points`` ``(P, C)`` into ``k`` groups.

    k-means++ seeding, then Lloyd iterations, on a random subsample of at most
    ``max_points`` points (deterministic for a seed); the best of ``restarts``
    seedings (lowest mean squared distance) is kept.  Returns the centres
    ``(k, C)`` sorted by their mean over channels (darkest first), and the mean
    squared distance of a point to its centre (a scalar tensor).  Centres that end
    up empty keep their seed position; duplicates are allowed when there are
    fewer distinct points than ``k``.
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
        c, spread = _one_kmeans(points, k, gen, iterations)
        if best is None or float(spread) < float(best[1]):
            best = (c, spread)
    c, spread = best
    order = torch.argsort(c.mean(1), stable=True)
    return c[order], spread


def _one_kmeans(points: torch.Tensor, k: int, gen: torch.Generator, iterations: int):
    n = points.shape[0]
    first = int(torch.randint(n, (1,), generator=gen))
    centres = [points[first]]
    d2 = ((points - centres[0]) ** 2).sum(1)
    for _ in range(1, k):
        total = d2.sum()
        if float(total) <= 0:
            nxt = int(torch.randint(n, (1,), generator=gen))
        else:
            probs = (d2 / total).cpu().double()
            nxt = int(torch.multinomial(probs, 1, generator=gen))
        centres.append(points[nxt])
        d2 = torch.minimum(d2, ((points - centres[-1]) ** 2).sum(1))
    c = torch.stack(centres)
    for _ in range(iterations):
        dist = torch.cdist(points, c) ** 2
        assign = dist.argmin(1)
        sums = torch.zeros_like(c).index_add_(0, assign, points)
        counts = torch.bincount(assign, minlength=k).to(c.dtype)
        filled = counts > 0
        new = torch.where(filled[:, None], sums / counts.clamp_min(1)[:, None], c)
        if torch.allclose(new, c):
            c = new
            break
        c = new
    dist = torch.cdist(points, c) ** 2
    spread = dist.min(1).values.mean()
    return c, spread
