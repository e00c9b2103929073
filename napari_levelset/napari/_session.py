"""The state of one widget session, without Qt and without torch.

``Session`` is what the dock widget shows and changes: the picked image and scribble
layer, the form's ``Settings``, the run going on (``Run``: running or stopping, the live
changes waiting for its ``Segmenter``), whether strokes changed since the last result,
the kept result (``Result``, what Refine continues), the loss curve (``LossCurve``), the
status line and the progress.  It emits psygnal signals; the Qt views (``widget.py``,
``_runs.py``, ``_instances.py``, ``_plot.py``) draw from them, and the run controller
(``_runs.py``) and the widget change it.  Layers and workers are held as opaque objects.
psygnal (which napari ships) is its one dependency outside the standard library and the
package.

A run's live changes (λ, learning rate, scribbles) and a stop go to its ``Segmenter``,
which applies them at its next iteration; until the worker has handed the Segmenter over
(``attach``), the session keeps them in ``Run.pending`` and ``Run.stopping``.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from psygnal import Signal

from napari_levelset.errors import InputError
from napari_levelset.settings import Settings

__all__ = ["LIVE_FIELDS", "Handover", "LossCurve", "Result", "Run", "RunState", "Session"]

#: the settings a running optimisation takes at its next iteration (α applies from the next run or refine)
LIVE_FIELDS = ("lam", "lr")

#: the status line of a run stopped by the user
STOPPING = "stopping…"

#: ``Session.set_scribbles``: the layer name recorded stays
KEEP: Any = object()


class RunState(str, Enum):  # noqa: UP042 - str() of a member keeps its 3.11 meaning
    """Where the session stands: no result yet, a run going or stopping, or a finished result."""

    IDLE = "idle"
    RUNNING = "running"
    STOPPING = "stopping"
    FINISHED = "finished"


class LossCurve:
    """Loss against iteration, and the iterations where a setting changed live (``marks``)."""

    MAX_POINTS = 5000
    changed = Signal()

    def __init__(self) -> None:
        self.xs: list[float] = []
        self.ys: list[float] = []
        self.marks: list[float] = []

    def clear(self) -> None:
        """Forget the points and marks (a new run's curve starts)."""
        self.xs.clear()
        self.ys.clear()
        self.marks.clear()
        self.changed.emit()

    def add_points(self, points) -> None:
        """Append points; beyond ``MAX_POINTS`` every other old point is dropped.

        Parameters
        ----------
        points : iterable of tuple of (int, float)
            ``(iteration, loss)`` pairs; a loss that is None or not finite is skipped.
        """
        for x, y in points:
            if y is None or not math.isfinite(y):
                continue
            self.xs.append(float(x))
            self.ys.append(float(y))
        if len(self.xs) > self.MAX_POINTS:  # keep every other old point
            half = len(self.xs) // 2
            self.xs[:half] = self.xs[:half:2]
            self.ys[:half] = self.ys[:half:2]
        self.changed.emit()

    def mark(self, x: float) -> None:
        """Mark iteration ``x`` (a setting changed there).

        Parameters
        ----------
        x : float
            The iteration.
        """
        self.marks.append(float(x))
        self.changed.emit()


class Handover:
    """What the run's worker thread and the main thread share: the latest-value hand-over of updates.

    ``ready`` is set when the main thread took the last item (the worker sends the next update only
    then, or waits for it when the run waits for the display); ``ended`` when the worker finished;
    ``abandoned`` when the run's result is not wanted (it restarts, or is cancelled): the worker then
    makes no output.
    """

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.ready.set()
        self.ended = threading.Event()
        self.abandoned = threading.Event()

    def release(self) -> None:
        """Stop the worker waiting for the main thread (a stop, or the widget going away)."""
        self.ready.set()


@dataclass
class Run:
    """One run, as the main thread sees it.

    Parameters
    ----------
    image : napari.layers.Image
        The image layer segmented.
    key : tuple
        What a refine of its result must still match (``SettingsForm.structural_key``).
    meta : dict
        What the output layer's metadata records beside the Segmenter's settings.
    out_shape, scale, translate : tuple
        The labels' shape, and the output layers' scale and translate.
    with_probs : bool
        Whether updates carry the uncertainty.
    refine : bool
        Whether it continues the kept result.
    settings : napari_levelset.settings.Settings
        The settings it was started with.
    handover : Handover
        Shared with its worker thread.
    worker : napari.qt.threading.GeneratorWorker, optional
        Its worker.
    segmenter : napari_levelset.method.segmenter.Segmenter, optional
        Handed over by the worker (``Session.attach``).
    plan : napari_levelset.method.plan.RunPlan, optional
        Its plan, handed over with the Segmenter.
    pending : dict
        Live changes made before that: setting name (or ``"scribbles"``) -> value.
    stopping, restart, cancelled, failed : bool
        A stop was asked for; it starts again when it ended (a structural setting changed); it ends
        without a result (its image went away, the widget closed); it raised.
    n_updates : int
        Updates shown.
    final : napari_levelset.napari._worker.Final, optional
        Its last item.
    end_message : str
        The status line of a cancelled run.
    t_start : float
        ``time.perf_counter()`` at its start.
    """

    image: Any  # the image layer
    key: tuple  # what a refine of its result must still match (``SettingsForm.structural_key``)
    meta: dict  # what the output layer's metadata records beside the Segmenter's settings
    out_shape: tuple
    scale: tuple
    translate: tuple
    with_probs: bool
    refine: bool
    settings: Settings = field(default_factory=Settings)  # the settings the run was started with
    handover: Handover = field(default_factory=Handover)
    worker: Any = None
    segmenter: Any = None  # handed over by the worker (``Session.attach``)
    plan: Any = None  # the run's plan (``napari_levelset.method.plan.RunPlan``), handed over with it
    pending: dict = field(default_factory=dict)  # live changes made before that: name -> value
    stopping: bool = False  # a stop was asked for
    restart: bool = False  # start again when it ended (a structural setting changed)
    cancelled: bool = False  # ended without a result (its image went away, the widget closed)
    failed: bool = False
    n_updates: int = 0
    final: Any = None
    end_message: str = "run ended"
    t_start: float = field(default_factory=time.perf_counter)


@dataclass
class Result:
    """A finished run's result: what Refine continues and the Regions / Instances steps read.

    Parameters
    ----------
    image : napari.layers.Image
        The image layer.
    segmenter : napari_levelset.method.segmenter.Segmenter
        The run's Segmenter.
    key : tuple
        The run's ``Run.key``.
    output : napari.layers.Labels or None
        The output layer.
    plan : napari_levelset.method.plan.RunPlan or None
        The run's plan (what a refine shows and makes).
    """

    image: Any
    segmenter: Any
    key: tuple
    output: Any  # the output layer
    plan: Any = None


class Session:
    """The widget's state and the rules that change it (see the module's docstring)."""

    status_changed = Signal(str)
    progress_changed = Signal(int, int)  #: (iterations done, iterations of the run)
    changed = Signal()  #: the run state, the result, a step or the strokes changed: buttons follow
    errored = Signal(str)
    run_started = Signal(bool)  #: refine
    snapshot_applied = Signal(int)  #: iteration
    run_finished = Signal()

    #: seconds a closing widget waits for its run to end (a stop takes effect after the current step)
    CLOSE_WAIT = 10.0

    def __init__(self) -> None:
        self.image: Any = None  # the picked image layer
        self.scribble_layer: Any = None
        self.settings = Settings()  # the form's settings (kept up to date by the form)
        self.run: Run | None = None
        self.result: Result | None = None
        self.strokes_changed = False  # strokes changed since the result: Refine is offered
        self.step: Any = None  # the Regions or Instances worker in progress (one at a time)
        self.curve = LossCurve()
        self.status = "ready"
        #: main-thread seconds per applied snapshot: wall clock, and CPU time of the main thread
        self.timings: list[float] = []
        self.cpu_timings: list[float] = []
        #: total snapshots applied to an output layer
        self.n_updates = 0
        #: the last error message shown to the user
        self.last_error: str | None = None
        #: when True the worker pauses after each snapshot until it is displayed, so none is skipped
        #: (tests, screen recordings); by default a slow display only ever gets the newest snapshot and
        #: the optimisation never waits for it
        self.wait_for_display = False
        #: (emitter, callback) pairs of the viewer's events, disconnected by ``teardown``
        self.connections: list[tuple[Any, Any]] = []

    # ------------------------------------------------------------------ state
    @property
    def state(self) -> RunState:
        """Idle (no result), running, stopping, or finished (a result is kept)."""
        run = self.run
        if run is not None:
            return RunState.STOPPING if run.stopping else RunState.RUNNING
        return RunState.FINISHED if self.result is not None else RunState.IDLE

    @property
    def segmenter(self):
        """The running run's Segmenter, else the kept result's (or None)."""
        run = self.run
        if run is not None and run.segmenter is not None:
            return run.segmenter
        return self.result.segmenter if self.result is not None else None

    def live_run(self) -> Run | None:
        """The run going on, unless it was cancelled.

        Returns
        -------
        Run or None
        """
        run = self.run
        return run if run is not None and not run.cancelled else None

    def set_status(self, text: str) -> None:
        """Show ``text`` on the status line.

        Parameters
        ----------
        text : str
            One line.
        """
        self.status = text
        self.status_changed.emit(text)

    def error(self, message: str) -> None:
        """Show ``message`` to the user (a notification) and keep it as ``last_error``.

        Parameters
        ----------
        message : str
            One line, as ``napari_levelset.errors.widget_message`` writes it.
        """
        self.last_error = message
        self.errored.emit(message)

    def set_strokes_changed(self, value: bool) -> None:
        """Whether the strokes changed since the kept result (Refine is offered).

        Parameters
        ----------
        value : bool
            The new state.
        """
        self.strokes_changed = value
        self.changed.emit()

    # ------------------------------------------------------------------ a run's life
    def begin(self, run: Run, iterations: int, status: str) -> None:
        """``run`` starts (its worker is about to).

        Parameters
        ----------
        run : Run
            The run.
        iterations : int
            What the progress counts.
        status : str
            The status line.
        """
        self.run = run
        if run.refine:
            it = getattr(self.result.segmenter, "iteration", None) if self.result is not None else None
            if it is not None:
                self.curve.mark(it)
        # (a new run replaces the kept result and its loss curve with its first update, so one
        # that fails at the start leaves the last result refinable)
        self.strokes_changed = False
        self.progress_changed.emit(0, max(1, iterations))
        self.set_status(status)
        self.changed.emit()

    def attach(self, run: Run, segmenter, plan=None) -> None:
        """The worker built (or took) ``run``'s Segmenter: it gets the live changes and the stop made so far.

        A change it refuses is reported (``error``) and the run goes on without it, as for a change
        made later.

        Parameters
        ----------
        run : Run
            The run.
        segmenter : napari_levelset.method.segmenter.Segmenter
            Its Segmenter.
        plan : napari_levelset.method.plan.RunPlan, optional
            Its plan.
        """
        run.segmenter, run.plan = segmenter, plan
        pending, run.pending = run.pending, {}
        for name, value in pending.items():
            try:
                if name == "scribbles":
                    segmenter.set_scribbles(value)
                else:
                    setattr(segmenter, name, value)
            except InputError as exc:  # as for a change made later: the run goes on without it
                if name == "scribbles":
                    segmenter.set_scribbles(None)
                    run.meta["scribbles"] = None
                self.error(str(exc))
        if run.stopping or run.cancelled:
            segmenter.stop()

    def take_over(self, run: Run) -> bool:
        """Before each update of ``run``: the first of a new run (not a refine) replaces the kept result
        and its curve.

        Parameters
        ----------
        run : Run
            The run.

        Returns
        -------
        bool
            Whether it did.
        """
        if run.n_updates == 0 and not run.refine:
            self.curve.clear()
            self.result = None
            return True
        return False

    def show_snapshot(self, run: Run, done: int, total: int, losses, status: str) -> None:
        """An update of ``run`` reached the output layer: progress, status line and curve follow.

        Parameters
        ----------
        run : Run
            The run.
        done, total : int
            Iterations done, and asked for, in this run.
        losses : list of tuple of (int, float)
            ``(iteration, loss)`` since the last update.
        status : str
            The status line.
        """
        run.n_updates += 1
        self.n_updates += 1
        self.progress_changed.emit(done, total)
        self.set_status(status)
        self.curve.add_points(losses)

    def snapshot_done(self, iteration: int, wall: float, cpu: float) -> None:
        """The update at ``iteration`` is shown: note its time and emit ``snapshot_applied``.

        Parameters
        ----------
        iteration : int
            The Segmenter's iteration.
        wall, cpu : float
            Seconds it took on the main thread: wall clock, and the main thread's CPU time.
        """
        self.timings.append(wall)
        self.cpu_timings.append(cpu)
        self.snapshot_applied.emit(iteration)

    def keep(self, result: Result) -> None:
        """Keep ``result`` (what Refine continues).

        Parameters
        ----------
        result : Result
            A finished run's result.
        """
        self.result = result
        self.changed.emit()

    def failed(self, run: Run, message: str) -> None:
        """``run`` failed (not reported for a cancelled run); a refine's result is no longer kept.

        Parameters
        ----------
        run : Run
            The run.
        message : str
            What went wrong, in one line.
        """
        run.failed = True
        if run.cancelled:
            return  # the image went away or the viewer is closing: nothing to report
        if self.result is not None and self.result.segmenter is run.segmenter:
            self.result = None
        self.set_status(f"error: {message}")
        self.error(message)

    def finished(self, run: Run) -> bool:
        """``run``'s worker ended.

        Parameters
        ----------
        run : Run
            The run.

        Returns
        -------
        bool
            Whether it is to be started again (a structural setting changed).
        """
        if self.run is run:
            self.run = None
        if run.cancelled:
            self.set_status(run.end_message)
        self.changed.emit()
        self.run_finished.emit()
        return run.restart and not run.cancelled and not run.failed

    # ------------------------------------------------------------------ changes during a run
    def live_change(self, name: str, value: float) -> None:
        """A live setting changed: the run takes it at its next iteration; the curve and the output's
        metadata note where.

        Parameters
        ----------
        name : str
            One of ``LIVE_FIELDS``.
        value : float
            The new value.
        """
        run = self.live_run()
        if run is None:
            return
        seg = run.segmenter
        if seg is None:
            run.pending[name] = float(value)
            return
        try:
            setattr(seg, name, float(value))
        except InputError as exc:
            self.error(str(exc))
            return
        it = getattr(seg, "iteration", None)
        if it is not None:
            if not self.curve.marks or self.curve.marks[-1] != it:
                self.curve.mark(it)
            changes = run.meta.setdefault("live_changes", [])
            if changes and changes[-1]["iteration"] == int(it):
                changes[-1][name] = float(value)  # a slider drag: keep the last value per iteration
            else:
                changes.append({"iteration": int(it), name: float(value)})

    def set_scribbles(self, scribbles, layer_name: Any = KEEP) -> None:
        """The run's scribbles change, at its next iteration.

        Parameters
        ----------
        scribbles : ndarray of int or None
            The image's non-channel shape, 0 unlabelled, ``k`` label ``k``; None: none.
        layer_name : str or None
            Their layer, recorded in the output's metadata (``KEEP``: the name recorded stays).

        Raises
        ------
        InputError
            When the run's Segmenter rejects them (the run keeps its former ones).
        """
        run = self.live_run()
        if run is None:
            return
        if run.segmenter is None:
            run.pending["scribbles"] = scribbles
        else:
            run.segmenter.set_scribbles(scribbles)
        if layer_name is not KEEP:
            run.meta["scribbles"] = layer_name

    def request_stop(self) -> None:
        """Stop the run after its current iteration (and do not start it again)."""
        run = self.run
        if run is None:
            return
        run.restart = False
        self._stop(run)
        self.set_status(STOPPING)

    def request_restart(self) -> bool:
        """A structural setting changed: the run is to start again once stopped.

        Returns
        -------
        bool
            Whether a run was going.
        """
        run = self.live_run()
        if run is None:
            return False
        run.restart = True
        self.set_status("settings changed: restarting…")
        return True

    def restart_now(self) -> None:
        """Stop a run that is to start again (it starts when it ended)."""
        run = self.run
        if run is not None and run.restart:
            self._stop(run)  # the controller starts the new run when it ended

    def _stop(self, run: Run) -> None:
        run.stopping = True
        if run.cancelled or run.restart:  # no output wanted from it
            run.handover.abandoned.set()
        if run.segmenter is not None:
            run.segmenter.stop()
        run.handover.release()

    def cancel(self, message: str | None = None) -> None:
        """End the run without a result (its image went away, the widget closes).

        Parameters
        ----------
        message : str, optional
            The status line, and what the run's end says.
        """
        run = self.run
        if run is None:
            return
        if message is not None:
            run.end_message = message
            self.set_status(message)
        run.cancelled = True
        self._stop(run)
        if run.worker is not None:
            with contextlib.suppress(RuntimeError):
                run.worker.quit()

    def teardown(self, *_args) -> None:
        """The widget goes: end the run (waiting for its thread) and stop listening to the viewer.

        Parameters
        ----------
        *_args
            Ignored (Qt's ``destroyed`` passes the object).
        """
        run = self.run
        self.cancel()
        if run is not None:  # let the worker thread end before Qt deletes what it signals through
            run.handover.ended.wait(self.CLOSE_WAIT)
        for emitter, callback in self.connections:
            with contextlib.suppress(Exception):  # already gone
                emitter.disconnect(callback)
        self.connections.clear()
        self.scribble_layer = None

    # ------------------------------------------------------------------ layers
    def layer_removed(self, layer, output_of_run) -> None:
        """``layer`` left the viewer: a run on it (or writing into it) ends, a result of it is forgotten.

        Parameters
        ----------
        layer : napari.layers.Layer
            The layer removed.
        output_of_run : napari.layers.Labels or None
            The running run's output layer.
        """
        run = self.live_run()
        if run is not None and run.image is layer:
            self.cancel(f"the image {layer.name!r} was removed: run stopped")
        run = self.live_run()
        if run is not None and output_of_run is layer and run.n_updates > 0:
            self.cancel(f"the output layer {layer.name!r} was deleted: run stopped")
        if self.result is not None and self.result.image is layer:
            self.result = None
