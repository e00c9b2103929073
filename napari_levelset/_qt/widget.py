"""The "Level-set segmentation" dock widget.

Importing this module does not import torch: the engine is imported in the
worker thread when a run starts (see ``_worker.py``).

Threading model
---------------
The ``Segmenter`` lives in a napari generator thread worker.  The main thread
only copies each snapshot's labels (and uncertainty) into a layer and updates
the progress bar, the loss plot and the layer metadata.  Live changes (lambda,
learning rate, scribbles) go through a ``RunControl`` and take effect at the
next iteration; changing a structural setting (N, model, width, ...) while a
run is going stops it and starts a new one.

The instance controls and the contrast rule live in ``_instances.py``, the
channel-layer pickers and the ambiguous-axes note in ``_channels.py``.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Image, Labels
from napari.qt.threading import thread_worker
from napari.utils import notifications
from qtpy.QtCore import QEvent, Qt, QTimer, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)
from superqt import QCollapsible

from .. import __version__
from ..defaults import DEFAULTS, MERGE_WEIGHT, model_kind
from ..io import InputError
from ._channels import AxesNote, ChannelPickers, channel_candidates
from ._instances import CONTRAST_CHOICES, InstanceControls, auto_contrast, instances_from_labels, spatial_geometry
from ._plot import LossPlot
from ._worker import Final, RunControl, RunRequest, Update, error_message, preload, run_segmentation

if TYPE_CHECKING:  # pragma: no cover
    import napari

__all__ = ["LevelSetWidget", "META_KEY", "STATE_KEY", "WIDGET_DEFAULTS"]

log = logging.getLogger(__name__)

#: Metadata keys on the output layer: settings (JSON-able) and the network state.
from .._writer import META_KEY  # noqa: E402 (where a result keeps its settings)

STATE_KEY = "napari_levelset_state"

#: The engine's defaults, except the update interval: 0 is the widget's "auto"
#: (about 0.3 s between snapshots).
WIDGET_DEFAULTS: dict[str, Any] = {**DEFAULTS, "every": 0}

MODELS = [("per-image CNN", "cnn"), ("pretrained U-Net", "unet"), ("U-Net from file…", "file")]
DEVICES = ["auto", "cpu", "cuda", "mps"]
VOLUME_MODES = [("3D", 3), ("2D per slice", 2)]
#: which class of the output is drawn transparent, as napari draws label 0 (the data keep their ids)
TRANSPARENT_CLASS = [
    ("auto (the darkest for fluorescence or volumes)", "auto"),
    ("none", "none"),
    ("the darkest (label 1)", "darkest"),
    ("the brightest (label N)", "brightest"),
]
CHANNEL_MODES = [
    ("auto (RGB → CIELAB colour)", "auto"),
    ("RGB channels as they are", "rgb"),
    ("RGB → grey", "grey"),
    ("first axis is channels", "first"),
]

N_RANGE = (2, 64)
LAM_RANGE = (0.0, 10.0)
LAM_LOG_RANGE = (-4.0, 1.0)  # slider: 1e-4 .. 10
LR_RANGE = (1e-5, 1.0)
ITER_RANGE = (1, 100_000)
WIDTH_RANGE = (4, 256)
DEPTH_RANGE = (1, 8)
ALPHA_RANGE = (0.0, 100.0)
POSITION_RANGE = (-0.05, 10.0)  #: the minimum shows "auto"
POSITION_AUTO = POSITION_RANGE[0]
MERGE_RANGE = (0.0, 1000.0)
EVERY_RANGE = (0, 10_000)
SEED_RANGE = (0, 2**31 - 1)

_NO_SCRIBBLES = "none"


def _notify_error(message: str) -> None:
    notifications.show_error(message)


def _notify_info(message: str) -> None:
    notifications.show_info(message)


def _real(obj):
    """The object behind napari's ``PublicOnlyProxy`` (plugin widgets get a proxied viewer).

    Every access through the proxy makes a new wrapper, so layers are unwrapped
    once to compare them by identity and to key dicts on them.
    """
    return getattr(obj, "__wrapped__", obj)


def _qt_alive(obj) -> bool:
    """False once the C++ side of a Qt object is gone (binding-agnostic)."""
    try:
        obj.objectName()
    except RuntimeError:
        return False
    return True


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
    params: dict = field(default_factory=dict)  # the settings the run was started with
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


class LogSpin(QWidget):
    """A number with a log-scale slider next to a spin box (both stay in sync)."""

    def __init__(self, value: float, vmin: float, vmax: float, log_range: tuple[float, float], decimals: int = 5):
        super().__init__()
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, 1000)
        self.spin = QDoubleSpinBox()
        self.spin.setDecimals(decimals)
        self.spin.setRange(vmin, vmax)
        self.spin.setStepType(QDoubleSpinBox.StepType.AdaptiveDecimalStepType)
        self.spin.setKeyboardTracking(False)
        self.spin.setMinimumWidth(80)
        self._log_range = log_range
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.slider, 1)
        lay.addWidget(self.spin)
        self.valueChanged = self.spin.valueChanged
        self.spin.valueChanged.connect(self._spin_to_slider)
        self.slider.valueChanged.connect(self._slider_to_spin)
        self.setValue(value)

    def value(self) -> float:
        return float(self.spin.value())

    def setValue(self, v: float) -> None:  # noqa: N802 (Qt naming)
        self.spin.setValue(float(v))
        self._spin_to_slider(self.spin.value())

    def setToolTip(self, text: str) -> None:  # noqa: N802
        self.slider.setToolTip(text)
        self.spin.setToolTip(text)

    def _spin_to_slider(self, v: float) -> None:
        lo, hi = self._log_range
        pos = 0 if v <= 0 else (math.log10(v) - lo) / (hi - lo) * 1000
        self.slider.blockSignals(True)
        self.slider.setValue(int(round(min(max(pos, 0), 1000))))
        self.slider.blockSignals(False)

    def _slider_to_spin(self, pos: int) -> None:
        lo, hi = self._log_range
        v = 10 ** (lo + (hi - lo) * pos / 1000)
        digits = max(0, 2 - int(math.floor(math.log10(v))))  # 3 significant digits
        self.spin.setValue(round(v, digits))



def _choices(choices, tooltip: str) -> QComboBox:
    """A combo box listing the texts of ``(text, value)`` pairs, with ``tooltip``."""
    combo = QComboBox()
    for text, _ in choices:
        combo.addItem(text)
    combo.setToolTip(tooltip)
    return combo

class LevelSetWidget(QWidget):
    """Unsupervised / scribble-guided segmentation with the multiphase level-set loss.

    Signals (main thread): ``run_started(bool refine)``, ``snapshot_applied(int
    iteration)`` after each snapshot reached the output layer, and
    ``run_finished()`` when a run ended (done, stopped, failed or cancelled).
    """

    run_started = Signal(bool)
    snapshot_applied = Signal(int)
    run_finished = Signal()

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self._handle = _Handle()
        self._kept: dict | None = None  # {"image", "segmenter", "key", "output"} for refine
        self._outputs: dict[int, Labels] = {}  # id(image layer) -> output labels layer
        self._uncertainty: dict[int, Image] = {}  # id(image layer) -> uncertainty layer
        self._regions: dict[int, Labels] = {}  # id(image layer) -> regions labels layer
        self._instances: dict[int, Labels] = {}  # id(image layer) -> instances labels layer
        self._regions_worker = None  # the Regions or Instances step in progress (one at a time)
        self._scribble_layer: Labels | None = None
        self._model_path: str | None = None
        self._last_model_index = 0
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
        D = WIDGET_DEFAULTS
        outer = QVBoxLayout(self)
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)

        self.image_combo = QComboBox()
        self.image_combo.setToolTip("The image to segment (napari Image layers)")
        self.channels = ChannelPickers()
        row = QHBoxLayout()
        row.addWidget(self.image_combo, 1)
        row.addWidget(self.channels.add_btn)
        form.addRow("Image", row)
        form.addRow("", self.channels)
        self.axes_box = AxesNote()  # shown when a small first axis may be slices or channels
        self.axes_note, self.axes_switch_btn = self.axes_box.label, self.axes_box.switch_btn
        form.addRow(self.axes_box)

        self.scribble_combo = QComboBox()
        self.scribble_combo.setToolTip(
            "Optional scribbles: a Labels layer of the image's shape; label k marks class k (0 = unlabelled)"
        )
        self.new_scribbles_btn = QPushButton("New")
        self.new_scribbles_btn.setToolTip("Add an empty scribble layer for the image and pick the paint brush")
        row = QHBoxLayout()
        row.addWidget(self.scribble_combo, 1)
        row.addWidget(self.new_scribbles_btn)
        form.addRow("Scribbles", row)

        self.model_combo = QComboBox()
        for text, _ in MODELS:
            self.model_combo.addItem(text)
        self.model_combo.setToolTip("Network: a small CNN optimised on this image, or a pretrained U-Net")
        form.addRow("Model", self.model_combo)

        self.n_spin = QSpinBox()
        self.n_spin.setRange(*N_RANGE)
        self.n_spin.setValue(D["n_classes"])
        self.n_spin.setToolTip("Number of classes N (changing it during a run restarts the run)")
        form.addRow("Classes N", self.n_spin)

        self.lam = LogSpin(D["lam"], *LAM_RANGE, LAM_LOG_RANGE)
        self.lam.setToolTip("λ: weight of the boundary-length term; larger = smoother, fewer regions (live)")
        form.addRow("λ (smoothness)", self.lam)

        self.iter_spin = QSpinBox()
        self.iter_spin.setRange(*ITER_RANGE)
        self.iter_spin.setValue(D["iterations"])
        self.iter_spin.setToolTip("Iterations per run (and per refine)")
        form.addRow("Iterations", self.iter_spin)

        self.uncertainty_check = QCheckBox("show uncertainty layer")
        self.uncertainty_check.setToolTip(
            "Also output an Image layer of uncertainty: 0 = certain, 1 = all classes equally likely"
        )
        form.addRow("", self.uncertainty_check)
        outer.addLayout(form)

        # -- advanced
        self.advanced = QCollapsible("Advanced")
        adv = QWidget()
        aform = QFormLayout(adv)
        self._advanced_form = aform
        aform.setContentsMargins(0, 0, 0, 0)
        self.lr = LogSpin(D["lr"], *LR_RANGE, (-5.0, 0.0))
        self.lr.setToolTip("Adam learning rate (live)")
        aform.addRow("Learning rate", self.lr)
        self.width_spin = QSpinBox()
        self.width_spin.setRange(*WIDTH_RANGE)
        self.width_spin.setValue(D["width"])
        self.width_spin.setToolTip("Feature channels of the per-image CNN")
        aform.addRow("Network width", self.width_spin)
        self.depth_spin = QSpinBox()
        self.depth_spin.setRange(*DEPTH_RANGE)
        self.depth_spin.setValue(D["depth"])
        self.depth_spin.setToolTip("Number of 3×3 conv blocks of the per-image CNN")
        aform.addRow("Network depth", self.depth_spin)
        self.alpha_spin = QDoubleSpinBox()
        self.alpha_spin.setRange(*ALPHA_RANGE)
        self.alpha_spin.setDecimals(3)
        self.alpha_spin.setStepType(QDoubleSpinBox.StepType.AdaptiveDecimalStepType)
        self.alpha_spin.setValue(D["alpha"])
        self.alpha_spin.setToolTip("α: weight of the scribble term (used where scribbles exist; next run/refine)")
        aform.addRow("Scribble weight α", self.alpha_spin)
        self.position_spin = QDoubleSpinBox()
        self.position_spin.setRange(*POSITION_RANGE)
        self.position_spin.setDecimals(2)
        self.position_spin.setSingleStep(0.05)
        self.position_spin.setSpecialValueText("auto")
        self.position_spin.setValue(POSITION_AUTO)
        self.position_spin.setToolTip(
            "Weight of pixel position beside colour (per-image CNN): 0 groups pixels by colour alone; "
            "larger values give more compact regions and split same-coloured objects far apart. "
            f"auto: {D['position']} for an RGB image compared in CIELAB, else 0"
        )
        aform.addRow("Position weight", self.position_spin)
        self.every_spin = QSpinBox()
        self.every_spin.setRange(*EVERY_RANGE)
        self.every_spin.setSpecialValueText("auto")
        self.every_spin.setValue(D["every"])
        self.every_spin.setToolTip("Iterations between display updates (auto: about every 0.3 s)")
        aform.addRow("Update interval", self.every_spin)
        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(*SEED_RANGE)
        self.seed_spin.setValue(0)
        self.seed_spin.setToolTip("Random seed of the network's initialisation (CPU runs are reproducible)")
        aform.addRow("Seed", self.seed_spin)
        self.device_combo = QComboBox()
        self.device_combo.addItems(DEVICES)
        self.device_combo.setToolTip("auto: CUDA, then MPS, else the CPU")
        aform.addRow("Device", self.device_combo)
        self.volume_combo = _choices(VOLUME_MODES,
                                     "Volumes: segment in 3D, or slice by slice with one shared 2D network")
        aform.addRow("Volumes", self.volume_combo)
        self.channel_combo = _choices(
            CHANNEL_MODES,
            "auto: an RGB layer is segmented on its CIELAB colours (perceptual differences); "
            "'RGB channels' normalises each channel on its own; "
            "'RGB → grey' averages them; "
            "'first axis is channels' for multichannel (C, ...) layers",
        )
        aform.addRow("Channels", self.channel_combo)
        self.contrast_combo = _choices(
            CONTRAST_CHOICES,
            "linear: the image as it is (photographs, 8-bit pictures). fluorescence: a slowly varying background "
            "(an opening wider than the objects) is removed and the rest log-compressed in units of the noise, "
            "so dim and bright objects differ little. auto: fluorescence for a grey or multichannel layer stored "
            "as integers of more than 8 bits (microscope cameras' 12/16-bit), else linear. Restarts a run",
        )
        aform.addRow("Contrast", self.contrast_combo)
        self.transparent_combo = _choices(
            TRANSPARENT_CLASS,
            "The output class drawn transparent, as napari draws background (0): in 3D a coloured "
            "background class is a solid block that hides everything. Labels keep their ids (label k is "
            "still class k, so strokes and exports are unchanged); only the colours change",
        )
        aform.addRow("Transparent class", self.transparent_combo)
        self.transparent_combo.currentIndexChanged.connect(self._on_transparent_changed)
        self.advanced.addWidget(adv)
        outer.addWidget(self.advanced)

        # -- run controls
        buttons = QHBoxLayout()
        self.run_btn = QPushButton("Run")
        self.run_btn.setToolTip("Segment from scratch with the settings above")
        self.stop_btn = QPushButton("Stop")
        self.stop_btn.setEnabled(False)
        self.refine_btn = QPushButton("Refine")
        self.refine_btn.setEnabled(False)
        self.refine_btn.setToolTip("Continue the last run from where it ended, with the current scribbles and λ")
        buttons.addWidget(self.run_btn)
        buttons.addWidget(self.stop_btn)
        buttons.addWidget(self.refine_btn)
        outer.addLayout(buttons)
        regions_row = QHBoxLayout()
        self.merge_spin = QDoubleSpinBox()
        self.merge_spin.setRange(*MERGE_RANGE)
        self.merge_spin.setDecimals(3)
        self.merge_spin.setSingleStep(0.1)
        self.merge_spin.setValue(D["merge"])
        self.merge_spin.setPrefix("merge weight ")
        self.merge_spin.setToolTip(
            "Merge weight of the Regions button: larger merges more, into fewer regions (0: connected regions only)"
        )
        self.regions_btn = QPushButton("Regions")
        self.regions_btn.setEnabled(False)
        self.regions_btn.setToolTip(
            "One label per object: split the result into connected regions, then merge neighbours for as long "
            "as that lowers the level-set energy (on colour and texture, boundaries weighted by edge strength). "
            "Uses the output layer as it is now, your edits included, and writes the layer '<image> regions'"
        )
        regions_row.addWidget(self.merge_spin, 1)
        regions_row.addWidget(self.regions_btn)
        after = QLabel("After a run — one label per object:")
        after.setToolTip("Regions and Instances read the finished result (the output layer, your edits "
                         "included) and write a layer of their own; they are enabled once a run has a result")
        outer.addWidget(after)
        outer.addLayout(regions_row)
        self.instance_controls = InstanceControls()
        self.instance_controls.set_classes(D["n_classes"])
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
        self.image_combo.currentIndexChanged.connect(self._on_image_changed)
        self.channels.changed.connect(self._on_channels_changed)
        self.axes_box.switch_requested.connect(self._set_first_is_channels)
        self.instances_btn.clicked.connect(self.make_instances)
        self.n_spin.valueChanged.connect(self.instance_controls.set_classes)
        self.scribble_combo.currentIndexChanged.connect(self._on_scribble_layer_changed)
        self.new_scribbles_btn.clicked.connect(self.add_scribble_layer)
        self.run_btn.clicked.connect(self.run)
        self.stop_btn.clicked.connect(self.stop)
        self.refine_btn.clicked.connect(self.refine)
        self.regions_btn.clicked.connect(self.make_regions)
        self.lam.valueChanged.connect(self._on_lam_changed)
        self.lr.valueChanged.connect(self._on_lr_changed)
        self.model_combo.currentIndexChanged.connect(self._on_model_changed)
        for w in (self.n_spin, self.width_spin, self.depth_spin, self.seed_spin, self.position_spin):
            w.valueChanged.connect(self._on_structural_changed)
        for w in (self.device_combo, self.volume_combo, self.channel_combo, self.contrast_combo):
            w.currentIndexChanged.connect(self._on_structural_changed)
        for w in (self.volume_combo, self.channel_combo):
            w.currentIndexChanged.connect(self._show_axes_note)
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
        self._adopt_results()

    def _adopt_results(self) -> None:
        """Take over the result layers a closed widget left (``<image> level-set``, ``regions``,
        ``instances``, ``level-set uncertainty``, each with this plugin's metadata), so that a
        reopened widget updates them instead of adding ``… [1]`` beside them."""
        layers = self._layers()
        by_name = {lay.name: lay for lay in layers}
        stores = ((self._outputs, "level-set", Labels), (self._regions, "regions", Labels),
                  (self._instances, "instances", Labels), (self._uncertainty, "level-set uncertainty", Image))
        for image in layers:
            if not isinstance(image, Image) or META_KEY in image.metadata:
                continue
            for store, suffix, kind in stores:
                layer = by_name.get(f"{image.name} {suffix}")
                if (isinstance(layer, kind) and META_KEY in layer.metadata
                        and layer.metadata[META_KEY].get("image") == image.name and id(image) not in store):
                    store[id(image)] = layer
    def _layers(self) -> list:
        """The viewer's layers (unwrapped), bottom to top."""
        return [_real(lay) for lay in self.viewer.layers]

    def _alive(self) -> bool:
        return _qt_alive(self)

    def _on_layer_inserted(self, event) -> None:
        if not self._alive():
            return
        self._connect(_real(event.value).events.name, self._on_layer_renamed)
        self._refresh_layer_choices()

    def _on_layers_moved(self, event=None) -> None:
        if self._alive():
            self._refresh_layer_choices()

    def _on_layer_renamed(self, event=None) -> None:
        if self._alive():
            self._refresh_layer_choices()

    def _on_layer_removed(self, event) -> None:
        layer = _real(event.value)
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
        if (run is not None and not run.cancelled and self._outputs.get(id(run.image)) is layer
                and run.n_updates > 0):
            run.end_message = f"the output layer {layer.name!r} was deleted: run stopped"
            self._handle.cancel()
            if self._alive():
                self.status.setText(run.end_message)
        if self._kept is not None and self._kept["image"] is layer:
            self._kept = None
        self._outputs.pop(id(layer), None)
        self._uncertainty.pop(id(layer), None)
        self._regions.pop(id(layer), None)
        self._instances.pop(id(layer), None)
        for d in (self._outputs, self._uncertainty, self._regions, self._instances):
            for k, v in list(d.items()):
                if v is layer:
                    del d[k]
        if layer is self._scribble_layer:
            self._set_scribble_layer(None)
            if run is not None and not run.cancelled:
                run.ctrl.set_scribbles(None)
        if self._alive():
            self._refresh_layer_choices()

    def _owned_layers(self) -> list:
        return [*self._outputs.values(), *self._uncertainty.values(), *self._regions.values(),
                *self._instances.values()]

    def _refresh_layer_choices(self) -> None:
        owned = self._owned_layers()
        layers = self._layers()
        images = [lay for lay in layers if isinstance(lay, Image) and not any(lay is o for o in owned)]
        labels = [lay for lay in layers if isinstance(lay, Labels) and not any(lay is o for o in owned)]
        cur_img = self.image_combo.currentData()
        if not any(cur_img is i for i in images):
            active = _real(self.viewer.layers.selection.active)
            cur_img = active if any(active is i for i in images) else (images[-1] if images else None)
        self._fill(self.image_combo, [(lay.name, lay) for lay in images], cur_img)
        self._fill(
            self.scribble_combo,
            [(_NO_SCRIBBLES, None)] + [(lay.name, lay) for lay in labels],
            self._scribble_layer if any(self._scribble_layer is lab for lab in labels) else None,
        )
        self._on_image_changed()

    def _on_image_changed(self, *_args) -> None:
        """The picked image (or the viewer's layers) changed: channel pickers, axes note, units, contrast."""
        first = self.image_layer
        self.channels.refill(channel_candidates(first, self._layers(), self._owned_layers()))
        self._show_axes_note()
        try:
            axes = self._axes(first) if first is not None else None
        except InputError:
            axes = None
        self.instance_controls.set_unit(axes["unit"] if axes else "px")
        kept = self._kept
        if kept is not None and kept["image"] is first:
            self.instance_controls.set_estimate(getattr(kept["segmenter"], "diameter", None))
        contrast, why = auto_contrast(first)
        self.contrast_combo.setItemText(0, f"auto ({contrast}: {why})" if first is not None else "auto")
        self._show_relevant_rows(first)
        self._update_buttons()

    def _show_relevant_rows(self, layer) -> None:
        """Volumes only for layers with a third axis, Channels only for RGB or multichannel-capable
        layers: a 2D grey image shows neither."""
        ndim = None if layer is None else layer.ndim  # napari's ndim: without the RGB(A) axis
        volume = ndim is None or ndim >= 3
        channels = ndim is None or ndim >= 3 or bool(layer.rgb)
        form = self._advanced_form
        for widget, visible in ((self.volume_combo, volume), (self.channel_combo, channels)):
            if hasattr(form, "setRowVisible"):  # Qt >= 6.4
                form.setRowVisible(widget, visible)
            else:
                widget.setVisible(visible)
                label = form.labelForField(widget)
                if label is not None:
                    label.setVisible(visible)

    def _on_channels_changed(self) -> None:
        run = self._handle.run
        if run is not None and run.image is self.image_layer:
            self._on_structural_changed()
        self._update_buttons()

    def channel_layers(self) -> list:
        """The layers segmented together: the picked image first, then the further channel layers."""
        first = self.image_layer
        return [] if first is None else [first, *self.channels.layers()]

    def _show_axes_note(self, *_args) -> None:
        first = CHANNEL_MODES[self.channel_combo.currentIndex()][1] == "first"
        volume = "in 3D" if VOLUME_MODES[self.volume_combo.currentIndex()][1] == 3 else "as 2D slices"
        self.axes_box.show_for(self.image_layer, first, volume)

    def _set_first_is_channels(self, first: bool) -> None:
        self.channel_combo.setCurrentIndex([v for _, v in CHANNEL_MODES].index("first" if first else "auto"))

    @staticmethod
    def _fill(combo: QComboBox, items: list, current) -> None:
        combo.blockSignals(True)
        try:
            combo.clear()
            index = 0
            for i, (text, data) in enumerate(items):
                combo.addItem(text, data)
                if data is current and current is not None:
                    index = i
            if items:
                combo.setCurrentIndex(index)
        finally:
            combo.blockSignals(False)

    @property
    def image_layer(self) -> Image | None:
        """The Image layer currently picked."""
        return self.image_combo.currentData()

    @image_layer.setter
    def image_layer(self, layer: Image) -> None:
        layer = _real(layer)
        for i in range(self.image_combo.count()):
            if self.image_combo.itemData(i) is layer:
                self.image_combo.setCurrentIndex(i)
                return
        raise ValueError(f"{layer!r} is not an Image layer of this viewer")

    @property
    def scribble_layer(self) -> Labels | None:
        return self._scribble_layer

    @scribble_layer.setter
    def scribble_layer(self, layer: Labels | None) -> None:
        layer = _real(layer)
        for i in range(self.scribble_combo.count()):
            if self.scribble_combo.itemData(i) is layer:
                self.scribble_combo.setCurrentIndex(i)
                self._on_scribble_layer_changed()
                return
        raise ValueError(f"{layer!r} is not a Labels layer of this viewer")

    def _on_scribble_layer_changed(self, *_args) -> None:
        layer = self.scribble_combo.currentData()
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

    # ------------------------------------------------------------------ settings
    def _model_value(self) -> str:
        value = MODELS[self.model_combo.currentIndex()][1]
        if value == "file":
            return self._model_path or ""
        return value

    def _axes(self, layer: Image) -> dict:
        """How to read ``layer`` (with the further channel layers when it is the picked image): channel
        axis, spatial dims, output shape, geometry (``scale``, ``translate``, ``spacing``, ``unit``), and
        ``join``: None for one layer, else how the layers' arrays make one image ("stack" or "concatenate")."""
        if not isinstance(layer, Image):
            raise InputError("pick an Image layer to segment")
        if layer.multiscale:
            raise InputError(
                f"{layer.name!r} is a multiscale (pyramid) image, which is not supported: "
                "open one resolution level as a plain image"
            )
        shape = tuple(layer.data.shape)
        mode = CHANNEL_MODES[self.channel_combo.currentIndex()][1]
        scale, translate = tuple(layer.scale), tuple(layer.translate)
        to_grey = False
        color = None
        if layer.rgb:
            out_shape = shape[:-1]
            channel_axis = None  # guessed, napari's rule: RGBA's alpha is dropped (an explicit axis would keep it)
            to_grey = mode == "grey"
            color = "rgb" if mode == "rgb" else None  # None: the default, CIELAB for RGB
        elif mode == "first":
            if len(shape) < 3:
                raise InputError(f"'first axis is channels' needs at least 3 axes; {layer.name!r} has shape {shape}")
            channel_axis, out_shape = 0, shape[1:]
            scale, translate = scale[1:], translate[1:]
        else:
            channel_axis, out_shape = None, shape
        if len(out_shape) < 2:
            raise InputError(f"{layer.name!r} has shape {shape}: need at least 2 spatial axes")
        join = None
        extra = self.channels.layers() if layer is self.image_layer else []
        if extra:
            if layer.rgb:
                raise InputError(f"{layer.name!r} is RGB: further channel layers go with grey layers only")
            for other in extra:
                if tuple(other.data.shape) != shape:
                    raise InputError(f"the channel layer {other.name!r} has shape {tuple(other.data.shape)}, "
                                     f"but {layer.name!r} has {shape}")
            join = "concatenate" if channel_axis == 0 else "stack"
            channel_axis = 0
        spatial_dims = 2 if len(out_shape) == 2 else VOLUME_MODES[self.volume_combo.currentIndex()][1]
        spacing, unit = spatial_geometry(layer, spatial_dims, scale)
        return dict(
            channel_axis=channel_axis,
            spatial_dims=spatial_dims,
            out_shape=tuple(out_shape),
            scale=scale,
            translate=translate,
            to_grey=to_grey,
            color=color,
            join=join,
            layers=[layer, *extra],
            spacing=spacing,
            unit=unit,
        )

    def contrast(self, layer: Image | None = None) -> str:
        """The contrast a run on ``layer`` (default: the picked image) uses: 'linear' or 'fluorescence'."""
        value = CONTRAST_CHOICES[self.contrast_combo.currentIndex()][1]
        return auto_contrast(layer if layer is not None else self.image_layer)[0] if value == "auto" else value

    def _structural_key(self, layer) -> tuple:
        return (
            id(layer),
            self.n_spin.value(),
            self._model_value(),
            self.width_spin.value(),
            self.depth_spin.value(),
            self.seed_spin.value(),
            self.device_combo.currentText(),
            self.volume_combo.currentIndex(),
            self.channel_combo.currentIndex(),
            self.position_spin.value(),
            self.contrast(layer),
            tuple(id(c) for c in self.channels.layers()) if layer is self.image_layer else (),
        )

    def _position_value(self) -> float | None:
        """The position weight for ``Segmenter``: None (auto) at the spin box's minimum."""
        if self._model_value() != "cnn":
            return 0.0
        value = self.position_spin.value()
        return None if value <= POSITION_AUTO else value

    def parameters(self) -> dict:
        """The current settings as keyword arguments for ``Segmenter`` (no axes)."""
        return dict(
            n_classes=self.n_spin.value(),
            lam=self.lam.value(),
            lr=self.lr.value(),
            width=self.width_spin.value(),
            depth=self.depth_spin.value(),
            alpha=self.alpha_spin.value(),
            position=self._position_value(),
            device=self.device_combo.currentText(),
            seed=self.seed_spin.value(),
            model=self._model_value(),
            init="auto",  # a U-Net run is a fine-tune: its head starts from the image's k-means
            contrast=self.contrast(),
        )

    # ------------------------------------------------------------------ running
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

    def output_layer(self, image: Image | None = None) -> Labels | None:
        """The output Labels layer this widget made for ``image`` (default: the picked one)."""
        image = _real(image) if image is not None else self.image_layer
        return self._outputs.get(id(image)) if image is not None else None

    def uncertainty_layer(self, image: Image | None = None) -> Image | None:
        image = _real(image) if image is not None else self.image_layer
        return self._uncertainty.get(id(image)) if image is not None else None

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
            and kept["key"] == self._structural_key(layer)
            and any(layer is lay for lay in self._layers())
        )

    def _start(self, refine: bool) -> Any:
        if self._handle.run is not None:
            return None
        layer = self.image_layer
        try:
            if layer is None:
                raise InputError("there is no Image layer to segment: open an image first")
            if refine and not self.can_refine():
                raise InputError("nothing to refine with these settings: press Run first")
            if self._model_value() == "":
                raise InputError("choose a U-Net model file first")
            axes = self._axes(layer)
            scribbles = self._current_scribbles(axes["out_shape"])
        except InputError as exc:
            self._error(str(exc))
            return None

        params = self.parameters()
        params.update(channel_axis=axes["channel_axis"], spatial_dims=axes["spatial_dims"],
                      contrast=self.contrast(layer), spacing=axes["spacing"])
        if params["contrast"] == "fluorescence":  # the background window follows the object size
            params["diameter"] = self.instance_controls.diameter()
        if axes["color"] is not None:
            params["color"] = axes["color"]
        every = self.every_spin.value()
        req = RunRequest(
            image=[lay.data for lay in axes["layers"]] if axes["join"] else layer.data,
            join=axes["join"],
            params=params,
            iterations=self.iter_spin.value(),
            every=every,
            with_probs=self.uncertainty_check.isChecked(),
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
            key=self._structural_key(layer),
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
        if not refine and params["contrast"] == "fluorescence" and params.get("diameter") is None:
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

    def _layer_in_viewer(self, layer) -> bool:
        return layer is not None and any(layer is lay for lay in self._layers())

    def _add_on_top(self, layer) -> None:
        """Add ``layer`` at the top of the layer list (where napari puts new layers, so no other layer
        hides it) without changing the user's selection."""
        sel = self.viewer.layers.selection
        active, selected = _real(sel.active), {_real(x) for x in sel}
        self.viewer.layers.append(layer)
        if selected:
            sel.clear()
            sel.update(selected)
            if active is not None:
                sel.active = active
        self._refresh_layer_choices()

    def _apply_update(self, run: _Run, up: Update) -> None:
        if run.n_updates == 0 and not run.refine:  # the new run's result takes over
            self.plot.clear()
            self._kept = None
        image_id = id(run.image)
        meta = {**up.settings, **run.meta, "loss": up.loss, "iterations_run": up.done_in_run, "running": True}
        if run.with_probs and up.uncertainty is not None:
            unc = self._uncertainty.get(image_id)
            if self._layer_in_viewer(unc) and unc.data.shape == up.uncertainty.shape:
                np.copyto(unc.data, up.uncertainty)
                unc.refresh(extent=False, highlight=False)
            else:
                unc = Image(
                    up.uncertainty.copy(),
                    name=f"{run.image.name} level-set uncertainty",
                    colormap="magma",
                    contrast_limits=(0.0, 1.0),
                    blending="additive",
                    scale=run.scale,
                    translate=run.translate,
                    metadata={META_KEY: dict(meta, kind="uncertainty")},
                )
                self._uncertainty[image_id] = unc
                self._add_on_top(unc)
        out = self._outputs.get(image_id)
        if self._layer_in_viewer(out):
            if out.data.shape == up.labels.shape and out.data.dtype == up.labels.dtype:
                np.copyto(out.data, up.labels)
                out.refresh(extent=False, highlight=False)
            else:
                out.data = up.labels.copy()
        else:
            out = Labels(
                up.labels.copy(),
                name=f"{run.image.name} level-set",
                scale=run.scale,
                translate=run.translate,
                opacity=0.5,
            )
            self._outputs[image_id] = out
            self._add_on_top(out)
        out.metadata[META_KEY] = meta
        if run.n_updates == 0:
            self._colour_classes(out, {**run.params, **up.settings})
        run.n_updates += 1
        self.n_updates += 1
        self._set_progress(up.done_in_run, up.total_in_run)
        self.status.setText(f"{run.image.name!r}: iteration {up.iteration} · loss {up.loss:.5g} · {up.elapsed:.1f} s")
        self.plot.add_points(up.losses)

    def _transparent_label(self, settings: dict, ndim: int) -> int | None:
        """The output label drawn transparent (see ``TRANSPARENT_CLASS``) for a result of ``ndim`` axes
        made with ``settings`` (n_classes, contrast, spatial_dims), or None."""
        choice = TRANSPARENT_CLASS[self.transparent_combo.currentIndex()][1]
        if choice == "auto":
            volume = ndim >= 3 and settings.get("spatial_dims", 3) == 3
            choice = "darkest" if volume or settings.get("contrast") == "fluorescence" else "none"
        if choice == "darkest":
            return 1
        if choice == "brightest":
            return int(settings.get("n_classes") or 0) or None
        return None

    def _colour_classes(self, out: Labels, settings: dict) -> None:
        """Napari's colours for the output's labels, with one class transparent (or none)."""
        from napari.utils.colormaps import CyclicLabelColormap, DirectLabelColormap

        clear = self._transparent_label(settings, out.data.ndim)
        base = getattr(out, "_levelset_colormap", None)
        if base is None:
            base = out._levelset_colormap = out.colormap
        if clear is None or not isinstance(base, CyclicLabelColormap):
            out.colormap = base
            return
        n = max(int(settings.get("n_classes") or 0), clear)
        colours = {k: tuple(base.map(np.array([k]))[0]) for k in range(1, n + 1)}
        for k in (clear, 0, None):
            colours[k] = (0.0, 0.0, 0.0, 0.0)
        out.colormap = DirectLabelColormap(color_dict=colours)

    def _on_transparent_changed(self, *_args) -> None:
        for out in self._outputs.values():
            if self._layer_in_viewer(out):
                self._colour_classes(out, out.metadata.get(META_KEY, {}))

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
        out = self._outputs.get(id(run.image))
        seg = run.ctrl.segmenter
        if self._layer_in_viewer(out):
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
        msg = error_message(exc)
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

    def _error(self, msg: str) -> None:
        self.last_error = msg
        _notify_error(f"Level-set segmentation: {msg}")

    # ------------------------------------------------------------------ live parameters
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

    def _on_model_changed(self, index: int) -> None:
        if MODELS[index][1] == "file":
            path, _ = QFileDialog.getOpenFileName(self, "U-Net model file", "",
                                                  "Model files (*.pt *.pth *.ckpt);;All files (*)")
            if not path:
                self.model_combo.blockSignals(True)
                self.model_combo.setCurrentIndex(self._last_model_index)
                self.model_combo.blockSignals(False)
                return
            self._model_path = path
            self.model_combo.setToolTip(f"U-Net from {path}")
        self._follow_merge_default(self._last_model_index, index)
        self._last_model_index = index
        self._on_structural_changed()

    def _follow_merge_default(self, old_index: int, new_index: int) -> None:
        """The merge weight follows the model's default (a U-Net's pieces want more merging), unless set by hand."""
        old, new = (MERGE_WEIGHT[model_kind(MODELS[i][1])] for i in (old_index, new_index))
        if abs(self.merge_spin.value() - old) < 1e-9:
            self.merge_spin.setValue(new)

    def set_model(self, model: str) -> None:
        """Pick the model programmatically: ``cnn``, ``unet`` or a model file path."""
        values = [v for _, v in MODELS]
        if model in values and model != "file":
            self.model_combo.setCurrentIndex(values.index(model))
            return
        self._model_path = str(model)
        self.model_combo.blockSignals(True)
        self.model_combo.setCurrentIndex(values.index("file"))
        self.model_combo.blockSignals(False)
        self._follow_merge_default(self._last_model_index, values.index("file"))
        self._last_model_index = values.index("file")
        self._on_structural_changed()

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

    # ------------------------------------------------------------------ regions
    def regions_layer(self, image: Image | None = None) -> Labels | None:
        """The regions layer this widget made for ``image`` (default: the picked one)."""
        image = _real(image) if image is not None else self.image_layer
        return self._regions.get(id(image)) if image is not None else None

    def _regions_source(self):
        """(image layer, output layer, segmenter) when the picked image has a finished result, else None."""
        kept, layer = self._kept, self.image_layer
        if kept is None or layer is None or kept["image"] is not layer:
            return None
        out = self._outputs.get(id(layer))
        if not self._layer_in_viewer(out) or not self._layer_in_viewer(layer):
            return None
        return layer, out, kept["segmenter"]

    def _step_source(self):
        """For a step after a run (Regions, Instances): (image, output layer, segmenter, the output's labels
        as the user sees them, edits included), or None (busy, or no finished result: said on the status line)."""
        if self._handle.run is not None or self._regions_worker is not None:
            return None
        source = self._regions_source()
        if source is None:
            self._error("no finished result for this image: press Run first")
            return None
        image, out, seg = source
        return image, out, seg, np.asarray(out.data).copy()

    def make_regions(self, *_args) -> Any:
        """Turn the picked image's result into one label per object (see the Regions button); returns the worker."""
        source = self._step_source()
        if source is None:
            return None
        image, out, seg, labels = source
        merge = float(self.merge_spin.value())

        def compute():
            return seg.regions(labels, "merged", merge=merge)

        def done(result):
            self._show_regions(image, out, result, merge)

        return self._start_step(compute, image, done, "making regions…")

    def instances_layer(self, image: Image | None = None) -> Labels | None:
        """The instances layer this widget made for ``image`` (default: the picked one)."""
        image = _real(image) if image is not None else self.image_layer
        return self._instances.get(id(image)) if image is not None else None

    def make_instances(self, *_args) -> Any:
        """One label per object of the picked image's result (see the Instances button); returns the worker."""
        source = self._step_source()
        if source is None:
            return None
        image, out, seg, labels = source
        diameter, foreground = self.instance_controls.diameter(), self.instance_controls.foreground()
        unit = self.instance_controls.unit

        def compute():
            return instances_from_labels(seg, labels, diameter, foreground)

        def done(result):
            used = diameter if diameter is not None else getattr(seg, "diameter", None)
            self._show_instances(image, out, result, dict(diameter=used, diameter_unit=unit,
                                                          foreground=foreground, spacing=seg.spacing))

        return self._start_step(compute, image, done, "finding objects…")

    def _start_step(self, compute, image: Image, done, busy: str) -> Any:
        """Run ``compute`` (Regions, Instances) in a thread worker; ``done(result)`` on the main thread."""
        worker = thread_worker(compute, start_thread=False, ignore_errors=True)()
        self._regions_worker = worker

        def returned(result):
            if self._alive() and self._layer_in_viewer(image):
                done(result)

        def failed(exc):
            if self._alive():
                self.status.setText(f"error: {error_message(exc)}")
            self._error(error_message(exc))

        def finished():
            self._regions_worker = None
            if self._alive():
                self._update_buttons()

        worker.returned.connect(returned)
        worker.errored.connect(failed)
        worker.finished.connect(finished)
        self.status.setText(busy)
        self._update_buttons()
        worker.start()
        return worker

    def _step_layer(self, store: dict, image: Image, out: Labels, data: np.ndarray, suffix: str,
                    opacity: float) -> Labels:
        """The Labels layer ``<image> <suffix>`` that ``store`` keeps for ``image``, holding ``data``: the
        same layer while it is in the viewer, else a new one with ``out``'s scale and translate, put on
        top of the layer list."""
        layer = store.get(id(image))
        if self._layer_in_viewer(layer):
            layer.data = data
        else:
            layer = Labels(data, name=f"{image.name} {suffix}", scale=out.scale, translate=out.translate,
                           opacity=opacity)
            store[id(image)] = layer
            self._add_on_top(layer)
        return layer

    def _show_regions(self, image: Image, out: Labels, regions: np.ndarray, merge: float) -> None:
        meta = {**out.metadata.get(META_KEY, {}), "kind": "regions", "merge": merge,
                "n_regions": int(len(np.unique(regions)))}
        layer = self._step_layer(self._regions, image, out, regions, "regions", 0.5)
        layer.metadata[META_KEY] = meta
        self.status.setText(f"{meta['n_regions']} regions (merge weight {merge:.4g})")

    def _show_instances(self, image: Image, out: Labels, instances: np.ndarray, settings: dict) -> None:
        n = int(instances.max()) if instances.size else 0
        meta = {**out.metadata.get(META_KEY, {}), **settings, "kind": "instances", "n_objects": n}
        layer = self._step_layer(self._instances, image, out, instances, "instances", 0.7)
        layer.metadata[META_KEY] = meta
        d = settings.get("diameter")
        size = f" · diameter {d:.3g} {settings['diameter_unit']}" if d else ""
        self.status.setText(f"{n} objects{size}")

    def add_scribble_layer(self, *_args) -> Labels | None:
        """Add an empty scribble layer matching the picked image and select the paint brush."""
        layer = self.image_layer
        try:
            if layer is None:
                raise InputError("there is no Image layer to scribble on")
            axes = self._axes(layer)
        except InputError as exc:
            self._error(str(exc))
            return None
        shape = axes["out_shape"]
        dtype = np.uint8 if self.n_spin.value() <= 255 else np.uint16
        scrib = _real(self.viewer.add_labels(
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
