#!/usr/bin/env python
"""BSDS500: variants of the U-Net's per-image fine-tune, beside the per-image mode.

Each variant changes one thing of the shipped configuration (the pretrained
U-Net, its head restarted from the image's k-means and fine-tuned for 20
iterations, ``napari_levelset.segment(image, n_classes=N, model="unet",
finetune_iterations=20)``); the class labels are then turned into merged regions
exactly as ``segment(regions="merged")`` does, and scored over merge weights
(scales ``N|m=w``) at ODS and OIS::

    python benchmarks/unet_variants.py --limit 40 --classes 32 --workers 2
    python benchmarks/unet_variants.py --limit 40 --variants base,rgb-merge,per-image

Variants (``--variants``, comma-separated; default all):

``base``          the shipped configuration
``per-image``     the per-image CNN at its defaults (100 iterations), the reference
``rgb-merge``     base, regions merged on the normalised RGB the network saw (not CIELAB)
``emb-merge``     base, merged on CIELAB plus the U-Net's embedding (scaled to half
                  CIELAB's spread)
``joint-kmeans``  the head started from k-means on [embedding, RGB] (embedding scaled
                  to the image's spread) instead of on the colours alone
``lab-loss``      the data term on CIELAB (as in per-image mode), CIELAB added to the
                  head's input, the k-means start on CIELAB
``lab-pos-loss``  the same plus the position channels (weight 0.5), as in per-image mode
``dw-head``       a depthwise 3x3 convolution (identity at the start) before the 1x1 head
``mlp-head``      the head plus a hidden layer of 16 (1x1, ReLU, 1x1; zero at the start)
``last``          the last full-resolution block of the body trains too (lr 0.003)
``cross-direct``  regions cut by both the fine-tuned classes and the trained head for 16

Seconds are per image and variant (all classes), with ``--workers`` processes
of one thread sharing the CPU, so only their ratios mean something.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from _common import (
    add_data_args,
    bsds_image,
    bsds_truth,
    list_images,
    map_tasks,
    ods_ois_cells,
    ods_ois_head,
    parse_list,
    read_bsds_image,
)

from napari_levelset import evaluation as metrics
from napari_levelset.io.prepare import prepare_image
from napari_levelset.post.regions import connected_regions, merge_regions

VARIANTS = (
    "base",
    "per-image",
    "rgb-merge",
    "emb-merge",
    "joint-kmeans",
    "lab-loss",
    "lab-pos-loss",
    "dw-head",
    "mlp-head",
    "last",
    "cross-direct",
)
WEIGHTS = (0.3, 0.5, 0.8, 1.2, 2.0)
ITERATIONS = 20


def _run(seg, iterations: int) -> np.ndarray:
    for _ in seg.run(iterations, every=iterations):
        pass
    return seg.labels()


def _restart_optimizer(seg) -> None:
    import torch

    seg.optimizer = torch.optim.Adam([p for p in seg.model.parameters() if p.requires_grad], lr=seg.lr)


def _joint_kmeans(seg, n: int, seed: int = 0) -> None:
    """Start the head from k-means on [embedding, image] (the embedding scaled to the image's spread)."""
    import torch

    from napari_levelset.method.cluster import kmeans, smooth, sq_dist

    net = seg.model
    img, extra = net._split(seg.x)
    with torch.no_grad():
        z = net._head_input(seg.x, img, extra)
    e = z.shape[1] - net.model_channels - net.extra_channels
    spread = lambda t: t.flatten(2).std(2).norm()  # noqa: E731
    scale = torch.ones(z.shape[1])
    scale[:e] = spread(z[:, e:]) / spread(z[:, :e])
    f = z * scale[None, :, None, None]
    flat = lambda t: t.transpose(0, 1).reshape(t.shape[1], -1).t()  # noqa: E731
    centres, _ = kmeans(flat(smooth(f)), n, seed=seed)
    raw = flat(f)[torch.randperm(f[0, 0].numel(), generator=torch.Generator().manual_seed(seed))[:16384]]
    s = sq_dist(raw, centres).min(1).values.mean().clamp_min(1e-4)
    with torch.no_grad():
        net.head.weight.copy_((centres * scale / s).view_as(net.head.weight))
        net.head.bias.copy_(-(centres**2).sum(1) / (2 * s))
    _restart_optimizer(seg)


def _lab_network(image, n: int, extra: int):
    """The U-Net on the normalised RGB image, CIELAB (and position) as extra head inputs."""
    import torch

    from napari_levelset.nn.pretrained import build_network

    class LabHead(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.rgb = torch.from_numpy(prepare_image(image, color="rgb").data)
            self.net = build_network("unet", in_channels=3, n_classes=n, ndim=2, color="rgb", extra_channels=extra)
            self.takes_centres = True

        def forward(self, x):
            return self.net(torch.cat([self.rgb, x], 1))

        def parameters(self, recurse=True):
            return (p for p in self.net.parameters() if p.requires_grad)

        @torch.no_grad()
        def init_from_centres(self, centres, spread):  # the k-means start on the extra (CIELAB) part
            s = max(float(spread), 1e-4)
            head = self.net.head
            w = torch.zeros_like(head.weight).view(head.out_channels, -1)
            w[:, -centres.shape[1] :] = centres / s
            head.weight.copy_(w.view_as(head.weight))
            head.bias.copy_(-(centres**2).sum(1) / (2 * s))

    return LabHead()


def _wrap_head(seg, kind: str) -> None:
    import torch

    head = seg.model.head
    if kind == "dw-head":
        dw = torch.nn.Conv2d(
            head.in_channels, head.in_channels, 3, padding=1, groups=head.in_channels, padding_mode="replicate"
        )
        with torch.no_grad():
            dw.weight.zero_()
            dw.weight[:, :, 1, 1] = 1
            dw.bias.zero_()
        seg.model.head = torch.nn.Sequential(dw, head)
    else:

        class MLPHead(torch.nn.Module):
            def __init__(self, hidden: int = 16):
                super().__init__()
                torch.manual_seed(0)
                self.head = head
                self.a = torch.nn.Conv2d(head.in_channels, hidden, 1)
                self.b = torch.nn.Conv2d(hidden, head.out_channels, 1)
                torch.nn.init.zeros_(self.b.weight)
                torch.nn.init.zeros_(self.b.bias)

            def forward(self, z):
                return self.head(z) + self.b(torch.relu(self.a(z)))

        seg.model.head = MLPHead()
    _restart_optimizer(seg)


def labels_of(variant: str, image: np.ndarray, n: int):
    """Class labels of one variant, and the Segmenter (for its features)."""
    from napari_levelset.method.segmenter import Segmenter

    if variant == "per-image":
        seg = Segmenter(image, n)
        return _run(seg, 100), seg
    if variant in ("lab-loss", "lab-pos-loss"):
        pos = 0.5 if variant == "lab-pos-loss" else 0.0
        net = _lab_network(image, n, 3 + (2 if pos else 0))
        seg = Segmenter(image, n, model=net, init="kmeans", position=pos)
        return _run(seg, ITERATIONS), seg
    kw = dict(finetune="last", lr=0.003) if variant == "last" else {}
    seg = Segmenter(image, n, model="unet", init="kmeans", **kw)
    if variant == "joint-kmeans":
        _joint_kmeans(seg, n)
    elif variant in ("dw-head", "mlp-head"):
        _wrap_head(seg, variant)
    labels = _run(seg, ITERATIONS)
    if variant == "cross-direct":
        direct = Segmenter(image, 16, model="unet", init="network").labels()
        labels = labels.astype(np.int64) * 1000 + direct
    return labels, seg


def score_image(task: dict) -> dict:
    """{variant: ([result per scale], seconds)} for one image."""
    import torch

    torch.set_num_threads(1)
    image = read_bsds_image(Path(task["image"]))
    gts = metrics.load_ground_truth(task["gt"])
    out = {}
    for variant in task["variants"]:
        t0 = time.perf_counter()
        results = []
        for n in task["classes"]:
            labels, seg = labels_of(variant, image, n)
            features = seg.features()
            if variant == "rgb-merge":
                features = prepare_image(image, color="rgb").data[0]
            elif variant == "emb-merge":
                with torch.no_grad():
                    z = seg.model._frozen(seg.model._split(seg.x)[0])[0].numpy()
                spread = lambda a: np.sqrt(a.reshape(a.shape[0], -1).var(1).sum())  # noqa: E731
                features = np.concatenate([features, z * (0.5 * spread(features) / spread(z))])
            regions = connected_regions(labels, 0.001)
            results += [metrics.evaluate_image(merge_regions(regions, features, w), gts) for w in WEIGHTS]
        out[variant] = (results, time.perf_counter() - t0)
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_args(p, limit=40, classes="32")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args(argv)

    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; choose from {', '.join(VARIANTS)}")
    classes = parse_list(args.classes)
    ids = list_images(args.bsds.resolve(), args.split, args.limit)
    tasks = [
        dict(
            image=str(bsds_image(args.bsds, args.split, i)),
            gt=str(bsds_truth(args.bsds, args.split, i)),
            variants=variants,
            classes=classes,
        )
        for i in ids
    ]
    results = map_tasks(score_image, tasks, args.workers, "variants")

    scales = [f"{n}|m={w}" for n in classes for w in WEIGHTS]
    lines = [
        f"BSDS500 {args.split}, first {len(ids)} images, N in {classes}, merged regions",
        "",
        *ods_ois_head("variant", "s / image"),
    ]
    summaries = {}
    for v in variants:
        s = metrics.summarize([r[v][0] for r in results], scales=scales)
        summaries[v] = s
        secs = np.mean([r[v][1] for r in results])
        lines.append(f"| {v} | {ods_ois_cells(s)} | {secs:.1f} |")
    print("\n".join(lines))
    return summaries


if __name__ == "__main__":
    main()
