"""Speed beside one busy process: how much longer a run takes when another program keeps a core busy.

It times ``segment(image)`` (the default settings: class labels) and ``segment(image,
regions="instances")`` on an otherwise idle machine and beside one busy process (a child that
spins a pure-Python loop, started a second before the run and ended after it), for three thread
counts:

- the default (``threads=None``: one per core other programs leave free when the run starts,
  ``napari_levelset.resources.run_threads``),
- torch's own choice (one thread per usable core, what ``segment()`` used before),
- 1 thread.

Runs alternate idle and busy (the order flips every repeat) so a drift of the machine's load
reaches both.  For each count it prints the median seconds idle and busy, the ratio busy / idle,
and for the default the thread counts it chose; the ratio of the default's busy run to the
fastest idle run closes the table.  Before each run the other programs' load is read
(``resources.cpu_load``) and its median printed: on a shared machine "idle" is only as idle as
the others leave it.

Usage::

    python benchmarks/under_load.py                      # 512^2 grey phantom; 1024^2 nuclei phantom (instances)
    python benchmarks/under_load.py --image photo.png --repeats 5
    python benchmarks/under_load.py --only classes --repeats 2

Set nothing that fixes the thread count (``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``) when
running it: the script sets the counts it compares.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

import numpy as np

from napari_levelset import resources, segment
from napari_levelset.evaluation.synthetic import nuclei, phantom
from napari_levelset.io.read import read_image

SPIN = "import time\nend = time.time() + {seconds}\nwhile time.time() < end:\n    pass\n"


class Neighbour:
    """A child process that keeps one core busy while the block runs (a pure-Python loop)."""

    def __init__(self, busy: bool, settle: float = 1.0) -> None:
        self.busy, self.settle, self.child = busy, settle, None

    def __enter__(self):
        if self.busy:  # it ends itself after an hour should this process die
            self.child = subprocess.Popen([sys.executable, "-c", SPIN.format(seconds=3600)])
        time.sleep(self.settle)  # idle runs wait as long, so both start alike
        return self

    def __exit__(self, *exc):
        if self.child is not None:
            self.child.kill()
            self.child.wait()


def timed(image, regions: str, threads: int | None, chosen: list) -> float:
    """Seconds for one ``segment`` call; the load the default read goes to ``chosen``."""
    seen: list = []
    real = resources.cpu_load

    def recording(sample=resources.SAMPLE_S):
        load = real(sample)
        seen.append(load)
        return load

    resources.cpu_load = recording
    try:
        t0 = time.perf_counter()
        segment(image, threads=threads, regions=regions, seed=0)
        took = time.perf_counter() - t0
    finally:
        resources.cpu_load = real
    if threads is None:
        chosen.append(resources.threads_for(seen[0]) if seen else None)
    return took


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--image", default=None, help="an image file to use for both runs (default: phantoms)")
    p.add_argument("--repeats", type=int, default=3, help="idle and busy runs of each count and output")
    p.add_argument("--size", type=int, default=512, help="side of the grey phantom for the default run")
    p.add_argument("--instance-size", type=int, default=1024, help="side of the nuclei phantom for instances")
    p.add_argument("--only", choices=["classes", "instances", "both"], default="both")
    args = p.parse_args(argv)

    if args.image:
        image = np.asarray(read_image(args.image))
        images = {"classes": image, "instances": image}
        source = args.image
    else:
        images = {
            "classes": phantom((args.size, args.size), 3, seed=0)[0],
            "instances": nuclei((args.instance_size,) * 2, n_objects=args.instance_size // 8, seed=0)[0],
        }
        source = f"grey phantom {args.size}^2 (classes), nuclei phantom {args.instance_size}^2 (instances)"
    cores = resources.usable_cores()
    counts = {"default (free cores)": None, f"torch's own ({cores}: one per core)": cores, "1 thread": 1}
    print(f"image: {source}; usable cores {cores}; repeats {args.repeats}")
    segment(np.random.default_rng(0).random((64, 64)), iterations=3, threads=1)  # imports and first calls

    outputs = ["classes", "instances"] if args.only == "both" else [args.only]
    for output in outputs:
        image = images[output]
        times = {(name, busy): [] for name in counts for busy in (False, True)}
        chosen = {False: [], True: []}
        others = {False: [], True: []}
        for r in range(args.repeats):
            for name, threads in counts.items():
                for busy in (False, True) if r % 2 == 0 else (True, False):
                    with Neighbour(busy):
                        load = resources.cpu_load(0.3)
                        others[busy].append(load.busy if load is not None else float("nan"))
                        took = timed(image, output, threads, chosen[busy] if threads is None else [])
                    times[name, busy].append(took)
                    print(f"  {output} {name:<28} {'busy' if busy else 'idle'} {took:7.2f} s", flush=True)
        regions = "" if output == "classes" else ', regions="instances"'
        print(f"\nsegment(image{regions}): median of {args.repeats}, seconds")
        print(
            f"others' load before the runs (cores busy, median): idle {statistics.median(others[False]):.2f}, "
            f"beside the busy process {statistics.median(others[True]):.2f}"
        )
        print(f"{'threads':<30} {'idle':>8} {'busy':>8} {'busy/idle':>10}")
        for name in counts:
            idle, busy = statistics.median(times[name, False]), statistics.median(times[name, True])
            print(f"{name:<30} {idle:8.2f} {busy:8.2f} {busy / idle:10.2f}")
        fastest = min(statistics.median(times[name, False]) for name in counts)
        default_busy = statistics.median(times["default (free cores)", True])
        print(f"default's threads chosen: idle {chosen[False]}, busy {chosen[True]}")
        print(f"default beside the busy process / fastest idle: {default_busy / fastest:.2f}\n", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
