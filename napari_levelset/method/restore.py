"""Rebuild a run from a result layer's metadata: ``restore_segmenter`` (the widget's Refine and the
napari writer's files; imports torch through the ``Segmenter``)."""

from __future__ import annotations

from collections.abc import Mapping

from napari_levelset.io.prepare import join_channels
from napari_levelset.method.segmenter import Segmenter
from napari_levelset.settings import Settings

__all__ = ["restore_segmenter"]

#: keys of ``Segmenter.settings`` that describe the run rather than choose it
_RECORD = ("channel_axis", "spatial_dims", "spacing")


def restore_segmenter(image, settings: Mapping, state: Mapping | None = None, **overrides):
    """Rebuild a ``Segmenter`` from a result layer's metadata (imports torch).

    Parameters
    ----------
    image : array_like
        The image the run was made on (for a run on several channel layers, their arrays
        stacked on a first axis, in the order of ``settings["channels"]``; an RGB image
        the widget turned grey is turned grey again when ``settings["to_grey"]``).
    settings : mapping
        ``metadata["napari_levelset"]`` of the result layer: ``Segmenter.settings`` (and
        the widget's own keys, which are ignored here).
    state : mapping, optional
        ``metadata["napari_levelset_state"]``: the network's weights.  With it the network
        continues from the weights it stopped with (refine; the optimiser's moments are not
        kept, and a snapshot's labels came from the forward pass before its last step, so
        the rebuilt labels differ in a few pixels); without it a new run with the same
        settings reproduces the result on the CPU (same seed).
    **overrides
        Settings to replace (e.g. ``device="cpu"``).

    Returns
    -------
    Segmenter
        Made on ``image`` with the stored settings (and ``channel_axis``, ``spatial_dims``,
        ``spacing``), with the weights, label order and iteration count of ``state`` where given.

    Raises
    ------
    InputError
        For settings out of range, unknown names among ``overrides``, or a ``state`` that does
        not fit the network (``Segmenter.load_state_dict``).
    """
    if isinstance(settings.get("settings"), Mapping):  # the napari writer's .json
        settings = settings["settings"]
    s = Settings.from_json(settings).replace(**overrides)
    data = join_channels(image, to_grey=bool(settings.get("to_grey", False)))
    seg = Segmenter(data, settings=s, **{k: settings.get(k) for k in _RECORD})
    if state is not None:
        seg.load_state_dict(
            {
                "model": state,
                "order": settings.get("order", list(range(seg.n_classes))),
                "iteration": settings.get("iteration", 0),
            }
        )
    return seg
