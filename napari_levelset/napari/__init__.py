"""napari / Qt glue for napari-levelset: the "Level-set segmentation" dock widget.

Kept apart from the algorithm (which needs no Qt).  Importing this package is
cheap: the widget module (Qt, napari) is loaded on first access, and torch only
when a run starts.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["LevelSetWidget"]

if TYPE_CHECKING:  # pragma: no cover
    from napari_levelset.napari.widget import LevelSetWidget


def __getattr__(name: str) -> Any:
    if name == "LevelSetWidget":
        return importlib.import_module(".widget", __name__).LevelSetWidget
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
