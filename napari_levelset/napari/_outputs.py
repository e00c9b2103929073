"""The layers the widget makes for an image: their names, and keeping them up to date.

``RESULT_LAYERS`` is the one table of these layers: a run's classes
(``<image> level-set``) and uncertainty (``<image> level-set uncertainty``), and the
Regions and Instances steps' layers.  ``OutputLayers`` makes them with those names,
updates them in place, takes over the ones a closed widget left (``adopt``), and
forgets the ones the user deleted.  No Qt and no torch here.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from napari.layers import Image, Labels
from napari.utils.colormaps import CyclicLabelColormap, DirectLabelColormap

from napari_levelset.napari._layers import real
from napari_levelset.napari._writer import META_KEY  # where a result keeps its settings

__all__ = ["META_KEY", "RESULT_LAYERS", "STATE_KEY", "OutputLayers", "result_name"]

#: metadata key of the network state on the output layer (for Refine and restoring a run)
STATE_KEY = "napari_levelset_state"

#: kind -> (the suffix of its name after the image's name, its layer type)
RESULT_LAYERS: dict[str, tuple[str, type]] = {
    "output": ("level-set", Labels),
    "uncertainty": ("level-set uncertainty", Image),
    "regions": ("regions", Labels),
    "instances": ("instances", Labels),
}


def result_name(image_name: str, kind: str) -> str:
    """The name of the ``kind`` layer (see ``RESULT_LAYERS``) made for the image called ``image_name``."""
    return f"{image_name} {RESULT_LAYERS[kind][0]}"


class OutputLayers:
    """The result layers, per kind and image layer.

    ``layers()`` gives the viewer's layers (unwrapped, bottom to top) and ``append(layer)`` adds one on top;
    ``added()`` is called after a layer was added.
    """

    def __init__(self, layers: Callable[[], list], viewer, added: Callable[[], None]) -> None:
        self._layers = layers
        self._viewer = viewer
        self._added = added
        self._stores: dict[str, dict[int, object]] = {kind: {} for kind in RESULT_LAYERS}

    def get(self, kind: str, image):
        """The ``kind`` layer made for ``image`` (None when there is none, or no image)."""
        return self._stores[kind].get(id(image)) if image is not None else None

    def all(self, kind: str) -> list:
        return list(self._stores[kind].values())

    def owned(self) -> list:
        """Every result layer: these are not offered as images or scribbles."""
        return [lay for store in self._stores.values() for lay in store.values()]

    def in_viewer(self, layer) -> bool:
        return layer is not None and any(layer is lay for lay in self._layers())

    def adopt(self) -> None:
        """Take over the result layers a closed widget left (named as in ``RESULT_LAYERS``, with this
        plugin's metadata naming the image), so that a reopened widget updates them instead of adding
        ``… [1]`` beside them."""
        layers = self._layers()
        by_name = {lay.name: lay for lay in layers}
        for image in layers:
            if not isinstance(image, Image) or META_KEY in image.metadata:
                continue
            for kind, (_suffix, layer_type) in RESULT_LAYERS.items():
                store = self._stores[kind]
                layer = by_name.get(result_name(image.name, kind))
                if (
                    isinstance(layer, layer_type)
                    and META_KEY in layer.metadata
                    and layer.metadata[META_KEY].get("image") == image.name
                    and id(image) not in store
                ):
                    store[id(image)] = layer

    def forget(self, layer) -> None:
        """``layer`` left the viewer: as an image, its results are no longer its; as a result, it is gone."""
        for store in self._stores.values():
            store.pop(id(layer), None)
            for k, v in list(store.items()):
                if v is layer:
                    del store[k]

    def add_on_top(self, layer) -> None:
        """Add ``layer`` at the top of the layer list (where napari puts new layers, so no other layer
        hides it) without changing the user's selection."""
        sel = self._viewer.layers.selection
        active, selected = real(sel.active), {real(x) for x in sel}
        self._viewer.layers.append(layer)
        if selected:
            sel.clear()
            sel.update(selected)
            if active is not None:
                sel.active = active
        self._added()

    def show_snapshot(self, image, up, meta: dict, with_probs: bool, scale: tuple, translate: tuple) -> Labels:
        """Put a run's snapshot ``up`` (labels, uncertainty) into ``image``'s layers, made on the first
        one; returns the output layer (its metadata is ``meta``)."""
        if with_probs and up.uncertainty is not None:
            unc = self.get("uncertainty", image)
            if self.in_viewer(unc) and unc.data.shape == up.uncertainty.shape:
                np.copyto(unc.data, up.uncertainty)
                unc.refresh(extent=False, highlight=False)
            else:
                unc = Image(
                    up.uncertainty.copy(),
                    name=result_name(image.name, "uncertainty"),
                    colormap="magma",
                    contrast_limits=(0.0, 1.0),
                    blending="additive",
                    scale=scale,
                    translate=translate,
                    metadata={META_KEY: dict(meta, kind="uncertainty")},
                )
                self._stores["uncertainty"][id(image)] = unc
                self.add_on_top(unc)
        out = self.get("output", image)
        if self.in_viewer(out):
            if out.data.shape == up.labels.shape and out.data.dtype == up.labels.dtype:
                np.copyto(out.data, up.labels)
                out.refresh(extent=False, highlight=False)
            else:
                out.data = up.labels.copy()
        else:
            out = Labels(
                up.labels.copy(), name=result_name(image.name, "output"), scale=scale, translate=translate, opacity=0.5
            )
            self._stores["output"][id(image)] = out
            self.add_on_top(out)
        out.metadata[META_KEY] = meta
        return out

    def step_layer(self, kind: str, image, out: Labels, data: np.ndarray, opacity: float) -> Labels:
        """The ``kind`` layer (regions, instances) of ``image``, holding ``data``: the same layer while it is
        in the viewer, else a new one with ``out``'s scale and translate, put on top of the layer list."""
        store = self._stores[kind]
        layer = store.get(id(image))
        if self.in_viewer(layer):
            layer.data = data
            layer.visible = True
            self.move_to_top(layer)
        else:
            layer = Labels(
                data, name=result_name(image.name, kind), scale=out.scale, translate=out.translate, opacity=opacity
            )
            store[id(image)] = layer
            self.add_on_top(layer)
        return layer

    def move_to_top(self, layer) -> None:
        """Move ``layer`` (in the viewer) to the top of the layer list."""
        layers = self._layers()
        index = next(i for i, lay in enumerate(layers) if lay is layer)
        if index != len(layers) - 1:
            self._viewer.layers.move(index, len(layers))

    def hide_steps(self, image) -> None:
        """Hide ``image``'s regions and instances layers (a new run's labels go under them otherwise);
        they stay in the viewer."""
        for kind in ("regions", "instances"):
            layer = self.get(kind, image)
            if self.in_viewer(layer):
                layer.visible = False

    # ------------------------------------------------------------------ colours
    @staticmethod
    def transparent_label(choice: str, settings: dict, ndim: int) -> int | None:
        """The output label drawn transparent for the picker value ``choice`` ("auto", "none", "darkest",
        "brightest") for a result of ``ndim`` axes made with ``settings`` (n_classes, contrast, regions, spatial_dims),
        or None."""
        if choice == "auto":
            volume = ndim >= 3 and settings.get("spatial_dims", 3) == 3
            # the background of a volume, of a fluorescence image and of any instances run is the darkest class
            # (for dark objects on a light field, of the signal that made them bright)
            objects = (
                settings.get("contrast") in ("fluorescence", "transmitted") or settings.get("regions") == "instances"
            )
            choice = "darkest" if volume or objects else "none"
        if choice == "darkest":
            return 1
        if choice == "brightest":
            return int(settings.get("n_classes") or 0) or None
        return None

    def colour_classes(self, out: Labels, settings: dict, choice: str) -> None:
        """Napari's colours for the output's labels, with one class transparent (or none)."""
        clear = self.transparent_label(choice, settings, out.data.ndim)
        base = getattr(out, "_levelset_colormap", None)
        if base is None:
            base = out._levelset_colormap = out.colormap
        if clear is None or not isinstance(base, CyclicLabelColormap):
            out.colormap = base
            return
        n = max(int(settings.get("n_classes") or 0), clear)
        colours = {k: tuple(base.map(np.array([k]))[0]) for k in range(1, n + 1)}
        for k in (clear, 0, None):
            colours[k] = (0.0, 0.0, 0.0, 0.0)
        out.colormap = DirectLabelColormap(color_dict=colours)

    def recolour(self, choice: str) -> None:
        """The transparent class changed: the output layers in the viewer take it at once."""
        for out in self.all("output"):
            if self.in_viewer(out):
                self.colour_classes(out, out.metadata.get(META_KEY, {}), choice)
