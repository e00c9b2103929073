"""What a run does for the output asked for: one plan for ``segment`` and the napari widget.

``plan_run`` resolves the settings for the model, the output (``Settings.regions``) and the
strokes (``Settings.resolved``), checks what only instances take, and prepares the image:
instances of the per-image CNN without strokes are optimised on a smaller copy
(``INSTANCE_PIXELS``) of the image prepared at full size (fluorescence contrast where
asked).  The ``RunPlan`` it returns makes the run's ``Segmenter`` (``make_segmenter``),
brings its snapshots' labels to the image's grid for display (``display``) and makes the
output from the run (``finish``: class labels, regions, or instances from the probabilities
brought back to the full grid).  ``napari_levelset.method.segmentation.segment`` and the
widget's worker (``napari_levelset.napari._worker``) both run through it, so a run in the
widget computes what ``segment`` computes for the same image and settings.

No torch at import: ``make_segmenter`` imports the Segmenter when called.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_levelset import validate
from napari_levelset.errors import InputError
from napari_levelset.io.axes import infer_axes
from napari_levelset.io.prepare import Prepared, prepare_image
from napari_levelset.post.instances import (
    as_spacing,
    check_scale,
    contrast_color,
    fluorescence_prepared,
    resample_prepared,
    upsample,
)
from napari_levelset.settings import INSTANCE_PIXELS, Settings, is_builtin_cnn, model_kind

__all__ = ["RunPlan", "plan_run", "spatial_shape"]


@dataclass
class RunPlan:
    """A run planned by ``plan_run``: the resolved settings, the inputs of its ``Segmenter`` and how
    its output is made.

    Parameters
    ----------
    settings : napari_levelset.settings.Settings
        Every per-model default resolved (``Settings.resolved``); for instances on a working
        copy, ``contrast="linear"`` and the diameter used (the copy is prepared already).
    image : numpy.ndarray or None
        The checked image (``validate.image_array``).
    scribbles : array_like of int or None
        The strokes, the image's non-channel shape.
    channel_axis, spatial_dims : int or None
        As for ``prepare_image``.
    spacing : sequence of float or None
        Physical pixel (voxel) size per spatial axis.
    prepared : napari_levelset.io.prepare.Prepared or None
        What the ``Segmenter`` optimises on where the plan prepared it (instances of the
        per-image CNN), else None (the ``Segmenter`` prepares the image).
    full : napari_levelset.io.prepare.Prepared or None
        The image prepared at full size, where ``prepared`` may be a smaller copy of it.
    contrast : str or None
        The contrast the plan prepared the image with (``settings.contrast`` is then
        ``"linear"``: the Segmenter takes the image as prepared); None where it did not.
    """

    settings: Settings
    image: np.ndarray | None
    scribbles: Any
    channel_axis: int | None
    spatial_dims: int | None
    spacing: Any
    prepared: Prepared | None = None
    full: Prepared | None = None
    contrast: str | None = None

    @property
    def output(self) -> str:
        """What the run makes: ``Settings.regions`` (``classes``, ``connected``, ``merged``, ``instances``)."""
        return self.settings.regions

    @property
    def iterations(self) -> int:
        """The resolved number of iterations."""
        return int(self.settings.iterations)

    def make_segmenter(self):
        """The run's ``Segmenter``, made from the plan's inputs.

        Returns
        -------
        napari_levelset.method.segmenter.Segmenter
            Not yet run.

        Raises
        ------
        InputError
            For a bad image, scribbles or setting.
        """
        # imports torch: only when a run starts (the widget imports this module without torch)
        from napari_levelset.method.segmenter import Segmenter

        return Segmenter(
            self.image,
            settings=self.settings,
            scribbles=self.scribbles,
            channel_axis=self.channel_axis,
            spatial_dims=self.spatial_dims,
            prepared=self.prepared,
            spacing=self.spacing,
        )

    def display(self, values: np.ndarray | None) -> np.ndarray | None:
        """A snapshot's labels (or a per-pixel map) on the image's grid, for display.

        Parameters
        ----------
        values : ndarray or None
            On the Segmenter's grid (``prepared.out_shape``).

        Returns
        -------
        ndarray or None
            ``values`` itself on the full grid, else brought to it by nearest neighbour.
        """
        if values is None or self.full is None or tuple(values.shape) == tuple(self.full.out_shape):
            return values
        out = values
        ndim = len(self.full.spatial_shape)
        for axis, n in zip(range(values.ndim - ndim, values.ndim), self.full.spatial_shape):
            m = out.shape[axis]
            index = np.minimum(((np.arange(n) + 0.5) * (m / n)).astype(np.intp), m - 1)
            out = np.take(out, index, axis=axis)
        return out

    def finish(self, seg, last=None) -> np.ndarray:
        """The output of a finished run of ``seg`` (made by ``make_segmenter``).

        Parameters
        ----------
        seg : napari_levelset.method.segmenter.Segmenter
            The run.
        last : napari_levelset.method.segmenter.Snapshot or None
            Its last snapshot (None: the current labels are computed).

        Returns
        -------
        ndarray
            The image's non-channel shape: class labels, regions or instances (see
            ``napari_levelset.method.segmentation.segment``).
        """
        s = self.settings
        if s.regions == "instances":
            probs = None
            if self.full is not None:  # optimised on a smaller copy: probabilities back to the full image
                n = s.n_classes
                probs = upsample(
                    seg.probabilities().reshape((n, -1) + seg.prepared.spatial_shape), self.full.spatial_shape
                ).reshape((n,) + self.full.out_shape)
            return seg.instances(diameter=s.diameter, foreground=s.foreground, min_region=s.min_region, probs=probs)
        labels = last.labels if last is not None else seg.labels()
        return seg.regions(labels, s.regions, min_region=s.min_region, merge=s.merge)


def plan_run(
    image,
    settings: Settings | None = None,
    scribbles=None,
    channel_axis: int | None = None,
    spatial_dims: int | None = None,
    spacing=None,
) -> RunPlan:
    """Plan a run of ``image``: settings resolved for its model and output, the image prepared.

    Parameters
    ----------
    image : array_like
        Grey or multichannel, 2D or 3D, any numeric or boolean dtype.
    settings : Settings, mapping or None
        The settings (``Settings.given``); None fields are resolved here.
    scribbles : array_like of int, optional
        The image's non-channel shape: 0 unpainted, ``k`` label ``k``.
    channel_axis, spatial_dims : int, optional
        As for ``prepare_image``.
    spacing : sequence of float, optional
        Physical size of a pixel (voxel) per spatial axis.

    Returns
    -------
    RunPlan
        The plan.

    Raises
    ------
    InputError
        For a bad image, scribbles or setting, ``diameter`` or ``foreground`` without
        ``regions="instances"``, scribbles given to a pretrained model used directly, or
        (instances) a ``spacing`` or ``diameter`` that asks for more than the image holds.
    """
    s = Settings.given(settings)
    channel_axis, spatial_dims = validate.channel_axis(channel_axis), validate.spatial_dims(spatial_dims)
    if image is not None:
        image = validate.image_array(image)
    instances = s.regions == "instances"
    if not instances and (s.diameter is not None or s.foreground is not None):
        raise InputError("diameter and foreground are settings of regions='instances'")
    if instances and image is not None:  # before any work that spacing or diameter would size
        check_scale(spatial_shape(image.shape, channel_axis, spatial_dims), spacing, s.diameter)
    strokes = scribbles is not None and bool(np.any(validate.scribble_array(scribbles)))
    s = s.resolved(strokes=strokes, image=image, channel_axis=channel_axis)
    if s.iterations == 0 and model_kind(s.model) == "unet" and s.init == "network" and strokes:
        raise InputError(
            "scribbles steer the optimisation: a pretrained model used directly would ignore them; "
            "give finetune_iterations (e.g. 20)"
        )
    plan = RunPlan(
        settings=s,
        image=image,
        scribbles=scribbles,
        channel_axis=channel_axis,
        spatial_dims=spatial_dims,
        spacing=spacing,
    )
    if instances and is_builtin_cnn(s.model) and scribbles is None:
        full = prepare_image(image, channel_axis, spatial_dims, color=contrast_color(s.contrast, s.color))
        sp = as_spacing(spacing, len(full.spatial_shape))
        diameter = s.diameter
        if s.contrast == "fluorescence":
            full, diameter = fluorescence_prepared(full, diameter, sp)
        small, zoom = resample_prepared(full, INSTANCE_PIXELS, diameter, sp)
        plan.prepared, plan.full, plan.contrast = (full if zoom == 1.0 else small), full, s.contrast
        plan.settings = s.replace(contrast="linear", diameter=diameter)
    return plan


def spatial_shape(shape: tuple[int, ...], channel_axis: int | None, spatial_dims: int | None) -> tuple[int, ...]:
    """The spatial axes of an image of ``shape`` (``napari_levelset.io.axes.infer_axes``'s rules).

    Parameters
    ----------
    shape : tuple of int
        The image's shape.
    channel_axis, spatial_dims : int or None
        As for ``prepare_image``.

    Returns
    -------
    tuple of int
        The lengths of the spatial axes.
    """
    channel_axis, spatial_dims = infer_axes(tuple(shape), channel_axis, spatial_dims)
    rest = [n for i, n in enumerate(shape) if i != channel_axis]
    return tuple(rest[len(rest) - spatial_dims :])
