"""The widget's form: its settings as magicgui widgets, and what a run reads from them.

``SettingsForm`` builds the pickers and numbers (magicgui ``ComboBox``, ``SpinBox``,
``FloatSpinBox``, ``LogSlider``, layer pickers from ``create_widget`` with napari's
``Image`` / ``Labels`` annotations) and lays their Qt widgets out in two forms: the
main one and *Advanced*.  The layer pickers list what the widget gives them (the
viewer's layers without this widget's results), not napari's own layer lists.

The *Output* picker says what a run makes (``Settings.regions``: classes, merged regions
or instances) before it starts.  The number of classes, λ and the iterations follow the
defaults for that output, the model and the image (``Settings.resolved``, as ``segment``
and the command line resolve them) until the user sets them: such a field shows its
default in italics and ``parameters()`` gives None for it; a value
the user typed stays (*Defaults* puts the fields back on their defaults).

``parameters()`` is what a run's plan gets (``napari_levelset.method.plan.plan_run``);
``structural_key()`` the settings whose change means a run must start again
(``structural_changed`` is emitted when one changes).  The device, the update interval, the transparent class and the
uncertainty layer are remembered between sessions (magicgui's ``persist``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from magicgui.widgets import (
    ComboBox,
    Container,
    FloatSpinBox,
    FunctionGui,
    LogSlider,
    PushButton,
    SpinBox,
    create_widget,
)
from napari.layers import Image, Labels
from psygnal import Signal
from qtpy.QtWidgets import QFileDialog, QFormLayout, QHBoxLayout, QWidget
from superqt import QCollapsible

from napari_levelset.napari._channels import AxesNote, ChannelPickers
from napari_levelset.napari._layers import layer_axes
from napari_levelset.settings import (
    MAX_OFFERED_CLASSES,
    MERGE_WEIGHT,
    POSITION,
    POSITION_MIN_CLASSES,
    SPEC,
    Settings,
    model_kind,
)

__all__ = [
    "AUTO_FIELDS",
    "CHANNEL_MODES",
    "CONTRAST_CHOICES",
    "DEVICES",
    "HIDDEN_SETTINGS",
    "MODELS",
    "NO_SCRIBBLES",
    "OUTPUTS",
    "SHOWN_SETTINGS",
    "TRANSPARENT_CLASS",
    "VOLUME_MODES",
    "WIDGET_DEFAULTS",
    "LogSpin",
    "SettingsForm",
    "spec_range",
    "spec_tip",
]

#: The form's starting values: ``Settings``' defaults for the per-image CNN, and the update interval 0, the
#: widget's "auto" (about 0.3 s between snapshots; ``Segmenter.run``'s own default is ``SNAPSHOT_EVERY``).
WIDGET_DEFAULTS: dict[str, Any] = {**Settings().resolved().to_json(), "every": 0}

#: what a run makes (``Settings.regions``)
OUTPUTS = [("classes", "classes"), ("regions (merged)", "merged"), ("instances (one label per object)", "instances")]
#: the settings whose control shows the resolved default until the user sets it
AUTO_FIELDS = ("n_classes", "lam", "iterations", "width")

MODELS = [("per-image CNN", "cnn"), ("pretrained U-Net", "unet"), ("U-Net from file…", "file")]
DEVICES = list(SPEC["device"].choices)
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
_CONTRAST_TEXT = {
    None: "auto",
    "linear": "linear (as it is)",
    "fluorescence": "fluorescence (background removed, log)",
    "transmitted": "transmitted (dark objects made bright)",
}
#: (text, value) of the contrast picker, one per ``SPEC["contrast"].choices``; "auto" (the setting's None) is
#: resolved per image by ``_layers.auto_contrast``
CONTRAST_CHOICES = [(_CONTRAST_TEXT[c], c or "auto") for c in SPEC["contrast"].choices]


def spec_range(name: str, decimals: int | None = None, hi: float | None = None) -> tuple:
    """``(min, max)`` of the control of setting ``name``, from ``SPEC``: an open end moves in by the
    smallest step the box shows (``10**-decimals``); ``hi`` where the control cannot reach the spec's
    top (a Qt spin box holds a 32-bit int; a number without a top still needs one)."""
    spec = SPEC[name]
    step = 10.0**-decimals if decimals is not None else 1
    lo = spec.lo + step if spec.lo_open else spec.lo
    top = spec.hi if hi is None else hi
    return lo, (top - step if spec.hi_open else top)


def spec_tip(name: str, note: str = "", hi: float | None = None) -> str:
    """The tooltip of setting ``name``: ``SPEC``'s help and range (``hi``: the top the control offers),
    then ``note`` (what the widget does with it)."""
    spec = SPEC[name]
    text = spec.help[:1].upper() + spec.help[1:]
    shown = spec.range_text(hi)
    if shown:
        text += f" ({shown}{', ' + spec.unit if spec.unit else ''})"
    return f"{text}; {note}" if note else text


# The controls' ranges: ``SPEC``'s, except where said.
N_RANGE = (SPEC["n_classes"].lo, MAX_OFFERED_CLASSES)  # the library takes more; the widget offers these
LAM_RANGE = spec_range("lam")
LAM_LOG_RANGE = (-4.0, 1.0)  # the slider shows 1e-4 .. 10 (the box takes all of LAM_RANGE)
LR_DECIMALS = 5
LR_RANGE = spec_range("lr", LR_DECIMALS)
LR_LOG_RANGE = (-5.0, 0.0)  # the slider shows 1e-5 .. 1 (the box takes all of LR_RANGE)
ITER_RANGE = (0, SPEC["iterations"].hi)  # 0: a pretrained U-Net used directly
WIDTH_RANGE = spec_range("width")
DEPTH_RANGE = spec_range("depth")
ALPHA_RANGE = spec_range("alpha")
POSITION_AUTO = -0.05  #: the position box's minimum, below the setting's range, shows "auto" (None)
POSITION_RANGE = (POSITION_AUTO, SPEC["position"].hi)
MERGE_RANGE = spec_range("merge", hi=1000.0)  # unbounded: a spin box needs a top
EVERY_RANGE = (0, 10_000)  # not a setting: ``Segmenter.run``'s argument
SEED_RANGE = spec_range("seed", hi=min(SPEC["seed"].hi, 2**31 - 1))  # a Qt spin box holds an int32

#: the ``Settings`` fields the widget shows -> the control that sets them (on ``LevelSetWidget``)
SHOWN_SETTINGS: dict[str, str] = {
    "n_classes": "form.n_classes",
    "lam": "form.lam",
    "lr": "form.lr",
    "alpha": "form.alpha",
    "iterations": "form.iterations",
    "width": "form.width",
    "depth": "form.depth",
    "model": "form.model",
    "color": "form.channel_mode",  # "RGB channels as they are" asks for rgb; auto is the library's auto
    "position": "form.position",
    "contrast": "form.contrast_choice",
    "seed": "form.seed",
    "device": "form.device",
    "diameter": "steps_panel.instances.diameter_box",
    "merge": "form.merge",
    "foreground": "steps_panel.instances.foreground_box",
    "regions": "form.output",
}
#: the ``Settings`` fields the widget does not show, and why
HIDDEN_SETTINGS: tuple[tuple[str, str], ...] = (
    (
        "init",
        "the default: a network made for the image starts from k-means; a U-Net is used as trained "
        "(0 iterations) or fine-tuned from the image's k-means",
    ),
    ("finetune", "a U-Net's fine-tune trains its head, the default"),
    ("max_pixels", "from the free memory of the device"),
    ("work_pixels", "the default: the full image, the strokes' smaller copy, or the instances' one"),
    ("min_region", "the model's default (region_defaults)"),
)

NO_SCRIBBLES = "none"


def remembered_settings(
    uncertainty: bool = False, every: float = 0, device: str = "auto", transparent: str = "auto"
) -> None:
    """The settings a new widget starts from as the user last left them: how results are shown and
    where runs go, not how an image is segmented."""


REMEMBERED_OPTIONS = dict(
    uncertainty=dict(
        widget_type="CheckBox",
        text="show uncertainty layer",
        tooltip="Also output an Image layer of uncertainty: 0 = certain, 1 = all classes equally likely",
    ),
    every=dict(
        widget_type="FloatSpinBox",
        min=EVERY_RANGE[0],
        max=EVERY_RANGE[1],
        step=1,
        tooltip="Iterations between display updates (auto: about every 0.3 s)",
    ),
    device=dict(
        widget_type="ComboBox", choices=DEVICES, tooltip=spec_tip("device", "auto: CUDA, then MPS, else the CPU")
    ),
    transparent=dict(
        widget_type="ComboBox",
        choices=TRANSPARENT_CLASS,
        tooltip="The output class drawn transparent, as napari draws background (0): in 3D a coloured "
        "background class is a solid block that hides everything. Labels keep their ids (label k is "
        "still class k, so strokes and exports are unchanged); only the colours change",
    ),
)


def _float_spin(
    value: float,
    vmin: float,
    vmax: float,
    decimals: int,
    tooltip: str,
    step: float | None = None,
    special: str | None = None,
) -> FloatSpinBox:
    """A magicgui FloatSpinBox showing ``decimals`` (an adaptive step when ``step`` is None)."""
    spin = FloatSpinBox(min=vmin, max=vmax, step=step, tooltip=tooltip)
    spin.native.setDecimals(decimals)
    if special is not None:
        spin.native.setSpecialValueText(special)
    spin.value = value
    return spin


def _italic(control, italic: bool) -> None:
    """Show ``control``'s value in italics (a default) or upright (set by the user)."""
    font = control.native.font()
    if font.italic() != italic:
        font.setItalic(italic)
        control.native.setFont(font)
        tip = control.tooltip or ""
        tip = tip.removesuffix(AUTO_TIP)
        control.tooltip = tip + AUTO_TIP if italic else tip


#: the end of the tooltip of a control showing its default
AUTO_TIP = " [italics: the default for this output, model and image; type a value to set your own]"


class LogSpin(Container):
    """A number with a log-scale slider next to a spin box (both stay in sync); 0 only in the box.

    ``value`` reads and sets it; ``value_changed(float)`` is the box's ``changed``.
    """

    def __init__(
        self, value: float, vmin: float, vmax: float, log_range: tuple[float, float], tooltip: str, decimals: int = 5
    ):
        lo, hi = log_range
        self.slider = LogSlider(min=10**lo, max=10**hi, base=10, max_pos=1000, tooltip=tooltip)
        self.slider._widget._mgui_set_readout_visibility(False)  # its readout is the position, not the value
        self.spin = _float_spin(value, vmin, vmax, decimals, tooltip)
        self.spin.native.setKeyboardTracking(False)
        self.spin.native.setMinimumWidth(80)
        super().__init__(layout="horizontal", labels=False, widgets=[self.slider, self.spin])
        self.margins = (0, 0, 0, 0)
        self.native.layout().setStretch(0, 1)
        self.value_changed = self.spin.changed
        self.spin.changed.connect(self._spin_to_slider)
        self.slider.changed.connect(self._slider_to_spin)
        self._spin_to_slider(self.spin.value)

    @property
    def value(self) -> float:
        return float(self.spin.value)

    @value.setter
    def value(self, v: float) -> None:
        self.spin.value = float(v)

    def _spin_to_slider(self, v: float) -> None:
        with self.slider.changed.blocked():
            self.slider.value = min(max(v, self.slider.min), self.slider.max)

    def _slider_to_spin(self, v: float) -> None:
        digits = max(0, 2 - math.floor(math.log10(v)))  # 3 significant digits
        self.spin.value = round(v, digits)


def _fill(combo: ComboBox, items: list, current) -> None:
    """Show ``items`` ((text, data) pairs, in order) in ``combo`` with ``current`` picked (else the first),
    without emitting ``changed``."""
    with combo.changed.blocked():
        have = [(combo.native.itemText(i), combo.native.itemData(i)) for i in range(combo.native.count())]
        if len(have) != len(items) or any(a[0] != b[0] or a[1] is not b[1] for a, b in zip(have, items)):
            combo.native.blockSignals(True)
            combo.native.clear()  # renamed or moved layers: the list again, in order
            combo.native.blockSignals(False)
            combo.reset_choices()
        if items:
            index = next((i for i, (_, data) in enumerate(items) if data is current and current is not None), 0)
            combo.native.setCurrentIndex(index)


class SettingsForm:
    """The settings, the layer pickers and their layout (``main`` and the collapsible ``advanced``)."""

    settings_changed = Signal()  #: a value of ``parameters()`` may have changed (emitted before ``structural_changed``)
    structural_changed = Signal()  #: a setting that needs a new run changed (N, model, width, …)

    def __init__(self) -> None:
        self._images: list = []
        self._labels: list = []
        self._model_path: str | None = None
        self._last_model = MODELS[0][1]
        self._build_pickers()
        self._build_main_rows()
        self._build_remembered()
        self._build_advanced()
        self._layout()
        self._connect()

    def _build_pickers(self) -> None:
        """The layer pickers, the *New* scribbles button, the channel pickers and the axes note."""
        self.image = create_widget(
            annotation=Image,
            label="Image",
            options=dict(
                choices=lambda _w: [(lay.name, lay) for lay in self._images],
                tooltip="The image to segment (napari Image layers)",
            ),
        )
        self.scribbles = create_widget(
            annotation=Labels,
            label="Scribbles",
            options=dict(
                choices=lambda _w: [(NO_SCRIBBLES, None)] + [(lay.name, lay) for lay in self._labels],
                tooltip="Optional scribbles: a Labels layer of the image's shape; label k marks class k "
                "(0 = unlabelled)",
            ),
        )
        self.new_scribbles = PushButton(
            text="New", tooltip="Add an empty scribble layer for the image and pick the paint brush"
        )
        self.channels = ChannelPickers()
        self.axes_box = AxesNote()  # shown when a small first axis may be slices or channels

    def _build_main_rows(self) -> None:
        """The main form's settings: model, classes, λ, iterations, output and the *Defaults* button."""
        D = WIDGET_DEFAULTS
        self.model = ComboBox(choices=MODELS, tooltip=spec_tip("model", "changing it during a run restarts the run"))
        self.n_classes = SpinBox(
            value=D["n_classes"],
            min=N_RANGE[0],
            max=N_RANGE[1],
            tooltip=spec_tip("n_classes", "changing it during a run restarts the run", hi=N_RANGE[1]),
        )
        self.lam = LogSpin(
            D["lam"],
            *LAM_RANGE,
            LAM_LOG_RANGE,
            tooltip=spec_tip("lam", f"the slider shows {10 ** LAM_LOG_RANGE[0]:g} to {10 ** LAM_LOG_RANGE[1]:g}; live"),
        )
        self.iterations = SpinBox(
            value=D["iterations"],
            min=ITER_RANGE[0],
            max=ITER_RANGE[1],
            tooltip=spec_tip("iterations", "per run (and per refine); auto: the default for the model and output"),
        )
        self.output = ComboBox(
            choices=OUTPUTS,
            tooltip=spec_tip(
                "regions",
                "what Run makes: class labels; regions (connected pieces merged while the level-set "
                "energy drops, see the merge weight); or instances (one label per object, for fluorescence "
                "microscopy: 2 classes, a fluorescence contrast and a smaller working copy by default)",
            ),
        )
        self.defaults_button = PushButton(
            text="Defaults",
            tooltip="Put classes, λ, iterations and the network width back on the defaults for the output and model",
        )
        self._user_set: set[str] = set()  # of AUTO_FIELDS: the ones the user set

    def _build_remembered(self) -> None:
        """The settings remembered between sessions (``remembered_settings``, magicgui's ``persist``)."""
        self.remembered = FunctionGui(
            remembered_settings, call_button=False, labels=False, persist=True, param_options=REMEMBERED_OPTIONS
        )
        self.uncertainty = self.remembered.uncertainty
        self.every = self.remembered.every
        self.every.native.setDecimals(0)
        self.every.native.setSpecialValueText("auto")
        self.device = self.remembered.device
        self.transparent = self.remembered.transparent

    def _build_advanced(self) -> None:
        """The *Advanced* settings: network, optimisation, seed, how the image is read, and the merge weight."""
        D = WIDGET_DEFAULTS
        self.lr = LogSpin(D["lr"], *LR_RANGE, LR_LOG_RANGE, tooltip=spec_tip("lr", "live"), decimals=LR_DECIMALS)
        self.width = SpinBox(value=D["width"], min=WIDTH_RANGE[0], max=WIDTH_RANGE[1], tooltip=spec_tip("width"))
        self.depth = SpinBox(value=D["depth"], min=DEPTH_RANGE[0], max=DEPTH_RANGE[1], tooltip=spec_tip("depth"))
        self.alpha = _float_spin(
            D["alpha"], *ALPHA_RANGE, 3, spec_tip("alpha", "used where scribbles exist; next run/refine")
        )
        self.position = _float_spin(
            POSITION_AUTO,
            *POSITION_RANGE,
            2,
            step=0.05,
            special="auto",
            tooltip=spec_tip(
                "position",
                "per-image CNN: larger values split same-coloured objects far apart. "
                f"auto: {POSITION} for an RGB image compared in CIELAB with {POSITION_MIN_CLASSES} "
                "or more classes, else 0",
            ),
        )
        self.seed = SpinBox(
            value=0,
            min=SEED_RANGE[0],
            max=SEED_RANGE[1],
            tooltip=spec_tip("seed", "CPU runs are reproducible", hi=SEED_RANGE[1]),
        )
        self.volumes = ComboBox(
            choices=VOLUME_MODES, tooltip="Volumes: segment in 3D, or slice by slice with one shared 2D network"
        )
        self.channel_mode = ComboBox(
            choices=CHANNEL_MODES,
            tooltip="auto: an RGB layer is segmented on its CIELAB colours (perceptual differences); "
            "'RGB channels' normalises each channel on its own; 'RGB → grey' averages them; "
            "'first axis is channels' for multichannel (C, ...) layers",
        )
        self.contrast_choice = ComboBox(
            choices=CONTRAST_CHOICES,
            tooltip=spec_tip(
                "contrast",
                "linear for photographs and 8-bit pictures; fluorescence removes a "
                "slowly varying background (an opening wider than the objects) and log-compresses "
                "the rest in units of the noise, so dim and bright objects differ little. auto: "
                "fluorescence for a grey or multichannel layer stored as integers of more than 8 "
                "bits (microscope cameras' 12/16-bit), else linear. Restarts a run",
            ),
        )
        self.merge = _float_spin(
            D["merge"],
            *MERGE_RANGE,
            3,
            step=0.1,
            tooltip=spec_tip("merge", "of the Regions button (0: connected regions only)", hi=MERGE_RANGE[1]),
        )
        self.merge.native.setPrefix("merge weight ")

    def _connect(self) -> None:
        """Connect the controls' ``changed`` to what follows a change (the order is the order of the calls)."""
        # first: a value the user sets is theirs before the settings are read
        for name in AUTO_FIELDS:
            self._control(name).changed.connect(lambda *_a, name=name: self._mark_set(name))
        self.defaults_button.changed.connect(self.use_defaults)
        self.output.changed.connect(self._emit_structural)
        self.model.changed.connect(self._on_model_changed)
        for w in (
            self.n_classes,
            self.width,
            self.depth,
            self.seed,
            self.position,
            self.device,
            self.volumes,
            self.channel_mode,
            self.contrast_choice,
        ):
            w.changed.connect(self._emit_structural)
        for w in (self.lam.spin, self.lr.spin, self.iterations, self.alpha):
            w.changed.connect(self._emit_settings)
        for w in (self.volumes, self.channel_mode):
            w.changed.connect(self.show_axes_note)

    def _emit_settings(self, *_args) -> None:
        self.settings_changed.emit()

    def _emit_structural(self, *_args) -> None:
        self.settings_changed.emit()
        self.structural_changed.emit()

    def _layout(self) -> None:
        self.main = QWidget()
        form = QFormLayout(self.main)
        form.setContentsMargins(0, 0, 0, 0)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        row = QHBoxLayout()
        row.addWidget(self.image.native, 1)
        row.addWidget(self.channels.add_btn)
        form.addRow("Image", row)
        form.addRow("", self.channels)
        form.addRow(self.axes_box)
        row = QHBoxLayout()
        row.addWidget(self.scribbles.native, 1)
        row.addWidget(self.new_scribbles.native)
        form.addRow("Scribbles", row)
        row = QHBoxLayout()
        row.addWidget(self.output.native, 1)
        row.addWidget(self.defaults_button.native)
        form.addRow("Output", row)
        form.addRow("Model", self.model.native)
        form.addRow("Classes N", self.n_classes.native)
        form.addRow("λ (smoothness)", self.lam.native)
        form.addRow("Iterations", self.iterations.native)
        form.addRow("", self.uncertainty.native)

        self.advanced = QCollapsible("Advanced")
        adv = QWidget()
        self._advanced_form = aform = QFormLayout(adv)
        aform.setContentsMargins(0, 0, 0, 0)
        for label, widget in (
            ("Learning rate", self.lr),
            ("Network width", self.width),
            ("Network depth", self.depth),
            ("Scribble weight α", self.alpha),
            ("Position weight", self.position),
            ("Update interval", self.every),
            ("Seed", self.seed),
            ("Device", self.device),
            ("Volumes", self.volumes),
            ("Channels", self.channel_mode),
            ("Contrast", self.contrast_choice),
            ("Transparent class", self.transparent),
        ):
            aform.addRow(label, widget.native)
        self.advanced.addWidget(adv)

    # ------------------------------------------------------------------ layers
    @property
    def image_layer(self) -> Image | None:
        return self.image.native.currentData()

    @property
    def scribble_choice(self) -> Labels | None:
        return self.scribbles.native.currentData()

    def set_layers(self, images: list, labels: list, active, scribble_layer, new=None) -> None:
        """Offer ``images`` and ``labels`` (bottom to top); pick ``new`` (an image just opened) if it is one
        of them, else keep the picked image if it is still there, else pick ``active`` if it is one of them,
        else the top one; pick ``scribble_layer`` if offered, else none.  Emits no ``changed``."""
        self._images, self._labels = list(images), list(labels)
        current = new if any(new is i for i in images) else self.image_layer
        if not any(current is i for i in images):
            current = active if any(active is i for i in images) else (images[-1] if images else None)
        _fill(self.image, [(lay.name, lay) for lay in images], current)
        _fill(
            self.scribbles,
            [(NO_SCRIBBLES, None)] + [(lay.name, lay) for lay in labels],
            scribble_layer if any(scribble_layer is lab for lab in labels) else None,
        )

    def show_relevant_rows(self, layer) -> None:
        """Volumes only for layers with a third axis, Channels only for RGB or multichannel-capable
        layers: a 2D grey image shows neither."""
        ndim = None if layer is None else layer.ndim  # napari's ndim: without the RGB(A) axis
        volume = ndim is None or ndim >= 3
        channels = ndim is None or ndim >= 3 or bool(layer.rgb)
        form = self._advanced_form
        for widget, visible in ((self.volumes.native, volume), (self.channel_mode.native, channels)):
            if hasattr(form, "setRowVisible"):  # Qt >= 6.4
                form.setRowVisible(widget, visible)
            else:
                widget.setVisible(visible)
                label = form.labelForField(widget)
                if label is not None:
                    label.setVisible(visible)

    def show_axes_note(self, *_args) -> None:
        volume = "in 3D" if self.volumes.value == 3 else "as 2D slices"
        self.axes_box.show_for(self.image_layer, self.channel_mode.value == "first", volume)

    def set_first_is_channels(self, first: bool) -> None:
        self.channel_mode.value = "first" if first else "auto"

    def axes(self, layer: Image) -> dict:
        """How to read ``layer`` (``_layers.layer_axes``), with the further channel layers when it is the
        picked image."""
        extra = self.channels.layers() if layer is self.image_layer else []
        return layer_axes(layer, self.channel_mode.value, self.volumes.value, extra)

    # ------------------------------------------------------------------ model
    def _on_model_changed(self, value: str) -> None:
        if value == "file":
            path, _ = QFileDialog.getOpenFileName(
                self.main, "U-Net model file", "", "Model files (*.pt *.pth *.ckpt);;All files (*)"
            )
            if not path:
                with self.model.changed.blocked():
                    self.model.value = self._last_model
                return
            self._model_path = path
            self.model.tooltip = f"U-Net from {path}"
        self._follow_merge_default(self._last_model, value)
        self._last_model = value
        self._emit_structural()

    def _follow_merge_default(self, old: str, new: str) -> None:
        """The merge weight follows the model's default (a U-Net's pieces want more merging), unless set by hand."""
        old_w, new_w = (MERGE_WEIGHT[model_kind(v)] for v in (old, new))
        if abs(self.merge.value - old_w) < 1e-9:
            self.merge.value = new_w

    def set_model(self, model: str) -> None:
        """Pick the model programmatically: ``cnn``, ``unet`` or a model file path."""
        if model in ("cnn", "unet"):
            self.model.value = model
            return
        self._model_path = str(model)
        with self.model.changed.blocked():
            self.model.value = "file"
        self._follow_merge_default(self._last_model, "file")
        self._last_model = "file"
        self._emit_structural()

    def model_value(self) -> str:
        value = self.model.value
        if value == "file":
            return self._model_path or ""
        return value

    # ------------------------------------------------------------------ settings
    def contrast(self, layer: Image | None = None, strokes: bool = False) -> str:
        """The contrast a run on ``layer`` (default: the picked image) uses: 'linear' or 'fluorescence'."""
        return self.resolved(layer, strokes).contrast

    def resolved(self, layer: Image | None = None, strokes: bool = False) -> Settings:
        """The form's settings as a run on ``layer`` (default: the picked image) resolves them
        (``Settings.resolved``; ``strokes``: whether it has strokes)."""
        layer = layer if layer is not None else self.image_layer
        image = channel_axis = None
        if layer is not None and not getattr(layer, "multiscale", False):
            # the image's shape and dtype, without reading its data (a lazy array stays unread)
            image = np.broadcast_to(np.zeros((), np.dtype(layer.data.dtype)), tuple(layer.data.shape))
            try:
                channel_axis = self.axes(layer)["channel_axis"]
            except Exception:
                channel_axis = None
        return self.parameters().resolved(strokes=strokes, image=image, channel_axis=channel_axis)

    # ------------------------------------------------------------------ defaults
    def _control(self, name: str):
        return {"n_classes": self.n_classes, "lam": self.lam.spin, "iterations": self.iterations, "width": self.width}[
            name
        ]

    def _mark_set(self, name: str) -> None:
        if name not in self._user_set:
            self._user_set.add(name)
            _italic(self._control(name), False)

    def is_auto(self, name: str) -> bool:
        """Whether the control of ``name`` (one of ``AUTO_FIELDS``) shows the default."""
        return name not in self._user_set

    def show_defaults(self, resolved: Settings) -> None:
        """The controls the user did not set show ``resolved``'s values, in italics (no signal is emitted)."""
        for name in AUTO_FIELDS:
            if name in self._user_set:
                continue
            control, value = self._control(name), getattr(resolved, name)
            with control.changed.blocked():
                control.value = value
            _italic(control, True)
        self.lam._spin_to_slider(self.lam.value)

    def use_defaults(self, *_args) -> None:
        """Classes, λ, iterations and width follow the defaults again (the *Defaults* button)."""
        self._user_set.clear()
        self._emit_structural()

    def every_value(self) -> int:
        """Iterations between display updates (0: auto)."""
        return round(self.every.value)

    def structural_key(self, layer) -> tuple:
        """What a run on ``layer`` was started with whose change needs a new run (see Refine): the layer,
        how it is read, and the settings that make a new network (``Settings.restart_key``)."""
        return (
            id(layer),
            self.volumes.native.currentIndex(),
            self.channel_mode.native.currentIndex(),
            tuple(id(c) for c in self.channels.layers()) if layer is self.image_layer else (),
            self.output.value,
            self.resolved(layer).restart_key(),
        )

    def _position_value(self) -> float | None:
        """The position weight: None (auto: ``settings.default_position``) at the spin box's minimum."""
        value = self.position.value
        return None if value <= POSITION_AUTO else value

    def parameters(self) -> Settings:
        """The form's settings (``napari_levelset.settings.Settings``; no axes)."""
        user = self._user_set.__contains__  # the others follow the defaults (None)
        return Settings(
            n_classes=self.n_classes.value if user("n_classes") else None,
            lam=self.lam.value if user("lam") else None,
            lr=self.lr.value,
            iterations=self.iterations.value if user("iterations") else None,
            width=self.width.value if user("width") else None,
            depth=self.depth.value,
            alpha=self.alpha.value,
            position=self._position_value(),
            device=self.device.value,
            seed=self.seed.value,
            model=self.model_value() or "cnn",
            contrast=None if self.contrast_choice.value == "auto" else self.contrast_choice.value,
            regions=self.output.value,
            merge=self.merge.value if self.output.value == "merged" else None,
        )
