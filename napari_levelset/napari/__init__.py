"""All napari glue of napari-levelset: the manifest (``napari.yaml``), the "Level-set segmentation"
dock widget (``widget``: views over ``_session``, the Qt-free model of one widget session, with
``_form``, ``_runs``, ``_outputs``, ``_instances``, ``_channels``, ``_plot``, ``_qt`` and the thread
``_worker``), how a layer is read (``_layers``), the writer and reader of results (``_writer``,
``_reader``) and the samples (``_sample_data``).

No other module of the package imports napari or Qt.  Importing this package is cheap: the
widget module (Qt, napari) is loaded on first access, and torch only when a run starts.
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
