"""How a ``Segmenter`` run starts: the image as the network sees it, the network and its first state.

A run prepares its image (``prepare_run_image``: normalisation or CIELAB, a
fluorescence contrast, the per-image CNN's smaller working copy with strokes),
appends position channels to the network's input (``position_channels``), builds the
network (``build_model``: the per-image CNN, a pretrained U-Net, or one given) and
starts it from the image's k-means (``kmeans_start``) or as it is (``resolve_init``).
``napari_levelset.method.segmenter.Segmenter`` calls these in that order.

Shapes: an image is read as ``B`` items of ``C`` channels over the spatial axes ``S``
(2 or 3 of them); the network sees ``(B, C + D, *S)`` float32, ``D`` position channels.

References
----------
Kanezaki, A. (2018).  Unsupervised image segmentation by backpropagation.  IEEE
ICASSP, 1543-1547 (the per-image CNN and its random start).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import torch

from napari_levelset import validate
from napari_levelset.errors import InputError
from napari_levelset.io.prepare import Prepared, prepare_image
from napari_levelset.method.cluster import init_centres
from napari_levelset.method.strokes import scribbles_to_grid, stroke_channels, working_copy
from napari_levelset.nn.model_files import count_ranges, model_color
from napari_levelset.nn.models import PerImageCNN, init_parameters
from napari_levelset.nn.pretrained import PretrainedNetwork, build_network
from napari_levelset.post.instances import as_spacing, contrast_color, fluorescence_prepared
from napari_levelset.post.objects import transmitted_prepared
from napari_levelset.resources import is_out_of_memory
from napari_levelset.settings import Settings

__all__ = [
    "RunImage",
    "build_model",
    "check_head",
    "kmeans_start",
    "position_channels",
    "prepare_run_image",
    "resolve_init",
]

#: held while a network is built from the global torch generator (seeded, then restored)
_GLOBAL_RNG_LOCK = threading.Lock()


@dataclass
class RunImage:
    """The image of a run, prepared (what ``prepare_run_image`` returns).

    Parameters
    ----------
    prepared : napari_levelset.io.prepare.Prepared
        The image on its full grid, as the network sees it (after a fluorescence contrast).
    work : napari_levelset.io.prepare.Prepared
        What the network is optimised on: ``prepared`` itself, or the per-image CNN's
        smaller working copy (``napari_levelset.method.strokes.working_copy``).
    color : str
        The colour the image was prepared in (``Prepared.color``: ``"lab"`` or ``"rgb"``).
    spacing : tuple of float or None
        Physical size of a pixel (voxel) per spatial axis, or None (pixels).
    diameter : float or None
        Expected object diameter (unit of ``spacing``), given or estimated by a
        fluorescence contrast.
    merge_source : tuple or None
        ``(image, channel_axis, spatial_dims)`` where merging regions compares the image
        in CIELAB rather than as the network saw it, else None.
    objects : str or None
        How dark objects were made bright (``contrast="transmitted"``,
        ``napari_levelset.post.objects.transmitted_prepared``), for the run's record; else None.
    """

    prepared: Prepared
    work: Prepared
    color: str
    spacing: tuple | None
    diameter: float | None
    merge_source: tuple | None
    objects: str | None = None


def prepare_run_image(
    image, prepared: Prepared | None, axes: tuple, spacing, s: Settings, scribbles, strokes: bool, per_image: bool
) -> RunImage:
    """The image of a run as its network will see it.

    Parameters
    ----------
    image : numpy.ndarray or None
        The checked image (``validate.image_array``); None with ``prepared``.
    prepared : napari_levelset.io.prepare.Prepared or None
        The image already prepared, or None to prepare ``image`` here.
    axes : tuple
        ``(channel_axis, spatial_dims)``, checked (see ``prepare_image``).
    spacing : sequence of float or None
        Physical size of a pixel (voxel) per spatial axis.
    s : napari_levelset.settings.Settings
        The run's settings, resolved (``color``, ``contrast``, ``diameter``, ``model``,
        ``work_pixels``).
    scribbles : array_like of int or None
        The strokes, the image's non-channel shape (their local contrast may become the
        working copy's channels).
    strokes : bool
        Whether ``scribbles`` hold any stroke.
    per_image : bool
        Whether the network is the per-image CNN (made for this image: the brightest-structure
        normalisation, a working copy of ``s.work_pixels``).

    Returns
    -------
    RunImage
        The prepared image, its working copy, colour, spacing, diameter and merge source.

    Raises
    ------
    InputError
        For an image that cannot be prepared, or a model file whose colour cannot be read.
    """
    color = _input_color(s, per_image)
    given_prepared = prepared is not None
    if prepared is None:
        # a U-Net gets the normalisation it was trained with (model_files.NORMALISATION)
        prepared = prepare_image(image, *axes, color=color, structures=per_image)
    color = prepared.color
    spacing = as_spacing(spacing, len(prepared.spatial_shape))
    diameter = s.diameter
    if s.contrast == "fluorescence":
        prepared, diameter = fluorescence_prepared(prepared, diameter, spacing)
    objects = None
    if s.contrast == "transmitted" and not given_prepared:  # dark objects made bright, prepared again
        prepared, diameter, objects = transmitted_prepared(image, *axes, diameter, spacing)
    # with strokes the per-image CNN works on a smaller copy (napari_levelset.method.strokes)
    work = prepared
    if per_image and s.work_pixels is not None:
        work, zoom = working_copy(prepared, s.work_pixels, diameter, spacing)
        if strokes and not prepared.rgb:
            # grey or fluorescence channels: local contrast where it sets the strokes further apart
            grid = prepared.to_batch(validate.scribble_array(scribbles))
            if work is not prepared:
                grid = scribbles_to_grid(grid, work.spatial_shape)
            work = stroke_channels(work, zoom, diameter, spacing, grid)
    # merging regions compares CIELAB on RGB images (unless color="rgb" was asked for), whatever the network saw
    lab_merge = s.color == "auto" and prepared.rgb and color != "lab" and image is not None
    return RunImage(
        prepared=prepared,
        work=work,
        color=color,
        spacing=spacing,
        diameter=diameter,
        merge_source=(image, *axes) if lab_merge else None,
        objects=objects,
    )


def _input_color(s: Settings, per_image: bool) -> str:
    """The colour preparation asked for: a U-Net's own with ``color="auto"``, then the contrast's rule."""
    color = s.color
    if color == "auto" and not per_image:  # a U-Net takes the input it was trained on
        model = s.model
        color = model.model_color if isinstance(model, torch.nn.Module) else model_color(model)
        if color == "lab":  # CIELAB for RGB images; others are normalised (grey goes in as lightness)
            color = "auto"
    return contrast_color(s.contrast, color)


def position_channels(x: torch.Tensor, weight: float) -> torch.Tensor:
    """Centred coordinate channels ``(B, D, *S)`` for ``x`` ``(B, C, *S)``, scaled by ``weight``.

    Each axis's coordinate is divided by the longest axis, so they span at most
    ``[-weight/2, weight/2]`` and a unit of distance is the same along every axis.

    Parameters
    ----------
    x : torch.Tensor
        The image, ``(B, C, *S)``; only its shape, device and dtype are used.
    weight : float
        The span of the longest axis' coordinate (``Settings.position``).

    Returns
    -------
    torch.Tensor
        ``(B, D, *S)``, ``D = len(S)``, ``x``'s device and dtype; channel ``d`` is the
        coordinate along spatial axis ``d``.

    Examples
    --------
    >>> position_channels(torch.zeros(1, 3, 3, 5), 1.0)[0, 1, 0].tolist()
    [-0.5, -0.25, 0.0, 0.25, 0.5]
    """
    spatial = x.shape[2:]
    scale = float(weight) / max(max(spatial) - 1, 1)
    axes = [(torch.arange(s, device=x.device, dtype=x.dtype) - (s - 1) / 2) * scale for s in spatial]
    grids = torch.meshgrid(*axes, indexing="ij")
    return torch.stack(grids).unsqueeze(0).expand(x.shape[0], len(spatial), *spatial).contiguous()


def build_model(
    s: Settings, in_channels: int, image_channels: int, ndim: int, color: str, n_position: int
) -> torch.nn.Module:
    """The run's network: the one given, a new per-image CNN, or a pretrained U-Net.

    Parameters
    ----------
    s : napari_levelset.settings.Settings
        The run's settings (``model``, ``n_classes``, ``width``, ``depth``, ``finetune``, ``seed``).
    in_channels : int
        Channels of the network's input, position channels included (``C + D``).
    image_channels : int
        The image's channels ``C``.
    ndim : int
        Spatial axes, 2 or 3.
    color : str
        The colour the image was prepared in (checked against a model file's).
    n_position : int
        Position channels ``D`` (a U-Net takes them in its head only).

    Returns
    -------
    torch.nn.Module
        ``s.model`` itself where it is a network; else built from ``s.seed`` (the per-image
        CNN from a private generator, a U-Net's new head from the global one, seeded and
        restored), on the CPU.

    Raises
    ------
    InputError
        For a model file that cannot be read or does not fit the image
        (``napari_levelset.nn.pretrained.build_network``).
    """
    # a seed means one network even when several are built at once in other threads: the
    # per-image CNN draws from a private generator, and other builds hold the global one alone
    with _GLOBAL_RNG_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(s.seed)
        if isinstance(s.model, torch.nn.Module):
            return s.model
        if s.model == "cnn":
            return init_parameters(
                PerImageCNN(in_channels, s.n_classes, width=s.width, depth=s.depth, ndim=ndim),
                torch.Generator(device="cpu").manual_seed(s.seed),
            )
        return build_network(
            s.model,
            in_channels=image_channels,
            n_classes=s.n_classes,
            ndim=ndim,
            finetune=s.finetune,
            color=color,
            extra_channels=n_position,
        )


def resolve_init(init: str, model: torch.nn.Module) -> str:
    """The start a run takes: ``init="auto"`` is a k-means start where ``model`` can take one.

    Parameters
    ----------
    init : str
        The ``init`` setting (``auto``, ``kmeans``, ``random`` or ``network``).
    model : torch.nn.Module
        The run's network.

    Returns
    -------
    str
        ``kmeans``, ``random`` or ``network``.

    Raises
    ------
    InputError
        For ``init="random"`` with a pretrained network.
    """
    if init == "auto":  # a k-means start where the model can take one
        init = "kmeans" if getattr(model, "takes_centres", True) else "network"
    if init == "random" and isinstance(model, PretrainedNetwork):
        raise InputError("init='random' is for the per-image CNN; a pretrained model starts from 'network' or 'kmeans'")
    return init


def kmeans_start(
    model: torch.nn.Module,
    x: torch.Tensor,
    n_classes: int,
    seed: int,
    scribbles: torch.Tensor | None,
    order_channels: int,
) -> tuple[torch.Tensor, float, torch.Tensor | None]:
    """Start ``model`` from the image's k-means (``init_centres``; stroked classes from their strokes).

    Parameters
    ----------
    model : torch.nn.Module
        A network with ``init_from_centres`` (the per-image CNN, a U-Net's head).
    x : torch.Tensor
        The network's input ``(B, C + D, *S)``.
    n_classes : int
        N.
    seed : int
        The k-means seed.
    scribbles : torch.Tensor or None
        Strokes ``(B, *S)`` on ``x``'s grid, in label ids (0 none).
    order_channels : int
        The leading channels whose mean orders the centres darkest first.

    Returns
    -------
    centres : torch.Tensor
        ``(N, C + D)``, the class means the network starts from.
    spread : float
        The start's variance.
    first_logits : torch.Tensor or None
        The first logits ``(B, N, *S)`` where they cost one 1x1 convolution (the per-image
        CNN, whose CNN branch starts at zero) and fit in memory; else None.
    """
    centres, spread = init_centres(x, n_classes, seed=seed, scribbles=scribbles, order_channels=order_channels)
    model.init_from_centres(centres, float(spread))
    first_logits = None
    if hasattr(model, "skip"):  # the CNN branch starts at zero: the first labels cost one 1x1 conv
        try:
            with torch.no_grad():
                first_logits = model.skip(x)
        except (RuntimeError, MemoryError) as exc:  # computed tile by tile when first needed
            if not is_out_of_memory(exc):
                raise
            first_logits = None
    return centres, float(spread), first_logits


def check_head(model: torch.nn.Module, n_classes: int) -> None:
    """Refuse a pretrained network whose head for ``n_classes`` is new and was not started from the image.

    Parameters
    ----------
    model : torch.nn.Module
        The run's network, started.
    n_classes : int
        N.

    Raises
    ------
    InputError
        For a ``PretrainedNetwork`` without a trained head for N that no k-means start
        restarted, naming the class counts it has heads for.
    """
    if not isinstance(model, PretrainedNetwork) or getattr(model, "head_trained", True):
        return
    if model.takes_centres:
        hint = "or fine-tune (a fine-tune starts its head from the image's k-means, init='kmeans')"
    else:  # a grey model given colour: the head cannot start from the image's colours
        hint = (
            "since a new head needs a k-means start, which this model cannot take: it was trained "
            "on grey images and sees this colour image as grey"
        )
    raise InputError(
        f"this model has heads for {count_ranges(model.head_counts)} classes, not {n_classes}: use one of those, {hint}"
    )
