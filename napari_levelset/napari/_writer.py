"""napari writer: save a Labels layer as a TIFF with its voxel size, and the level-set settings beside it.

napari calls :func:`write_labels_layer` from File > Save Selected Layers… for a Labels layer saved as
``.tif``/``.tiff`` with this plugin's writer.  No torch here; :func:`napari_levelset.io.write.write_labels`
writes the TIFF (an ImageJ hyperstack with the layer's scale as voxel size, atomically).  The settings
the widget stored in the layer's metadata (model, N, λ, iterations, the image's name, …) go to
``<name>.json`` beside it, so a result can be reproduced; the network's weights (kept for Refine) are
not written.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from napari_levelset.errors import InputError
from napari_levelset.io.read import TIFF_EXT
from napari_levelset.io.write import atomic_write, write_labels

#: where the widget keeps a result's settings in ``layer.metadata``
META_KEY = "napari_levelset"


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)


def write_labels_layer(path: str, data: Any, meta: dict) -> list[str]:
    """Write one Labels layer (napari's single-layer writer contribution).

    Parameters
    ----------
    path : str
        Target file, ``.tif`` or ``.tiff``.
    data : array-like, integer, 2D or 3D (Z, Y, X)
        The layer's labels (a lazily read array is read whole).
    meta : dict
        napari's layer attributes: ``scale`` (voxel size per axis, used as the TIFF's spacing),
        ``units`` and ``metadata`` (this plugin's settings under ``"napari_levelset"``).

    Returns
    -------
    list of str
        The files written: the TIFF, and ``<name>.json`` when the layer holds level-set settings.

    Raises
    ------
    napari_levelset.errors.InputError
        When the path does not end in .tif/.tiff, the layer's scale is not one positive number per
        axis, or the labels cannot be written there.

    Examples
    --------
    >>> import numpy as np, tempfile, os
    >>> out = os.path.join(tempfile.mkdtemp(), "cells.tif")
    >>> meta = {"name": "cells", "scale": (0.5, 0.5), "metadata": {"napari_levelset": {"n_classes": 3}}}
    >>> [os.path.basename(f) for f in write_labels_layer(out, np.ones((8, 8), np.uint8), meta)]
    ['cells.tif', 'cells.json']
    """
    if Path(path).suffix.lower() not in TIFF_EXT:
        raise InputError(f"the level-set writer writes TIFF files (.tif, .tiff); got {Path(path).name!r}")
    labels = np.asarray(data)
    scale = meta.get("scale")
    spacing = None
    if scale is not None and len(scale) == labels.ndim and labels.ndim in (2, 3):
        try:
            spacing = [float(s) for s in scale]
        except (TypeError, ValueError):
            raise InputError(f"the layer's scale must be numbers, one per axis; got {list(scale)!r:.80}") from None
    units = meta.get("units")
    unit = None
    if units:
        first = str(units[0]) if isinstance(units, (list, tuple)) else str(units)
        unit = None if first in ("pixel", "") else first.replace("micrometer", "µm")
    axes = "ZYX"[-labels.ndim :] if labels.ndim in (2, 3) else None
    out = write_labels(path, labels, axes=axes, spacing=spacing, unit=unit)
    written = [str(out)]
    settings = (meta.get("metadata") or {}).get(META_KEY)
    if settings:
        sidecar = Path(out).with_suffix(".json")
        text = json.dumps(
            dict(labels=Path(out).name, name=meta.get("name"), scale=spacing, settings=_jsonable(settings)), indent=2
        )
        atomic_write(sidecar, lambda tmp: Path(tmp).write_text(text))
        written.append(str(sidecar))
    return written
