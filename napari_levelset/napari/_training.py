"""The "Train a U-Net" dock widget: the semi-supervised loop of Kim & Ye inside napari.

Choose image layers and, for some of them, a Labels layer (an instance mask, a painted
foreground or class strokes: the label rule of ``napari_levelset.training.labels`` turns each
into class targets and the panel shows what it decided); add unlabelled images (other open
images, or a folder); Train runs ``napari_levelset.training.train.train`` in a thread worker
with a progress bar and the loss plot (``_plot.LossPlot``); Stop ends it with a checkpoint (the
model so far, which Save and Apply take as they take a finished one).  Save model writes the
model file; Apply segments the open images with it (new Labels layers ``<image> trained``,
never the user's layers) or a folder of images through the batch path
(``napari_levelset.scale.batch.segment_files``, on a local dask cluster when asked).

Nothing here imports torch at module level: training, saving and applying import it in their
worker (Save on the main thread, when asked).  The steps, crop and batch size take their
ranges from ``validate.TRAIN_LIMITS``; λ, the learning rate, α and the seed from ``SPEC``.
"""

from __future__ import annotations

import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    LineEdit,
    ProgressBar,
    PushButton,
    SpinBox,
)
from napari.layers import Image, Labels
from napari.qt.threading import thread_worker
from napari.utils import notifications
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QVBoxLayout, QWidget

from napari_levelset import validate
from napari_levelset.errors import InputError, widget_message
from napari_levelset.napari._form import spec_range, spec_tip
from napari_levelset.napari._layers import real
from napari_levelset.napari._plot import LossPlot
from napari_levelset.napari._qt import qt_alive
from napari_levelset.napari._session import LossCurve
from napari_levelset.training.labels import BOUNDARY_MODES, LABEL_KINDS, label_targets

if TYPE_CHECKING:  # pragma: no cover
    import napari

__all__ = ["PANEL_DEFAULTS", "TrainingRun", "TrainingWidget", "parse_heads"]

#: the panel's starting values: a fine-tune of the shipped model for nuclei-like objects (2 classes) that
#: takes minutes on a laptop's CPU; every other setting is ``train``'s default
PANEL_DEFAULTS = dict(steps=300, crop=128, batch_size=4, classes="2", init="unet")
#: the start choices: the shipped model, or a new U-Net
INIT_CHOICES = [("shipped U-Net (fine-tune)", "unet"), ("new U-Net", "new")]
#: what the trained model gives an image
OUTPUT_CHOICES = [("instances (one label per object)", "instances"), ("classes", "classes")]
#: the label-layer choice of an image without labels
NO_LABELS = "(unlabelled)"
#: the suffix of the layers Apply makes
APPLIED = "trained"
POLL_MS = 150


def parse_heads(text: str) -> list[int]:
    """``"2"``, ``"2-4"`` or ``"2,3,5"`` -> sorted class counts (2..255), ``InputError`` otherwise.

    Parameters
    ----------
    text : str
        Counts and ranges, separated by commas.

    Returns
    -------
    list of int
        Sorted, distinct class counts.

    Raises
    ------
    InputError
        When the text is not written so.

    Examples
    --------
    >>> parse_heads("2-4, 7")
    [2, 3, 4, 7]
    """
    return validate.class_counts(text, 2, 255)


@dataclass
class TrainingRun:
    """What the training thread and the main thread share (no Qt): the steps done, the losses, a stop.

    ``callback`` is ``train``'s step callback: it records ``(step, loss)`` and returns False once
    ``stop`` was asked for.  The main thread takes new points with ``take``.

    Parameters
    ----------
    steps : int
        Steps of the run in all.
    step : int
        Steps done.
    points : list of tuple
        ``(step, loss)`` recorded and not yet taken.
    stopped : threading.Event
        Set when a stop was asked for.
    lock : threading.Lock
        Guards ``step`` and ``points``.
    """

    steps: int
    step: int = 0
    points: list = field(default_factory=list)
    stopped: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def callback(self, step: int, steps: int, loss: float) -> bool:
        """Record a step (``train``'s callback, in the training thread).

        Parameters
        ----------
        step : int
            Steps done.
        steps : int
            Steps in all.
        loss : float
            The step's level-set loss.

        Returns
        -------
        bool
            False once a stop was asked for (``train`` then ends with a checkpoint).
        """
        with self.lock:
            self.step, self.steps = int(step), int(steps)
            self.points.append((int(step), float(loss)))
        return not self.stopped.is_set()

    def take(self) -> list:
        """The points recorded since the last call.

        Returns
        -------
        list of tuple
            ``(step, loss)`` pairs, oldest first.
        """
        with self.lock:
            out, self.points = self.points, []
        return out

    def stop(self) -> None:
        """Ask the run to end after its current step."""
        self.stopped.set()


def _train_job(images: list, labels: list, out: Path, options: dict, run: TrainingRun):
    from napari_levelset.training.train import train  # torch: in the worker thread

    return train(images, out, labels=labels, progress=False, callback=run.callback, **options)


def _apply_job(data, model: str, n_classes: int, regions: str):
    import napari_levelset

    return napari_levelset.segment(
        np.asarray(data), n_classes=n_classes, model=model, iterations=0, regions=regions, device="auto"
    )


def _folder_job(folder: str, out_dir: str, model: str, n_classes: int, regions: str, workers: int):
    from napari_levelset.scale.batch import segment_files

    return segment_files(
        [folder],
        out_dir,
        model=model,
        n_classes=n_classes,
        iterations=0,
        regions=regions,
        workers=workers or None,
        progress=False,
    )


class _ImageRow:
    """One image layer: use it (check box), its labels (a Labels layer or none) and the rule's decision;
    ``widget`` shows them."""

    def __init__(self, layer: Image) -> None:
        self.layer = layer
        self.use = CheckBox(value=False, text=layer.name, tooltip="train on this image")
        self.labels = ComboBox(choices=[NO_LABELS], value=NO_LABELS, tooltip="its labels (a Labels layer)")
        self.decision = Label(value="")
        self.decision.native.setWordWrap(True)
        top = Container(widgets=[self.use, self.labels], layout="horizontal", labels=False)
        top.margins = (0, 0, 0, 0)
        self.widget = Container(widgets=[top, self.decision], labels=False)
        self.widget.margins = (0, 0, 0, 0)


class TrainingWidget(QWidget):
    """Train a U-Net on a few corrected images and the rest unlabelled, then apply it.

    Parts: ``rows`` (one per image layer: use, labels layer, the label rule's decision),
    ``folder`` (unlabelled images from a folder), the settings (``init``, ``classes``,
    ``steps``, ``crop``, ``batch_size``, ``lr``, ``lam``, ``alpha``, ``seed``, ``label_kind``,
    ``boundary``, ``contrast``), ``train_button``/``stop_button``, ``progress``, ``status``, ``plot`` (the loss),
    ``save_path``/``save_button``, and Apply (``apply_output``, ``apply_classes``,
    ``apply_button``; ``apply_folder``, ``apply_out``, ``apply_workers``, ``apply_folder_button``).

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
        The viewer whose layers it trains on and adds to.
    parent : QWidget or None
        The Qt parent.
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.curve = LossCurve()
        self.rows: list[_ImageRow] = []
        self.run: TrainingRun | None = None
        self.worker: Any = None
        self.model_path: Path | None = None  # the last run's model (or checkpoint when stopped)
        self.model_meta: dict = {}
        self._made: dict[int, Labels] = {}  # image layer id -> the layer Apply made for it
        self._tmp = tempfile.TemporaryDirectory(prefix="napari-levelset-train-")
        self._timer = QTimer(self)
        self._timer.setInterval(POLL_MS)
        self._timer.timeout.connect(self._poll)
        self._build()
        self._connect_viewer()
        self.refresh_layers()

    # ------------------------------------------------------------------ UI
    def _build(self) -> None:
        lo_hi = validate.TRAIN_LIMITS
        self.rows_box = Container(labels=False)
        self.folder = FileEdit(mode="d", label="unlabelled folder", tooltip="more images, unlabelled (optional)")
        self.init = ComboBox(choices=INIT_CHOICES, value=PANEL_DEFAULTS["init"], label="start from")
        self.classes = LineEdit(
            value=PANEL_DEFAULTS["classes"],
            label="classes",
            tooltip="class counts to train: objects on a background (nuclei) are 2, whatever their number",
        )
        self.steps = SpinBox(
            value=PANEL_DEFAULTS["steps"], min=lo_hi["steps"][0], max=100_000, label="steps", tooltip="optimiser steps"
        )
        self.crop = SpinBox(
            value=PANEL_DEFAULTS["crop"],
            min=lo_hi["crop"][0],
            max=4096,
            step=16,
            label="crop",
            tooltip="side of the random training crops (pixels); smaller images are padded",
        )
        self.batch_size = SpinBox(
            value=PANEL_DEFAULTS["batch_size"], min=lo_hi["batch_size"][0], max=256, label="batch", tooltip="crops/step"
        )
        lr_lo, lr_hi = spec_range("lr", 5)
        self.lr = FloatSpinBox(value=2e-3, min=lr_lo, max=min(lr_hi, 1.0), step=1e-4, label="learning rate")
        self.lr.native.setDecimals(5)
        self.lr.tooltip = spec_tip("lr")
        lam_lo, lam_hi = spec_range("lam", 4)
        self.lam = FloatSpinBox(value=0.05, min=lam_lo, max=min(lam_hi, 10.0), step=0.01, label="λ")
        self.lam.native.setDecimals(4)
        self.lam.tooltip = spec_tip("lam")
        a_lo, a_hi = spec_range("alpha", 3)
        self.alpha = FloatSpinBox(value=1.0, min=a_lo, max=min(a_hi, 1000.0), step=0.1, label="α (labels)")
        self.alpha.tooltip = spec_tip("alpha")
        self.seed = SpinBox(value=0, min=0, max=2**31 - 1, label="seed", tooltip=spec_tip("seed"))
        self.label_kind = ComboBox(
            choices=list(LABEL_KINDS),
            value="auto",
            label="labels are",
            tooltip="auto: two values with 0 = foreground mask (0 is background), more with 0 = instance mask, "
            "no 0 = classes; 'classes' for painted strokes (0 unlabelled, k = class k)",
        )
        self.contrast = ComboBox(
            choices=[("linear", "linear"), ("fluorescence (bright objects)", "fluorescence")],
            value="linear",
            label="contrast",
            tooltip="how the images are prepared after the normalisation; the model remembers it and "
            "Apply uses it: fluorescence as the instance path prepares bright objects on a dark field",
        )
        self.boundary = ComboBox(
            choices=list(BOUNDARY_MODES),
            value="keep",
            label="touching objects",
            tooltip="the line where two instances touch: kept foreground, left unlabelled or made background",
        )
        settings = Container(
            widgets=[
                self.folder,
                self.init,
                self.classes,
                self.steps,
                self.crop,
                self.batch_size,
                self.lr,
                self.lam,
                self.alpha,
                self.seed,
                self.label_kind,
                self.boundary,
                self.contrast,
            ]
        )
        self.train_button = PushButton(text="Train")
        self.stop_button = PushButton(text="Stop", enabled=False)
        buttons = Container(widgets=[self.train_button, self.stop_button], layout="horizontal", labels=False)
        self.progress = ProgressBar(value=0, min=0, max=1, label="")
        self.status = Label(value="choose images, and labels for some of them")
        self.status.native.setWordWrap(True)  # long notes (e.g. the labels' edge convention) wrap
        self.save_path = FileEdit(mode="w", filter="*.pt", label="model file", value=str(Path.home() / "model.pt"))
        self.save_button = PushButton(text="Save model", enabled=False)
        self.apply_output = ComboBox(choices=OUTPUT_CHOICES, value="instances", label="output")
        self.apply_classes = SpinBox(value=2, min=2, max=255, label="classes (apply)")
        self.apply_button = PushButton(text="Apply to open images", enabled=False)
        self.apply_folder = FileEdit(mode="d", label="images folder")
        self.apply_out = FileEdit(mode="d", label="output folder")
        self.apply_workers = SpinBox(
            value=0, min=0, max=64, label="dask workers", tooltip="0: one by one here; N: a local dask cluster"
        )
        self.apply_folder_button = PushButton(text="Apply to folder", enabled=False)
        after = Container(
            widgets=[
                self.save_path,
                self.save_button,
                self.apply_output,
                self.apply_classes,
                self.apply_button,
                self.apply_folder,
                self.apply_out,
                self.apply_workers,
                self.apply_folder_button,
            ]
        )
        self.plot = LossPlot(self.curve)
        outer = QVBoxLayout(self)
        for part in (
            Label(value="<b>Images</b> (tick to train; labels optional)"),
            self.rows_box,
            settings,
            buttons,
            self.progress,
            self.status,
        ):
            outer.addWidget(part.native)
        outer.addWidget(self.plot)
        outer.addWidget(after.native)
        outer.addStretch(1)
        self.train_button.changed.connect(self.start)
        self.stop_button.changed.connect(self.stop)
        self.save_button.changed.connect(self.save)
        self.apply_button.changed.connect(self.apply)
        self.apply_folder_button.changed.connect(self.apply_to_folder)
        self.label_kind.changed.connect(self._show_decisions)
        self.boundary.changed.connect(self._show_decisions)
        self.classes.changed.connect(self._show_decisions)

    def _connect_viewer(self) -> None:
        events = self.viewer.layers.events
        for name in ("inserted", "removed", "reordered"):
            getattr(events, name).connect(self.refresh_layers)
        self.destroyed.connect(lambda *_: self._tmp.cleanup())

    def _alive(self) -> bool:
        return qt_alive(self)

    # ------------------------------------------------------------------ layers
    def _images(self) -> list[Image]:
        made = {id(x) for x in self._made.values()}
        return [real(x) for x in self.viewer.layers if isinstance(real(x), Image) and id(real(x)) not in made]

    def _labels_for(self, image: Image) -> list[Labels]:
        shape = _spatial_shape(image)
        made = {id(x) for x in self._made.values()}
        return [
            real(x)
            for x in self.viewer.layers
            if isinstance(real(x), Labels) and id(real(x)) not in made and tuple(real(x).data.shape) == shape
        ]

    def refresh_layers(self, *_args) -> None:
        """One row per image layer (kept where it was), its labels choices those of the image's shape.

        Parameters
        ----------
        *_args
            Ignored (a button's or a signal's value).
        """
        if not self._alive():
            return
        old = {id(r.layer): r for r in self.rows}
        rows = []
        for image in self._images():
            row = old.pop(id(image), None) or self._new_row(image)
            names = [NO_LABELS] + [x.name for x in self._labels_for(image)]
            current = row.labels.value if row.labels.value in names else NO_LABELS
            row.labels.choices = names
            row.labels.value = current
            rows.append(row)
        for gone in old.values():
            self.rows_box.remove(gone.widget)
        self.rows = rows
        self._show_decisions()

    def _new_row(self, image: Image) -> _ImageRow:
        row = _ImageRow(image)
        self.rows_box.append(row.widget)
        row.use.changed.connect(self._show_decisions)
        row.labels.changed.connect(self._on_labels_picked(row))
        return row

    def _on_labels_picked(self, row: _ImageRow):
        def picked(value):
            if value != NO_LABELS:
                row.use.value = True
            self._show_decisions()

        return picked

    def set_labels(self, image: Image, labels: Labels | None) -> None:
        """Train on ``image`` with ``labels``.

        Parameters
        ----------
        image : napari.layers.Image
            An image layer of the viewer.
        labels : napari.layers.Labels or None
            Its labels (None: unlabelled).
        """
        row = next(r for r in self.rows if r.layer is real(image))
        row.use.value = True
        row.labels.value = NO_LABELS if labels is None else real(labels).name

    def _layer(self, name: str) -> Labels | None:
        for x in self.viewer.layers:
            if real(x).name == name and isinstance(real(x), Labels):
                return real(x)
        return None

    def _show_decisions(self, *_args) -> None:
        """Each row's label decision (or why its labels are refused), from the label rule."""
        try:
            top = max(parse_heads(self.classes.value))
        except InputError:
            top = None
        for row in self.rows:
            layer = self._layer(row.labels.value) if row.use.value else None
            if layer is None:
                row.decision.value = "  unlabelled" if row.use.value else ""
                continue
            try:
                _, d = label_targets(
                    np.asarray(layer.data),
                    top,
                    self.label_kind.value,
                    boundary=self.boundary.value,
                    shape=_spatial_shape(row.layer),
                    name=layer.name,
                )
                row.decision.value = "  " + d.summary
            except InputError as exc:
                row.decision.value = f"  refused: {exc}"

    # ------------------------------------------------------------------ training
    def training_set(self) -> tuple[list, list]:
        """The ticked images (with their labels or None) and the folder's images (unlabelled).

        Returns
        -------
        images : list
            Arrays (the layers' data) and file paths (the folder's).
        labels : list
            Per image, the labels layer's data or None.

        Raises
        ------
        InputError
            When no image is ticked and no folder chosen.
        """
        images, labels = [], []
        for row in self.rows:
            if not row.use.value:
                continue
            images.append(_image_data(row.layer))
            layer = self._layer(row.labels.value)
            labels.append(None if layer is None else np.asarray(layer.data))
        folder = self.folder.value
        if folder is not None and str(folder) not in ("", ".") and Path(folder).is_dir():
            from napari_levelset.training.data import IMAGE_EXT

            for f in sorted(Path(folder).iterdir()):
                if f.is_file() and f.suffix.lower() in IMAGE_EXT:
                    images.append(f)
                    labels.append(None)
        if not images:
            raise InputError("tick at least one image (or choose a folder of images) to train on")
        return images, labels

    def options(self) -> dict:
        """``train``'s keyword arguments from the settings.

        Returns
        -------
        dict
            ``n_classes``, ``steps``, ``crop``, ``batch_size``, ``lr``, ``lam``, ``alpha``, ``seed``,
            ``label_kind``, ``boundary``, ``contrast``, ``init``, ``resume``, ``device``.

        Raises
        ------
        InputError
            When the classes are not written as class counts.
        """
        init = self.init.value
        return dict(
            n_classes=parse_heads(self.classes.value),
            steps=int(self.steps.value),
            crop=int(self.crop.value),
            batch_size=int(self.batch_size.value),
            lr=float(self.lr.value),
            lam=float(self.lam.value),
            alpha=float(self.alpha.value),
            seed=int(self.seed.value),
            label_kind=self.label_kind.value,
            boundary=self.boundary.value,
            contrast=self.contrast.value,
            init=None if init == "new" else init,
            resume=False,
            device="auto",
        )

    def start(self, *_args) -> Any:
        """Train in a thread worker.

        Parameters
        ----------
        *_args
            Ignored (a button's or a signal's value).

        Returns
        -------
        napari.qt.threading.FunctionWorker or None
            The worker; None when a run is going or the inputs are refused (said in the status line).
        """
        if self.worker is not None:
            return None
        try:
            images, labels = self.training_set()
            options = self.options()
        except InputError as exc:
            self._error(str(exc))
            return None
        out = Path(self._tmp.name) / "model.pt"
        self.run = run = TrainingRun(steps=options["steps"])
        self.curve.clear()
        self.progress.max, self.progress.value = options["steps"], 0
        self.model_path = None
        worker = thread_worker(_train_job, start_thread=False, ignore_errors=True)(images, labels, out, options, run)
        worker.returned.connect(self._trained)
        worker.errored.connect(lambda exc: self._error(widget_message(exc)))
        worker.finished.connect(self._finished)
        self.worker = worker
        n_lab = sum(lab is not None for lab in labels)
        self.status.value = f"training on {len(images)} images ({n_lab} labelled)…"
        self._buttons()
        self._timer.start()
        worker.start()
        return worker

    def stop(self, *_args) -> None:
        """End the run at its next step, keeping the model so far.

        Parameters
        ----------
        *_args
            Ignored (a button's or a signal's value).
        """
        if self.run is not None and self.worker is not None:
            self.run.stop()
            self.status.value = "stopping…"

    def _poll(self) -> None:
        run = self.run
        if run is None or not self._alive():
            return
        points = run.take()
        if points:
            self.curve.add_points(points)
            self.progress.value = min(points[-1][0], self.progress.max)
            self.status.value = f"step {points[-1][0]} / {run.steps} · loss {points[-1][1]:.4g}"

    def _trained(self, result) -> None:
        if not self._alive():
            return
        self._poll()
        self.model_path, self.model_meta = Path(result.path), dict(result.metadata)
        heads = self.model_meta.get("train_config", {}).get("heads") or [2]
        self.apply_classes.value = int(heads[0])
        stopped = result.steps < int(self.options_steps())
        what = f"stopped at step {result.steps}" if stopped else f"trained {result.steps} steps"
        self.status.value = f"{what}; final loss {np.mean(result.losses[-20:]):.4g}: save it or apply it"
        from napari_levelset.training.edges import edge_message  # torch: loaded by the run already

        edge = edge_message(self.model_meta)  # what the labels say about objects cut by the image's edge
        self.status.value += f"\n{edge}" if edge else ""

    def options_steps(self) -> int:
        """The steps of the run going or last made (else the setting's).

        Returns
        -------
        int
        """
        return self.run.steps if self.run is not None else int(self.steps.value)

    def _finished(self) -> None:
        self.worker = None
        self._timer.stop()
        if self._alive():
            self._buttons()

    def _buttons(self) -> None:
        busy = self.worker is not None
        self.train_button.enabled = not busy
        self.stop_button.enabled = busy and self.run is not None and not self.run.stopped.is_set()
        have = self.model_path is not None and not busy
        for b in (self.save_button, self.apply_button, self.apply_folder_button):
            b.enabled = have

    def _error(self, message: str) -> None:
        if self._alive():
            self.status.value = f"error: {message}"
        notifications.show_error(message)

    # ------------------------------------------------------------------ after training
    def save(self, *_args) -> Path | None:
        """Write the trained model to ``save_path`` (a stopped run's model without its optimiser state).

        Parameters
        ----------
        *_args
            Ignored (a button's or a signal's value).

        Returns
        -------
        pathlib.Path or None
            The file written; None without a model or when it cannot be written (said in the status line).
        """
        if self.model_path is None:
            return None
        from napari_levelset.nn.model_files import load_model, save_model  # torch, on demand

        dest = Path(self.save_path.value)
        try:
            net, meta = load_model(self.model_path)
            save_model(dest, net, meta)
        except (InputError, OSError) as exc:
            self._error(widget_message(exc))
            return None
        self.status.value = f"saved {dest.name}"
        return dest

    def apply(self, *_args) -> list:
        """Segment every ticked image (all, when none is ticked) with the model, each into its own Labels layer.

        Parameters
        ----------
        *_args
            Ignored (a button's or a signal's value).

        Returns
        -------
        list
            The thread workers, one per image.
        """
        if self.model_path is None:
            return []
        model, n, regions = str(self.model_path), int(self.apply_classes.value), self.apply_output.value
        workers = []
        for row in [r for r in self.rows if r.use.value] or self.rows:
            image = row.layer
            worker = thread_worker(_apply_job, start_thread=False, ignore_errors=True)(
                _image_data(image), model, n, regions
            )
            worker.returned.connect(lambda labels, image=image: self._show_applied(image, labels))
            worker.errored.connect(lambda exc: self._error(widget_message(exc)))
            workers.append(worker)
            worker.start()
        self.status.value = f"applying the model to {len(workers)} image(s)…"
        return workers

    def _show_applied(self, image: Image, labels: np.ndarray) -> None:
        if not self._alive():
            return
        layer = self._made.get(id(image))
        if layer is not None and any(real(x) is layer for x in self.viewer.layers):
            layer.data = labels
        else:
            layer = self.viewer.add_labels(labels, name=f"{image.name} {APPLIED}", scale=image.scale[-labels.ndim :])
            self._made[id(image)] = real(layer)
            self.refresh_layers()
        if self.apply_output.value == "classes":
            layer.opacity = 0.5  # every pixel has a class: the image stays visible under it
        n = int(labels.max()) if labels.size else 0
        what = f"{n} objects" if self.apply_output.value == "instances" else f"classes up to {n}"
        self.status.value = f"{layer.name}: {what}"

    def apply_to_folder(self, *_args) -> Any:
        """Segment the images of ``apply_folder`` into ``apply_out`` (the batch path).

        Parameters
        ----------
        *_args
            Ignored (a button's or a signal's value).

        Returns
        -------
        napari.qt.threading.FunctionWorker or None
            The worker; None without a model or folders.
        """
        if self.model_path is None:
            return None
        folder, out = self.apply_folder.value, self.apply_out.value
        if not folder or not Path(folder).is_dir() or not out or str(out) in ("", "."):
            self._error("choose a folder of images and an output folder")
            return None
        worker = thread_worker(_folder_job, start_thread=False, ignore_errors=True)(
            str(folder),
            str(out),
            str(self.model_path),
            int(self.apply_classes.value),
            self.apply_output.value,
            int(self.apply_workers.value),
        )
        worker.returned.connect(self._folder_done)
        worker.errored.connect(lambda exc: self._error(widget_message(exc)))
        self.status.value = f"segmenting the images of {Path(folder).name}…"
        worker.start()
        return worker

    def _folder_done(self, summary) -> None:
        if self._alive():
            self.status.value = str(summary)


def _spatial_shape(image: Image) -> tuple:
    """The image layer's shape without its colour axis."""
    shape = tuple(image.data.shape)
    return shape[:-1] if image.rgb else shape


def _image_data(image: Image) -> np.ndarray:
    return np.asarray(image.data)
