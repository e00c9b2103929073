"""Runs: Run, Refine and Stop, the worker's updates, and the views of a run.

A run optimises in a thread worker (``_worker.py``), planned as ``segment`` plans it
(``napari_levelset.method.plan``).  The main thread only copies each snapshot's labels
(and uncertainty) into a layer and updates the session (progress, status with the time
left, loss curve); at the end the run's output (regions, instances) gets a layer of its
own, on top.  Live changes (λ, learning rate, scribbles) and a
stop go to the run's ``Segmenter`` through the ``Session``; changing a structural
setting (N, model, width, ...) while a run is going stops it and starts a new one.

- ``Runs``: starts a run's worker from the form and the picked layers, and takes what
  the worker sends back (main thread).
- ``RunButtons``: Run, Stop and Refine.  ``RunStatus``: the progress bar and the
  status line, drawn from the session.

No torch here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from napari.qt.threading import thread_worker
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QSizePolicy, QVBoxLayout, QWidget

from napari_levelset import __version__
from napari_levelset.errors import InputError, widget_message
from napari_levelset.napari._form import SettingsForm
from napari_levelset.napari._instances import InstanceControls
from napari_levelset.napari._layers import foreground_value
from napari_levelset.napari._outputs import META_KEY, STATE_KEY, OutputLayers
from napari_levelset.napari._qt import button, qt_alive
from napari_levelset.napari._session import Result, Run, Session
from napari_levelset.napari._worker import Final, Finishing, RunRequest, Started, Update, run_segmentation

__all__ = ["RunButtons", "RunStatus", "Runs"]

log = logging.getLogger(__name__)

#: milliseconds a burst of structural changes (clicks on N, …) is gathered before the run restarts
RESTART_DELAY_MS = 300
#: milliseconds a burst of strokes is gathered before the running optimisation gets them
STROKES_DELAY_MS = 100


def remaining_text(seconds: float | None) -> str:
    """`` · about 12 s left`` (minutes from 2 minutes on), or '' when not known or under a second."""
    if seconds is None or seconds < 1:
        return ""
    if seconds < 120:
        return f" · about {seconds:.0f} s left"
    return f" · about {seconds / 60:.0f} min left"


class RunButtons(QWidget):
    """Run, Stop and Refine, in a row (magicgui buttons)."""

    def __init__(self) -> None:
        super().__init__()
        self.run_button = button("Run", "Segment from scratch with the settings above")
        self.stop_button = button("Stop", enabled=False)
        self.refine_button = button(
            "Refine", "Continue the last run from where it ended, with the current scribbles and λ", enabled=False
        )
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        for b in (self.run_button, self.stop_button, self.refine_button):
            row.addWidget(b.native)

    def show_state(self, can_run: bool, running: bool, can_refine: bool, hint: bool) -> None:
        """Enable the buttons; ``hint``: strokes changed since the result, Refine is marked."""
        self.run_button.enabled = can_run
        self.stop_button.enabled = running
        self.refine_button.enabled = can_refine
        refine = self.refine_button.native
        refine.setText("Refine ✎" if hint else "Refine")
        font = refine.font()
        font.setBold(hint)
        refine.setFont(font)


class RunStatus(QWidget):
    """The progress bar and the status line of a ``Session``."""

    def __init__(self, session: Session) -> None:
        super().__init__()
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("no run yet")  # "%v / %m iterations" once a run starts
        lay.addWidget(self.progress)
        self.status = QLabel(session.status)
        self.status.setWordWrap(True)
        self.status.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        # room for two wrapped lines even when the dock is short of height (errors run that long)
        self.status.setMinimumHeight(2 * self.status.fontMetrics().lineSpacing() + 4)
        lay.addWidget(self.status)
        session.status_changed.connect(self._show_status)
        session.progress_changed.connect(self._show_progress)

    def _show_status(self, text: str) -> None:
        if qt_alive(self.status):
            self.status.setText(text)

    def _show_progress(self, value: int, maximum: int) -> None:
        # QProgressBar.setValue repaints synchronously, which makes Qt recompose
        # the whole window (OpenGL canvas included) inside this handler; with
        # updates off it only schedules an ordinary asynchronous update.
        bar = self.progress
        if not qt_alive(bar):
            return
        bar.setUpdatesEnabled(False)
        try:
            bar.setFormat("%v / %m iterations")
            bar.setMaximum(max(1, int(maximum)))
            bar.setValue(min(int(value), int(maximum)))
        finally:
            bar.setUpdatesEnabled(True)
        bar.update()


class Runs:
    """Run, Refine and Stop of the widget, and what a run's worker sends back (main thread).

    Parameters
    ----------
    session : Session
        The state a run changes.
    form : SettingsForm
        The settings and the picked layers a run is started with.
    outputs : OutputLayers
        Where snapshots go.
    instances : InstanceControls
        The object diameter (the fluorescence contrast's background window).
    alive : callable
        False once the widget's Qt side is gone.
    parent : QWidget
        The owner of the timers.
    """

    def __init__(
        self,
        session: Session,
        form: SettingsForm,
        outputs: OutputLayers,
        instances: InstanceControls,
        alive: Callable[[], bool],
        parent: QWidget,
    ) -> None:
        self.session, self.form, self.outputs, self.instances = session, form, outputs, instances
        self._alive = alive
        self._restart_timer = QTimer(parent)
        self._restart_timer.setSingleShot(True)
        self._restart_timer.setInterval(RESTART_DELAY_MS)
        self._restart_timer.timeout.connect(self._restart_now)
        self._strokes_timer = QTimer(parent)
        self._strokes_timer.setSingleShot(True)
        self._strokes_timer.setInterval(STROKES_DELAY_MS)
        self._strokes_timer.timeout.connect(self.push_scribbles)

    def stop_timers(self) -> None:
        self._restart_timer.stop()
        self._strokes_timer.stop()

    # ------------------------------------------------------------------ the buttons
    def can_refine(self) -> bool:
        """Whether the picked image has a result of a run with the current structural settings."""
        result, layer = self.session.result, self.form.image_layer
        return (
            result is not None
            and layer is not None
            and result.image is layer
            and result.key == self.form.structural_key(layer)
            and self.outputs.in_viewer(layer)
        )

    def stop(self) -> None:
        """Stop the running optimisation after its current iteration."""
        if self.session.run is not None:
            self._restart_timer.stop()
            self.session.request_stop()

    def start(self, refine: bool) -> Any:
        """Start a run (``refine``: continue the kept result) on the picked image; returns the worker (or None)."""
        session, form = self.session, self.form
        if session.run is not None:
            return None
        layer = form.image_layer
        try:
            if layer is None:
                raise InputError("there is no Image layer to segment: open an image first")
            if refine and not self.can_refine():
                raise InputError("nothing to refine with these settings: press Run first")
            if form.model_value() == "":
                raise InputError("choose a U-Net model file first")
            axes = form.axes(layer)
            scribbles = self.current_scribbles(axes["out_shape"])
        except InputError as exc:
            session.error(str(exc))
            return None
        req, run = self._request(layer, axes, scribbles, refine)
        worker = thread_worker(run_segmentation, ignore_errors=True, start_thread=False)(req, run.handover)
        run.worker = worker
        worker.yielded.connect(lambda item, run=run: self._on_yielded(run, item))
        worker.errored.connect(lambda exc, run=run: self._on_errored(run, exc))
        worker.finished.connect(lambda run=run: self._on_finished(run))
        # set in the worker's own thread as it finishes (a stopped generator is never resumed, so its
        # ``finally`` may not run): a closing widget waits for this
        worker.finished.connect(run.handover.ended.set, Qt.ConnectionType.DirectConnection)
        text = ("refining " if refine else "starting ") + repr(layer.name)
        if axes["join"]:
            text += f" with {len(axes['layers']) - 1} more channel layer(s)"
        if (
            not refine
            and form.contrast(layer, scribbles is not None) == "fluorescence"
            and run.settings.diameter is None
        ):
            text += " (fluorescence contrast: estimating the object size)"
        session.begin(run, req.iterations if req.iterations is not None else form.iterations.value, text + "…")
        worker.start()
        session.run_started.emit(refine)
        return worker

    def _request(self, layer, axes: dict, scribbles, refine: bool) -> tuple[RunRequest, Run]:
        """What the worker gets, and the run's book-keeping."""
        form, session = self.form, self.session
        settings = session.settings  # None where a setting follows its default: the plan resolves it
        if settings.regions == "instances":
            fg = foreground_value(self.instances.foreground(), form.n_classes.value)
            settings = settings.replace(diameter=self.instances.diameter(), foreground=fg)
        if axes["color"] is not None:
            settings = settings.replace(color=axes["color"])
        every = form.every_value()
        req = RunRequest(
            image=[lay.data for lay in axes["layers"]] if axes["join"] else layer.data,
            join=axes["join"],
            settings=settings,
            axes=dict(channel_axis=axes["channel_axis"], spatial_dims=axes["spatial_dims"], spacing=axes["spacing"]),
            iterations=form.iterations.value if refine else settings.iterations,
            every=every,
            with_probs=bool(form.uncertainty.value),
            to_grey=axes["to_grey"],
            scribbles=scribbles,
            segmenter=session.result.segmenter if refine else None,
            plan=session.result.plan if refine else None,
            wait_for_gui=session.wait_for_display,
        )
        meta = dict(
            image=layer.name,
            channels=[lay.name for lay in axes["layers"]] if axes["join"] else None,
            scribbles=session.scribble_layer.name if scribbles is not None else None,
            to_grey=axes["to_grey"],
            iterations_requested=req.iterations,
            every=every,
            plugin_version=__version__,
        )
        run = Run(
            image=layer,
            key=form.structural_key(layer),
            meta=meta,
            out_shape=axes["out_shape"],
            scale=axes["scale"],
            translate=axes["translate"],
            with_probs=req.with_probs,
            refine=refine,
            settings=settings,
        )
        return req, run

    # ------------------------------------------------------------------ worker signals
    def _on_yielded(self, run: Run, item) -> None:
        try:
            if run.cancelled or run is not self.session.run or not self._alive():
                return
            if isinstance(item, Started):
                self.session.attach(run, item.segmenter, item.plan)
                if item.plan is not None and item.plan.contrast is not None:  # prepared by the plan
                    run.meta["contrast"] = item.plan.contrast
            elif isinstance(item, Finishing):
                what = {"instances": "finding objects", "merged": "merging regions"}.get(item.output, "regions")
                self.session.set_status(f"{run.image.name!r}: {what}…")
            elif isinstance(item, Update):
                t0, c0 = time.perf_counter(), time.thread_time()
                self._apply_update(run, item)
                self.session.snapshot_done(item.iteration, time.perf_counter() - t0, time.thread_time() - c0)
            elif isinstance(item, Final):
                run.final = item
                self._apply_final(run, item)
        finally:
            run.handover.ready.set()  # the worker may send the next update

    def _apply_update(self, run: Run, up: Update) -> None:
        if self.session.take_over(run):  # a new run: the image's former regions / instances go out of its way
            self.outputs.hide_steps(run.image)
        meta = {**up.settings, **run.meta, "loss": up.loss, "iterations_run": up.done_in_run, "running": True}
        out = self.outputs.show_snapshot(run.image, up, meta, run.with_probs, run.scale, run.translate)
        if run.n_updates == 0:  # (the contrast the plan prepared the image with, where it did)
            contrast = {"contrast": run.meta["contrast"]} if "contrast" in run.meta else {}
            colours = {**run.settings.to_json(), **up.settings, **contrast}
            self.outputs.colour_classes(out, colours, self.form.transparent.value)
        if up.preview:
            status = f"{run.image.name!r}: a first look (k-means of a coarse copy) · preparing the image…"
        else:
            status = (
                f"{run.image.name!r}: iteration {up.done_in_run}/{up.total_in_run} · loss {up.loss:.5g} · "
                f"{up.elapsed:.1f} s{remaining_text(up.remaining)}"
            )
        self.session.show_snapshot(run, up.done_in_run, up.total_in_run, up.losses, status)

    def _apply_final(self, run: Run, fin: Final) -> None:
        out = self.outputs.get("output", run.image)
        seg = run.segmenter
        if self.outputs.in_viewer(out):
            meta = dict(out.metadata.get(META_KEY, {}))
            meta.update(fin.settings)
            meta.update(run.meta, running=False, stopped=fin.stopped)
            out.metadata[META_KEY] = meta
            if fin.state is not None:
                out.metadata[STATE_KEY] = fin.state
        made = ""
        if fin.output is not None and not run.cancelled and self.outputs.in_viewer(out):
            made = self._show_output(run, out, fin)
        if seg is not None and not run.cancelled:
            self.session.keep(Result(image=run.image, segmenter=seg, key=run.key, output=out, plan=run.plan))
            if run.image is self.form.image_layer:
                self.instances.set_estimate(getattr(seg, "diameter", None))
        verb = "stopped" if fin.stopped else "done"
        loss = out.metadata.get(META_KEY, {}).get("loss", float("nan")) if out is not None else float("nan")
        self.session.set_status(
            f"{verb} {run.image.name!r}: {made}iteration {fin.iteration} · loss {loss:.5g} · {fin.elapsed:.1f} s"
        )

    def _show_output(self, run: Run, out, fin: Final) -> str:
        """Put the run's output into its layer (the classes into the output layer; regions and instances
        into a layer of their own, on top); returns the status line's words on it."""
        if fin.kind == "classes":
            if out.data.shape == fin.output.shape:
                out.data = fin.output
            return ""
        kind = "instances" if fin.kind == "instances" else "regions"
        n = len(np.unique(fin.output[fin.output > 0])) if fin.output.size else 0
        count = "n_objects" if kind == "instances" else "n_regions"
        layer = self.outputs.step_layer(kind, run.image, out, fin.output, 0.7 if kind == "instances" else 0.5)
        layer.metadata[META_KEY] = {**out.metadata.get(META_KEY, {}), "kind": kind, count: n}
        return f"{n} {'objects' if kind == 'instances' else 'regions'} · "

    def _on_errored(self, run: Run, exc: BaseException) -> None:
        if not isinstance(exc, InputError) and not run.cancelled:
            log.debug("napari-levelset run failed", exc_info=exc)
        self.session.failed(run, widget_message(exc))

    def _on_finished(self, run: Run) -> None:
        restart = self.session.finished(run)
        if not self._alive():
            return
        if restart and self.outputs.in_viewer(run.image):
            if self.form.image_layer is run.image:
                self.start(refine=False)
            else:  # another image was picked meanwhile: the restart is not moved to it
                self.session.set_status(f"stopped {run.image.name!r} for the new settings: press Run to go on")

    # ------------------------------------------------------------------ changes during a run
    def live_changed(self, name: str, value: float) -> None:
        """A live setting (``_session.LIVE_FIELDS``) changed in the form."""
        self.session.live_change(name, value)

    def structural_changed(self) -> None:
        if self.session.request_restart():
            self._restart_timer.start()  # debounce a burst of clicks

    def _restart_now(self) -> None:
        self.session.restart_now()

    def strokes_changed(self, painted: bool = False) -> None:
        """The scribble layer, or its strokes, changed: the running optimisation gets them (a burst of strokes
        gathered), or after a run Refine is offered."""
        session = self.session
        if session.live_run() is not None:
            self._strokes_timer.start()  # coalesce a burst of strokes into one update
        elif session.result is not None:
            layer = session.scribble_layer
            painted = painted or (layer is not None and bool(np.any(np.asarray(layer.data))))
            output = session.result.output
            had = (output.metadata.get(META_KEY, {}).get("scribbles") if output is not None else None) is not None
            # a new, empty scribble layer after a run without strokes changes nothing
            session.set_strokes_changed(painted or had)

    def push_scribbles(self) -> None:
        """The running optimisation takes the scribble layer's strokes as they are now."""
        session = self.session
        run = session.live_run()
        if run is None or not self._alive():
            return
        try:
            layer = session.scribble_layer
            session.set_scribbles(self.current_scribbles(run.out_shape), layer.name if layer is not None else None)
        except InputError as exc:
            # the run goes on without scribbles rather than with those of a layer no longer chosen
            session.set_scribbles(None, None)
            session.error(str(exc))

    def current_scribbles(self, out_shape: tuple) -> np.ndarray | None:
        """A copy of the scribble layer's strokes (None without one).

        Raises
        ------
        InputError
            For a multiscale layer, or one of another shape than ``out_shape``.
        """
        layer = self.session.scribble_layer
        if layer is None:
            return None
        if layer.multiscale:
            raise InputError(f"the scribble layer {layer.name!r} is multiscale; use a plain Labels layer")
        data = np.asarray(layer.data)
        if data.shape != tuple(out_shape):
            raise InputError(
                f"the scribble layer {layer.name!r} has shape {data.shape}, but the image needs {tuple(out_shape)}"
            )
        return np.array(data, copy=True)
