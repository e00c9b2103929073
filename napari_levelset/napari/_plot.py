"""A tiny live plot of the session's loss curve (``_session.LossCurve``), painted with QPainter (no matplotlib)."""

from __future__ import annotations

import math

from qtpy.QtCore import QPointF, QRectF, QSize, Qt
from qtpy.QtGui import QColor, QPainter, QPainterPath, QPen
from qtpy.QtWidgets import QSizePolicy, QWidget

from napari_levelset.napari._qt import qt_alive
from napari_levelset.napari._session import LossCurve

__all__ = ["LossPlot"]


class LossPlot(QWidget):
    """Loss against iteration; dashed vertical marks where a setting changed live."""

    def __init__(self, curve: LossCurve, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.curve = curve
        curve.changed.connect(self._redraw)
        self.setMinimumHeight(70)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setToolTip("Loss per iteration (dashed lines: a setting was changed during the run)")

    def sizeHint(self) -> QSize:
        return QSize(240, 80)

    def _redraw(self) -> None:
        if qt_alive(self):
            self.update()

    def paintEvent(self, event) -> None:
        """The curve in a frame, the loss on a log axis when all of it is positive (a jump after a live
        change or a stroke then leaves the rest of the curve readable); the axis values sit outside the
        frame, so they never cover the curve."""
        xs, losses, marks = self.curve.xs, self.curve.ys, self.curve.marks
        p = QPainter(self)
        try:
            p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
            fg = self.palette().color(self.foregroundRole())
            font = p.font()
            font.setPointSizeF(max(6.0, font.pointSizeF() * 0.8))
            p.setFont(font)
            metrics = p.fontMetrics()
            labels = (f"{max(losses):.3g}", f"{min(losses):.3g}") if losses else ("", "")
            left = 6 + max(metrics.horizontalAdvance(t) for t in labels)
            r = QRectF(self.rect()).adjusted(left, 4, -4, -14)
            faint = QColor(fg)
            faint.setAlpha(70)
            p.setPen(QPen(faint, 1))
            p.drawRect(r)
            if len(xs) < 1:
                p.setPen(QPen(fg, 1))
                p.drawText(r, Qt.AlignmentFlag.AlignCenter, "loss")
                return
            x0, x1 = xs[0], xs[-1]
            if x1 <= x0:
                x1 = x0 + 1
            log = min(losses) > 0
            ys = [math.log10(y) for y in losses] if log else losses
            lo, hi = min(ys), max(ys)
            if hi <= lo:
                hi = lo + (abs(lo) * 1e-3 or 1e-3)

            def pt(x, y):
                return QPointF(
                    r.left() + (x - x0) / (x1 - x0) * r.width(), r.bottom() - (y - lo) / (hi - lo) * r.height()
                )

            mark_pen = QPen(faint, 1, Qt.PenStyle.DashLine)
            p.setPen(mark_pen)
            for m in marks:
                if x0 <= m <= x1:
                    xm = pt(m, lo).x()
                    p.drawLine(QPointF(xm, r.top()), QPointF(xm, r.bottom()))
            path = QPainterPath(pt(xs[0], ys[0]))
            for x, y in zip(xs[1:], ys[1:]):
                path.lineTo(pt(x, y))
            p.setPen(QPen(QColor(255, 160, 40), 1.5))
            p.drawPath(path)
            if len(xs) == 1:
                p.drawEllipse(pt(xs[0], ys[0]), 2, 2)
            p.setPen(QPen(fg, 1))
            below = QRectF(r.left(), r.bottom(), r.width(), 14)
            p.drawText(below, Qt.AlignmentFlag.AlignLeft, f"{x0:g}")
            p.drawText(below, Qt.AlignmentFlag.AlignRight, f"{x1:g} it" + (" · log loss" if log else ""))
            axis = QRectF(0, r.top(), left - 3, r.height())
            p.drawText(axis, Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignRight, labels[0])
            p.drawText(axis, Qt.AlignmentFlag.AlignBottom | Qt.AlignmentFlag.AlignRight, labels[1])
        finally:
            p.end()
