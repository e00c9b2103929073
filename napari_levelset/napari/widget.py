"""The "Level-set segmentation" dock widget.

Importing this module does not import torch: the Segmenter is imported in the
worker thread when a run starts (see ``_worker.py``).

The widget's state is a ``Session`` (``_session.py``: no Qt).  Its views: the
settings form (``_form.py``, magicgui widgets, with the channel-layer pickers and
the ambiguous-axes note of ``_channels.py``), Run / Stop / Refine and the progress
and status line (``_runs.py``), the steps after a run (``_instances.py``: Regions,
Instances) and the loss plot (``_plot.py``).  ``Runs`` (``_runs.py``) and ``Steps``
(``_instances.py``) start the workers; ``OutputLayers`` (``_outputs.py``) keeps the
result layers.  Here: putting these together, the viewer's layers and their
events, and the scribble layer.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image, Labels
from napari.utils import notifications
from qtpy.QtCore import QEvent, Signal
from qtpy.QtWidgets import QVBoxLayout, QWidget

from napari_levelset.errors import InputError
from napari_levelset.napari._form import WIDGET_DEFAULTS, SettingsForm
from napari_levelset.napari._instances import Steps, StepsPanel
from napari_levelset.napari._layers import channel_candidates, real
from napari_levelset.napari._outputs import META_KEY, STATE_KEY, OutputLayers
from napari_levelset.napari._plot import LossPlot
from napari_levelset.napari._qt import qt_alive
from napari_levelset.napari._runs import RunButtons, Runs, RunStatus
from napari_levelset.napari._session import KEEP, Session
from napari_levelset.napari._worker import preload

if TYPE_CHECKING:  # pragma: no cover
    import napari

__all__ = ["META_KEY", "STATE_KEY", "WIDGET_DEFAULTS", "LevelSetWidget"]


def _notify_error(message: str) -> None:
    notifications.show_error(message)


class LevelSetWidget(QWidget):
    """Unsupervised / scribble-guided segmentation with the multiphase level-set loss.

    Signals (main thread): ``run_started(bool refine)``, ``snapshot_applied(int
    iteration)`` after each snapshot reached the output layer, and
    ``run_finished()`` when a run ended (done, stopped, failed or cancelled).

    Parts: ``session`` (the state), ``form`` (the settings and layer pickers),
    ``run_buttons`` (Run, Stop, Refine), ``steps_panel`` (Regions; ``steps_panel.instances``:
    diameter, foreground, Instances), ``run_status`` (progress bar, status line), ``plot``
    (the loss curve) and ``outputs`` (the result layers).
    """

    run_started = Signal(bool)
    snapshot_applied = Signal(int)
    run_finished = Signal()

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.session = session = Session()
        self.outputs = OutputLayers(self._layers, napari_viewer, self._refresh_layer_choices)
        self._docked = False
        self._torn_down = False
        self._build_ui()
        instances = self.steps_panel.instances
        self.runs = Runs(session, self.form, self.outputs, instances, self._alive, self)
        self.steps = Steps(session, self.form, self.outputs, instances, self._alive)
        self._connect_ui()
        self._connect_viewer()
        self._refresh_layer_choices()
        self._sync_settings()
        self.destroyed.connect(session.teardown)
        preload()  # torch and friends, off the main thread, before the first Run

    # ------------------------------------------------------------------ UI
    def _build_ui(self) -> None:
        self.form = form = SettingsForm()
        outer = QVBoxLayout(self)
        outer.addWidget(form.main)
        outer.addWidget(form.advanced)
        self.run_buttons = RunButtons()
        outer.addWidget(self.run_buttons)
        self.steps_panel = StepsPanel(form.merge)
        self.steps_panel.instances.set_classes(WIDGET_DEFAULTS["n_classes"])
        outer.addWidget(self.steps_panel)
        self.run_status = RunStatus(self.session)
        outer.addWidget(self.run_status)
        self.plot = LossPlot(self.session.curve)
        outer.addWidget(self.plot)
        outer.addStretch(1)

    def _connect_ui(self) -> None:
        form, session, runs, instances = self.form, self.session, self.runs, self.steps_panel.instances
        form.image.changed.connect(self._on_image_changed)
        form.scribbles.changed.connect(self._on_scribble_layer_changed)
        form.new_scribbles.changed.connect(self.add_scribble_layer)
        form.channels.changed.connect(self._on_channels_changed)
        form.axes_box.switch_requested.connect(form.set_first_is_channels)
        form.n_classes.changed.connect(instances.set_classes)
        form.lam.value_changed.connect(lambda v: runs.live_changed("lam", v))
        form.lr.value_changed.connect(lambda v: runs.live_changed("lr", v))
        form.settings_changed.connect(self._sync_settings)
        form.structural_changed.connect(self._on_structural_changed)
        form.transparent.changed.connect(self.outputs.recolour)
        self.run_buttons.run_button.changed.connect(self.run)
        self.run_buttons.stop_button.changed.connect(self.stop)
        self.run_buttons.refine_button.changed.connect(self.refine)
        self.steps_panel.regions_button.changed.connect(self.make_regions)
        instances.instances_button.changed.connect(self.make_instances)
        session.changed.connect(self._update_buttons)
        session.errored.connect(self._show_error)
        session.run_started.connect(self._emit_run_started)
        session.snapshot_applied.connect(self._emit_snapshot_applied)
        session.run_finished.connect(self._emit_run_finished)

    # the session's signals, as the widget's Qt signals
    def _emit_run_started(self, refine: bool) -> None:
        if self._alive():
            self.run_started.emit(refine)

    def _emit_snapshot_applied(self, iteration: int) -> None:
        if self._alive():
            self.snapshot_applied.emit(iteration)

    def _emit_run_finished(self) -> None:
        if self._alive():
            self.run_finished.emit()

    def event(self, ev) -> bool:
        if ev.type() == QEvent.Type.ParentChange:
            if self.parent() is None and self._docked:
                # napari's close button takes the widget out of its dock (it is not
                # deleted): end the run and stop listening to the viewer
                self._docked = False
                self._teardown()
            elif self.parent() is not None:
                self._docked = True
                if self._torn_down:  # docked again
                    self._torn_down = False
                    self._connect_viewer()
                    self._refresh_layer_choices()
        return super().event(ev)

    def _teardown(self) -> None:
        self.runs.stop_timers()
        self.session.teardown()
        self._torn_down = True

    def _alive(self) -> bool:
        return qt_alive(self)

    def _show_error(self, message: str) -> None:
        _notify_error(f"Level-set segmentation: {message}")

    # ------------------------------------------------------------------ settings
    def _sync_settings(self, *_args) -> None:
        """The session's settings follow the form; the fields on their defaults show them (for the output,
        model, image and strokes, ``Settings.resolved``), and the instance rows show for instances only."""
        form = self.form
        resolved = form.resolved(strokes=self._has_strokes())
        form.show_defaults(resolved)
        self.steps_panel.instances.set_classes(form.n_classes.value)
        self.steps_panel.instances.setVisible(resolved.regions == "instances")
        if self.image_layer is not None:
            form.contrast_choice.native.setItemText(0, f"auto ({resolved.contrast})")
        else:
            form.contrast_choice.native.setItemText(0, "auto")
        self.session.settings = form.parameters()

    def _has_strokes(self) -> bool:
        layer = self.session.scribble_layer
        return layer is not None and not layer.multiscale and bool(np.any(np.asarray(layer.data)))

    def parameters(self):
        """The current settings (``napari_levelset.settings.Settings``) for ``Segmenter`` (no axes)."""
        return self.session.settings

    def contrast(self, layer: Image | None = None) -> str:
        """The contrast a run on ``layer`` (default: the picked image) uses: 'linear' or 'fluorescence'
        (``Settings.resolved``'s rule for the output asked for)."""
        return self.form.contrast(layer, self._has_strokes())

    def set_model(self, model: str) -> None:
        """Pick the model programmatically: ``cnn``, ``unet`` or a model file path."""
        self.form.set_model(model)

    # ------------------------------------------------------------------ runs and steps
    @property
    def is_running(self) -> bool:
        return self.session.run is not None

    @property
    def worker(self):
        """The running thread worker, or None."""
        run = self.session.run
        return run.worker if run is not None else None

    @property
    def segmenter(self):
        """The Segmenter of the running run, else the one kept for refine (or None)."""
        return self.session.segmenter

    def run(self, *_args) -> Any:
        """Start a run from scratch on the picked image; returns the worker (or None)."""
        return self.runs.start(refine=False)

    def refine(self, *_args) -> Any:
        """Continue the last run (same network and optimiser) with the current scribbles and λ."""
        return self.runs.start(refine=True)

    def stop(self, *_args) -> None:
        """Stop the running optimisation after its current iteration."""
        self.runs.stop()

    def can_refine(self) -> bool:
        """Whether Refine can continue a result on the picked image with the current settings."""
        return self.runs.can_refine()

    def make_regions(self, *_args) -> Any:
        """Turn the picked image's result into one label per object (the Regions button); returns the worker."""
        return self.steps.make_regions()

    def make_instances(self, *_args) -> Any:
        """One label per object of the picked image's result (the Instances button); returns the worker."""
        return self.steps.make_instances()

    # ------------------------------------------------------------------ layers
    def _connect(self, emitter, callback) -> None:
        emitter.connect(callback)
        self.session.connections.append((emitter, callback))

    def _connect_viewer(self) -> None:
        ev = self.viewer.layers.events
        self._connect(ev.inserted, self._on_layer_inserted)
        self._connect(ev.removed, self._on_layer_removed)
        self._connect(ev.moved, self._on_layers_moved)
        for layer in self._layers():
            self._connect(layer.events.name, self._on_layer_renamed)
        self.outputs.adopt()

    def _layers(self) -> list:
        """The viewer's layers (unwrapped), bottom to top."""
        return [real(lay) for lay in self.viewer.layers]

    def output_layer(self, image: Image | None = None) -> Labels | None:
        """The output Labels layer this widget made for ``image`` (default: the picked one)."""
        return self._result_layer("output", image)

    def uncertainty_layer(self, image: Image | None = None) -> Image | None:
        """The uncertainty layer this widget made for ``image`` (default: the picked one)."""
        return self._result_layer("uncertainty", image)

    def regions_layer(self, image: Image | None = None) -> Labels | None:
        """The regions layer this widget made for ``image`` (default: the picked one)."""
        return self._result_layer("regions", image)

    def instances_layer(self, image: Image | None = None) -> Labels | None:
        """The instances layer this widget made for ``image`` (default: the picked one)."""
        return self._result_layer("instances", image)

    def _result_layer(self, kind: str, image):
        return self.outputs.get(kind, real(image) if image is not None else self.image_layer)

    def _on_layer_inserted(self, event) -> None:
        if not self._alive():
            return
        layer = real(event.value)
        self._connect(layer.events.name, self._on_layer_renamed)
        # an image just opened is the one to segment (the widget's own layers are never offered)
        self._refresh_layer_choices(new=layer if isinstance(layer, Image) else None)

    def _on_layers_moved(self, event=None) -> None:
        if self._alive():
            self._refresh_layer_choices()

    def _on_layer_renamed(self, event=None) -> None:
        if self._alive():
            self._refresh_layer_choices()

    def _on_layer_removed(self, event) -> None:
        layer = real(event.value)
        session = self.session
        conns = session.connections
        for emitter, cb in list(conns):
            if getattr(emitter, "source", None) is layer:
                with contextlib.suppress(Exception):
                    emitter.disconnect(cb)
                conns.remove((emitter, cb))
        run = session.live_run()
        session.layer_removed(layer, self.outputs.get("output", run.image) if run is not None else None)
        self.outputs.forget(layer)
        if layer is session.scribble_layer:
            self._set_scribble_layer(None)
            session.set_scribbles(None, KEEP)
        if self._alive():
            self._refresh_layer_choices()

    def _refresh_layer_choices(self, *_args, new=None) -> None:
        owned = self.outputs.owned()
        layers = self._layers()
        images = [lay for lay in layers if isinstance(lay, Image) and not any(lay is o for o in owned)]
        labels = [lay for lay in layers if isinstance(lay, Labels) and not any(lay is o for o in owned)]
        self.form.set_layers(
            images, labels, real(self.viewer.layers.selection.active), self.session.scribble_layer, new=new
        )
        self._on_image_changed()

    def _on_image_changed(self, *_args) -> None:
        """The picked image (or the viewer's layers) changed: channel pickers, axes note, units, contrast."""
        form, session, instances = self.form, self.session, self.steps_panel.instances
        first = session.image = self.image_layer
        form.channels.refill(channel_candidates(first, self._layers(), self.outputs.owned()))
        form.show_axes_note()
        try:
            axes = form.axes(first) if first is not None else None
        except InputError:
            axes = None
        instances.set_unit(axes["unit"] if axes else "px")
        result = session.result
        if result is not None and result.image is first:
            instances.set_estimate(getattr(result.segmenter, "diameter", None))
        form.show_relevant_rows(first)
        self._sync_settings()
        self._update_buttons()

    def _on_channels_changed(self) -> None:
        run = self.session.run
        if run is not None and run.image is self.image_layer:
            self._on_structural_changed()
        self._update_buttons()

    def _on_structural_changed(self, *_args) -> None:
        self.runs.structural_changed()
        self._update_buttons()

    def channel_layers(self) -> list:
        """The layers segmented together: the picked image first, then the further channel layers."""
        first = self.image_layer
        return [] if first is None else [first, *self.form.channels.layers()]

    @property
    def image_layer(self) -> Image | None:
        """The Image layer currently picked."""
        return self.form.image_layer

    @image_layer.setter
    def image_layer(self, layer: Image) -> None:
        layer = real(layer)
        if not any(layer is c for c in self.form.image.choices):
            raise ValueError(f"{layer!r} is not an Image layer of this viewer")
        self.form.image.value = layer

    # ------------------------------------------------------------------ scribbles
    @property
    def scribble_layer(self) -> Labels | None:
        """The Labels layer of scribbles picked (or None)."""
        return self.session.scribble_layer

    @scribble_layer.setter
    def scribble_layer(self, layer: Labels | None) -> None:
        layer = real(layer)
        if not any(layer is c for c in self.form.scribbles.choices):
            raise ValueError(f"{layer!r} is not a Labels layer of this viewer")
        with self.form.scribbles.changed.blocked():
            self.form.scribbles.value = layer
        self._on_scribble_layer_changed()

    def _on_scribble_layer_changed(self, *_args) -> None:
        layer = self.form.scribble_choice
        if layer is self.session.scribble_layer:
            return
        self._set_scribble_layer(layer)
        self.runs.strokes_changed()
        self._sync_settings()

    def _set_scribble_layer(self, layer: Labels | None) -> None:
        session = self.session
        old = session.scribble_layer
        if old is not None:
            for emitter in (old.events.paint, old.events.data):
                with contextlib.suppress(Exception):
                    emitter.disconnect(self._on_scribbles_painted)
            session.connections = [
                (e, cb)
                for e, cb in session.connections
                if getattr(e, "source", None) is not old or cb != self._on_scribbles_painted
            ]
        session.scribble_layer = layer
        if layer is not None:
            self._connect(layer.events.paint, self._on_scribbles_painted)
            self._connect(layer.events.data, self._on_scribbles_painted)

    def _on_scribbles_painted(self, event=None) -> None:
        if self._alive():  # (napari emits ``paint`` before it writes the stroke into the data)
            self.runs.strokes_changed(painted=True)
            self._sync_settings()  # defaults with strokes (fewer iterations, a smaller copy)

    def add_scribble_layer(self, *_args) -> Labels | None:
        """Add an empty scribble layer matching the picked image and select the paint brush."""
        layer = self.image_layer
        try:
            if layer is None:
                raise InputError("there is no Image layer to scribble on")
            axes = self.form.axes(layer)
        except InputError as exc:
            self.session.error(str(exc))
            return None
        shape = axes["out_shape"]
        dtype = np.uint8 if self.form.n_classes.value <= 255 else np.uint16
        scrib = real(
            self.viewer.add_labels(
                np.zeros(shape, dtype=dtype),
                name=f"{layer.name} scribbles",
                scale=axes["scale"],
                translate=axes["translate"],
            )
        )
        scrib.brush_size = max(2, round(min(shape[-2:]) / 60))
        scrib.selected_label = 1
        scrib.mode = "paint"
        self.viewer.layers.selection.active = scrib
        self._refresh_layer_choices()
        self.scribble_layer = scrib
        return scrib

    # ------------------------------------------------------------------ buttons
    def _update_buttons(self, *_args) -> None:
        if not self._alive():
            return
        session = self.session
        running = session.run is not None
        has_image = self.image_layer is not None
        can = not running and self.runs.can_refine()
        hint = can and session.strokes_changed
        self.run_buttons.show_state(not running and has_image, running, can, hint)
        self.form.new_scribbles.enabled = has_image
        self.steps_panel.show_state(not running and session.step is None and self.steps.source() is not None)
        if hint:
            session.set_status("scribbles changed: press Refine to continue from the last result")
