"""What a run does for the output asked for: one plan for ``segment`` and the napari widget.

``plan_run`` resolves the settings for the model, the output (``Settings.regions``) and the
strokes (``Settings.resolved``), checks what only instances take, and prepares the image:
instances of the per-image CNN without strokes are optimised on a smaller copy
(``INSTANCE_PIXELS``) of the image prepared at full size (fluorescence contrast for bright
objects, ``napari_levelset.post.objects.transmitted_prepared`` for dark ones; the contrast
read from the image, ``napari_levelset.settings.object_contrast``, when none is given).
The ``RunPlan`` it returns makes the run's ``Segmenter`` (``make_segmenter``),
brings its snapshots' labels to the image's grid for display (``display``) and makes the
output from the run (``finish``: class labels, regions, or instances from the probabilities
brought back to the full grid; a U-Net's instances of bright objects are split and outlined
on the linear signal as the per-image CNN's are).  ``napari_levelset.method.segmentation.segment`` and the
widget's worker (``napari_levelset.napari._worker``) both run through it, so a run in the
widget computes what ``segment`` computes for the same image and settings.

No torch at import: ``make_segmenter`` imports the Segmenter when called.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_levelset import validate
from napari_levelset.errors import InputError
from napari_levelset.io.axes import infer_axes
from napari_levelset.io.prepare import Prepared, prepare_image
from napari_levelset.post.instances import (
    CONTRAST_MODES,
    LOG_UNIT_NOISE,
    as_spacing,
    check_scale,
    contrast_color,
    fluorescence_prepared,
    foreground_classes,
    foreground_diameter,
    instance_labels_per_item,
    noise_sigma,
    resample_prepared,
    upsample,
)
from napari_levelset.post.objects import (
    MIN_SOLIDITY,
    OUTLINE_FRACTION,
    TRANSMITTED_CAP,
    TRANSMITTED_MIN_PX,
    drop_concave,
    linear_signal,
    outlines_on_linear,
    transmitted_prepared,
)
from napari_levelset.settings import INSTANCE_PIXELS, Settings, is_builtin_cnn, model_kind, object_contrast

__all__ = ["PREVIEW_PIXELS", "RunPlan", "nearest", "plan_run", "spatial_shape"]

#: most pixels (voxels) per batch item of the strided copy ``RunPlan.preview`` clusters
PREVIEW_PIXELS = 65_536


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
    contrast_reason : str
        Why the contrast is what it is: ``"given"``, or for instances the measurement by which
        ``napari_levelset.settings.object_contrast`` chose it.
    objects : str or None
        What was decided about the objects and why (the run's record, key ``objects``),
        where the plan prepared the image.
    linear : ndarray or None
        ``(B, *S)``: the linear signal (``napari_levelset.post.objects.linear_signal``) on
        which the objects of a fluorescence contrast are outlined again, else None.
    split_diameter : float or None
        The diameter touching objects are split at: the one estimated for bright objects,
        for dark ones only the one given (None: that of the foreground found).
    diameter_estimated : bool
        Whether the plan estimated ``split_diameter`` (no diameter given); the split then uses
        the smaller of it and the foreground's own (``finish``).
    convex : bool
        Whether objects less convex than ``napari_levelset.post.objects.MIN_SOLIDITY`` are left
        out (``drop_concave``): grey images of dark objects, whose cytoplasm was removed.
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
    contrast_reason: str = "given"
    objects: str | None = None
    linear: np.ndarray | None = None
    split_diameter: float | None = None
    diameter_estimated: bool = False
    convex: bool = False

    @property
    def output(self) -> str:
        """What the run makes: ``Settings.regions`` (``classes``, ``connected``, ``merged``, ``instances``)."""
        return self.settings.regions

    @property
    def iterations(self) -> int:
        """The resolved number of iterations."""
        return int(self.settings.iterations)

    @property
    def prepares(self) -> bool:
        """Whether the plan prepares the image itself (instances of the per-image CNN without strokes:
        the fluorescence contrast, the diameter estimate and the working copy, ``prepare``)."""
        s = self.settings
        return s.regions == "instances" and is_builtin_cnn(s.model) and self.scribbles is None

    def threads(self, count: int, from_load: bool) -> int:
        """The torch thread count of this run: ``count``, where it was chosen from the load
        (``resources.chooses_from_load``) at most ``resources.default_threads()`` (half the usable
        cores) for instances on a working copy (``prepares``): their copy is small, and more threads
        wait on each other more than they share its work (2 cores, a 1024² nuclei phantom to
        instances: 1.44-1.46 s with 1 thread, 1.51-1.69 s with 2, ``benchmarks/RESULTS.md``).

        Parameters
        ----------
        count : int
            The count ``resources.run_threads`` gave.
        from_load : bool
            Whether it chose it from the load (no count given, by the call, an enclosing
            ``torch_threads`` block or the environment).

        Returns
        -------
        int
            The count, 1 or more.
        """
        from napari_levelset.resources import default_threads

        return min(int(count), default_threads()) if from_load and self.prepares else int(count)

    def prepare(self) -> RunPlan:
        """Prepare the image where the plan does (``prepares``; once): ``prepared``, ``full``,
        ``contrast``, and ``settings`` with ``contrast="linear"`` and the diameter used.

        Returns
        -------
        RunPlan
            The plan itself.

        Raises
        ------
        InputError
            For a ``spacing`` or ``diameter`` that asks for more than the image holds.
        """
        if not self.prepares or self.full is not None:
            return self
        s = self.settings
        diameter = s.diameter
        min_px = 10.0  # objects keep this many pixels across on the working copy (12 scored the same, slower)
        if s.contrast == "transmitted":
            full, diameter, how = transmitted_prepared(
                self.image, self.channel_axis, self.spatial_dims, diameter, self.spacing
            )
            sp = as_spacing(self.spacing, len(full.spatial_shape))
            min_px = TRANSMITTED_MIN_PX
            self.convex = "removed" in how  # the cytoplasm's removal leaves cell rims: objects must be convex
            # dark objects are split at the diameter of the foreground found (the stains' texture misleads
            # the blob estimate)
            self.split_diameter = s.diameter
        else:
            full = prepare_image(
                self.image, self.channel_axis, self.spatial_dims, color=contrast_color(s.contrast, s.color)
            )
            sp = as_spacing(self.spacing, len(full.spatial_shape))
            how = "intensities as they are"
            if s.contrast == "fluorescence":
                raw = full
                full, diameter = fluorescence_prepared(full, diameter, sp)
                how = "bright objects: background removed, log-compressed contrast"
                if OUTLINE_FRACTION > 0:  # found on the log contrast, outlined on the linear signal
                    self.linear = linear_signal(raw.data, diameter, sp)
                    how += f"; outlines at {OUTLINE_FRACTION:g} of each object's peak on the linear signal"
            self.split_diameter = diameter
            self.diameter_estimated = s.diameter is None
        self.objects = f"contrast {s.contrast} ({self.contrast_reason}); {how}"
        if self.convex:
            self.objects += f"; objects less convex than solidity {MIN_SOLIDITY:g} left out"
        # grey bright-field: small objects lose pixels past TRANSMITTED_CAP times INSTANCE_PIXELS
        # (DSB2018 bright-field: copies at full size ran 4-5 times as long, for the same mean F1; a cap of 2
        # scored as one of 3, F1 0.551 / 0.544, in 0.83 of the time; 1.5 lost 0.013)
        cap = TRANSMITTED_CAP * INSTANCE_PIXELS if self.convex else None
        small, zoom = resample_prepared(full, INSTANCE_PIXELS, diameter, sp, min_diameter_px=min_px, cap_pixels=cap)
        self.prepared, self.full, self.contrast = (full if zoom == 1.0 else small), full, s.contrast
        self.settings = s.replace(contrast="linear", diameter=diameter)
        return self

    def preview(self, max_pixels: int = PREVIEW_PIXELS) -> np.ndarray:
        """A first look at the classes, made in a small fraction of the run's preparation time.

        The k-means classes (``napari_levelset.method.cluster.kmeans``, the seed of the settings)
        of a strided copy of the image of at most about ``max_pixels`` pixels, with the
        contrast of the settings (fluorescence: log-compressed in noise units, without the
        background removal), brought back to the image's grid by nearest neighbour.  Only
        for display: the run starts from its own k-means, on the image it prepares.

        Parameters
        ----------
        max_pixels : int
            Most pixels (voxels) per batch item of the copy clustered.

        Returns
        -------
        ndarray of uint8 or uint16
            Labels 1..N (darkest class first), the image's non-channel shape.
        """
        # imports torch: called in the run's thread (the widget imports this module without torch)
        import torch

        from napari_levelset.method.cluster import kmeans, sq_dist

        s = self.settings
        image = self.image
        channel_axis, spatial_dims = infer_axes(tuple(image.shape), self.channel_axis, self.spatial_dims)
        rest = [i for i in range(image.ndim) if i != channel_axis]
        axes = rest[len(rest) - spatial_dims :]
        full_shape = tuple(image.shape[i] for i in axes)
        step = max(1, int(np.ceil((np.prod(full_shape) / max_pixels) ** (1.0 / spatial_dims))))
        index = tuple(slice(None, None, step) if i in axes else slice(None) for i in range(image.ndim))
        small = prepare_image(image[index], channel_axis, spatial_dims, color=contrast_color(s.contrast, s.color))
        x = small.data
        if s.contrast == "fluorescence":
            unit = LOG_UNIT_NOISE * max(noise_sigma(x.mean(1)), 1e-4)
            x = np.log1p(np.maximum(x, 0.0) / unit).astype(np.float32)
        points = torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, 1, -1).reshape(-1, x.shape[1])))
        centres, _ = kmeans(points, s.n_classes, seed=s.seed)
        dtype = np.uint8 if s.n_classes <= 255 else np.uint16
        labels = (sq_dist(points, centres).argmin(1).numpy() + 1).astype(dtype).reshape(small.out_shape)
        for axis, n in zip(range(labels.ndim - spatial_dims, labels.ndim), full_shape):
            labels = np.take(labels, np.minimum(np.arange(n) // step, labels.shape[axis] - 1), axis=axis)
        return labels

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

        seg = Segmenter(
            self.image,
            settings=self.settings,
            scribbles=self.scribbles,
            channel_axis=self.channel_axis,
            spatial_dims=self.spatial_dims,
            prepared=self.prepared,
            spacing=self.spacing,
        )
        if self.full is not None:  # the image was prepared here: what was decided about its objects
            seg._record["objects"] = self.objects
        return seg

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
        return nearest(values, self.full.spatial_shape)

    def _outlines_unet(self) -> bool:
        """Whether a U-Net's instances are split and outlined as the per-image CNN's are: bright objects
        (fluorescence contrast), no strokes, the foreground class not given, outlines on
        (``OUTLINE_FRACTION``)."""
        s = self.settings
        return (
            OUTLINE_FRACTION > 0
            and model_kind(s.model) == "unet"
            and s.contrast == "fluorescence"
            and s.foreground is None
            and self.scribbles is None
            and self.image is not None
        )

    def _unet_outline_inputs(self, seg, probs: np.ndarray) -> float:
        """For a U-Net run on bright objects (``_outlines_unet``): the linear signal (``linear``) and the
        diameter its foreground is split at, as for the per-image CNN (``prepare``, ``finish``).

        The Segmenter prepared the image (``method.start``: the U-Net normalisation, the fluorescence
        contrast, the diameter given or estimated, ``seg.diameter``); the linear signal is that
        image before the contrast, whose scale the outline's fraction does not depend on.  An
        estimated diameter is capped by the foreground's own (``_found_diameter``) in ``probs``, the run's
        class probabilities ``(N, ...)``."""
        s = self.settings
        raw = prepare_image(self.image, self.channel_axis, self.spatial_dims, color=contrast_color(s.contrast, s.color))
        diameter = float(seg.diameter)
        self.linear = linear_signal(raw.data, diameter, as_spacing(self.spacing, len(raw.spatial_shape)))
        self.objects = (
            f"contrast {s.contrast} ({self.contrast_reason}); outlines at {OUTLINE_FRACTION:g} of each "
            "object's peak on the linear signal"
        )
        if s.diameter is not None:
            seg._record["objects"] = self.objects
            return diameter
        n = s.n_classes
        fg = [k - 1 for k in foreground_classes(n, None)]
        small = probs.reshape((n, -1) + seg.prepared.spatial_shape)[fg].sum(0)
        return self._found_diameter(seg, small, diameter, raw.spatial_shape)

    def _found_diameter(self, seg, foreground: np.ndarray, estimate: float, full_shape=None) -> float:
        """The diameter an estimated split uses: the smaller of the estimate made before the run and the
        diameter of the foreground the run found (``foreground_diameter``), recorded in the run's record.

        The estimate on the image (``estimate_diameter``) reads the scale of its blobs and can
        take a cluster or a bright field's texture for one object; an estimate too large makes
        touching objects merge and drops small ones as debris (``MIN_OBJECT``).  The foreground's
        own pieces give the objects' size where they stand apart.  Measured on the working copy
        (``foreground``: its foreground probability, ``(B, *S')``), its pixels' size in the image's unit."""
        full = np.asarray(self.full.spatial_shape if full_shape is None else full_shape, float)
        spacing = np.asarray(as_spacing(self.spacing, len(full)) or (1.0,) * len(full))
        coarse = spacing * full / np.asarray(foreground.shape[1:], float)
        found = foreground_diameter(foreground, tuple(coarse))
        used = min(float(estimate), found)
        seg._record["objects"] = (
            f"{self.objects}; split at diameter {used:.3g} "
            f"(estimated {float(estimate):.3g}, foreground found {found:.3g})"
        )
        return used

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
            diameter = s.diameter
            if self.full is not None:  # optimised on a smaller copy: the foreground back to the full image
                n = s.n_classes
                fg = [k - 1 for k in foreground_classes(n, s.foreground)]
                small = seg.probabilities().reshape((n, -1) + seg.prepared.spatial_shape)[fg].sum(0)
                diameter = self.split_diameter
                if self.diameter_estimated and diameter is not None:
                    diameter = self._found_diameter(seg, small, diameter)
                spatial = self.full.spatial_shape
                labels = instance_labels_per_item(
                    upsample(small, spatial), diameter=diameter, spacing=self.spacing, min_region=s.min_region
                ).reshape(self.full.out_shape)
            elif self._outlines_unet():  # a U-Net's foreground: the per-image CNN's split and outlines
                probs = seg.probabilities()
                diameter = self._unet_outline_inputs(seg, probs)
                labels = seg.instances(diameter=diameter, min_region=s.min_region, probs=probs)
            else:
                if diameter is None and s.contrast == "transmitted":
                    seg.diameter = None  # dark objects: split at the diameter of the foreground found
                labels = seg.instances(diameter=diameter, foreground=s.foreground, min_region=s.min_region)
            if self.linear is not None and s.foreground is None:  # outlines redrawn on the linear signal
                labels = outlines_on_linear(labels, self.linear, diameter, self.spacing, s.min_region)
            if self.convex and s.foreground is None:
                labels = drop_concave(labels, len(self.full.spatial_shape))
            meta = getattr(seg.model, "metadata", None) or {}  # a model file's network carries its metadata
            if meta.get("edge_objects") in ("dropped", "by size"):  # the convention of the model's labels
                labels, note = _edge_convention(labels, len(seg.prepared.spatial_shape), meta)
                if note:
                    seg._record["objects"] = f"{seg._record.get('objects') or ''}; {note}".lstrip("; ")
            return labels
        labels = last.labels if last is not None else seg.labels()
        return seg.regions(labels, s.regions, min_region=s.min_region, merge=s.merge)


def _trained_contrast(model) -> tuple[str, str] | None:
    """The contrast a trained model file's images were prepared with (its ``preparation``), and why;
    None for the per-image CNN and models that record none (the shipped one)."""
    if model_kind(model) != "unet":
        return None
    if isinstance(model, (str, os.PathLike)):
        from napari_levelset.nn.model_files import model_preparation  # torch: only for a U-Net

        prep = model_preparation(model)
    else:
        prep = (getattr(model, "metadata", None) or {}).get("preparation")
    if not isinstance(prep, dict) or prep.get("contrast") not in CONTRAST_MODES:
        return None
    return prep["contrast"], "the model's: it was trained on images prepared so"


#: what a run's record says when a model's instances drop the objects touching the image's edge
EDGE_NOTE = "objects touching the image's edge dropped: the model's labels leave them out"


def _edge_convention(labels: np.ndarray, spatial_ndim: int, meta: dict) -> tuple[np.ndarray, str]:
    """Instances ``labels`` ``(*B, *S)`` with the objects touching the edge dropped from the items where the
    model's labels leave them out (``edge_objects`` ``"dropped"``; ``"by size"``: the items whose objects'
    diameter, ``foreground_diameter``, is nearest the labelled images that leave them out, by
    ``napari_levelset.training.edges.decide_for_diameter``), and what the run's record says of it."""
    if meta.get("edge_objects") == "dropped":
        return _drop_edge_objects(labels, spatial_ndim), EDGE_NOTE
    from napari_levelset.training.edges import decide_for_diameter  # torch: loaded by the run already

    images = (meta.get("edge_objects_evidence") or {}).get("images") or []
    items = labels.reshape((-1,) + labels.shape[labels.ndim - spatial_ndim :])
    sizes = [
        foreground_diameter((item > 0).astype(np.float32), (1.0,) * spatial_ndim) if item.any() else np.nan
        for item in items
    ]
    drop = [bool(item.any()) and decide_for_diameter(images, d) == "dropped" for item, d in zip(items, sizes)]
    if not any(drop):
        return labels, ""
    sizes_said = ", ".join(f"{d:.0f}" for d, q in zip(sizes, drop) if q)
    note = f"{EDGE_NOTE} (objects of {sizes_said} px, nearest in size the labelled images that leave them out)"
    return _drop_edge_objects(labels, spatial_ndim, drop), note


def _drop_edge_objects(labels: np.ndarray, spatial_ndim: int, which=None) -> np.ndarray:
    """Instances ``labels`` ``(*B, *S)`` without the objects touching the edge of their item
    (``skimage.segmentation.clear_border`` per item; only the items ``which`` marks, all where None),
    renumbered 1..M over the stack."""
    from skimage.segmentation import clear_border, relabel_sequential

    items = labels.reshape((-1,) + labels.shape[labels.ndim - spatial_ndim :])
    which = [True] * len(items) if which is None else which
    kept = np.stack([clear_border(item) if q else item for item, q in zip(items, which)]).reshape(labels.shape)
    return relabel_sequential(kept)[0].astype(labels.dtype, copy=False)


def plan_run(
    image,
    settings: Settings | None = None,
    scribbles=None,
    channel_axis: int | None = None,
    spatial_dims: int | None = None,
    spacing=None,
    *,
    prepare: bool = True,
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
    prepare : bool
        Prepare the image now (``RunPlan.prepare``); False: the plan is only resolved, and
        ``RunPlan.prepare`` must be called before ``make_segmenter`` (a first look,
        ``RunPlan.preview``, may be taken meanwhile).

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
    contrast_reason = "given"
    if instances and s.contrast is None and image is not None:  # measured once: the choice and its reason
        contrast, contrast_reason = _trained_contrast(s.model) or object_contrast(image, channel_axis)
        s = s.replace(contrast=contrast)
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
        contrast_reason=contrast_reason,
    )
    return plan.prepare() if prepare else plan


def nearest(values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``values`` brought to the spatial ``shape`` (its trailing axes) by nearest neighbour.

    Parameters
    ----------
    values : ndarray
        Any dtype; its last ``len(shape)`` axes are spatial.
    shape : tuple of int
        The spatial shape wanted.

    Returns
    -------
    ndarray
        The leading axes of ``values``, then ``shape``: each output pixel takes the value of the
        input pixel its centre falls in.
    """
    out = values
    for axis, n in zip(range(values.ndim - len(shape), values.ndim), shape):
        m = out.shape[axis]
        index = np.minimum(((np.arange(n) + 0.5) * (m / n)).astype(np.intp), m - 1)
        out = np.take(out, index, axis=axis)
    return out


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
