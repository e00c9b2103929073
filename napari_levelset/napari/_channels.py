"""Which layers (and which of their axes) make the image: channel-layer pickers and the axes note.

napari opens a multichannel file (``channel_axis``) as one Image layer per
channel.  ``ChannelPickers`` lets the widget take further layers of the picked
image's shape as more channels of one image: the run stacks them on a new first
axis (channels), and its outputs go next to the picked (first) layer.

``AxesNote`` shows ``napari_levelset.napari._layers.axes_note`` -- a small first axis
(2-7) on a grey layer is either the slices of a volume or channels -- with a
button for the other reading.  No torch here.
"""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import Signal
from qtpy.QtWidgets import QComboBox, QHBoxLayout, QLabel, QPushButton, QToolButton, QVBoxLayout, QWidget

from napari_levelset.napari._layers import axes_note

__all__ = ["AxesNote", "ChannelPickers"]


class AxesNote(QWidget):
    """The ambiguous-axes line (``axes_note``) with a button that switches to the other reading.

    ``switch_requested(bool first_is_channels)`` asks for the other reading.
    """

    switch_requested = Signal(bool)

    def __init__(self) -> None:
        super().__init__()
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.label = QLabel()
        self.label.setWordWrap(True)
        self.switch_btn = QPushButton()
        self.switch_btn.setToolTip("Switch Advanced → Channels between the two readings")
        lay.addWidget(self.label)
        lay.addWidget(self.switch_btn)
        self._first = False
        self.switch_btn.clicked.connect(lambda *_a: self.switch_requested.emit(not self._first))
        self.setVisible(False)

    def show_for(self, layer, first_is_channels: bool, volume_text: str) -> None:
        text = axes_note(layer, first_is_channels, volume_text)
        self._first = first_is_channels
        self.label.setText(text or "")
        self.switch_btn.setText("read it as a volume" if first_is_channels else "read it as channels")
        self.setVisible(text is not None)


class _Row(QWidget):
    def __init__(self, owner: ChannelPickers, number: int):
        super().__init__()
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.label = QLabel()
        self.combo = QComboBox()
        self.combo.setToolTip("A further channel: an Image layer of the same shape as the picked image")
        self.remove_btn = QToolButton()
        self.remove_btn.setText("−")
        self.remove_btn.setToolTip("Take this channel layer out")
        lay.addWidget(self.label)
        lay.addWidget(self.combo, 1)
        lay.addWidget(self.remove_btn)
        self.set_number(number)
        self.combo.currentIndexChanged.connect(owner._on_user_change)
        self.remove_btn.clicked.connect(lambda *_a, row=self: owner.remove_row(row))

    def set_number(self, number: int) -> None:
        self.label.setText(f"channel {number}")

    @property
    def layer(self):
        return self.combo.currentData()


class ChannelPickers(QWidget):
    """Pickers for further channel layers of the picked image (the picked image is channel 1).

    ``add_btn`` ("+ channel") is placed by the widget next to its image picker.
    ``changed`` is emitted when the set of channel layers changed.
    """

    changed = Signal()

    def __init__(self) -> None:
        super().__init__()
        self._rows: list[_Row] = []
        self._candidates: list = []
        self._lay = QVBoxLayout(self)
        self._lay.setContentsMargins(0, 0, 0, 0)
        self.add_btn = QPushButton("+ channel")
        self.add_btn.setToolTip(
            "Take another Image layer of the same shape as a further channel of this image (napari opens a "
            "multichannel file as one layer per channel): the run segments the channels together, and the "
            "results go next to the layer picked under Image"
        )
        self.add_btn.clicked.connect(lambda *_a: self.add())
        self.setVisible(False)
        self.add_btn.setEnabled(False)

    def layers(self) -> list:
        """The further channel layers, in the order of the pickers (no duplicates)."""
        out: list = []
        for row in self._rows:
            lay = row.layer
            if lay is not None and not any(lay is o for o in out):
                out.append(lay)
        return out

    def set_layers(self, layers: list) -> None:
        """Pick exactly these layers (each must be a candidate)."""
        for lay in layers:
            if not any(lay is c for c in self._candidates):
                raise ValueError(f"{getattr(lay, 'name', lay)!r} cannot be a channel of the picked image")
        for row in list(self._rows):
            self._drop(row)
        for lay in layers:
            self._add_row(lay)
        self._relabel()
        self.changed.emit()

    def add(self, layer: Any = None):
        """Add a picker, preset to ``layer`` or to the first candidate not picked yet; returns its layer."""
        if layer is None:
            used = self.layers()
            free = [c for c in self._candidates if not any(c is u for u in used)]
            if not free:
                return None
            layer = free[0]
        self._add_row(layer)
        self._relabel()
        self.changed.emit()
        return layer

    def remove_row(self, row: _Row) -> None:
        self._drop(row)
        self._relabel()
        self.changed.emit()

    def refill(self, candidates: list) -> None:
        """New candidates (the viewer or the picked image changed): rows whose layer went are dropped."""
        self._candidates = list(candidates)
        dropped = False
        for row in list(self._rows):
            cur = row.layer
            if not any(cur is c for c in candidates):
                self._drop(row)
                dropped = True
                continue
            row.combo.blockSignals(True)
            row.combo.clear()
            for c in candidates:
                row.combo.addItem(c.name, c)
            row.combo.setCurrentIndex(next(i for i, c in enumerate(candidates) if c is cur))
            row.combo.blockSignals(False)
        self._relabel()
        if dropped:
            self.changed.emit()

    # -- internals
    def _add_row(self, layer) -> None:
        row = _Row(self, len(self._rows) + 2)
        row.combo.blockSignals(True)
        for c in self._candidates:
            row.combo.addItem(c.name, c)
        index = next((i for i, c in enumerate(self._candidates) if c is layer), 0)
        row.combo.setCurrentIndex(index)
        row.combo.blockSignals(False)
        self._rows.append(row)
        self._lay.addWidget(row)

    def _drop(self, row: _Row) -> None:
        self._rows.remove(row)
        self._lay.removeWidget(row)
        row.setParent(None)
        row.deleteLater()

    def _relabel(self) -> None:
        for i, row in enumerate(self._rows):
            row.set_number(i + 2)
        self.setVisible(bool(self._rows))
        self.add_btn.setEnabled(len(self.layers()) < len(self._candidates))

    def _on_user_change(self, *_args) -> None:
        self.changed.emit()
