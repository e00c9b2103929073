"""Small Qt helpers shared by the widget's views."""

from __future__ import annotations

from magicgui.widgets import PushButton

__all__ = ["button", "qt_alive"]


def qt_alive(obj) -> bool:
    """Whether the C++ side of a Qt object is still there (binding-agnostic).

    Parameters
    ----------
    obj : QObject
        A Qt object.

    Returns
    -------
    bool
        False once Qt deleted it.
    """
    try:
        obj.objectName()
    except RuntimeError:
        return False
    return True


def button(text: str, tooltip: str = "", enabled: bool = True) -> PushButton:
    """A magicgui push button.

    Parameters
    ----------
    text : str
        Its label.
    tooltip : str
        Its tooltip ("" for none).
    enabled : bool
        Whether it starts enabled.

    Returns
    -------
    magicgui.widgets.PushButton
    """
    return PushButton(text=text, tooltip=tooltip or None, enabled=enabled)
