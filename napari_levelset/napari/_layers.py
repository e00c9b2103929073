"""How the widget reads a napari layer: no Qt, no torch.

- ``layer_axes``: a layer's channel axis, spatial axes, output shape and geometry
  (``scale``, ``translate``, physical ``spacing`` and its ``unit``), with further
  channel layers joined to it.
- ``auto_contrast`` / ``contrast_value``: the run's contrast setting.  *auto* is
  fluorescence (background removed, log-compressed; see
  ``napari_levelset.post.instances.fluorescence_contrast``) for a grey or multichannel
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

from napari_levelset.errors import InputError

__all__ = [
    "AMBIGUOUS_CHANNELS",
    "FOREGROUND_AUTO",
    "FOREGROUND_REST",
    "auto_contrast",
    "axes_note",
    "channel_candidates",
    "contrast_value",
    "foreground_value",
    "instances_from_labels",
    "layer_axes",
    "real",
    "spatial_geometry",
]

#: a first axis of this length on a grey layer may be channels as well as slices
AMBIGUOUS_CHANNELS = range(2, 8)

FOREGROUND_AUTO = "auto"  #: the library's default: the brightest class (label N)
FOREGROUND_REST = "rest"  #: every class but the darkest (label 1)


def real(obj):
    """The object behind napari's ``PublicOnlyProxy`` (plugin widgets get a proxied viewer).

    Every access through the proxy makes a new wrapper, so layers are unwrapped
    once to compare them by identity and to key dicts on them.

    Parameters
    ----------
    obj : object
        A proxied object (its ``__wrapped__``), or any other object.

    Returns
    -------
    object
        ``obj.__wrapped__`` where it has one, else ``obj``.
    """
    return getattr(obj, "__wrapped__", obj)


def layer_axes(layer, channel_mode: str, volume_dims: int, extra: list = ()) -> dict:
    """How to read ``layer`` with the further channel layers ``extra``: channel axis, spatial dims,
    output shape, geometry (``scale``, ``translate``, ``spacing``, ``unit``), and ``join``: None for one
    layer, else how the layers' arrays make one image ("stack" or "concatenate").

    Parameters
    ----------
    layer : napari.layers.Image
        The image to segment (not multiscale).
    channel_mode : {"auto", "rgb", "grey", "first"}
        ``"first"``: the first axis is channels.  On an RGB layer, ``"grey"`` averages the
        colours first and ``"rgb"`` asks for normalised RGB (``Settings.color``) instead of the
        default CIELAB; alpha is dropped.
    volume_dims : int
        The spatial dims of a volume's run: 3, or 2 for slice by slice.
    extra : list of napari.layers.Image
        Further channel layers, each of ``layer``'s shape (grey layers only).

    Returns
    -------
    dict
        ``channel_axis`` (int or None), ``spatial_dims`` (2 or 3), ``out_shape`` (tuple of int:
        the labels' shape), ``scale`` and ``translate`` (tuples of float, one per output
        axis), ``to_grey`` (bool), ``color`` ("rgb" or None), ``join`` (None, "stack" or
        "concatenate"), ``layers`` (``[layer, *extra]``), ``spacing`` (tuple of float, the
        physical pixel size per segmented axis, or None) and ``unit`` (str, see
        ``spatial_geometry``).

    Raises
    ------
    InputError
        For a layer that is not an Image layer, a multiscale one, fewer than 2 spatial axes
        (3 axes for ``"first"``), or channel layers with an RGB layer or of another shape.
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
                raise InputError(
                    f"the channel layer {other.name!r} has shape {tuple(other.data.shape)}, "
                    f"but {layer.name!r} has {shape}"
                )
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
    """``(contrast, why)`` for ``layer`` under *auto*: fluorescence for integer data of more than 8 bits.

    Parameters
    ----------
    layer : napari.layers.Image or None
        The picked image.

    Returns
    -------
    tuple of str
        ``("fluorescence", "16-bit")`` (and so on) for a grey or multichannel layer of
        (un)signed integers wider than 8 bits; else ``"linear"`` with the reason:
        ``"no image"``, ``"RGB"``, ``"8-bit"`` or the dtype's name (e.g. ``"float32"``).
    """
    if layer is None:
        return "linear", "no image"
    if layer.rgb:
        return "linear", "RGB"
    dtype = np.dtype(layer.data.dtype)
    if dtype.kind in "ui" and dtype.itemsize > 1:
        return "fluorescence", f"{8 * dtype.itemsize}-bit"
    return "linear", "8-bit" if dtype.itemsize == 1 and dtype.kind in "uib" else str(dtype)


def contrast_value(choice: str, layer) -> str:
    """The contrast a run on ``layer`` uses for the picker value ``choice`` ('auto' resolved).

    Parameters
    ----------
    choice : str
        ``"auto"``, ``"linear"`` or ``"fluorescence"``.
    layer : napari.layers.Image or None
        The picked image (for ``"auto"``, see ``auto_contrast``).

    Returns
    -------
    str
        ``"linear"`` or ``"fluorescence"`` (another choice as it is).
    """
    return auto_contrast(layer)[0] if choice == "auto" else choice


def spatial_geometry(layer, spatial_dims: int, scale: tuple) -> tuple[tuple | None, str]:
    """``(spacing, unit)``: the layer's physical pixel size along the segmented axes (None when it is
    1 everywhere, i.e. pixels) and the unit a diameter is given in.

    Parameters
    ----------
    layer : napari.layers.Image
        The layer (its ``units``, where napari has them).
    spatial_dims : int
        How many trailing axes are segmented together (2 or 3).
    scale : tuple of float
        The scale of the output axes; its last ``spatial_dims`` entries are used.

    Returns
    -------
    tuple
        ``(spacing, unit)``: ``spacing`` a tuple of float or None; ``unit`` ``"px"`` without a
        spacing, else the last axis' unit in short form (e.g. ``"µm"``), or ``"scale units"``
        where the layer names none (or pixels).
    """
    spacing = tuple(float(s) for s in scale[len(scale) - spatial_dims :])
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
    """Image layers that can be further channels of ``first``: same shape, grey, one scale level.

    Parameters
    ----------
    first : napari.layers.Image or None
        The picked image.
    layers : list of napari layers
        The viewer's layers.
    owned : list of napari layers
        Layers to leave out (the widget's own), compared by identity.

    Returns
    -------
    list of napari.layers.Image
        In the order of ``layers``, ``first`` left out; empty when ``first`` is None, RGB or
        multiscale.
    """
    if first is None or first.rgb or first.multiscale:
        return []
    shape = tuple(first.data.shape)
    return [
        lay
        for lay in layers
        if isinstance(lay, Image)
        and lay is not first
        and not any(lay is o for o in owned)
        and not lay.rgb
        and not lay.multiscale
        and tuple(lay.data.shape) == shape
    ]


def axes_note(layer, first_is_channels: bool, volume_text: str) -> str | None:
    """A line naming both readings of an ambiguous layer and where to switch, or None.

    A grey, single-scale layer of at least 3 axes whose first axis has a length in
    ``AMBIGUOUS_CHANNELS`` (2-7) is ambiguous.

    Parameters
    ----------
    layer : napari.layers.Image or None
        The picked image.
    first_is_channels : bool
        Whether Advanced → Channels is 'first axis is channels'.
    volume_text : str
        How a volume is segmented now ('3D' or '2D per slice').

    Returns
    -------
    str or None
        The note (starting with ⚠), or None for a layer that is not ambiguous.
    """
    if layer is None or getattr(layer, "rgb", False) or getattr(layer, "multiscale", False):
        return None
    shape = tuple(layer.data.shape)
    if len(shape) < 3 or shape[0] not in AMBIGUOUS_CHANNELS:
        return None
    n = shape[0]
    dims = " × ".join(str(s) for s in shape)
    if first_is_channels:
        return (
            f"⚠ {layer.name!r} is {dims}: its first axis is read as {n} channels of one image "
            f"(Advanced → Channels). If it holds {n} slices (z or time), set Channels back to auto."
        )
    return (
        f"⚠ {layer.name!r} is {dims}: its first axis is read as {n} slices, segmented {volume_text}. "
        f"If it holds {n} channels, set Advanced → Channels to 'first axis is channels'."
    )


def foreground_value(choice, n_classes: int):
    """The ``foreground`` argument of ``Segmenter.instances`` for a picker value.

    Parameters
    ----------
    choice : str or int
        ``FOREGROUND_AUTO``, ``FOREGROUND_REST`` or a class label.
    n_classes : int
        Number of classes N.

    Returns
    -------
    None, list of int or int
        None for *auto* (the brightest class), labels ``2..N`` for *rest*, else the label.

    Examples
    --------
    >>> foreground_value("rest", 4), foreground_value("3", 4), foreground_value("auto", 4)
    ([2, 3, 4], 3, None)
    """
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

    Parameters
    ----------
    seg : napari_levelset.method.segmenter.Segmenter
        The run that made the result (its number of classes, spacing and diameter).
    labels : ndarray of int
        Class labels, the image's non-channel shape (the output layer's data).
    diameter : float or None
        Expected object diameter, in the unit of the image's spacing (pixels without one);
        None: the Segmenter's, else estimated from the foreground.
    foreground : str or int
        A picker value (see ``foreground_value``).

    Returns
    -------
    ndarray of uint32
        ``labels``' shape; 0 background, objects 1..K.
    """
    n = int(seg.n_classes)
    labels = np.asarray(labels)
    onehot = labels[None] == np.arange(1, n + 1, dtype=labels.dtype).reshape((n,) + (1,) * labels.ndim)
    return seg.instances(diameter=diameter, foreground=foreground_value(foreground, n), probs=onehot)
