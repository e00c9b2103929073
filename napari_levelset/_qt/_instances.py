"""Instances (one label per object) in the widget: the controls, the contrast rule, the computation.

- ``InstanceControls``: *Object diameter* (0 = automatic; in the image layer's
  physical units when it has a non-unit ``scale``), *Foreground* (which classes
  are objects) and the **Instances** button.
- ``CONTRAST_CHOICES`` / ``auto_contrast``: the run's contrast setting.  *auto*
  is fluorescence (background removed, log-compressed; see
  ``napari_levelset.instances.fluorescence_contrast``) for a grey or multichannel
  layer stored as integers of more than 8 bits -- what microscope cameras write
  (12/16-bit) -- and linear (the image as it is) for everything else: 8-bit
  pictures, RGB photographs, float images.
- ``instances_from_labels``: the objects of the foreground classes of a result,
  read from the output layer as the user sees it (edits included), by
  ``Segmenter.instances``.

Nothing here imports torch.
"""

from __future__ import annotations

import numpy as np
from qtpy.QtWidgets import QComboBox, QDoubleSpinBox, QFormLayout, QHBoxLayout, QPushButton, QWidget

__all__ = ["CONTRAST_CHOICES", "auto_contrast", "contrast_value", "spatial_geometry", "InstanceControls",
           "instances_from_labels", "foreground_value", "FOREGROUND_AUTO", "FOREGROUND_REST"]

#: (text, value) of the contrast picker; "auto" is resolved per image by ``auto_contrast``
CONTRAST_CHOICES = [
    ("auto", "auto"),
    ("linear (as it is)", "linear"),
    ("fluorescence (background removed, log)", "fluorescence"),
]

DIAMETER_RANGE = (0.0, 1e6)  #: 0 shows "auto"

FOREGROUND_AUTO = "auto"  #: the library's default: the brightest class (label N)
FOREGROUND_REST = "rest"  #: every class but the darkest (label 1)


def auto_contrast(layer) -> tuple[str, str]:
    """``(contrast, why)`` for ``layer`` under *auto*: fluorescence for integer data of more than 8 bits."""
    if layer is None:
        return "linear", "no image"
    if layer.rgb:
        return "linear", "RGB"
    dtype = np.dtype(layer.data.dtype)
    if dtype.kind in "ui" and dtype.itemsize > 1:
        return "fluorescence", f"{8 * dtype.itemsize}-bit"
    return "linear", "8-bit" if dtype.itemsize == 1 and dtype.kind in "uib" else str(dtype)


def contrast_value(choice: str, layer) -> str:
    return auto_contrast(layer)[0] if choice == "auto" else choice


def spatial_geometry(layer, spatial_dims: int, scale: tuple) -> tuple[tuple | None, str]:
    """``(spacing, unit)``: the layer's physical pixel size along the segmented axes (None when it is
    1 everywhere, i.e. pixels) and the unit a diameter is given in."""
    spacing = tuple(float(s) for s in scale[len(scale) - spatial_dims:])
    if all(abs(s - 1.0) < 1e-12 for s in spacing):
        return None, "px"
    unit = "scale units"
    units = getattr(layer, "units", None)
    if units:
        try:
            text = f"{units[-1]:~}"
        except (TypeError, ValueError):
            text = str(units[-1])
        if text and text not in ("pixel", "px"):
            unit = text
    return spacing, unit


def foreground_value(choice, n_classes: int):
    """The ``foreground`` argument of ``Segmenter.instances`` for a picker value."""
    if choice == FOREGROUND_AUTO:
        return None  # Segmenter.instances' default: the brightest class
    if choice == FOREGROUND_REST:
        return list(range(2, int(n_classes) + 1))
    return int(choice)


def instances_from_labels(seg, labels: np.ndarray, diameter: float | None, foreground) -> np.ndarray:
    """One label per object (uint32, 0 background) from class labels 1..N of ``seg``'s image.

    The classes in ``foreground`` (a picker value) count as objects; pixels of other
    values (a label above N painted by hand) as background.  The labels go to
    ``Segmenter.instances`` as one-hot probabilities, so the objects follow what the
    user sees, edits included.
    """
    n = int(seg.n_classes)
    labels = np.asarray(labels)
    onehot = labels[None] == np.arange(1, n + 1, dtype=labels.dtype).reshape((n,) + (1,) * labels.ndim)
    return seg.instances(diameter=diameter, foreground=foreground_value(foreground, n), probs=onehot)


class InstanceControls(QWidget):
    """*Object diameter*, *Foreground* and the **Instances** button."""

    def __init__(self) -> None:
        super().__init__()
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.diameter_spin = QDoubleSpinBox()
        self.diameter_spin.setRange(*DIAMETER_RANGE)
        self.diameter_spin.setDecimals(2)
        self.diameter_spin.setSingleStep(1.0)
        self.diameter_spin.setKeyboardTracking(False)
        self.diameter_spin.setSpecialValueText("auto")
        self.diameter_spin.setValue(0.0)
        self.diameter_spin.setToolTip(
            "Expected object diameter, in the image layer's physical units when it has a scale (else pixels); "
            "auto (0): estimated from the image. Sets the background window of the fluorescence contrast "
            "(next Run) and how far apart objects' centres are (Instances)"
        )
        form.addRow("Object diameter", self.diameter_spin)
        self.foreground_combo = QComboBox()
        self.foreground_combo.setToolTip(
            "Which classes are objects. auto: the brightest class (label N; objects brighter than the background, "
            "as in fluorescence). 'all but the darkest' takes labels 2..N, for dim objects that got a class of "
            "their own; or pick one class (dark objects on a bright background: class 1)"
        )
        self.instances_btn = QPushButton("Instances")
        self.instances_btn.setEnabled(False)
        self.instances_btn.setToolTip(
            "One label per object: the foreground classes of the result, touching objects split by a watershed "
            "on the distance to the background. Uses the output layer as it is now, your edits included, and "
            "writes the Labels layer '<image> instances' (0 = background)"
        )
        row = QHBoxLayout()
        row.addWidget(self.foreground_combo, 1)
        row.addWidget(self.instances_btn)
        form.addRow("Foreground", row)
        self._unit = "px"
        self.set_classes(2)

    # -- foreground
    def set_classes(self, n_classes: int) -> None:
        """List the class choices for N classes, keeping the current one where it still exists."""
        combo = self.foreground_combo
        current = combo.currentData()
        combo.blockSignals(True)
        combo.clear()
        combo.addItem("auto (the brightest class)", FOREGROUND_AUTO)
        combo.addItem("all but the darkest class", FOREGROUND_REST)
        for k in range(1, int(n_classes) + 1):
            combo.addItem(f"class {k}", k)
        index = combo.findData(current)
        combo.setCurrentIndex(max(0, index))
        combo.blockSignals(False)

    def foreground(self):
        return self.foreground_combo.currentData()

    def set_foreground(self, value) -> None:
        index = self.foreground_combo.findData(value)
        if index < 0:
            raise ValueError(f"no foreground choice {value!r}")
        self.foreground_combo.setCurrentIndex(index)

    # -- diameter
    @property
    def unit(self) -> str:
        """The unit of the diameter: 'px', or the image layer's physical unit."""
        return self._unit

    def diameter(self) -> float | None:
        """The diameter set (None: automatic)."""
        value = float(self.diameter_spin.value())
        return value if value > 0 else None

    def set_unit(self, unit: str) -> None:
        self._unit = unit
        self.diameter_spin.setSuffix(f" {unit}")
        self.set_estimate(None)

    def set_estimate(self, diameter: float | None) -> None:
        """Show what *auto* came to (a run's estimate), or plain 'auto'."""
        text = "auto" if diameter is None else f"auto (≈ {diameter:.3g} {self._unit})"
        self.diameter_spin.setSpecialValueText(text)
