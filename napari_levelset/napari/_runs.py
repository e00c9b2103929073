"""Runs of ``LevelSetWidget``: Run, Refine, Stop, the restart after a structural change, live changes.

The ``Segmenter`` lives in a napari generator thread worker (``_worker.py``).
The main thread only copies each snapshot's labels (and uncertainty) into a
layer and updates the progress bar, the loss plot and the layer metadata.  Live
changes (λ, learning rate, scribbles) go through a ``RunControl`` and take
effect at the next iteration; changing a structural setting (N, model, width,
...) while a run is going stops it and starts a new one.

``_Handle`` holds the run outside the Qt widget, so cleanup still works once Qt
deleted it; ``RunsMixin`` is the widget's side.  No torch here.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from napari.layers import Image
from napari.qt.threading import thread_worker
from qtpy.QtCore import Qt

from napari_levelset import __version__
from napari_levelset.errors import widget_message
from napari_levelset.errors import InputError
from napari_levelset.settings import Settings
from napari_levelset.napari._outputs import META_KEY, STATE_KEY
from napari_levelset.napari._worker import Final, RunControl, RunRequest, Update, run_segmentation

__all__ = ["RunsMixin"]

log = logging.getLogger(__name__)


@dataclass
class _Run:
    """Book-keeping for one run on the main thread."""

    image: Image
    ctrl: RunControl
    key: tuple
    meta: dict
    out_shape: tuple
    scale: tuple
    translate: tuple
    with_probs: bool
    refine: bool
    worker: Any = None
    params: Settings = field(default_factory=Settings)  # the settings the run was started with
    n_updates: int = 0
    restart: bool = False
    cancelled: bool = False
    final: Final | None = None
    failed: bool = False
    end_message: str = "run ended"
    t_start: float = field(default_factory=time.perf_counter)


class _Handle:
    """Lives outside the widget so cleanup still works once Qt deleted the widget."""

    def __init__(self) -> None:
        self.run: _Run | None = None
        self.connections: list[tuple[Any, Any]] = []

    def cancel(self, *_args) -> bool:
        run = self.run
        if run is not None:
            run.cancelled = True
            run.ctrl.stop()
            if run.worker is not None:
                try:
                    run.worker.quit()
                except RuntimeError:
                    pass
        return True

    #: seconds a closing widget waits for its run to end (a stop takes effect after the current step)
    CLOSE_WAIT = 10.0

    def teardown(self, *_args) -> None:
        run = self.run
        self.cancel()
        if run is not None:  # let the worker thread end before Qt deletes what it signals through
            run.ctrl.ended.wait(self.CLOSE_WAIT)
        for emitter, callback in self.connections:
            try:
                emitter.disconnect(callback)
            except Exception:  # already gone
                pass
        self.connections.clear()


class RunsMixin:
    """Run, Refine and Stop of ``LevelSetWidget``, and what the run's worker sends back."""

    @property
    def is_running(self) -> bool:
        return self._handle.run is not None

    @property
    def worker(self):
        """The running thread worker, or None."""
        run = self._handle.run
        return run.worker if run is not None else None

    @property
    def segmenter(self):
        """The Segmenter of the running run, else the one kept for refine (or None)."""
        run = self._handle.run
        if run is not None and run.ctrl.segmenter is not None:
            return run.ctrl.segmenter
        return self._kept["segmenter"] if self._kept else None

    def run(self, *_args) -> Any:
        """Start a run from scratch on the picked image; returns the worker (or None)."""
        return self._start(refine=False)

    def refine(self, *_args) -> Any:
        """Continue the last run (same network and optimiser) with the current scribbles and λ."""
        return self._start(refine=True)

    def stop(self, *_args) -> None:
        """Stop the running optimisation after its current iteration."""
        run = self._handle.run
        if run is None:
            return
        self._restart_timer.stop()
        run.restart = False
        run.ctrl.stop()
        self.status.setText("stopping…")

    def can_refine(self) -> bool:
        kept = self._kept
        layer = self.image_layer
        return (
            kept is not None
            and layer is not None
            and kept["image"] is layer
            and kept["key"] == self.form.structural_key(layer)
            and any(layer is lay for lay in self._layers())
        )

    def _start(self, refine: bool) -> Any:
        if self._handle.run is not None:
            return None
        form = self.form
        layer = self.image_layer
        try:
            if layer is None:
                raise InputError("there is no Image layer to segment: open an image first")
            if refine and not self.can_refine():
                raise InputError("nothing to refine with these settings: press Run first")
            if form.model_value() == "":
                raise InputError("choose a U-Net model file first")
            axes = form.axes(layer)
            scribbles = self._current_scribbles(axes["out_shape"])
        except InputError as exc:
            self._error(str(exc))
            return None

        params = form.parameters().replace(contrast=form.contrast(layer))
        if params.contrast == "fluorescence":  # the background window follows the object size
            params = params.replace(diameter=self.instance_controls.diameter())
        if axes["color"] is not None:
            params = params.replace(color=axes["color"])
        every = form.every_value()
        req = RunRequest(
            image=[lay.data for lay in axes["layers"]] if axes["join"] else layer.data,
            join=axes["join"],
            settings=params,
            axes=dict(channel_axis=axes["channel_axis"], spatial_dims=axes["spatial_dims"], spacing=axes["spacing"]),
            iterations=form.iterations.value,
            every=every,
            with_probs=bool(form.uncertainty.value),
            to_grey=axes["to_grey"],
            scribbles=scribbles,
            segmenter=self._kept["segmenter"] if refine else None,
            wait_for_gui=self.wait_for_display,
        )
        meta = dict(
            image=layer.name,
            channels=[lay.name for lay in axes["layers"]] if axes["join"] else None,
            scribbles=self._scribble_layer.name if scribbles is not None else None,
            to_grey=axes["to_grey"],
            iterations_requested=req.iterations,
            every=every,
            plugin_version=__version__,
        )
        run = _Run(
            image=layer,
            ctrl=RunControl(),
            key=form.structural_key(layer),
            meta=meta,
            out_shape=axes["out_shape"],
            scale=axes["scale"],
            translate=axes["translate"],
            with_probs=req.with_probs,
            refine=refine,
            params=params,
        )
        worker = thread_worker(run_segmentation, ignore_errors=True, start_thread=False)(req, run.ctrl)
        run.worker = worker
        worker.yielded.connect(lambda item, run=run: self._on_yielded(run, item))
        worker.errored.connect(lambda exc, run=run: self._on_errored(run, exc))
        worker.finished.connect(lambda run=run: self._on_finished(run))
        # set in the worker's own thread as it finishes (a stopped generator is never resumed, so its
        # ``finally`` may not run): a closing widget waits for this
        worker.finished.connect(run.ctrl.ended.set, Qt.ConnectionType.DirectConnection)
        self._handle.run = run
        if refine:
            it = getattr(self._kept["segmenter"], "iteration", None)
            if it is not None:
                self.plot.mark(it)
        # (a new run replaces the kept result and its loss curve with its first update, so one
        # that fails at the start leaves the last result refinable)
        self._refine_hint = False
        self.progress.setRange(0, max(1, req.iterations))
        self.progress.setValue(0)
        self.progress.setFormat("%v / %m iterations")
        text = ("refining " if refine else "starting ") + repr(layer.name)
        if axes["join"]:
            text += f" with {len(axes['layers']) - 1} more channel layer(s)"
        if not refine and params.contrast == "fluorescence" and params.diameter is None:
            text += " (fluorescence contrast: estimating the object size)"
        self.status.setText(text + "…")
        self._update_buttons()
        worker.start()
        self.run_started.emit(refine)
        return worker

    # ------------------------------------------------------------------ worker signals
    def _on_yielded(self, run: _Run, item) -> None:
        try:
            if run.cancelled or run is not self._handle.run or not self._alive():
                return
            if isinstance(item, Update):
                t0, c0 = time.perf_counter(), time.thread_time()
                self._apply_update(run, item)
                self.timings.append(time.perf_counter() - t0)
                self.cpu_timings.append(time.thread_time() - c0)
                self.snapshot_applied.emit(item.iteration)
            elif isinstance(item, Final):
                run.final = item
                self._apply_final(run, item)
        finally:
            run.ctrl.gui_ready()

    def _apply_update(self, run: _Run, up: Update) -> None:
        if run.n_updates == 0 and not run.refine:  # the new run's result takes over
            self.plot.clear()
            self._kept = None
        meta = {**up.settings, **run.meta, "loss": up.loss, "iterations_run": up.done_in_run, "running": True}
        out = self.outputs.show_snapshot(run.image, up, meta, run.with_probs, run.scale, run.translate)
        if run.n_updates == 0:
            self.outputs.colour_classes(out, {**run.params.to_json(), **up.settings}, self.form.transparent.value)
        run.n_updates += 1
        self.n_updates += 1
        self._set_progress(up.done_in_run, up.total_in_run)
        self.status.setText(f"{run.image.name!r}: iteration {up.iteration} · loss {up.loss:.5g} · {up.elapsed:.1f} s")
        self.plot.add_points(up.losses)

    def _set_progress(self, value: int, maximum: int) -> None:
        # QProgressBar.setValue repaints synchronously, which makes Qt recompose
        # the whole window (OpenGL canvas included) inside this handler; with
        # updates off it only schedules an ordinary asynchronous update.
        bar = self.progress
        bar.setUpdatesEnabled(False)
        try:
            bar.setMaximum(max(1, int(maximum)))
            bar.setValue(min(int(value), int(maximum)))
        finally:
            bar.setUpdatesEnabled(True)
        bar.update()

    def _apply_final(self, run: _Run, fin: Final) -> None:
        out = self.outputs.get("output", run.image)
        seg = run.ctrl.segmenter
        if self.outputs.in_viewer(out):
            meta = dict(out.metadata.get(META_KEY, {}))
            meta.update(fin.settings)
            meta.update(run.meta, running=False, stopped=fin.stopped)
            out.metadata[META_KEY] = meta
            if fin.state is not None:
                out.metadata[STATE_KEY] = fin.state
        if seg is not None and not run.cancelled:
            self._kept = dict(image=run.image, segmenter=seg, key=run.key, output=out)
            if run.image is self.image_layer:
                self.instance_controls.set_estimate(getattr(seg, "diameter", None))
        verb = "stopped" if fin.stopped else "done"
        loss = out.metadata.get(META_KEY, {}).get("loss", float("nan")) if out is not None else float("nan")
        self.status.setText(f"{verb} {run.image.name!r}: iteration {fin.iteration} · loss {loss:.5g} · "
                            f"{fin.elapsed:.1f} s")

    def _on_errored(self, run: _Run, exc: BaseException) -> None:
        run.failed = True
        if run.cancelled:
            return  # the image went away or the viewer is closing: nothing to report
        msg = widget_message(exc)
        if not isinstance(exc, InputError):
            log.debug("napari-levelset run failed", exc_info=exc)
        if self._kept is not None and self._kept["segmenter"] is run.ctrl.segmenter:
            self._kept = None
        if self._alive():
            self.status.setText(f"error: {msg}")
        self._error(msg)

    def _on_finished(self, run: _Run) -> None:
        if self._handle.run is run:
            self._handle.run = None
        if not self._alive():
            return
        if run.cancelled:
            self.status.setText(run.end_message)
        self._update_buttons()
        self.run_finished.emit()
        if run.restart and not run.cancelled and not run.failed and self._layer_in_viewer(run.image):
            if self.image_layer is run.image:
                self._start(refine=False)
            else:  # another image was picked meanwhile: the restart is not moved to it
                self.status.setText(f"stopped {run.image.name!r} for the new settings: press Run to go on")

    # ------------------------------------------------------------------ changes during a run
    def _on_lam_changed(self, value: float) -> None:
        run = self._handle.run
        if run is not None and not run.cancelled:
            self._live_change(run, lambda: run.ctrl.set_lam(value), "lam", value)

    def _on_lr_changed(self, value: float) -> None:
        run = self._handle.run
        if run is not None and not run.cancelled:
            self._live_change(run, lambda: run.ctrl.set_lr(value), "lr", value)

    def _live_change(self, run: _Run, apply, name: str, value: float) -> None:
        try:
            apply()
        except InputError as exc:
            self._error(str(exc))
            return
        seg = run.ctrl.segmenter
        it = getattr(seg, "iteration", None)
        if it is not None:
            if not self.plot.marks or self.plot.marks[-1] != it:
                self.plot.mark(it)
            changes = run.meta.setdefault("live_changes", [])
            if changes and changes[-1]["iteration"] == int(it):
                changes[-1][name] = float(value)  # a slider drag: keep the last value per iteration
            else:
                changes.append({"iteration": int(it), name: float(value)})

    def _on_structural_changed(self, *_args) -> None:
        run = self._handle.run
        if run is not None and not run.cancelled:
            run.restart = True
            self.status.setText("settings changed: restarting…")
            self._restart_timer.start()  # debounce a burst of clicks
        self._update_buttons()

    def _restart_now(self) -> None:
        run = self._handle.run
        if run is not None and run.restart:
            run.ctrl.stop()  # _on_finished starts the new run
