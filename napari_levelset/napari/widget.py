"""The "Level-set segmentation" dock widget.

Importing this module does not import torch: the engine is imported in the
worker thread when a run starts (see ``_worker.py``).

The widget puts together its parts: the settings form (``_form.py``, magicgui
widgets), the result layers (``_outputs.py``), runs (``_runs.py``: Run, Refine,
Stop, restarts, live changes), the steps after a run (``_instances.py``: Regions,
Instances), the channel-layer pickers and the ambiguous-axes note
(``_channels.py``) and the loss plot (``_plot.py``).  Here: the viewer's layers
and their events, the scribble layer, the buttons and the status line.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import PushButton
from napari.layers import Image, Labels
from napari.utils import notifications
from qtpy.QtCore import QEvent, QTimer, Signal
from qtpy.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QSizePolicy, QVBoxLayout, QWidget

from napari_levelset.napari._layers import auto_contrast, channel_candidates, real
from napari_levelset.errors import InputError
from napari_levelset.napari._form import WIDGET_DEFAULTS, SettingsForm
from napari_levelset.napari._instances import InstanceControls, StepsMixin
from napari_levelset.napari._outputs import META_KEY, STATE_KEY, OutputLayers
from napari_levelset.napari._plot import LossPlot
from napari_levelset.napari._runs import RunsMixin, _Handle
from napari_levelset.napari._worker import preload

if TYPE_CHECKING:  # pragma: no cover
    import napari

__all__ = ["LevelSetWidget", "META_KEY", "STATE_KEY", "WIDGET_DEFAULTS"]


def _notify_error(message: str) -> None:
    notifications.show_error(message)


def _notify_info(message: str) -> None:
    notifications.show_info(message)


def _qt_alive(obj) -> bool:
    """False once the C++ side of a Qt object is gone (binding-agnostic)."""
    try:
        obj.objectName()
    except RuntimeError:
        return False
    return True


def _button(text: str, tooltip: str = "", enabled: bool = True) -> PushButton:
    return PushButton(text=text, tooltip=tooltip or None, enabled=enabled)


class LevelSetWidget(RunsMixin, StepsMixin, QWidget):
    """Unsupervised / scribble-guided segmentation with the multiphase level-set loss.

    Signals (main thread): ``run_started(bool refine)``, ``snapshot_applied(int
    iteration)`` after each snapshot reached the output layer, and
    ``run_finished()`` when a run ended (done, stopped, failed or cancelled).

    ``form`` holds the settings as magicgui widgets; the Qt widgets behind them keep
    their names here (``n_spin``, ``image_combo``, ``run_btn``, …).
    """

    run_started = Signal(bool)
    snapshot_applied = Signal(int)
    run_finished = Signal()

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self._handle = _Handle()
        self._kept: dict | None = None  # {"image", "segmenter", "key", "output"} for refine
        self.outputs = OutputLayers(self._layers, napari_viewer, self._refresh_layer_choices)
        self._regions_worker = None  # the Regions or Instances step in progress (one at a time)
        self._scribble_layer: Labels | None = None
        self._refine_hint = False
        self._docked = False
        self._torn_down = False
        #: main-thread seconds per applied snapshot: wall clock, and CPU time of the main thread
        self.timings: list[float] = []
        self.cpu_timings: list[float] = []
        #: total snapshots applied to an output layer
        self.n_updates = 0
        #: the last error message shown to the user
        self.last_error: str | None = None
        #: when True the worker pauses after each snapshot until it is displayed, so
        #: none is skipped (tests, screen recordings); by default a slow display only
        #: ever gets the newest snapshot and the optimisation never waits for it
        self.wait_for_display = False

        self._build_ui()
        self._connect_viewer()
        self._refresh_layer_choices()
        self.destroyed.connect(self._handle.teardown)
        preload()  # torch and friends, off the main thread, before the first Run

    # ------------------------------------------------------------------ UI
    def _build_ui(self) -> None:
        self.form = form = SettingsForm()
        outer = QVBoxLayout(self)
        outer.addWidget(form.main)
        self.advanced = form.advanced
        outer.addWidget(form.advanced)
        self.channels, self.axes_box = form.channels, form.axes_box
        self.axes_note, self.axes_switch_btn = self.axes_box.label, self.axes_box.switch_btn
        self.lam, self.lr = form.lam, form.lr
        # the Qt widgets of the settings, by their names from before the form was magicgui's
        for name, widget in (("image_combo", form.image), ("scribble_combo", form.scribbles),
                             ("new_scribbles_btn", form.new_scribbles), ("model_combo", form.model),
                             ("n_spin", form.n_classes), ("iter_spin", form.iterations),
                             ("uncertainty_check", form.uncertainty), ("width_spin", form.width),
                             ("depth_spin", form.depth), ("alpha_spin", form.alpha),
                             ("position_spin", form.position), ("every_spin", form.every),
                             ("seed_spin", form.seed), ("device_combo", form.device),
                             ("volume_combo", form.volumes), ("channel_combo", form.channel_mode),
                             ("contrast_combo", form.contrast_choice), ("transparent_combo", form.transparent),
                             ("merge_spin", form.merge)):
            setattr(self, name, widget.native)

        # -- run controls
        self.run_button = _button("Run", "Segment from scratch with the settings above")
        self.stop_button = _button("Stop", enabled=False)
        self.refine_button = _button("Refine", "Continue the last run from where it ended, with the current "
                                               "scribbles and λ", enabled=False)
        self.regions_button = _button(
            "Regions", "One label per object: split the result into connected regions, then merge neighbours for "
            "as long as that lowers the level-set energy (on colour and texture, boundaries weighted by edge "
            "strength). Uses the output layer as it is now, your edits included, and writes the layer "
            "'<image> regions'", enabled=False)
        self.run_btn, self.stop_btn = self.run_button.native, self.stop_button.native
        self.refine_btn, self.regions_btn = self.refine_button.native, self.regions_button.native
        buttons = QHBoxLayout()
        for btn in (self.run_btn, self.stop_btn, self.refine_btn):
            buttons.addWidget(btn)
        outer.addLayout(buttons)
        after = QLabel("After a run — one label per object:")
        after.setToolTip("Regions and Instances read the finished result (the output layer, your edits "
                         "included) and write a layer of their own; they are enabled once a run has a result")
        outer.addWidget(after)
        regions_row = QHBoxLayout()
        regions_row.addWidget(self.merge_spin, 1)
        regions_row.addWidget(self.regions_btn)
        outer.addLayout(regions_row)
        self.instance_controls = InstanceControls()
        self.instance_controls.set_classes(WIDGET_DEFAULTS["n_classes"])
        self.diameter_spin = self.instance_controls.diameter_spin
        self.foreground_combo = self.instance_controls.foreground_combo
        self.instances_btn = self.instance_controls.instances_btn
        outer.addWidget(self.instance_controls)

        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("no run yet")  # "%v / %m iterations" once a run starts
        outer.addWidget(self.progress)
        self.status = QLabel("ready")
        self.status.setWordWrap(True)
        self.status.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        # room for two wrapped lines even when the dock is short of height (errors run that long)
        self.status.setMinimumHeight(2 * self.status.fontMetrics().lineSpacing() + 4)
        outer.addWidget(self.status)
        self.plot = LossPlot()
        outer.addWidget(self.plot)
        outer.addStretch(1)

        # -- signals
        form.image.changed.connect(self._on_image_changed)
        form.scribbles.changed.connect(self._on_scribble_layer_changed)
        form.new_scribbles.changed.connect(self.add_scribble_layer)
        self.channels.changed.connect(self._on_channels_changed)
        self.axes_box.switch_requested.connect(form.set_first_is_channels)
        form.n_classes.changed.connect(self.instance_controls.set_classes)
        form.lam.value_changed.connect(self._on_lam_changed)
        form.lr.value_changed.connect(self._on_lr_changed)
        form.structural_changed.connect(self._on_structural_changed)
        for w in (form.volumes, form.channel_mode):
            w.changed.connect(form.show_axes_note)
        form.transparent.changed.connect(self.outputs.recolour)
        self.run_button.changed.connect(self.run)
        self.stop_button.changed.connect(self.stop)
        self.refine_button.changed.connect(self.refine)
        self.regions_button.changed.connect(self.make_regions)
        self.instance_controls.instances_button.changed.connect(self.make_instances)
        self._restart_timer = QTimer(self)
        self._restart_timer.setSingleShot(True)
        self._restart_timer.setInterval(300)
        self._restart_timer.timeout.connect(self._restart_now)
        self._scribble_timer = QTimer(self)
        self._scribble_timer.setSingleShot(True)
        self._scribble_timer.setInterval(100)
        self._scribble_timer.timeout.connect(self._push_scribbles)

    def event(self, ev) -> bool:  # noqa: D102 (Qt override)
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
        self._restart_timer.stop()
        self._scribble_timer.stop()
        self._handle.teardown()
        self._scribble_layer = None
        self._torn_down = True

    def _alive(self) -> bool:
        return _qt_alive(self)

    def _error(self, msg: str) -> None:
        self.last_error = msg
        _notify_error(f"Level-set segmentation: {msg}")

    # ------------------------------------------------------------------ settings
    def parameters(self) -> dict:
        """The current settings as keyword arguments for ``Segmenter`` (no axes)."""
        return self.form.parameters()

    def contrast(self, layer: Image | None = None) -> str:
        """The contrast a run on ``layer`` (default: the picked image) uses: 'linear' or 'fluorescence'."""
        return self.form.contrast(layer)

    def set_model(self, model: str) -> None:
        """Pick the model programmatically: ``cnn``, ``unet`` or a model file path."""
        self.form.set_model(model)

    # ------------------------------------------------------------------ layers
    def _connect(self, emitter, callback) -> None:
        emitter.connect(callback)
        self._handle.connections.append((emitter, callback))

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

    def _layer_in_viewer(self, layer) -> bool:
        return self.outputs.in_viewer(layer)

    def output_layer(self, image: Image | None = None) -> Labels | None:
        """The output Labels layer this widget made for ``image`` (default: the picked one)."""
        return self.outputs.get("output", real(image) if image is not None else self.image_layer)

    def uncertainty_layer(self, image: Image | None = None) -> Image | None:
        return self.outputs.get("uncertainty", real(image) if image is not None else self.image_layer)

    def _on_layer_inserted(self, event) -> None:
        if not self._alive():
            return
        self._connect(real(event.value).events.name, self._on_layer_renamed)
        self._refresh_layer_choices()

    def _on_layers_moved(self, event=None) -> None:
        if self._alive():
            self._refresh_layer_choices()

    def _on_layer_renamed(self, event=None) -> None:
        if self._alive():
            self._refresh_layer_choices()

    def _on_layer_removed(self, event) -> None:
        layer = real(event.value)
        conns = self._handle.connections
        for emitter, cb in list(conns):
            if getattr(emitter, "source", None) is layer:
                try:
                    emitter.disconnect(cb)
                except Exception:
                    pass
                conns.remove((emitter, cb))
        run = self._handle.run
        if run is not None and run.image is layer and not run.cancelled:
            run.end_message = f"the image {layer.name!r} was removed: run stopped"
            self._handle.cancel()
            if self._alive():
                self.status.setText(run.end_message)
        if (run is not None and not run.cancelled and self.outputs.get("output", run.image) is layer
                and run.n_updates > 0):
            run.end_message = f"the output layer {layer.name!r} was deleted: run stopped"
            self._handle.cancel()
            if self._alive():
                self.status.setText(run.end_message)
        if self._kept is not None and self._kept["image"] is layer:
            self._kept = None
        self.outputs.forget(layer)
        if layer is self._scribble_layer:
            self._set_scribble_layer(None)
            if run is not None and not run.cancelled:
                run.ctrl.set_scribbles(None)
        if self._alive():
            self._refresh_layer_choices()

    def _refresh_layer_choices(self) -> None:
        owned = self.outputs.owned()
        layers = self._layers()
        images = [lay for lay in layers if isinstance(lay, Image) and not any(lay is o for o in owned)]
        labels = [lay for lay in layers if isinstance(lay, Labels) and not any(lay is o for o in owned)]
        self.form.set_layers(images, labels, real(self.viewer.layers.selection.active), self._scribble_layer)
        self._on_image_changed()

    def _on_image_changed(self, *_args) -> None:
        """The picked image (or the viewer's layers) changed: channel pickers, axes note, units, contrast."""
        first = self.image_layer
        self.channels.refill(channel_candidates(first, self._layers(), self.outputs.owned()))
        self.form.show_axes_note()
        try:
            axes = self.form.axes(first) if first is not None else None
        except InputError:
            axes = None
        self.instance_controls.set_unit(axes["unit"] if axes else "px")
        kept = self._kept
        if kept is not None and kept["image"] is first:
            self.instance_controls.set_estimate(getattr(kept["segmenter"], "diameter", None))
        contrast, why = auto_contrast(first)
        self.contrast_combo.setItemText(0, f"auto ({contrast}: {why})" if first is not None else "auto")
        self.form.show_relevant_rows(first)
        self._update_buttons()

    def _on_channels_changed(self) -> None:
        run = self._handle.run
        if run is not None and run.image is self.image_layer:
            self._on_structural_changed()
        self._update_buttons()

    def channel_layers(self) -> list:
        """The layers segmented together: the picked image first, then the further channel layers."""
        first = self.image_layer
        return [] if first is None else [first, *self.channels.layers()]

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
        return self._scribble_layer

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
        if layer is self._scribble_layer:
            return
        self._set_scribble_layer(layer)
        self._scribbles_changed()

    def _set_scribble_layer(self, layer: Labels | None) -> None:
        old = self._scribble_layer
        if old is not None:
            for emitter in (old.events.paint, old.events.data):
                try:
                    emitter.disconnect(self._on_scribbles_painted)
                except Exception:
                    pass
            self._handle.connections = [
                (e, cb) for e, cb in self._handle.connections if getattr(e, "source", None) is not old
                or cb != self._on_scribbles_painted
            ]
        self._scribble_layer = layer
        if layer is not None:
            self._connect(layer.events.paint, self._on_scribbles_painted)
            self._connect(layer.events.data, self._on_scribbles_painted)

    def _on_scribbles_painted(self, event=None) -> None:
        if self._alive():  # (napari emits ``paint`` before it writes the stroke into the data)
            self._scribbles_changed(painted=True)

    def _scribbles_changed(self, painted: bool = False) -> None:
        run = self._handle.run
        if run is not None and not run.cancelled:
            self._scribble_timer.start()  # coalesce a burst of strokes into one update
        elif self._kept is not None:
            layer = self._scribble_layer
            painted = painted or (layer is not None and bool(np.any(np.asarray(layer.data))))
            output = self._kept.get("output")
            had = (output.metadata.get(META_KEY, {}).get("scribbles") if output is not None else None) is not None
            # a new, empty scribble layer after a run without strokes changes nothing
            self._refine_hint = painted or had
            self._update_buttons()

    def _push_scribbles(self) -> None:
        run = self._handle.run
        if run is None or run.cancelled or not self._alive():
            return
        try:
            s = self._current_scribbles(run.out_shape)
            run.ctrl.set_scribbles(s)
            run.meta["scribbles"] = self._scribble_layer.name if self._scribble_layer is not None else None
        except InputError as exc:
            # the run goes on without scribbles rather than with those of a layer no longer chosen
            run.ctrl.set_scribbles(None)
            run.meta["scribbles"] = None
            self._error(str(exc))

    def _current_scribbles(self, out_shape: tuple) -> np.ndarray | None:
        layer = self._scribble_layer
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

    def add_scribble_layer(self, *_args) -> Labels | None:
        """Add an empty scribble layer matching the picked image and select the paint brush."""
        layer = self.image_layer
        try:
            if layer is None:
                raise InputError("there is no Image layer to scribble on")
            axes = self.form.axes(layer)
        except InputError as exc:
            self._error(str(exc))
            return None
        shape = axes["out_shape"]
        dtype = np.uint8 if self.form.n_classes.value <= 255 else np.uint16
        scrib = real(self.viewer.add_labels(
            np.zeros(shape, dtype=dtype),
            name=f"{layer.name} scribbles",
            scale=axes["scale"],
            translate=axes["translate"],
        ))
        scrib.brush_size = max(2, int(round(min(shape[-2:]) / 60)))
        scrib.selected_label = 1
        scrib.mode = "paint"
        self.viewer.layers.selection.active = scrib
        self._refresh_layer_choices()
        self.scribble_layer = scrib
        return scrib

    # ------------------------------------------------------------------ buttons
    def _update_buttons(self, *_args) -> None:
        running = self._handle.run is not None
        has_image = self.image_layer is not None
        self.run_btn.setEnabled(not running and has_image)
        self.stop_btn.setEnabled(running)
        self.new_scribbles_btn.setEnabled(has_image)
        can = not running and self.can_refine()
        self.refine_btn.setEnabled(can)
        can_split = not running and self._regions_worker is None and self._regions_source() is not None
        self.regions_btn.setEnabled(can_split)
        self.instances_btn.setEnabled(can_split)
        hint = can and self._refine_hint
        self.refine_btn.setText("Refine ✎" if hint else "Refine")
        font = self.refine_btn.font()
        font.setBold(hint)
        self.refine_btn.setFont(font)
        if hint:
            self.status.setText("scribbles changed: press Refine to continue from the last result")
