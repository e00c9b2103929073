"""How the widget reads a napari layer: no Qt, no torch.

- ``layer_axes``: a layer's channel axis, spatial axes, output shape and geometry
  (``scale``, ``translate``, physical ``spacing`` and its ``unit``), with further
  channel layers joined to it.
- ``auto_contrast`` / ``contrast_value``: the run's contrast setting.  *auto* is
  fluorescence (background removed, log-compressed; see
  ``napari_levelset.instances.fluorescence_contrast``) for a grey or multichannel
  layer stored as integers of more than 8 bits -- what microscope cameras write
  (12/16-bit) -- and linear (the image as it is) for everything else: 8-bit
  pictures, RGB photographs, float images.
- ``channel_candidates`` / ``axes_note``: napari opens a multichannel file
  (``channel_axis``) as one Image layer per channel, so further layers of the
  picked image's shape can be more channels of one image; and a small first axis
  (2-7) on a grey layer is either the slices of a volume or channels, which
  ``axes_note`` names instead of guessing silently.
- ``instances_from_labels``: the objects of the foreground classes of a result,
  read from the output layer as the user sees it (edits included), by
  ``Segmenter.instances``.
"""

from __future__ import annotations

import numpy as np
from napari.layers import Image

from .io import InputError

__all__ = ["real", "layer_axes", "auto_contrast", "contrast_value", "spatial_geometry", "channel_candidates",
           "axes_note", "AMBIGUOUS_CHANNELS", "foreground_value", "instances_from_labels", "FOREGROUND_AUTO",
           "FOREGROUND_REST"]

#: a first axis of this length on a grey layer may be channels as well as slices
AMBIGUOUS_CHANNELS = range(2, 8)

FOREGROUND_AUTO = "auto"  #: the library's default: the brightest class (label N)
FOREGROUND_REST = "rest"  #: every class but the darkest (label 1)


def real(obj):
    """The object behind napari's ``PublicOnlyProxy`` (plugin widgets get a proxied viewer).

    Every access through the proxy makes a new wrapper, so layers are unwrapped
    once to compare them by identity and to key dicts on them.
    """
    return getattr(obj, "__wrapped__", obj)


def layer_axes(layer, channel_mode: str, volume_dims: int, extra: list = ()) -> dict:
    """How to read ``layer`` with the further channel layers ``extra``: channel axis, spatial dims,
    output shape, geometry (``scale``, ``translate``, ``spacing``, ``unit``), and ``join``: None for one
    layer, else how the layers' arrays make one image ("stack" or "concatenate").

    ``channel_mode``: "auto", "rgb", "grey" or "first" (the first axis is channels);
    ``volume_dims``: the spatial dims of a volume's run (3, or 2 for slice by slice).
    """
    if not isinstance(layer, Image):
        raise InputError("pick an Image layer to segment")
    if layer.multiscale:
        raise InputError(
            f"{layer.name!r} is a multiscale (pyramid) image, which is not supported: "
            "open one resolution level as a plain image"
        )
    shape = tuple(layer.data.shape)
    scale, translate = tuple(layer.scale), tuple(layer.translate)
    to_grey = False
    color = None
    if layer.rgb:
        out_shape = shape[:-1]
        channel_axis = None  # guessed, napari's rule: RGBA's alpha is dropped (an explicit axis would keep it)
        to_grey = channel_mode == "grey"
        color = "rgb" if channel_mode == "rgb" else None  # None: the default, CIELAB for RGB
    elif channel_mode == "first":
        if len(shape) < 3:
            raise InputError(f"'first axis is channels' needs at least 3 axes; {layer.name!r} has shape {shape}")
        channel_axis, out_shape = 0, shape[1:]
        scale, translate = scale[1:], translate[1:]
    else:
        channel_axis, out_shape = None, shape
    if len(out_shape) < 2:
        raise InputError(f"{layer.name!r} has shape {shape}: need at least 2 spatial axes")
    join = None
    extra = list(extra)
    if extra:
        if layer.rgb:
            raise InputError(f"{layer.name!r} is RGB: further channel layers go with grey layers only")
        for other in extra:
            if tuple(other.data.shape) != shape:
                raise InputError(f"the channel layer {other.name!r} has shape {tuple(other.data.shape)}, "
                                 f"but {layer.name!r} has {shape}")
        join = "concatenate" if channel_axis == 0 else "stack"
        channel_axis = 0
    spatial_dims = 2 if len(out_shape) == 2 else volume_dims
    spacing, unit = spatial_geometry(layer, spatial_dims, scale)
    return dict(
        channel_axis=channel_axis,
        spatial_dims=spatial_dims,
        out_shape=tuple(out_shape),
        scale=scale,
        translate=translate,
        to_grey=to_grey,
        color=color,
        join=join,
        layers=[layer, *extra],
        spacing=spacing,
        unit=unit,
    )


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
    """The contrast a run on ``layer`` uses for the picker value ``choice`` ('auto' resolved)."""
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


def channel_candidates(first, layers: list, owned: list) -> list:
    """Image layers that can be further channels of ``first``: same shape, grey, one scale level."""
    if first is None or first.rgb or first.multiscale:
        return []
    shape = tuple(first.data.shape)
    return [
        lay for lay in layers
        if isinstance(lay, Image) and lay is not first and not any(lay is o for o in owned)
        and not lay.rgb and not lay.multiscale and tuple(lay.data.shape) == shape
    ]


def axes_note(layer, first_is_channels: bool, volume_text: str) -> str | None:
    """A line naming both readings of an ambiguous layer and where to switch, or None.

    ``first_is_channels``: Advanced → Channels is 'first axis is channels';
    ``volume_text``: how a volume is segmented now ('3D' or '2D per slice').
    """
    if layer is None or getattr(layer, "rgb", False) or getattr(layer, "multiscale", False):
        return None
    shape = tuple(layer.data.shape)
    if len(shape) < 3 or shape[0] not in AMBIGUOUS_CHANNELS:
        return None
    n = shape[0]
    dims = " × ".join(str(s) for s in shape)
    if first_is_channels:
        return (f"⚠ {layer.name!r} is {dims}: its first axis is read as {n} channels of one image "
                f"(Advanced → Channels). If it holds {n} slices (z or time), set Channels back to auto.")
    return (f"⚠ {layer.name!r} is {dims}: its first axis is read as {n} slices, segmented {volume_text}. "
            f"If it holds {n} channels, set Advanced → Channels to 'first axis is channels'.")


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
