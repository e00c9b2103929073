#!/usr/bin/env python
"""Train the strokes' region network (``napari_levelset.nn.regions.RegionNet``) on BSDS500 train.

Every image of BSDS500's *train* split from ``--start`` on (sorted by id; the first 50 are
left out by default: they are the images the strokes' settings are chosen on) is prepared
as a photograph with strokes is (``prepare_image(..., color="lab", structures=True)``, then
the working copy of ``PHOTO_STROKE_PIXELS`` pixels), and each of its human segmentations
resized to that grid (nearest).  Each step takes ``--batch`` random crops of ``--crop``
pixels (flipped left-right at random), each with one of its image's human segmentations at
random, and minimises

* the discriminative loss of De Brabandere, Neven & Van Gool (2017) on the embedding: each
  pixel within 0.5 of its region's mean, the regions' means 3 apart, a 0.001 pull of the
  means toward 0, and
* a class-balanced binary cross-entropy of the boundary logit against the share of the
  human segmentations that draw a boundary at the pixel (a pixel whose 4-neighbour is in
  another region),

with Adam and a one-cycle learning rate (peak ``--lr``).  The weights are written as float16
with the network's configuration (``napari_levelset.nn.regions.load_region_net`` reads them).

```bash
python benchmarks/train_regions.py --bsds ../shared/data/bsds500 --out napari_levelset/weights/regions_bsds.pt
```

Seeded (``--seed``) and deterministic on one machine with one thread count.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import bsds_image, bsds_truth, list_images, read_bsds_image

#: the discriminative loss's margins: a pixel within ``PULL`` of its region's mean, the means ``2 PUSH`` apart
PULL, PUSH = 0.5, 1.5


def boundaries(segmentation: np.ndarray) -> np.ndarray:
    """bool ``(H, W)``: the pixels with a 4-neighbour in another region."""
    s = segmentation
    b = np.zeros(s.shape, bool)
    rows, cols = s[:-1] != s[1:], s[:, :-1] != s[:, 1:]
    b[:-1] |= rows
    b[1:] |= rows
    b[:, :-1] |= cols
    b[:, 1:] |= cols
    return b


def load_images(root: Path, start: int, limit: int | None) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(standardised item (C, H, W), human segmentations (A, H, W), boundary share (H, W))`` per image."""
    from skimage.transform import resize

    from napari_levelset.evaluation.bsds import load_ground_truth
    from napari_levelset.io.prepare import prepare_image
    from napari_levelset.method.strokes import working_copy
    from napari_levelset.nn.regions import standardise
    from napari_levelset.settings import PHOTO_STROKE_PIXELS

    out = []
    ids = list_images(root, "train")[start:]
    for image_id in ids[:limit]:
        prepared = prepare_image(read_bsds_image(bsds_image(root, "train", image_id)), color="lab", structures=True)
        work, _ = working_copy(prepared, PHOTO_STROKE_PIXELS)
        item = work.data[0]
        humans = np.stack(
            [
                resize(h, item.shape[1:], order=0, preserve_range=True, anti_aliasing=False).astype(np.int64)
                for h in load_ground_truth(bsds_truth(root, "train", image_id))
            ]
        )
        share = np.mean([boundaries(h) for h in humans], 0).astype(np.float32)
        out.append((standardise(item).numpy(), humans, share))
    return out


def discriminative_loss(embedding, segmentation):
    """De Brabandere et al.'s loss of one crop: ``embedding`` ``(D, P)``, ``segmentation`` ``(P,)`` region ids."""
    import torch
    import torch.nn.functional as F

    ids, inverse = torch.unique(segmentation, return_inverse=True)
    n = len(ids)
    count = torch.bincount(inverse, minlength=n).float()
    means = torch.zeros(embedding.shape[0], n).index_add_(1, inverse, embedding) / count
    spread = (embedding - means[:, inverse]).norm(dim=0)
    pull = (torch.zeros(n).index_add_(0, inverse, F.relu(spread - PULL) ** 2) / count).mean()
    push = embedding.sum() * 0.0
    if n > 1:
        apart = torch.cdist(means.T, means.T)[~torch.eye(n, dtype=torch.bool)]
        push = (F.relu(2.0 * PUSH - apart) ** 2).mean()
    return pull + push + 0.001 * means.norm(dim=0).mean()


def train(images, steps: int, crop: int, batch: int, lr: float, seed: int, log_every: int = 100, widths=(24, 48, 64)):
    """The trained ``RegionNet`` (see the module's docstring)."""
    import torch
    import torch.nn.functional as F

    from napari_levelset.nn.regions import RegionNet

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = RegionNet(in_channels=images[0][0].shape[0], widths=tuple(widths))
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    start, recent = time.time(), []
    for step in range(steps):
        xs, segs, shares = [], [], []
        for _ in range(batch):
            item, humans, share = images[rng.integers(len(images))]
            h, w = item.shape[1:]
            y0, x0 = rng.integers(0, max(1, h - crop + 1)), rng.integers(0, max(1, w - crop + 1))
            window = (slice(y0, y0 + crop), slice(x0, x0 + crop))
            x = item[(slice(None), *window)]
            seg = humans[rng.integers(len(humans))][window]
            b = share[window]
            if rng.random() < 0.5:
                x, seg, b = x[..., ::-1], seg[..., ::-1], b[..., ::-1]
            xs.append(x)
            segs.append(seg)
            shares.append(b)
        hh, ww = min(x.shape[1] for x in xs), min(x.shape[2] for x in xs)
        x = torch.from_numpy(np.stack([v[:, :hh, :ww] for v in xs]).copy())
        b = torch.from_numpy(np.stack([v[:hh, :ww] for v in shares]).copy())
        embedding, edge = net(x)
        loss_e = (
            sum(
                discriminative_loss(
                    embedding[k].reshape(embedding.shape[1], -1), torch.from_numpy(segs[k][:hh, :ww].copy()).reshape(-1)
                )
                for k in range(batch)
            )
            / batch
        )
        positive = b.mean().clamp(1e-3, 0.5)
        weight = torch.where(b > 0, 1.0 - positive, positive)
        loss_b = 0.5 * F.binary_cross_entropy_with_logits(edge, b, weight=weight) / (positive * (1.0 - positive))
        loss = loss_e + loss_b
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
        recent = (recent + [(loss_e.item(), loss_b.item())])[-log_every:]
        if step % log_every == 0 or step == steps - 1:
            e, bl = np.mean(recent, 0)
            print(f"step {step}: embedding {e:.4f}, boundary {bl:.4f} ({time.time() - start:.0f} s)", flush=True)
    return net.eval()


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bsds", type=Path, required=True, help="BSDS500 folder (images/, groundTruth/)")
    p.add_argument("--out", type=Path, required=True, help="weights file to write")
    p.add_argument("--start", type=int, default=50, help="skip the first N train images (default 50)")
    p.add_argument("--limit", type=int, default=None, help="at most this many images")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--crop", type=int, default=128)
    p.add_argument("--batch", type=int, default=6)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--widths", type=int, nargs=3, default=[24, 48, 64], help="channels at full, half and quarter resolution"
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    import torch

    args = parse_args(argv)
    images = load_images(args.bsds, args.start, args.limit)
    print(f"{len(images)} train images from {args.start}", flush=True)
    net = train(images, args.steps, args.crop, args.batch, args.lr, args.seed, widths=args.widths)
    config = dict(in_channels=net.a1.in_channels, dim=net.emb.out_channels, widths=tuple(args.widths))
    weights = {k: v.half() for k, v in net.state_dict().items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        dict(config=config, weights=weights, trained_on="BSDS500 train", args=vars(args) | {"bsds": None, "out": None}),
        args.out,
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
