"""Train several U-Net bodies side by side on one GPU within a time budget.

Each configuration runs in its own process (the networks are small, so one
process leaves the GPU mostly idle and several share it well).  A process
first times a few steps with and without the k-means warm start, then picks
the step count that ends within the budget, and trains with
``napari_levelset.training.train.train`` (the same function as ``napari-levelset train``).

Usage::

    python benchmarks/train_gpu.py BSDS500/images/train --out models/ --seconds 300 \
        --configs rgb16,lab16,rgb24

writes ``models/<config>.pt`` and prints, per configuration, the measured
seconds per step, the steps chosen, the pixels seen against the shipped
model's training (3600 steps of 4 crops of 128²) and the final loss.
Runs on the CPU too (``--device cpu``), slowly: for checking the script.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from pathlib import Path

#: Named configurations (arguments of ``train``), all with heads 2..16.
CONFIGS = {
    "rgb16": dict(lam=0.05, base=16, color="rgb"),  # the shipped design, trained longer
    "lab16": dict(lam=0.02, base=16, color="lab"),  # the best fine-tune body on the CPU (RESULTS.md, "On a GPU")
    "rgb24": dict(lam=0.05, base=24, color="rgb"),  # a wider body
}
SHIPPED_PIXELS = 3600 * 4 * 128 * 128


def _images(folder: Path):
    from napari_levelset.io.read import read_image

    return [read_image(p) for p in sorted(folder.glob("*.jpg"))]


def _run(name: str, args, start: float, queue) -> None:
    import torch

    from napari_levelset.training.train import train

    cfg = dict(
        CONFIGS[name],
        crop=args.crop,
        batch_size=args.batch_size,
        device=args.device,
        progress=False,
        checkpoint_every=10**9,
        resume=False,
        kmeans_heads=args.kmeans_heads,
    )
    images = _images(Path(args.images))
    out = Path(args.out)
    tmp = out / f".{name}.calib.pt"
    # warm-up (CUDA context, kernels), then time steps with and without the k-means term
    train(images[:8], tmp, steps=3, kmeans_steps=0, **cfg)
    timing = {}
    for key, k_steps in (("kmeans", 1.0), ("plain", 0)):
        res = train(images, tmp, steps=args.calib_steps, kmeans_steps=k_steps, **cfg)
        timing[key] = res.seconds / args.calib_steps
    left = args.seconds - (time.time() - start) - 15  # loading, saving
    km = min(args.kmeans_steps, int(left / timing["kmeans"] / 3))
    km = km if km >= 2 else 0  # (a count of 1 would read as the fraction 1.0)
    steps = km + int(max(0.0, left - km * timing["kmeans"]) / timing["plain"] * args.safety)
    t0 = time.time()
    res = train(
        images,
        out / f"{name}.pt",
        steps=steps,
        kmeans_steps=km,
        lr=args.lr,
        seed=args.seed,
        metadata=dict(
            command=f"benchmarks/train_gpu.py --configs {name} --crop {args.crop} "
            f"--batch-size {args.batch_size} --lr {args.lr} --seed {args.seed} "
            f"(steps {steps}, k-means steps {km})"
        ),
        **cfg,
    )
    pixels = steps * args.batch_size * args.crop**2
    queue.put(
        (
            name,
            timing["kmeans"],
            timing["plain"],
            km,
            steps,
            pixels / SHIPPED_PIXELS,
            float(res.metadata["final_loss"]),
            time.time() - t0,
            torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        )
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("images", help="folder of training images (jpg)")
    ap.add_argument("--out", required=True, help="folder for the model files")
    ap.add_argument("--configs", default="rgb16,lab16,rgb24", help=f"comma list of {sorted(CONFIGS)}")
    ap.add_argument("--seconds", type=float, default=300, help="wall-clock budget for everything")
    ap.add_argument("--crop", type=int, default=192)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--kmeans-steps", type=int, default=600, help="steps of the k-means warm start")
    ap.add_argument("--kmeans-heads", type=int, default=2)
    ap.add_argument("--calib-steps", type=int, default=10)
    ap.add_argument("--safety", type=float, default=0.85, help="fraction of the estimated steps to run")
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args(argv)
    names = [c for c in args.configs.split(",") if c]
    unknown = set(names) - set(CONFIGS)
    if unknown:
        ap.error(f"unknown configurations {sorted(unknown)}")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    start = time.time()
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_run, args=(n, args, start, queue)) for n in names]
    for p in procs:
        p.start()
    rows = []
    for p in procs:
        p.join()
    while not queue.empty():
        rows.append(queue.get())
    print(
        f"{'config':8} {'s/step k-means':>14} {'s/step':>8} {'k-means':>8} {'steps':>7} "
        f"{'pixels vs shipped':>18} {'final loss':>10} {'train s':>8}  device"
    )
    for r in sorted(rows):
        print(f"{r[0]:8} {r[1]:14.4f} {r[2]:8.4f} {r[3]:8d} {r[4]:7d} {r[5]:17.1f}x {r[6]:10.4f} {r[7]:8.0f}  {r[8]}")
    failed = [p.exitcode for p in procs if p.exitcode]
    print(f"total {time.time() - start:.0f} s; {len(rows)}/{len(names)} configurations finished", file=sys.stderr)
    return 1 if failed or len(rows) < len(names) else 0


if __name__ == "__main__":
    sys.exit(main())
