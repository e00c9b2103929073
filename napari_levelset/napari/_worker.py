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
from napari_levelset.io.prepare import join_channels
from napari_levelset.method.plan import plan_run
from napari_levelset.napari._session import Handover
from napari_levelset.settings import Settings

__all__ = ["Final", "Finishing", "RunRequest", "Started", "Update", "preload", "run_segmentation"]

#: ``every = 0`` means "auto": aim for about this many seconds between snapshots.
AUTO_PERIOD_S = 0.3
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
        Seconds the rest of the run's iterations should take, at the pace so far.
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
#: than the next run's) and pandas (napari imports it when the first Labels layer is made).  An
#: import holds Python's global lock for long stretches, so done during the first run it froze the
#: viewer for up to 1.4 s.
PRELOAD = ("torch", "napari_levelset.method.segmenter", "torch._dynamo", "pandas")
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
    try:
        yield from _run_segmentation(req, handover)
    except RuntimeError as exc:
        raise RunFailed(str(exc)) from exc
    finally:
        handover.ended.set()


def _segmenter(req: RunRequest):
    """The run's Segmenter and plan: the refined one with the request's live settings and scribbles, or a
    new one as ``plan_run`` plans it (the Segmenter, and torch with it, is imported in this thread)."""
    if req.segmenter is not None:
        seg, plan = req.segmenter, req.plan
        s = req.settings
        seg.lam = s.lam if s.lam is not None else seg.lam
        seg.lr, seg.alpha = s.lr, s.alpha
        seg.set_scribbles(req.scribbles)
    else:
        plan = plan_run(join_channels(req.image, req.to_grey, req.join), req.settings, req.scribbles, **req.axes)
        seg = plan.make_segmenter()
    seg.clear_stop()  # a Stop pressed after the last run had ended belongs to that run
    return seg, plan


def _run_segmentation(req: RunRequest, handover: Handover):
    t0 = time.perf_counter()
    seg, plan = _segmenter(req)
    handover.ready.clear()
    yield Started(seg, plan)
    handover.ready.wait()  # the main thread gave it the changes (and the stop) made meanwhile

    show = plan.display if plan is not None else (lambda values: values)
    iterations = req.iterations if req.iterations is not None else plan.iterations if plan is not None else 0
    total = max(0, int(iterations))
    auto = int(req.every) <= 0
    chunk = 1 if auto else int(req.every)
    done = 0
    stopped = False
    last = None
    losses: list[tuple[int, float]] = []
    t_loop = time.perf_counter()
    if total == 0:  # a pretrained model used directly: its labels at once
        last = seg.snapshot(with_probs=req.with_probs, done=True)
        yield _update(last, show, 0, 0, [], t0, None)
    while done < total and not stopped:
        n = min(chunk, total - done)
        start_iter = seg.iteration
        t_chunk = time.perf_counter()
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
        if auto and seg.iteration > start_iter:
            per_iter = (time.perf_counter() - t_chunk) / (seg.iteration - start_iter)
            chunk = int(min(AUTO_MAX_CHUNK, max(1, round(AUTO_PERIOD_S / max(per_iter, 1e-6)))))
        # latest-value hand-over: only yield when the main thread took the previous update
        if req.wait_for_gui:
            handover.ready.wait()
        if handover.ready.is_set() or stopped or done >= total:
            handover.ready.clear()
            remaining = (time.perf_counter() - t_loop) / done * (total - done) if done else None
            yield _update(snap, show, done, total, losses, t0, remaining)
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
