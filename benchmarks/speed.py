"""Speed of per-image optimisation against a naive baseline, measured in one run.

For each image size it times the project's default configuration and the
baseline (eager fp32, Kanezaki's network: 100 channels, 2 conv blocks, random
start, the same loss) on the same synthetic phantom, and prints

- ms per iteration (median over timed iterations, after warm-up) and the ratio
  baseline / ours,
- time to first labels (construction + the first label image on the host),
- iterations and seconds to convergence (first iteration whose loss is within
  1% of the way from the start to the best loss reached),
- peak memory (CUDA: max allocated; CPU: peak RSS growth sampled every 5 ms),
- quality: matched IoU (minimum over regions) against the phantom's truth.

Usage::

    python benchmarks/speed.py                       # 256^2, 512^2 RGB and 64^3 grey
    python benchmarks/speed.py --sizes 1024,2048 --rgb both --iterations 200
    python benchmarks/speed.py --device cuda --sizes 512,1024,64x64x64

Speed is never quoted without the quality reached, so a faster setting that
segments worse shows up as such.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import threading
import time

import numpy as np
import torch

from napari_levelset.evaluation.synthetic import matched_iou, phantom
from napari_levelset.method.segmenter import Segmenter
from napari_levelset.nn.devices import resolve_device
from napari_levelset.settings import Settings


def parse_size(text: str) -> tuple[int, ...]:
    parts = tuple(int(p) for p in text.lower().split("x"))
    return parts * 2 if len(parts) == 1 else parts


class PeakMemory:
    """Peak memory growth of this process while the block runs (bytes)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peak = 0

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            import psutil

            self.proc = psutil.Process()
            self.base = self.proc.memory_info().rss
            self.peak_rss = self.base
            self.running = True
            self.thread = threading.Thread(target=self._sample, daemon=True)
            self.thread.start()
        return self

    def _sample(self):
        while self.running:
            self.peak_rss = max(self.peak_rss, self.proc.memory_info().rss)
            time.sleep(0.005)

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self.base
        else:
            self.running = False
            self.thread.join()
            self.peak = self.peak_rss - self.base


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(image, truth, k, device, iterations, timed, config) -> dict:
    """Run one configuration; return its figures."""
    spatial_dims = truth.ndim
    with PeakMemory(device) as mem:
        t0 = time.perf_counter()
        seg = Segmenter(image, k, device=device, seed=0, spatial_dims=spatial_dims, **config)
        seg.labels()
        first_labels = time.perf_counter() - t0
        losses = []
        times = []
        for i in range(iterations):
            sync(device)
            t = time.perf_counter()
            loss = seg.step()
            if i < timed + 3:  # per-iteration timing needs a sync each step; only for the timed window
                sync(device)
                times.append(time.perf_counter() - t)
            losses.append(loss)
        sync(device)
        total = time.perf_counter() - t0
        labels = seg.labels()
    losses = torch.stack(losses).float().cpu().numpy()
    start, best = losses[0], losses.min()
    conv_it = int(np.argmax(losses <= best + 0.01 * (start - best))) + 1
    per_it = statistics.median(times[3:]) if len(times) > 3 else statistics.median(times)
    return dict(
        ms_per_it=per_it * 1e3,
        first_labels=first_labels,
        conv_it=conv_it,
        conv_s=first_labels + conv_it * per_it,
        total_s=total,
        peak_mb=mem.peak / 2**20,
        iou=float(matched_iou(labels, truth).min()),
        final_loss=float(losses[-1]),
    )


def streaming_overhead(image, k, device, iterations, every, spatial_dims) -> tuple[float, float]:
    """Seconds for ``iterations`` steps with one snapshot at the end vs one every ``every`` steps.

    A snapshot is what the napari widget consumes: the label image on the host (and
    the loss).  The two runs alternate three times; the medians are returned.
    """
    times = {1: [], every: []}
    for _ in range(3):
        for ev in (iterations, every):
            seg = Segmenter(image, k, device=device, seed=0, spatial_dims=spatial_dims)
            sync(device)
            t = time.perf_counter()
            for _snap in seg.run(iterations, every=ev):
                pass
            sync(device)
            times[1 if ev == iterations else every].append(time.perf_counter() - t)
    return statistics.median(times[1]), statistics.median(times[every])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="256,512,64x64x64", help="comma list: 512 means 512x512; 64x64x64 a volume")
    ap.add_argument("--rgb", choices=["yes", "no", "both"], default="yes", help="2D images in RGB, grey or both")
    ap.add_argument("--classes", type=int, default=4)
    ap.add_argument(
        "--iterations", type=int, default=Settings().resolved().iterations, help="iterations per configuration"
    )
    ap.add_argument("--timed", type=int, default=10, help="iterations timed for ms/iteration (after 3 warm-up)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--no-baseline", action="store_true", help="skip the naive baseline (very large sizes)")
    ap.add_argument("--baseline-iterations", type=int, default=None, help="iterations for the baseline (default: same)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting of ours")
    ap.add_argument(
        "--streaming",
        type=int,
        default=0,
        metavar="EVERY",
        help="instead: time runs without snapshots against a snapshot every EVERY iterations",
    )
    args = ap.parse_args(argv)

    device = resolve_device(args.device)
    ours = {k: getattr(Settings().resolved(), k) for k in ("lam", "lr", "width", "depth")}
    for item in args.set:
        key, _, value = item.partition("=")
        ours[key] = type(ours.get(key, 0.0))(value) if key in ours else value
    baseline = dict(lam=ours["lam"], lr=ours["lr"], width=100, depth=2, init="random")

    print(f"# napari-levelset speed benchmark, {time.strftime('%Y-%m-%d %H:%M')}")
    dev_name = torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or platform.machine()
    print(
        f"# device {device} ({dev_name}), torch {torch.__version__}, threads {torch.get_num_threads()}, "
        f"cpus {os.cpu_count()}"
    )
    print(f"# ours: {ours}; baseline: {baseline} (eager fp32); N={args.classes}, {args.iterations} iterations")
    if args.streaming:
        every = "snapshot/" + str(args.streaming) + " s"
        print(f"{'size':>12} {'ch':>3} | {'no snapshots s':>14} {every:>14} {'overhead':>8}")
        for size_text in args.sizes.split(","):
            size = parse_size(size_text)
            ch = None if len(size) == 3 else (None if args.rgb == "no" else 3)
            image, truth = phantom(size, args.classes, channels=ch, seed=0)
            quiet, streamed = streaming_overhead(
                image, args.classes, device, args.iterations, args.streaming, len(size)
            )
            name = "x".join(map(str, size))
            print(f"{name:>12} {ch or 1:>3} | {quiet:14.2f} {streamed:14.2f} {100 * (streamed / quiet - 1):7.1f}%")
        return 0
    header = (
        f"{'size':>12} {'ch':>3} | {'ms/it':>8} {'base':>8} {'ratio':>6} | {'1st lbl s':>9} | "
        f"{'conv it':>7} {'conv s':>7} {'base s':>7} | {'peak MB':>8} {'base MB':>8} | {'IoU':>5} {'base':>5}"
    )
    print(header)
    print("-" * len(header))
    for size_text in args.sizes.split(","):
        size = parse_size(size_text)
        chans = [None] if len(size) == 3 else {"yes": [3], "no": [None], "both": [None, 3]}[args.rgb]
        for ch in chans:
            image, truth = phantom(size, args.classes, channels=ch, seed=0)
            a = measure(image, truth, args.classes, device, args.iterations, args.timed, ours)
            if args.no_baseline:
                b = None
            else:
                b = measure(
                    image,
                    truth,
                    args.classes,
                    device,
                    args.baseline_iterations or args.iterations,
                    args.timed,
                    baseline,
                )
            name = "x".join(map(str, size))
            fmt = lambda v, f, b=b: "-" if b is None else format(v, f)  # noqa: E731
            print(
                f"{name:>12} {ch or 1:>3} | {a['ms_per_it']:8.1f} {fmt(b and b['ms_per_it'], '8.1f')} "
                f"{fmt(b and b['ms_per_it'] / a['ms_per_it'], '6.1f')} | {a['first_labels']:9.2f} | "
                f"{a['conv_it']:7d} {a['conv_s']:7.2f} {fmt(b and b['conv_s'], '7.2f')} | "
                f"{a['peak_mb']:8.0f} {fmt(b and b['peak_mb'], '8.0f')} | {a['iou']:5.3f} {fmt(b and b['iou'], '5.3f')}"
            )
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
