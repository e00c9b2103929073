"""After a run, one label per object: the instance controls and the Regions / Instances steps.

- ``InstanceControls``: *Object diameter* (0 = automatic; in the image layer's
  physical units when it has a non-unit ``scale``), *Foreground* (which classes
  are objects) and the **Instances** button, as magicgui widgets.
- ``StepsPanel``: the merge weight with the **Regions** button, and the instance
  controls.
- ``Steps``: the Regions and Instances steps.  Each reads the finished result as
  the user sees it (the output layer, edits included), computes in a thread worker
  and writes a layer of its own (``<image> regions``, ``<image> instances``).

Nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from magicgui.widgets import ComboBox, FloatSpinBox, PushButton
from napari.layers import Image, Labels
from napari.qt.threading import thread_worker
from qtpy.QtWidgets import QFormLayout, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from napari_levelset.errors import widget_message
from napari_levelset.napari._form import SettingsForm, spec_tip
from napari_levelset.napari._layers import FOREGROUND_AUTO, FOREGROUND_REST, instances_from_labels
from napari_levelset.napari._outputs import META_KEY, OutputLayers
from napari_levelset.napari._qt import button
from napari_levelset.napari._session import Session
from napari_levelset.resources import run_threads, torch_threads
from napari_levelset.settings import SPEC

__all__ = ["InstanceControls", "Steps", "StepsPanel"]

DIAMETER_RANGE = (SPEC["diameter"].lo, 1e6)  #: the (open) minimum 0 shows "auto"; a spin box needs a top


class InstanceControls(QWidget):
    """*Object diameter*, *Foreground* and the **Instances** button: the magicgui widgets
    ``diameter_box``, ``foreground_box`` and ``instances_button``."""

    def __init__(self) -> None:
        super().__init__()
        form = QFormLayout(self)
        form.setContentsMargins(0, 0, 0, 0)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.diameter_box = FloatSpinBox(
            min=DIAMETER_RANGE[0],
            max=DIAMETER_RANGE[1],
            step=1.0,
            tooltip=spec_tip(
                "diameter",
                "in the image layer's physical units when it has a scale (else pixels); "
                "auto (0): estimated from the image. Sets the background window of the fluorescence "
                "contrast (next Run) and how far apart objects' centres are (Instances)",
                hi=DIAMETER_RANGE[1],
            ),
        )
        spin = self.diameter_box.native
        spin.setDecimals(2)
        spin.setKeyboardTracking(False)
        spin.setSpecialValueText("auto")
        self.diameter_box.value = 0.0
        form.addRow("Object diameter", spin)
        self.foreground_box = ComboBox(
            choices=self._foreground_choices(2),
            tooltip="Which classes are objects. auto: the brightest class (label N; objects brighter than the "
            "background, as in fluorescence). 'all but the darkest' takes labels 2..N, for dim objects "
            "that got a class of their own; or pick one class (dark objects on a bright background: "
            "class 1)",
        )
        self.instances_button = PushButton(
            text="Instances",
            enabled=False,
            tooltip="One label per object: the foreground classes of the result, touching objects split by a "
            "watershed on the distance to the background. Uses the output layer as it is now, your edits "
            "included, and writes the Labels layer '<image> instances' (0 = background)",
        )
        row = QHBoxLayout()
        row.addWidget(self.foreground_box.native, 1)
        row.addWidget(self.instances_button.native)
        form.addRow("Foreground", row)
        self._unit = "px"

    # -- foreground
    @staticmethod
    def _foreground_choices(n_classes: int) -> list:
        return [("auto (the brightest class)", FOREGROUND_AUTO), ("all but the darkest class", FOREGROUND_REST)] + [
            (f"class {k}", k) for k in range(1, int(n_classes) + 1)
        ]

    def set_classes(self, n_classes: int) -> None:
        """List the class choices for N classes, keeping the current one where it still exists."""
        box = self.foreground_box
        current = box.value
        with box.changed.blocked():
            box.choices = self._foreground_choices(n_classes)
            box.value = current if current in box.choices else FOREGROUND_AUTO

    def foreground(self):
        return self.foreground_box.value

    def set_foreground(self, value) -> None:
        if value not in self.foreground_box.choices:
            raise ValueError(f"no foreground choice {value!r}")
        self.foreground_box.value = value

    # -- diameter
    @property
    def unit(self) -> str:
        """The unit of the diameter: 'px', or the image layer's physical unit."""
        return self._unit

    def diameter(self) -> float | None:
        """The diameter set (None: automatic)."""
        value = float(self.diameter_box.value)
        return value if value > 0 else None

    def set_unit(self, unit: str) -> None:
        self._unit = unit
        self.diameter_box.native.setSuffix(f" {unit}")
        self.set_estimate(None)

    def set_estimate(self, diameter: float | None) -> None:
        """Show what *auto* came to (a run's estimate), or plain 'auto'."""
        text = "auto" if diameter is None else f"auto (≈ {diameter:.3g} {self._unit})"
        self.diameter_box.native.setSpecialValueText(text)


class StepsPanel(QWidget):
    """What comes after a run: the merge weight (a control of the form) with the **Regions** button, and
    ``InstanceControls``."""

    def __init__(self, merge) -> None:
        super().__init__()
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        after = QLabel("After a run — one label per object:")
        after.setToolTip(
            "Regions and Instances read the finished result (the output layer, your edits "
            "included) and write a layer of their own; they are enabled once a run has a result"
        )
        outer.addWidget(after)
        self.regions_button = button(
            "Regions",
            "One label per object: split the result into connected regions, then merge neighbours for "
            "as long as that lowers the level-set energy (on colour and texture, boundaries weighted by edge "
            "strength). Uses the output layer as it is now, your edits included, and writes the layer "
            "'<image> regions'",
            enabled=False,
        )
        row = QHBoxLayout()
        row.addWidget(merge.native, 1)
        row.addWidget(self.regions_button.native)
        outer.addLayout(row)
        self.instances = InstanceControls()
        outer.addWidget(self.instances)

    def show_state(self, can_split: bool) -> None:
        self.regions_button.enabled = can_split
        self.instances.instances_button.enabled = can_split


class Steps:
    """The Regions and Instances steps (one at a time, after a run), in a thread worker.

    Parameters
    ----------
    session : Session
        Its kept result is what the steps read; ``session.step`` is the step in progress.
    form : SettingsForm
        The picked image and the merge weight.
    outputs : OutputLayers
        The output layer read, and the layers written.
    instances : InstanceControls
        The diameter and foreground of the Instances step.
    alive : callable
        False once the widget's Qt side is gone.
    """

    def __init__(
        self,
        session: Session,
        form: SettingsForm,
        outputs: OutputLayers,
        instances: InstanceControls,
        alive: Callable[[], bool],
    ) -> None:
        self.session, self.form, self.outputs, self.instances = session, form, outputs, instances
        self._alive = alive

    def source(self):
        """(image layer, output layer, segmenter) when the picked image has a finished result, else None."""
        result, layer = self.session.result, self.form.image_layer
        if result is None or layer is None or result.image is not layer:
            return None
        out = self.outputs.get("output", layer)
        if not self.outputs.in_viewer(out) or not self.outputs.in_viewer(layer):
            return None
        return layer, out, result.segmenter

    def _step_source(self):
        """For a step: (image, output layer, segmenter, the output's labels as the user sees them, edits
        included), or None (busy, or no finished result: said on the status line)."""
        if self.session.run is not None or self.session.step is not None:
            return None
        source = self.source()
        if source is None:
            self.session.error("no finished result for this image: press Run first")
            return None
        image, out, seg = source
        return image, out, seg, np.asarray(out.data).copy()

    def make_regions(self) -> Any:
        """Turn the picked image's result into one label per object (see the Regions button); returns the worker."""
        source = self._step_source()
        if source is None:
            return None
        image, out, seg, labels = source
        merge = float(self.form.merge.value)

        def compute():
            with torch_threads(run_threads()):  # in the worker's thread, one per core free now
                return seg.regions(labels, "merged", merge=merge)

        def done(result):
            self._show_regions(image, out, result, merge)

        return self._start(compute, image, done, "making regions…")

    def make_instances(self) -> Any:
        """One label per object of the picked image's result (see the Instances button); returns the worker."""
        source = self._step_source()
        if source is None:
            return None
        image, out, seg, labels = source
        diameter, foreground = self.instances.diameter(), self.instances.foreground()
        unit = self.instances.unit

        def compute():
            with torch_threads(run_threads()):  # in the worker's thread, one per core free now
                return instances_from_labels(seg, labels, diameter, foreground)

        def done(result):
            used = diameter if diameter is not None else getattr(seg, "diameter", None)
            self._show_instances(
                image, out, result, dict(diameter=used, diameter_unit=unit, foreground=foreground, spacing=seg.spacing)
            )

        return self._start(compute, image, done, "finding objects…")

    def _start(self, compute, image: Image, done, busy: str) -> Any:
        """Run ``compute`` in a thread worker; ``done(result)`` on the main thread."""
        session = self.session
        worker = thread_worker(compute, start_thread=False, ignore_errors=True)()
        session.step = worker

        def returned(result):
            if self._alive() and self.outputs.in_viewer(image):
                done(result)

        def failed(exc):
            message = widget_message(exc)
            session.set_status(f"error: {message}")
            session.error(message)

        def finished():
            session.step = None
            if self._alive():
                session.changed.emit()

        worker.returned.connect(returned)
        worker.errored.connect(failed)
        worker.finished.connect(finished)
        session.set_status(busy)
        session.changed.emit()
        worker.start()
        return worker

    def _show_regions(self, image: Image, out: Labels, regions: np.ndarray, merge: float) -> None:
        meta = {
            **out.metadata.get(META_KEY, {}),
            "kind": "regions",
            "merge": merge,
            "n_regions": len(np.unique(regions)),
        }
        layer = self.outputs.step_layer("regions", image, out, regions, 0.5)
        layer.metadata[META_KEY] = meta
        self.session.set_status(f"{meta['n_regions']} regions (merge weight {merge:.4g})")

    def _show_instances(self, image: Image, out: Labels, instances: np.ndarray, settings: dict) -> None:
        n = int(instances.max()) if instances.size else 0
        meta = {**out.metadata.get(META_KEY, {}), **settings, "kind": "instances", "n_objects": n}
        layer = self.outputs.step_layer("instances", image, out, instances, 0.7)
        layer.metadata[META_KEY] = meta
        d = settings.get("diameter")
        size = f" · diameter {d:.3g} {settings['diameter_unit']}" if d else ""
        self.session.set_status(f"{n} objects{size}")
