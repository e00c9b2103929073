"""Scale: files per second on a dask cluster, and volumes larger than memory segmented chunk by chunk.

Two measurements, each printing its figures (all ratios within one run):

``--part files``  N synthetic 2D nuclei images (``napari_levelset.evaluation.synthetic.nuclei``) written as TIFFs
                  and segmented with ``napari_levelset.scale.batch.segment_files`` in this process, then by
                  one worker of a local dask cluster, then by two (processes, one torch thread each;
                  same files and settings, outputs compared): files/s each and their ratios, the
                  clusters' start-up (imports on the workers) timed apart.
``--part volume`` a synthetic uint16 volume of side S (spheres of random size and brightness on an
                  uneven background with noise), made chunk by chunk into a zarr array, then
                  segmented by ``napari_levelset.scale.chunked``: the per-image CNN trained on random crops,
                  labels tile by tile into a zarr array.  Each size runs in a fresh process whose
                  peak resident memory (``ru_maxrss`` from ``os.wait4``, the kernel's high-water
                  mark) is reported, with the seconds of each phase, and the agreement of the chunked
                  labels with in-memory inference of the same network on a crop (the crop's interior,
                  beyond the receptive radius from its cut faces) -- and, up to 256^3, on the whole volume.
                  ``chunked_peak_gb`` is the high-water mark when the labels are written (making the
                  volume, its statistics, the training and the tiles); ``peak_rss_gb`` includes the
                  comparisons after it (the whole 256^3 volume in memory).

    python benchmarks/scale.py --part files --files 16 --size 256 --repeat 2
    nice -n 10 python benchmarks/scale.py --part volume --sizes 256,512,1024 --dir /tmp/scale
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


# -- synthetic volume, made chunk by chunk -------------------------------------------------------
def _spheres(side: int, seed: int):
    rng = np.random.default_rng(seed)
    count = max(4, int(side**3 / 48**3))
    centres = rng.uniform(0, side, (count, 3))
    radii = rng.uniform(5, 16, count)
    bright = rng.uniform(1500, 6000, count)
    return centres, radii, bright


def make_volume(path: str, side: int, chunk: int = 128, seed: int = 0) -> None:
    """A (side, side, side) uint16 zarr volume: spheres (radius 5-16 px, brightness 1500-6000) on a
    background of 500-900 rising along x, plus Gaussian noise of sd 150; written chunk by chunk."""
    import zarr

    centres, radii, bright = _spheres(side, seed)
    arr = zarr.create_array(
        path, shape=(side,) * 3, chunks=(chunk,) * 3, dtype=np.uint16, overwrite=True, zarr_format=2
    )
    for z0 in range(0, side, chunk):
        for y0 in range(0, side, chunk):
            for x0 in range(0, side, chunk):
                lo = np.array([z0, y0, x0])
                hi = np.minimum(lo + chunk, side)
                shape = tuple(hi - lo)
                rng = np.random.default_rng([seed, z0, y0, x0])
                x = np.arange(x0, hi[2], dtype=np.float32)
                block = (500 + 400 * x / side)[None, None, :] + rng.normal(0, 150, shape).astype(np.float32)
                near = np.all((centres + radii[:, None] > lo) & (centres - radii[:, None] < hi), axis=1)
                for c, r, b in zip(centres[near], radii[near], bright[near]):
                    s0 = np.maximum(np.floor(c - r).astype(int), lo)
                    s1 = np.minimum(np.ceil(c + r).astype(int) + 1, hi)
                    if np.any(s1 <= s0):
                        continue
                    zz, yy, xx = np.ogrid[s0[0] : s1[0], s0[1] : s1[1], s0[2] : s1[2]]
                    inside = (zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 <= r * r
                    sub = block[s0[0] - z0 : s1[0] - z0, s0[1] - y0 : s1[1] - y0, s0[2] - x0 : s1[2] - x0]
                    sub[inside] += b
                arr[z0 : hi[0], y0 : hi[1], x0 : hi[2]] = np.clip(block, 0, 65535).astype(np.uint16)


def one_volume(args) -> dict:
    """Run in a child process: make, segment, compare; returns the figures."""
    import torch

    from napari_levelset.scale import chunked

    torch.set_num_threads(args.threads)
    side, out = args.one, Path(args.dir)
    out.mkdir(parents=True, exist_ok=True)
    src, dst = str(out / f"volume_{side}.zarr"), str(out / f"labels_{side}.zarr")
    t0 = time.perf_counter()
    if not Path(src).exists():
        make_volume(src, side, chunk=args.tile)
    t_make = time.perf_counter() - t0
    vol = chunked.open_volume(src)
    t0 = time.perf_counter()
    ranges = chunked.value_range(vol, structures=True)
    t_range = time.perf_counter() - t0
    t0 = time.perf_counter()
    vm = chunked.fit_volume(
        vol,
        args.classes,
        iterations=args.iterations,
        crop=args.crop,
        crops=args.crops,
        seed=0,
        ranges=ranges,
        lam=args.lam,
    )
    t_fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    labels = chunked.segment_volume(vol, dst, fitted=vm, tile=args.tile, overwrite=True, progress=False)
    t_labels = time.perf_counter() - t0
    import resource

    chunked_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # GiB, before any comparison
    # agreement with in-memory inference on a crop: the crop's interior, beyond the receptive radius
    c = min(side, args.check)
    r = int(vm.radius if isinstance(vm.radius, int) else max(vm.radius))
    start = (side - c) // 2
    region = [(start, start + c)] * 3
    block = chunked.read_region(vol.data, -1, region)[None]
    with torch.no_grad():
        logits = vm.network(torch.from_numpy(chunked.normalize_block(block, vm.ranges))[None])
    ref = chunked._lut(vm.order, np.uint8)[logits.argmax(1)[0].numpy()]
    inner = (slice(r, c - r),) * 3
    mine = np.asarray(labels[tuple(slice(start, start + c) for _ in range(3))])
    agree_crop = float(np.mean(mine[inner] == ref[inner]))
    agree_whole = None
    if side <= 256:  # the whole volume in memory (normalised by napari_levelset.io.prepare.normalize)
        from napari_levelset.io.prepare import normalize

        whole = normalize(np.asarray(vol.data[:])[None], spatial_dims=3)
        with torch.no_grad():
            ref = chunked._lut(vm.order, np.uint8)[vm.network(torch.from_numpy(whole)[None]).argmax(1)[0].numpy()]
        agree_whole = float(np.mean(np.asarray(labels[:]) == ref))
    counts = np.zeros(vm.n_classes + 1, np.int64)
    for core, _ in chunked._tiles((side,) * 3, (args.tile,) * 3):
        counts += np.bincount(
            np.asarray(labels[tuple(slice(a, b) for a, b in core)]).ravel(), minlength=vm.n_classes + 1
        )
    return dict(
        side=side,
        make_s=round(t_make, 1),
        range_s=round(t_range, 1),
        fit_s=round(t_fit, 1),
        labels_s=round(t_labels, 1),
        chunked_peak_gb=round(chunked_peak, 2),
        agree_crop=agree_crop,
        crop=c,
        agree_whole=agree_whole,
        label_fractions=[round(float(v), 4) for v in counts[1:] / counts.sum()],
        threads=args.threads,
    )


def part_volume(args) -> None:
    rows = []
    for side in [int(s) for s in args.sizes.split(",")]:
        cmd = [
            sys.executable,
            __file__,
            "--part",
            "volume",
            "--one",
            str(side),
            "--dir",
            args.dir,
            "--threads",
            str(args.threads),
            "--tile",
            str(args.tile),
            "--iterations",
            str(args.iterations),
            "--crop",
            str(args.crop),
            "--crops",
            str(args.crops),
            "--classes",
            str(args.classes),
            "--lam",
            str(args.lam),
            "--check",
            str(args.check),
        ]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        text = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        if status != 0:
            print(f"side {side}: failed ({status})", file=sys.stderr)
            break
        row = json.loads(text.strip().splitlines()[-1])
        row["peak_rss_gb"] = round(usage.ru_maxrss / 2**20, 2)  # KiB -> GiB, the comparisons included
        row["wall_s"] = round(wall, 1)
        rows.append(row)
        print(json.dumps(row), flush=True)
        if not args.keep:
            for name in (f"volume_{side}.zarr", f"labels_{side}.zarr"):
                shutil.rmtree(Path(args.dir) / name, ignore_errors=True)
    if len(rows) > 1:
        base = rows[0]
        for row in rows[1:]:
            print(
                f"{base['side']}^3 -> {row['side']}^3: voxels x{(row['side'] / base['side']) ** 3:.0f}, "
                f"labels time x{row['labels_s'] / base['labels_s']:.1f}, "
                f"whole run x{row['wall_s'] / base['wall_s']:.1f}, "
                f"peak memory of the chunked run {base['chunked_peak_gb']} -> {row['chunked_peak_gb']} GB"
            )


# -- files on a local dask cluster -----------------------------------------------------------------
def part_files(args) -> None:
    import tifffile

    from napari_levelset.evaluation.synthetic import nuclei
    from napari_levelset.scale.batch import segment_files

    tmp = Path(tempfile.mkdtemp(prefix="scale_files_"))
    try:
        inputs = []
        for i in range(args.files):
            img = nuclei(shape=(args.size, args.size), seed=i)
            img = img[0] if isinstance(img, tuple) else img
            p = tmp / f"field_{i:03d}.tif"
            tifffile.imwrite(p, np.asarray(img))
            inputs.append(p)
        outs = {}
        from dask.distributed import Client, LocalCluster

        def warm():  # what every task needs, imported before the clock starts
            import torch  # noqa: F401

            import napari_levelset.method.segmentation  # noqa: F401

        import logging

        runs: dict[int, list[float]] = {0: [], 1: [], 2: []}
        # 0: in this process, no dask; then 1 and 2 workers alternately, so that load from other
        # programs falls on both alike; each files/s is the median of its runs
        order = [0] + [w for _ in range(args.repeat) for w in (1, 2)]
        for k, workers in enumerate(order):
            out = tmp / f"out_{k}_{workers}"
            out.mkdir()
            t0 = time.perf_counter()
            cluster = client = None
            if workers:
                cluster = LocalCluster(
                    n_workers=workers,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    silence_logs=logging.CRITICAL,
                )
                client = Client(cluster)
                client.run(warm)
            start = time.perf_counter() - t0
            load = os.getloadavg()[0]
            t0 = time.perf_counter()
            summary = segment_files(
                inputs,
                out,
                client=client,
                threads=1,
                progress=False,
                n_classes=args.classes,
                iterations=args.iterations,
                seed=0,
            )
            dt = time.perf_counter() - t0
            if client is not None:
                client.shutdown()
                client.close()
                cluster.close()
            if summary.failed:
                raise SystemExit(f"{len(summary.failed)} files failed: {summary.failed[:2]}")
            runs[workers].append(len(inputs) / dt)
            outs.setdefault(workers, out)
            what = f"{workers} worker(s)" if workers else "in this process"
            print(
                f"{what}: {len(inputs)} files in {dt:.1f} s, {len(inputs) / dt:.2f} files/s, load average "
                f"{load:.1f} at the start" + (f" (cluster started in {start:.1f} s, not counted)" if workers else ""),
                flush=True,
            )
        figures = {w: float(np.median(v)) for w, v in runs.items()}
        same = all(
            np.array_equal(tifffile.imread(outs[0] / f.name), tifffile.imread(outs[w] / f.name))
            for f in inputs
            for w in (1, 2)
        )
        print(
            f"median files/s: in this process {figures[0]:.2f}, 1 worker {figures[1]:.2f}, 2 workers "
            f"{figures[2]:.2f}; 2 workers / 1 worker: {figures[2] / figures[1]:.2f}x; 1 worker / in this process: "
            f"{figures[1] / figures[0]:.2f}x; outputs identical: {same}"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=["files", "volume"], required=True)
    p.add_argument("--files", type=int, default=16, help="files of the batch (files part)")
    p.add_argument("--size", type=int, default=256, help="side of each image (files part)")
    p.add_argument("--repeat", type=int, default=2, help="runs of 1 and of 2 workers, alternating (files part)")
    p.add_argument("--sizes", default="256,512,1024", help="volume sides (volume part)")
    p.add_argument("--dir", default=tempfile.gettempdir() + "/napari_levelset_scale", help="where the zarr volumes go")
    p.add_argument("--keep", action="store_true", help="keep the zarr volumes")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--tile", type=int, default=128, help="chunk / tile side (volume part)")
    p.add_argument("--classes", type=int, default=2)
    p.add_argument("--lam", type=float, default=0.05)
    p.add_argument("--iterations", type=int, default=50)
    p.add_argument("--crop", type=int, default=64, help="side of the training crops (volume part)")
    p.add_argument("--crops", type=int, default=8, help="training crops drawn from the volume (volume part)")
    p.add_argument("--check", type=int, default=192, help="side of the crop compared with in-memory inference")
    p.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.part == "files":
        part_files(args)
    elif args.one is not None:
        print(json.dumps(one_volume(args)), flush=True)
    else:
        part_volume(args)


if __name__ == "__main__":
    main()
