"""The optimisation loop that runs in a napari thread worker.

Nothing here imports torch at module level: ``napari_levelset.method.segmenter`` (and with
it torch) is imported inside the worker thread when a run starts, so opening
napari's plugin menu or docking the widget stays light.

A new run is planned by ``napari_levelset.method.plan.plan_run``, as ``segment`` plans one:
the settings resolved for the output asked for, the image prepared (instances: on a
smaller working copy), and the output made at the end by the plan's ``finish``.

The worker first hands the run's ``Segmenter`` and plan to the main thread (``Started``);
from then on live changes (λ, learning rate, scribbles) and a stop go to it directly
(``Segmenter.lam``, ``.lr``, ``.set_scribbles``, ``.stop`` are safe from the main
thread and take effect at its next iteration).  The worker then yields ``Update``
objects; the main thread only copies ``labels`` (and ``uncertainty``) into
layers.  Updates are *latest-value*: while the main thread has not taken the
previous one, the worker keeps optimising and sends the newest state when the
GUI is ready again, so a slow display never queues up stale snapshots.  When the
optimisation is done, the worker says so (``Finishing``) and makes the output (regions,
instances) before the ``Final``, which carries it.
"""

from __future__ import annotations

import contextlib
import importlib
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_levelset.errors import RunFailed
from napari_levelset.io.axes import infer_axes
from napari_levelset.io.prepare import join_channels
from napari_levelset.method.plan import PREVIEW_PIXELS, plan_run
from napari_levelset.napari._session import Handover
from napari_levelset.resources import chooses_from_load, run_threads, torch_threads
from napari_levelset.settings import Settings

__all__ = ["Cadence", "Final", "Finishing", "RunRequest", "Started", "Update", "preload", "run_segmentation"]

#: ``every = 0`` means "auto": aim for about this many seconds between snapshots ...
AUTO_PERIOD_S = 0.3
#: ... or more, so that the viewer showing snapshots costs at most this share of the run's CPU time
#: (``Cadence``; the run's own part, the labels at each snapshot, comes on top) ...
DISPLAY_SHARE = 0.1
#: ... but no more than this many seconds, and at most ``AUTO_MAX_CHUNK`` iterations, apart
MAX_PERIOD_S = 3.0
AUTO_MAX_CHUNK = 25


@dataclass
class RunRequest:
    """Everything a run needs, gathered on the main thread.

    Parameters
    ----------
    image : array_like or list of array_like
        The image (the layer's data), or one array per channel layer (see ``join``);
        converted in the worker (``napari_levelset.io.prepare.join_channels``).
    settings : napari_levelset.settings.Settings
        The run's settings (the image's axes apart); None fields are resolved by ``plan_run``.
    axes : dict
        ``channel_axis``, ``spatial_dims`` and ``spacing`` (physical pixel size per spatial
        axis, or None), passed to ``Segmenter``.
    iterations : int or None
        Iterations to run (values below 0 count as 0); None: the plan's (``Settings.resolved``).
    every : int
        Iterations between two updates; 0: auto (about ``AUTO_PERIOD_S`` seconds apart, at
        most ``AUTO_MAX_CHUNK`` iterations).
    with_probs : bool
        Whether updates carry ``uncertainty`` (needs the class probabilities).
    to_grey : bool
        Average the colour channels (last axis) first.
    scribbles : ndarray of int, optional
        The image's non-channel shape, 0 unlabelled, ``k`` label ``k``.
    segmenter : napari_levelset.method.segmenter.Segmenter, optional
        Continue this one (refine) instead of making one; it takes ``lam``, ``lr``,
        ``alpha`` and the scribbles of this request.
    wait_for_gui : bool
        Pause after each update until the GUI took it (no update skipped).
    join : {None, "stack", "concatenate"}
        For a list of arrays: ``"stack"``, one channel per array (a new first axis);
        ``"concatenate"``, along axis 0.
    plan : napari_levelset.method.plan.RunPlan, optional
        The plan of ``segmenter`` (refine): how its snapshots are shown and its output made.
    """

    image: Any  # array-like, or a list of them (channel layers, see ``join``); converted in the worker
    settings: Settings  # the run's settings (the image's axes apart)
    axes: dict  # channel_axis, spatial_dims and spacing, for Segmenter
    iterations: int | None
    every: int = 0  # 0: auto
    with_probs: bool = False
    to_grey: bool = False  # average the colour channels (last axis) first
    scribbles: np.ndarray | None = None
    segmenter: Any = None  # continue this Segmenter (refine) instead of making one
    wait_for_gui: bool = False  # pause after each snapshot until the GUI took it (no snapshot skipped)
    join: str | None = None  # "stack": one channel per array (new first axis); "concatenate": along axis 0
    plan: Any = None  # the plan of ``segmenter`` (refine)


@dataclass
class Update:
    """A snapshot for the GUI (made in the worker).

    Parameters
    ----------
    iteration : int
        The Segmenter's total iteration count.
    done_in_run : int
        Iterations done in this run.
    total_in_run : int
        Iterations this run was asked for.
    loss : float
        The last step's loss.
    labels : ndarray, uint8 or uint16
        Labels 1..N, the image's non-channel shape.
    uncertainty : ndarray of float32, optional
        The labels' shape: 0 where one class has all the probability, 1 where all are equal
        (``(1 - max p) * N / (N - 1)``); None unless ``RunRequest.with_probs``.
    settings : dict
        ``Segmenter.settings``.
    losses : list of tuple of (int, float)
        ``(iteration, loss)`` at the end of each chunk since the last update.
    elapsed : float
        Seconds since the run began.
    remaining : float or None
        Seconds the rest of the run's iterations should take, at the pace since its first
        chunk (None before that).
    preview : bool
        A first look at the classes before the run starts (``RunPlan.preview``): iteration 0,
        no loss.
    """

    iteration: int  # the Segmenter's total iteration count
    done_in_run: int  # iterations done in this run
    total_in_run: int
    loss: float
    labels: np.ndarray
    uncertainty: np.ndarray | None
    settings: dict
    losses: list[tuple[int, float]] = field(default_factory=list)  # (iteration, loss) per chunk since the last Update
    elapsed: float = 0.0
    remaining: float | None = None
    preview: bool = False


@dataclass
class Finishing:
    """Sent when the optimisation ended and the output (``RunPlan.finish``) is being made.

    Parameters
    ----------
    output : str
        What is made: ``Settings.regions``.
    """

    output: str


@dataclass
class Final:
    """Sent once at the end of a run that was not aborted.

    Parameters
    ----------
    stopped : bool
        Whether a stop (``Segmenter.stop``) ended the run.
    settings : dict
        ``Segmenter.settings`` at the end.
    state : dict or None
        The network's ``state_dict`` as numpy arrays; None for a model without a usable one.
    iteration : int
        The Segmenter's total iteration count.
    elapsed : float
        Seconds the run took.
    output : ndarray or None
        The run's output (``RunPlan.finish``: class labels, regions or instances, the image's
        non-channel shape); None where the run was abandoned (restarted or cancelled).
    kind : str
        What ``output`` is: ``Settings.regions``.
    """

    stopped: bool
    settings: dict
    state: dict | None  # the network's state_dict as numpy arrays
    iteration: int
    elapsed: float
    output: np.ndarray | None = None
    kind: str = "classes"


@dataclass
class Started:
    """Sent first: the run's ``Segmenter``, made (or taken, for a refine) in the worker.

    The worker goes on once the main thread took it (``Handover.ready``): by then the
    Segmenter has the live changes and the stop made while it was being built
    (``Session.attach``).

    Parameters
    ----------
    segmenter : napari_levelset.method.segmenter.Segmenter
        The run's Segmenter.
    plan : napari_levelset.method.plan.RunPlan
        The run's plan.
    """

    segmenter: Any
    plan: Any = None


def _uncertainty(probs: np.ndarray) -> np.ndarray:
    """``(N, ...)`` probabilities -> 0 (certain) .. 1 (uniform), float32."""
    n = probs.shape[0]
    pmax = probs.max(axis=0)
    return np.clip((1.0 - pmax) * (n / (n - 1)), 0.0, 1.0).astype(np.float32)


#: modules a run needs that are slow to import: torch and the Segmenter (the run itself), torch's
#: dynamo (imported by the first optimiser made, 1.2 s: the first run's first labels came 1 s later
#: than the next run's), pandas (napari imports it when the first Labels layer is made) and what
#: instances use (the contrast, the diameter estimate, the split: 0.5 s on the first run).  An
#: import holds Python's global lock for long stretches, so done during the first run it froze the
#: viewer for up to 1.4 s.
PRELOAD = (
    "torch",
    "napari_levelset.method.segmenter",
    "torch._dynamo",
    "pandas",
    "scipy.ndimage",
    "skimage.transform",
    "skimage.filters",
    "skimage.feature",
    "skimage.segmentation",
)
_preloaded = threading.Event()


def preload() -> threading.Thread | None:
    """Import ``PRELOAD`` in a background thread, once per process, while the user sets up a run.

    Returns
    -------
    threading.Thread or None
        The (daemon) thread, or None when it was started before.  A module that fails to
        import is skipped: a run reports it itself.
    """
    if _preloaded.is_set():
        return None
    _preloaded.set()

    def work():
        for name in PRELOAD:
            with contextlib.suppress(Exception):
                importlib.import_module(name)

    thread = threading.Thread(target=work, name="napari-levelset preload", daemon=True)
    thread.start()
    return thread


def run_segmentation(req: RunRequest, handover: Handover):
    """Generator for ``thread_worker``: yields ``Started``, ``Update``s, then one ``Final``.

    Iterations run in chunks (``RunRequest.every``, or sized to about ``AUTO_PERIOD_S``
    seconds); after a chunk an ``Update`` is sent only when the main thread took the
    previous one (``Handover.ready``), at a stop and at the end.  A chunk that a stop ended
    before its first step shows nothing new: the run ends with its last update.

    Parameters
    ----------
    req : RunRequest
        What to run.
    handover : napari_levelset.napari._session.Handover
        Shared with the main thread; ``handover.ended`` is set when the generator returns,
        raises or is closed.

    Yields
    ------
    Started, Update or Final
        The Segmenter, updates while the run goes on, then one ``Final``.

    Raises
    ------
    RunFailed
        For a ``RuntimeError`` of the run (out of memory among them); the original is its
        ``__cause__``.
    napari_levelset.errors.InputError
        For a bad image, scribbles or setting.
    """
    from_load = chooses_from_load()
    try:  # torch's thread count, one per core free now, is set in this (the worker's) thread: see torch_threads
        with torch_threads(run_threads()):
            yield from _run_segmentation(req, handover, from_load)
    except RuntimeError as exc:
        raise RunFailed(str(exc)) from exc
    finally:
        handover.ended.set()


def _segmenter(req: RunRequest, handover: Handover):
    """Yields the run's first look (a new run whose preparation takes a while), then returns its Segmenter,
    plan and when the first look went (``Cadence``'s ``mark``, or None).  The Segmenter is the refined one
    with the request's live settings and scribbles, or a new one as ``plan_run`` plans it (the Segmenter,
    and torch with it, is imported in this thread)."""
    mark = None  # (process, thread) CPU time when the first look went
    if req.segmenter is not None:
        seg, plan = req.segmenter, req.plan
        s = req.settings
        seg.lam = s.lam if s.lam is not None else seg.lam
        seg.lr, seg.alpha = s.lr, s.alpha
        seg.set_scribbles(req.scribbles)
    else:
        t0 = time.perf_counter()
        plan = plan_run(
            join_channels(req.image, req.to_grey, req.join), req.settings, req.scribbles, **req.axes, prepare=False
        )
        if plan.prepares and plan.image is not None and _pixels(plan) > PREVIEW_PIXELS:
            handover.ready.clear()
            yield _preview(plan, t0)
            mark = (time.process_time(), time.thread_time())
        plan.prepare()
        seg = plan.make_segmenter()
        handover.ready.wait()  # the first look was taken: the hand-over below is the Segmenter's
    seg.clear_stop()  # a Stop pressed after the last run had ended belongs to that run
    return seg, plan, mark


def _pixels(plan) -> int:
    """The pixels (voxels) of the plan's image, channels apart."""
    channel_axis, _ = infer_axes(tuple(plan.image.shape), plan.channel_axis, plan.spatial_dims)
    return int(plan.image.size // (plan.image.shape[channel_axis] if channel_axis is not None else 1))


def _preview(plan, t0: float) -> Update:
    """The ``Update`` of a first look at the classes (``RunPlan.preview``), before the image is prepared."""
    s = plan.settings
    return Update(
        iteration=0,
        done_in_run=0,
        total_in_run=plan.iterations,
        loss=float("nan"),
        labels=plan.preview(),
        uncertainty=None,
        settings={**s.to_json(), "iteration": 0},
        elapsed=time.perf_counter() - t0,
        preview=True,
    )


class Cadence:
    """How many iterations the next chunk runs (``RunRequest.every`` = 0, "auto"), and the time left.

    Snapshots come about ``AUTO_PERIOD_S`` apart, further apart where showing one costs more than
    ``DISPLAY_SHARE`` of the run's own CPU time: that cost is the CPU time the process spent outside
    the run's thread between two updates (the viewer drawing the last one) and making the update.
    On a shared or busy CPU every second the display takes is a second the run waits, so the
    budget is of CPU time, not of the wall clock.  The time left is the pace since the first chunk
    (which pays for warming up) times the iterations left.

    Parameters
    ----------
    every : int
        ``RunRequest.every``: iterations between two updates; 0: auto.
    total : int
        Iterations of the run.
    mark : tuple of float, optional
        ``(time.process_time(), time.thread_time())`` when a first update went (the first look,
        ``RunPlan.preview``): its cost is the first estimate.
    """

    def __init__(self, every: int, total: int, mark: tuple[float, float] | None = None) -> None:
        self.auto = int(every) <= 0
        self.chunk = 1 if self.auto else int(every)
        self.total = total
        self.cost = 0.0  # seconds of CPU an update costs (the latest measured)
        self._mark = mark  # (process, thread) CPU time when the last update went
        if mark is not None:  # the first look: the viewer showed it while this thread prepared the image
            self.sent(0.0)
        self._first: tuple[float, int] | None = None  # (wall clock, iterations done) after the first chunk

    def chunk_done(self, n: int, seconds: float, cpu: float, done: int) -> None:
        """A chunk ended: the next one's size follows.

        Parameters
        ----------
        n : int
            Iterations it ran.
        seconds, cpu : float
            Wall-clock seconds it took, and this thread's CPU seconds.
        done : int
            Iterations done in the run so far.
        """
        if self._first is None:
            self._first = (time.perf_counter(), done)
        if self.auto and n > 0:
            per_iter, cpu_per_iter = max(seconds / n, 1e-6), max(cpu / n, 1e-6)
            by_time = AUTO_PERIOD_S / per_iter
            by_cost = self.cost / (DISPLAY_SHARE * cpu_per_iter)
            most = min(AUTO_MAX_CHUNK, MAX_PERIOD_S / per_iter)
            self.chunk = int(max(1, min(most, round(max(by_time, by_cost)))))

    def remaining(self, done: int) -> float | None:
        """Seconds the iterations left should take, at the pace since the first chunk.

        Parameters
        ----------
        done : int
            Iterations done in the run so far.

        Returns
        -------
        float or None
            None until a chunk after the first one ended.
        """
        if self._first is None or done <= self._first[1]:
            return None
        t, d = self._first
        return (time.perf_counter() - t) / (done - d) * (self.total - done)

    def sent(self, making: float) -> None:
        """An update goes to the main thread: the cost of the last one is measured.

        Parameters
        ----------
        making : float
            Seconds making this update took in this thread.
        """
        process, thread = time.process_time(), time.thread_time()
        if self._mark is not None:  # (an update the viewer has not drawn yet costs nothing so far: half the last)
            measured = max(0.0, (process - self._mark[0]) - (thread - self._mark[1])) + making
            self.cost = max(measured, 0.5 * self.cost)
        self._mark = (process, thread)


def _run_segmentation(req: RunRequest, handover: Handover, from_load: bool):
    t0 = time.perf_counter()
    seg, plan, mark = yield from _segmenter(req, handover)
    count = plan.threads(run_threads(), from_load) if plan is not None else None  # None: the count as it is
    with torch_threads(count):  # as segment(): instances on a small working copy use fewer threads
        return (yield from _run_planned(req, handover, t0, seg, plan, mark))


def _run_planned(req: RunRequest, handover: Handover, t0: float, seg, plan, mark):
    handover.ready.clear()
    yield Started(seg, plan)
    handover.ready.wait()  # the main thread gave it the changes (and the stop) made meanwhile

    show = plan.display if plan is not None else (lambda values: values)
    iterations = req.iterations if req.iterations is not None else plan.iterations if plan is not None else 0
    total = max(0, int(iterations))
    cadence = Cadence(req.every, total, mark)
    done = 0
    stopped = False
    last = None
    losses: list[tuple[int, float]] = []
    if total == 0:  # a pretrained model used directly: its labels at once
        last = seg.snapshot(with_probs=req.with_probs, done=True)
        yield _update(last, show, 0, 0, [], t0, None)
    while done < total and not stopped:
        n = min(cadence.chunk, total - done)
        start_iter = seg.iteration
        t_chunk, c_chunk = time.perf_counter(), time.thread_time()
        snap = None
        for snap in seg.run(n, every=n, with_probs=req.with_probs):  # noqa: B007 - the last one is kept
            pass
        if snap is None:  # pragma: no cover - run always yields a final snapshot
            break
        stopped = snap.stopped
        if stopped and seg.iteration == start_iter:
            break  # stopped before this chunk's first step: nothing new to show
        last = snap
        done += seg.iteration - start_iter
        losses.append((snap.iteration, snap.loss))
        took = (time.perf_counter() - t_chunk, time.thread_time() - c_chunk)
        cadence.chunk_done(seg.iteration - start_iter, *took, done)
        # latest-value hand-over: only yield when the main thread took the previous update
        if req.wait_for_gui:
            handover.ready.wait()
        if handover.ready.is_set() or stopped or done >= total:
            handover.ready.clear()
            t_make = time.perf_counter()
            update = _update(snap, show, done, total, losses, t0, cadence.remaining(done))
            cadence.sent(time.perf_counter() - t_make)
            yield update
            losses = []
    try:
        state = seg.state_dict()["model"]
    except Exception:  # a foreign model without a usable state_dict
        state = None
    output, kind = None, plan.output if plan is not None else "classes"
    if not handover.abandoned.is_set():
        if kind != "classes":
            yield Finishing(kind)
        output = plan.finish(seg, last) if plan is not None else (last.labels if last is not None else None)
    yield Final(
        stopped=bool(stopped),
        settings=seg.settings,
        state=state,
        iteration=seg.iteration,
        elapsed=time.perf_counter() - t0,
        output=output,
        kind=kind,
    )


def _update(snap, show, done: int, total: int, losses: list, t0: float, remaining: float | None) -> Update:
    """The ``Update`` of snapshot ``snap``, its labels (and uncertainty) on the image's grid (``show``)."""
    unc = _uncertainty(snap.probs) if snap.probs is not None else None
    return Update(
        iteration=snap.iteration,
        done_in_run=done,
        total_in_run=total,
        loss=snap.loss,
        labels=show(snap.labels),
        uncertainty=show(unc),
        settings=snap.settings,
        losses=losses,
        elapsed=time.perf_counter() - t0,
        remaining=remaining,
    )
