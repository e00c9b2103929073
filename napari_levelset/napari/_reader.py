"""napari reader: a saved level-set result opens as a Labels layer with its settings.

The writer (``_writer.py``) saves a result as ``<name>.tif`` (the labels, with the voxel size)
and ``<name>.json`` beside it (the settings the widget kept in the layer's metadata).
``get_reader`` claims a ``.tif``/``.tiff`` only when such a ``.json`` is beside it, naming
that TIFF; for any other file it returns None, and napari's own reader opens it.  No torch
here; tifffile is imported when a file is read.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from napari_levelset.io.read import read_image_file
from napari_levelset.napari._writer import META_KEY

__all__ = ["get_reader", "read_result", "sidecar"]

_TIFF = (".tif", ".tiff")


def sidecar(path: str | Path) -> dict | None:
    """The writer's ``.json`` beside the TIFF ``path``, read, or None where there is none for it.

    Parameters
    ----------
    path : str or pathlib.Path
        A file path.

    Returns
    -------
    dict or None
        The ``.json``'s object when ``path`` is a ``.tif``/``.tiff`` file and the ``.json``
        beside it holds ``settings`` and names this TIFF (``labels``); else None.
    """
    if not isinstance(path, (str, Path)):
        return None
    p = Path(path)
    if p.suffix.lower() not in _TIFF or not p.is_file():
        return None
    side = p.with_suffix(".json")
    try:
        data = json.loads(side.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("settings"), dict) or data.get("labels") != p.name:
        return None
    return data


def get_reader(path) -> Callable | None:
    """napari's reader hook: ``read_result`` for a saved level-set result, else None.

    Parameters
    ----------
    path : str or list of str
        What napari asks about (a list: only a one-item list is read).

    Returns
    -------
    callable or None
        ``read_result`` where ``path`` is a TIFF with the writer's ``.json`` beside it.
    """
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    return read_result if sidecar(path) is not None else None


def read_result(path) -> list[tuple[Any, dict, str]]:
    """Read a saved result: its labels as a Labels layer, its settings in the layer's metadata.

    Parameters
    ----------
    path : str or list of str
        The TIFF (``get_reader`` checked the ``.json`` beside it).

    Returns
    -------
    list of tuple
        One ``(labels, attributes, "labels")``: the TIFF's labels, and ``name`` (the saved
        layer's), ``scale`` and ``units`` (the TIFF's pixel size and unit, where it has one)
        and ``metadata`` (``{"napari_levelset": settings}``, as the widget's results carry).

    Raises
    ------
    napari_levelset.errors.InputError
        When the TIFF cannot be read.
    """
    if isinstance(path, list):
        path = path[0]
    data = sidecar(path) or {}
    image = read_image_file(path)
    attributes: dict[str, Any] = dict(
        name=data.get("name") or Path(path).stem, metadata={META_KEY: dict(data.get("settings", {}))}
    )
    labels = image.data
    spacing = getattr(image, "spacing", None)
    if spacing is not None and len(spacing) == labels.ndim:
        attributes["scale"] = tuple(float(s) for s in spacing)
        unit = getattr(image, "unit", None)
        if unit:
            attributes["units"] = ("micrometer" if unit in ("µm", "um", "micron") else unit,) * labels.ndim
    return [(labels, attributes, "labels")]
