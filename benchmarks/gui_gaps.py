"""How long napari's main (GUI) thread is blocked while the dock widget runs.

A 10 ms ``QTimer`` ticks on the main thread from the moment Run is pressed until the run's
end has been shown; every gap between ticks beyond 10 ms is time the viewer could not
repaint or react.  The script prints the worst gap, the 95th percentile and the number of
gaps over 50 / 200 ms, per run, and with ``--stacks`` the main thread's stack whenever
it has been blocked for more than 100 ms (sampled by a watchdog thread), which says what
blocks.  Needs a display: run it as ``xvfb-run -a python benchmarks/gui_gaps.py``.

Example::

    xvfb-run -a python benchmarks/gui_gaps.py --size 512 --runs 3 --iterations 100
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
import traceback

import numpy as np


def test_image(size: int) -> np.ndarray:
    """A grey ``size``² image: the camera man, resized (scikit-image's sample)."""
    from skimage import data, transform

    return (transform.resize(data.camera(), (size, size), anti_aliasing=True) * 255).astype(np.uint8)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512, help="image side in pixels")
    ap.add_argument("--runs", type=int, default=3, help="runs measured, one after another")
    ap.add_argument("--iterations", type=int, default=100)
    ap.add_argument("--every", type=int, default=5, help="a snapshot every so many iterations")
    ap.add_argument("--stacks", action="store_true", help="print the main thread's stack during long blocks")
    ap.add_argument("--screenshot", help="save the viewer after the last run to this PNG")
    args = ap.parse_args(argv)

    import napari
    from qtpy.QtCore import QEventLoop, QTimer

    from napari_levelset.napari.widget import LevelSetWidget

    viewer = napari.Viewer(show=True)
    viewer.add_image(test_image(args.size), name="camera")
    main_id = threading.get_ident()
    ticks: list[float] = []
    last = [time.perf_counter()]
    stacks: list[tuple[float, float, str]] = []
    t0 = [time.perf_counter()]
    watching = threading.Event()

    def tick():
        now = time.perf_counter()
        ticks.append(now)
        last[0] = now

    def watchdog():  # samples the main thread's stack while it is blocked
        reported = None
        while watching.is_set():
            time.sleep(0.02)
            blocked = time.perf_counter() - last[0]
            if blocked > 0.1 and reported != last[0]:
                reported = last[0]
                frame = sys._current_frames().get(main_id)
                if frame is not None:
                    lines = [f for f in traceback.format_stack(frame) if "importlib._bootstrap" not in f]
                    stacks.append((blocked, time.perf_counter() - t0[0], "".join(lines[-12:])))

    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(tick)

    def measure(name, start, wait):
        """Tick from ``start()`` until ``wait(loop)`` has quit the event loop; print the gaps."""
        ticks.clear()
        stacks.clear()
        watching.set()
        watcher = threading.Thread(target=watchdog, daemon=True) if args.stacks else None
        if watcher is not None:
            watcher.start()
        timer.start()
        t0[0] = last[0] = time.perf_counter()
        ticks.append(t0[0])
        loop = QEventLoop()
        start()
        wait(loop)
        loop.exec_()  # as napari's event loop would: signals from the run's thread arrive here
        QTimer.singleShot(50, loop.quit)  # and the end is drawn
        loop.exec_()
        ticks.append(time.perf_counter())
        timer.stop()
        watching.clear()
        if watcher is not None:
            watcher.join()
        gaps = np.diff(ticks) * 1e3
        print(
            f"{name} | {ticks[-1] - t0[0]:.1f} | {len(ticks)} | {gaps.max():.0f} | {np.percentile(gaps, 95):.0f} | "
            f"{int((gaps > 50).sum())} | {int((gaps > 200).sum())}"
        )
        for blocked, at, stack in stacks:
            print(f"--- at {at:.2f} s, main thread blocked {blocked * 1e3:.0f} ms so far, in:\n{stack}")
        return gaps.max()

    print(f"{args.size}² grey image, {args.iterations} iterations, a snapshot every {args.every}")
    print("phase | seconds | ticks | worst gap ms | p95 gap ms | gaps >50 ms | gaps >200 ms")
    holder = {}

    def dock():
        holder["widget"] = widget = LevelSetWidget(viewer)
        viewer.window.add_dock_widget(widget, name="level set")
        widget.form.iterations.value = args.iterations
        widget.form.every.value = args.every

    def until_loaded(loop):  # the widget preloads torch in the background, while the user sets up
        def check():
            if all(m in sys.modules for m in ("torch", "pandas")) and not any(
                t.name == "napari-levelset preload" for t in threading.enumerate()
            ):
                loop.quit()
            else:
                QTimer.singleShot(20, check)

        check()

    measure("dock the widget (background imports)", dock, until_loaded)
    worst = []
    for r in range(args.runs):
        widget = holder["widget"]

        def start(widget=widget):
            if widget.run() is None:
                raise SystemExit(f"the run did not start: {widget.run_status.status.text()}")

        def until_finished(loop, widget=widget):
            holder["quit"] = loop.quit
            widget.run_finished.connect(loop.quit)

        worst.append(measure(f"run {r + 1}, Run to end", start, until_finished))
        widget.run_finished.disconnect(holder["quit"])
    print(f"worst gap from Run to the end of a run, over {args.runs} runs: {max(worst):.0f} ms")
    if args.screenshot:
        viewer.screenshot(args.screenshot, canvas_only=False)
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
