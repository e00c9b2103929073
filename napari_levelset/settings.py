"""The settings of a level-set run as one typed object, and the per-model rules that fill in defaults.

Read this module to find a setting: ``SPEC`` (from ``napari_levelset.spec``) says for each
field of ``Settings`` its type, default, range or choices, unit, a few words of help,
its command-line flag and whether it may change during a run (``LIVE``), restarts one
(``RESTART``) or only changes what is made of its result.  ``Settings`` checks every
value when it is made (``napari_levelset.validate``, with ``SPEC``'s ranges), round-trips through JSON
(``to_json`` / ``from_json``: the metadata of a result layer and the ``.json`` beside a
saved TIFF), and ``resolved`` applies the one set of per-model rules: the number of
classes, λ, iterations, start, contrast, position weight, working-copy size, merge
weight and smallest region that "default" means for this model and this output.

Who uses it: ``engine.Segmenter`` and ``engine.segment`` (the algorithm),
``cli`` (its flags, generated from ``SPEC``), ``napari`` (the widget's form and what restarts a
run) and ``method.restore.restore_segmenter`` (a result layer's run rebuilt).  Numpy only: no torch,
so the widget and ``--help`` read it without loading PyTorch.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_levelset import validate
from napari_levelset.errors import InputError
from napari_levelset.io.axes import infer_axes
from napari_levelset.spec import DEVICE_WORDS, DEVICES, MAX_OFFERED_CLASSES, SPEC, SettingSpec, is_device

__all__ = [
    "DEVICES",
    "DEVICE_WORDS",
    "INSTANCE_CLASSES",
    "INSTANCE_ITERATIONS",
    "INSTANCE_LAM",
    "INSTANCE_PIXELS",
    "INSTANCE_WIDTH",
    "LIVE",
    "MAX_OFFERED_CLASSES",
    "MERGED_MIN_REGION",
    "MERGE_OPTIONS",
    "MERGE_WEIGHT",
    "MIN_REGION",
    "POSITION",
    "POSITION_MIN_CLASSES",
    "RESTART",
    "SNAPSHOT_EVERY",
    "SPEC",
    "SettingSpec",
    "Settings",
    "default_position",
    "is_builtin_cnn",
    "is_device",
    "model_kind",
    "region_defaults",
]

# -- per-model tables (chosen on BSDS500 val and the nuclei sets; see benchmarks/RESULTS.md) ---------------

#: The merge weight ``regions="merged"`` uses when none is given, per kind of model: where
#: SC is best on BSDS500 val (N 32: the per-image CNN's about 1, ~11 regions; the U-Net's 2,
#: ~25 regions, while at 1 it leaves ~42).
MERGE_WEIGHT: dict[str, float] = {"cnn": 1.0, "unet": 2.0}

#: How ``regions="merged"`` weighs boundaries for each kind of model (``merge_regions``'s
#: ``edge`` and ``texture``), chosen on BSDS500 val: the U-Net's pieces also end away from
#: colour edges, and a sharper edge weight (boundaries off an edge cost more) with more
#: weight on texture merges them better (all 100 val images, N 32, 48: SC 0.548 -> 0.560,
#: PRI 0.773 -> 0.783, VI 1.816 -> 1.761); the per-image CNN's pieces follow edges already.
MERGE_OPTIONS: dict[str, dict[str, float]] = {
    "cnn": dict(edge=2.0, texture=1.0),
    "unet": dict(edge=6.0, texture=3.0),
}

#: The smallest piece kept before merging (``regions="merged"``; a fraction of the image),
#: per kind of model: the U-Net's small pieces are worth offering to the merging (all 100
#: val images, N 32, 48, with its ``MERGE_OPTIONS``: 0.001 -> 0.0002 gives SC 0.560 -> 0.576,
#: PRI 0.783 -> 0.791, VI 1.761 -> 1.739), the per-image CNN's are not.
MERGED_MIN_REGION: dict[str, float] = {"cnn": 0.001, "unet": 0.0002}

#: The smallest connected region kept (``regions="connected"``), a fraction of the image.
MIN_REGION = 0.001

#: The position weight of a colour photograph (an RGB image in CIELAB) with the per-image CNN,
#: chosen on BSDS500 val for merged regions at N 16-24 (see ``default_position``).
POSITION = 0.5
#: With fewer classes than this a photograph gets no position channels: a few classes are
#: phases of colour, and coordinates cut uniform areas by straight lines (see ``default_position``).
POSITION_MIN_CLASSES = 8

#: ``regions="instances"`` with the per-image CNN: classes, λ, iterations and most pixels per
#: image of the optimisation, chosen on the nuclei sets and DSB2018 (``benchmarks/nuclei.py``; λ 0.05
#: split HeLa's small touching nuclei less well: F1 0.896 against 0.913, λ 0.01 lost GOWT1's: 0.773;
#: 20 iterations on 100 000 pixels scored as 30 on 260 000 on every set, in about half the time,
#: 65 000 pixels lost 0.02-0.03 F1 on DSB2018's larger fluorescence images)
INSTANCE_CLASSES = 2
INSTANCE_LAM = 0.02
INSTANCE_ITERATIONS = 20
INSTANCE_PIXELS = 100_000
#: its channels on a grey image (colour keeps 16: ``benchmarks/RESULTS.md``); the iterations a third faster
INSTANCE_WIDTH = 8

#: most pixels (voxels) per batch item a run with strokes optimises on (``Segmenter``'s ``work_pixels``;
#: see ``napari_levelset.method.strokes``)
STROKE_PIXELS = 60_000
#: ``segment``'s iterations with strokes and the per-image CNN, when none are given
STROKE_ITERATIONS = 40
#: the same on a colour photograph, where the strokes' evidence map (``method.strokes.stroke_prior``) sets
#: the classes from the first labels on: BSDS500 train (20 images, short strokes) mean IoU 0.704 with 40
#: iterations on 60 000 pixels, 0.702 with 10 on 30 000 in a fifth of the time (``benchmarks/RESULTS.md``)
PHOTO_STROKE_PIXELS = 30_000
PHOTO_STROKE_ITERATIONS = 10

#: Iterations between two snapshots of ``Segmenter.run`` when none is given.
SNAPSHOT_EVERY = 10
_N_CLASSES, _LAM, _ITERATIONS, _WIDTH = 4, 0.05, 100, 16


def _field(name: str):
    """The dataclass field of setting ``name``: its default and spec from ``SPEC``."""
    spec = SPEC[name]
    return field(default=spec.default, metadata={"spec": spec})


@dataclass(frozen=True)
class Settings:
    """Every setting of a level-set run: checked when made, JSON round trip, per-model defaults.

    ``None`` means "the default for this model and output" and is filled in by
    ``resolved``.  Fields are of four kinds (``Settings.kind(name)``): *live* ones (λ,
    ``lr``, α) may change while a run goes on; *network* ones make a new network, so
    changing them restarts a run (``restart_key``); *run* ones say how long to run; and
    *output* ones say what is made of the labels afterwards.

    Parameters
    ----------
    n_classes : int, optional
        Number of classes N, 2..65535.  Default 4; 2 for ``regions="instances"``.
    lam : float, optional
        λ, the weight of the total-variation term, in [0, 1000]; larger gives smoother,
        fewer regions.  Default 0.05; 0.02 for instances with the per-image CNN.  Live.
    lr : float
        Adam learning rate, in (0, 10].  Live.
    alpha : float
        α, the weight of the scribbles' cross-entropy, in [0, 1000] (used only where
        scribbles exist).  Live.
    iterations : int, optional
        Optimisation steps, 0..100000.  Default: the per-image CNN 100 (40 with strokes, 10
        with strokes on a colour photograph, 20 for instances); a pretrained U-Net 0 (used
        directly; more is a fine-tune).
    width, depth : int
        Feature channels (1..1024; 16, 8 for instances on grey) and 3×3 blocks (1..16) of the per-image CNN.
    model : str or torch.nn.Module
        ``"cnn"`` (the per-image CNN), ``"unet"`` (the pretrained U-Net), a model file
        path, or a module mapping ``(B, C, *S)`` to logits ``(B, N, *S)``.
    init : {None, "auto", "kmeans", "random", "network"}
        The start.  Default: ``"kmeans"`` for a network made for this image; a
        pretrained one ``"network"`` (as trained), or ``"auto"`` when it is fine-tuned
        (its head from this image's k-means where it can take one).
    finetune : {"head", "last", "all"}
        What a U-Net's fine-tune trains.
    color : {"auto", "rgb", "lab"}
        ``"auto"``: CIELAB for an RGB image, else each channel normalised on its own.
    position : float, optional
        Weight of the pixel coordinates appended as channels, in [0, 100] (the part of
        SLIC's compactness).  Default: ``default_position``.
    contrast : {None, "linear", "fluorescence", "transmitted"}
        How intensities are prepared.  Default for instances: ``"fluorescence"`` for bright
        objects, ``"transmitted"`` for dark ones (bright-field, stains), as
        ``object_contrast`` reads the image (``"fluorescence"``
        without an image); ``"fluorescence"`` also for strokes on integer data of more than
        8 bits (``stroke_contrast``), else ``"linear"``.
    seed : int
        Seed of the network's initialisation and crops, 0..2**32-1.
    device : str
        ``"auto"``, ``"cpu"``, ``"cuda"`` (or ``"cuda:1"``), ``"mps"``.
    max_pixels : int, optional
        Most pixels one step may hold activations for (default: from free memory).
    work_pixels : int, optional
        Per-image CNN: optimise on a copy of at most this many pixels per item (>= 16).
        Default with strokes: ``STROKE_PIXELS``, ``PHOTO_STROKE_PIXELS`` on a colour
        photograph (``colour_photograph``); else the full image.
    diameter : float, optional
        Expected object diameter (unit of the image's spacing; pixels without one), > 0.
    regions : {"classes", "connected", "merged", "instances"}
        What ``segment`` returns (see ``napari_levelset.post.regions.to_regions``).
    merge : float, optional
        Boundary weight of ``regions="merged"`` (>= 0).  Default: ``MERGE_WEIGHT``.
    min_region : float, optional
        Smallest region kept: pixels (>= 1) or a fraction of the image (< 1).
        Default: ``region_defaults``.
    foreground : tuple of int, optional
        Class labels that are objects, for instances (default: the brightest class).

    Raises
    ------
    InputError
        For any value out of its range or of the wrong type, naming the setting.

    Examples
    --------
    >>> s = Settings(n_classes=3, lam=0.1)
    >>> s.replace(lr=0.02).lr
    0.02
    >>> Settings.from_json(s.to_json()) == s
    True
    >>> Settings(regions="instances").resolved().n_classes
    2
    """

    n_classes: int | None = _field("n_classes")
    lam: float | None = _field("lam")
    lr: float = _field("lr")
    alpha: float = _field("alpha")
    iterations: int | None = _field("iterations")
    width: int = _field("width")
    depth: int = _field("depth")
    model: Any = _field("model")
    init: str | None = _field("init")
    finetune: str = _field("finetune")
    color: str = _field("color")
    position: float | None = _field("position")
    contrast: str | None = _field("contrast")
    seed: int = _field("seed")
    device: str = _field("device")
    max_pixels: int | None = _field("max_pixels")
    work_pixels: int | None = _field("work_pixels")
    diameter: float | None = _field("diameter")
    regions: str = _field("regions")
    merge: float | None = _field("merge")
    min_region: float | None = _field("min_region")
    foreground: tuple | None = _field("foreground")

    def __post_init__(self) -> None:
        for name, spec in SPEC.items():
            value = getattr(self, name)
            if value is not None or spec.default is not None:
                object.__setattr__(self, name, _check(spec, value))

    # -- fields ---------------------------------------------------------------------------------------
    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The field names, in order.

        Returns
        -------
        tuple of str
            ``("n_classes", "lam", "lr", ...)``, as declared.
        """
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def kind(cls, name: str) -> str:
        """``"live"``, ``"network"``, ``"run"`` or ``"output"`` for the field ``name``.

        Parameters
        ----------
        name : str
            A field name.

        Returns
        -------
        str
            The field's kind.

        Raises
        ------
        KeyError
            For a name that is not a field.

        Examples
        --------
        >>> Settings.kind("lam"), Settings.kind("width"), Settings.kind("regions")
        ('live', 'network', 'output')
        """
        return SPEC[name].kind

    @classmethod
    def doc(cls, name: str) -> str:
        """A few words on the field ``name`` (for help texts and tooltips).

        Parameters
        ----------
        name : str
            A field name.

        Returns
        -------
        str
            The description, lower case, no final stop.

        Raises
        ------
        KeyError
            For a name that is not a field.
        """
        return SPEC[name].help

    @classmethod
    def check_names(cls, names) -> None:
        """Raise ``InputError`` naming any of ``names`` that is not a setting.

        Parameters
        ----------
        names : iterable of str
            Names to check (e.g. the keys of ``**changes``).

        Raises
        ------
        InputError
            When any name is not a field; the message lists the unknown ones and all settings.
        """
        unknown = sorted(set(names) - set(_FIELDS))
        if unknown:
            raise InputError(
                f"unknown setting{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                f"the settings are: {', '.join(_FIELDS)}"
            )

    def replace(self, **changes) -> Settings:
        """A copy with ``changes`` applied (checked).  Unknown names raise ``InputError``.

        Parameters
        ----------
        **changes
            Field values by name.

        Returns
        -------
        Settings
            A new object; this one is unchanged (it is frozen).

        Raises
        ------
        InputError
            For an unknown name or a value out of range.
        """
        self.check_names(changes)
        return dataclasses.replace(self, **changes)

    def restart_key(self) -> tuple:
        """The values whose change needs a new network (the *network* fields), as a hashable tuple.

        Returns
        -------
        tuple
            The values of ``RESTART``'s fields, in order; a module given as ``model`` is keyed by
            its class name and identity, a list becomes a tuple.
        """
        return tuple(_key(getattr(self, name)) for name in RESTART)

    # -- JSON ----------------------------------------------------------------------------------------
    def to_json(self) -> dict:
        """The settings as a JSON-serialisable dict (a module given as ``model`` is recorded by its class name).

        Returns
        -------
        dict
            One key per field; ``device`` as a string, ``foreground`` as a list.
        """
        out = {name: getattr(self, name) for name in self.names()}
        if not isinstance(self.model, str):
            out["model"] = type(self.model).__name__
        out["device"] = str(self.device)
        if self.foreground is not None:
            out["foreground"] = list(self.foreground)
        return out

    @classmethod
    def from_json(cls, data: Mapping | str) -> Settings:
        """Settings from ``to_json``'s dict (or its JSON text); other keys (a run's record) are ignored.

        A None for a field whose default is not None (an older record's "not used") is
        read as the default.  The ``.json`` the napari writer saves beside a TIFF holds the
        settings under ``"settings"``; they are read from there.

        Parameters
        ----------
        data : mapping or str
            ``to_json``'s dict, ``Segmenter.settings``, the napari writer's ``.json``, or JSON
            text of one of them.

        Returns
        -------
        Settings
            The settings, checked.

        Raises
        ------
        InputError
            For a value out of range, text that is not a JSON object (or nested too deeply to
            read), or an object that holds no setting at all (a non-empty one).
        """
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except json.JSONDecodeError as exc:
                raise InputError(f"the settings are not valid JSON: {exc}") from None
            except RecursionError:
                raise InputError("the settings' JSON is nested too deeply to read") from None
        if not isinstance(data, Mapping):
            raise InputError(f"the settings must be a JSON object, got {type(data).__name__}")
        if isinstance(data.get("settings"), Mapping):  # the napari writer's file: {"name", ..., "settings"}
            data = data["settings"]
        if data and not set(data) & set(_FIELDS):
            raise InputError(
                f"no settings here: none of the keys {', '.join(sorted(map(str, data))[:8])} "
                f"is a setting ({', '.join(_FIELDS)})"
            )
        # a None where the field has a value as default is an older record's "not used" (finetune of a CNN)
        return cls(
            **{k: v for k, v in data.items() if k in _FIELDS and not (v is None and _FIELDS[k].default is not None)}
        )

    @classmethod
    def given(cls, settings) -> Settings:
        """``settings`` as a ``Settings``: None gives the defaults, a mapping or JSON text is read by ``from_json``.

        Parameters
        ----------
        settings : Settings, mapping, str or None
            What ``segment``'s or ``Segmenter``'s ``settings`` argument was given.

        Returns
        -------
        Settings

        Raises
        ------
        InputError
            For anything else, or settings out of range.
        """
        if settings is None:
            return cls()
        if isinstance(settings, cls):
            return settings
        if isinstance(settings, (Mapping, str)):
            return cls.from_json(settings)
        raise InputError(f"settings must be a Settings, a dict of settings or None; got {type(settings).__name__}")

    # -- per-model rules --------------------------------------------------------------------------------
    def resolved(self, *, strokes: bool = False, image=None, channel_axis: int | None = None) -> Settings:
        """The settings with every per-model default filled in (``position`` excepted: it depends on the
        colour the image is prepared in, see ``default_position``).

        Parameters
        ----------
        strokes : bool
            Whether scribbles are given: the per-image CNN then works on a smaller copy for
            fewer iterations (``napari_levelset.method.strokes``).
        image : array_like, optional
            The image, for the default contrast of instances
            (``object_contrast``) and of strokes (``stroke_contrast``).
        channel_axis : int, optional
            Its channel axis, as for ``prepare_image``.

        Returns
        -------
        Settings
            With ``n_classes``, ``lam``, ``iterations``, ``width``, ``init``, ``contrast``, ``merge`` and
            ``min_region`` set (``work_pixels`` too for a per-image CNN with strokes).
        """
        kind = model_kind(self.model)
        instances = self.regions == "instances"
        photo = strokes and self.color != "rgb" and colour_photograph(image, channel_axis)
        changes: dict[str, Any] = {}
        if self.n_classes is None:
            changes["n_classes"] = INSTANCE_CLASSES if instances else _N_CLASSES
        if self.lam is None:
            changes["lam"] = INSTANCE_LAM if instances and is_builtin_cnn(self.model) else _LAM
        if self.contrast is None:
            contrast = "linear"
            if instances:  # bright objects (fluorescence) or dark ones (bright-field, stains)
                contrast = "fluorescence" if image is None else object_contrast(image, channel_axis)[0]
            elif strokes and image is not None:
                contrast = stroke_contrast(image, channel_axis)
            changes["contrast"] = contrast
        iterations = self.iterations
        if iterations is None:
            if kind == "cnn":
                iterations = _ITERATIONS
                if instances:
                    iterations = INSTANCE_ITERATIONS
                elif strokes:
                    iterations = PHOTO_STROKE_ITERATIONS if photo else STROKE_ITERATIONS
            else:
                iterations = 0
            changes["iterations"] = iterations
        if self.width is None:
            grey = instances and kind == "cnn" and not colour_photograph(image, channel_axis)
            changes["width"] = INSTANCE_WIDTH if grey else _WIDTH
        if self.init is None:
            changes["init"] = "kmeans" if kind == "cnn" else "auto" if iterations > 0 else "network"
        if kind == "cnn" and strokes and self.work_pixels is None:
            changes["work_pixels"] = PHOTO_STROKE_PIXELS if photo else STROKE_PIXELS
        merge, min_region = region_defaults(kind, self.regions)
        if self.merge is None:
            changes["merge"] = merge
        if self.min_region is None and not instances:
            changes["min_region"] = min_region
        return dataclasses.replace(self, **changes) if changes else self


_FIELDS = {f.name: f for f in dataclasses.fields(Settings)}
#: the fields that may change while a run goes on
LIVE: tuple[str, ...] = tuple(n for n, s in SPEC.items() if s.kind == "live")
#: the fields whose change needs a new network
RESTART: tuple[str, ...] = tuple(n for n, s in SPEC.items() if s.kind == "network")


def _check(spec: SettingSpec, value):
    """``value`` of the setting ``spec`` checked (``InputError`` naming it), in the type the library works with."""
    name = spec.name
    if name == "n_classes":
        return validate.n_classes(value)
    if name == "model":
        if isinstance(value, str):
            if not value:
                raise InputError("model must be 'cnn', 'unet', a model file or a torch module; got ''")
        elif not callable(value):
            raise InputError(f"model must be 'cnn', 'unet', a model file or a torch module; got {value!r}")
        return value
    if name == "device":
        if not is_device(value):
            raise InputError(f"unknown device {value!r}: use {DEVICE_WORDS}")
        return value
    if name == "foreground":
        labels = (value,) if not isinstance(value, (list, tuple)) else value
        return tuple(validate.integer(name, k, spec.lo, spec.hi) for k in labels)
    if spec.choices is not None:
        if value not in spec.choices:
            shown = ", ".join(repr(a) for a in spec.choices)
            raise InputError(f"{name} must be one of {shown}; got {value!r}")
        return value
    if spec.type is int:
        return validate.seed(value) if name == "seed" else validate.integer(name, value, spec.lo, spec.hi)
    return validate.number(name, value, spec.lo, spec.hi)


def _key(value):
    """``value`` hashable: a module by identity, a list as a tuple."""
    if isinstance(value, (str, int, float, bool, type(None))):
        return value
    if isinstance(value, (list, tuple)):
        return tuple(_key(v) for v in value)
    return (type(value).__name__, id(value))


def colour_photograph(image, channel_axis: int | None = None) -> bool:
    """Whether ``image`` is an RGB(A) picture, which ``color="auto"`` prepares in CIELAB.

    Parameters
    ----------
    image : array_like or None
        The image as given to ``segment`` (only its shape is read), or None (False).
    channel_axis : int or None
        Its channel axis, or None when it is to be guessed.

    Returns
    -------
    bool
        True for 3 channels on the last axis, or 4 when the axis is guessed (RGBA), as
        ``napari_levelset.io.prepare.prepare_image`` reads them: a 2D picture, or a stack
        of them.

    Examples
    --------
    >>> import numpy as np
    >>> colour_photograph(np.zeros((32, 48, 3), np.uint8)), colour_photograph(np.zeros((32, 48), np.uint8))
    (True, False)
    >>> colour_photograph(np.zeros((32, 48, 4), np.uint8), channel_axis=2)  # four channels kept
    False
    """
    if image is None:
        return False
    shape = np.shape(image)
    if len(shape) not in (3, 4):
        return False
    if channel_axis is not None and channel_axis % len(shape) != len(shape) - 1:
        return False
    return shape[-1] == 3 or (channel_axis is None and shape[-1] == 4)


def stroke_contrast(image, channel_axis: int | None = None) -> str:
    """The ``contrast`` that ``segment`` uses with strokes when none is given.

    Parameters
    ----------
    image : array_like
        The image as given to ``segment``, any shape and dtype.
    channel_axis : int or None
        Its channel axis, or None when it has none (or it is to be guessed).

    Returns
    -------
    str
        ``"fluorescence"`` for integer data (signed or unsigned) of more than 8 bits that
        is not an RGB(A) picture, else ``"linear"``.  Without ``channel_axis``, a 3D or 4D
        array whose last axis has 3 or 4 elements is taken for an RGB(A) picture.

    Notes
    -----
    The napari widget's *auto* contrast follows the same rule, so a run there and
    ``segment`` prepare an image alike.  8-bit grey images stay ``linear``: on grey
    copies of BSDS500 train photographs the fluorescence preparation lowered the
    strokes' mean IoU from 0.45 to 0.38 (0.446 to 0.380, 30 iterations, 40 000 pixels;
    ``benchmarks/RESULTS.md``, "Strokes").

    Examples
    --------
    >>> import numpy as np
    >>> stroke_contrast(np.zeros((64, 64), np.uint16)), stroke_contrast(np.zeros((64, 64), np.uint8))
    ('fluorescence', 'linear')
    >>> stroke_contrast(np.zeros((64, 64, 3), np.uint16))  # an RGB picture
    'linear'
    >>> stroke_contrast(np.zeros((64, 64, 3), np.uint16), channel_axis=2)
    'fluorescence'
    """
    image = np.asarray(image)
    rgb = channel_axis is None and image.ndim in (3, 4) and image.shape[-1] in (3, 4)
    return "fluorescence" if image.dtype.kind in "ui" and image.dtype.itemsize > 1 and not rgb else "linear"


#: objects are dark (transmitted light) when the median brightness lies above this fraction of the
#: image's robust range [0.5th, 99.5th percentile] (brightness: the largest channel, the grey value)
DARK_OBJECTS_MEDIAN = 0.5


def object_contrast(image, channel_axis: int | None = None) -> tuple[str, str]:
    """Whether the objects of ``image`` are bright (fluorescence) or dark (transmitted light), and why.

    Rule: brightness is the grey value (the largest channel of a multichannel image);
    the objects are dark when the median brightness (the background, most of the
    field) lies in the upper part of the robust range, above ``DARK_OBJECTS_MEDIAN``
    of the way from its 0.5th to its 99.5th percentile: a bright-field or stained
    image is mostly light, a fluorescence image mostly dark.

    Parameters
    ----------
    image : array_like
        The image as given (grey or multichannel, 2D or 3D, any numeric dtype).
    channel_axis : int, optional
        As for ``napari_levelset.io.prepare.prepare_image`` (None: guessed).

    Returns
    -------
    contrast : str
        ``"fluorescence"`` (bright objects) or ``"transmitted"`` (dark objects).
    reason : str
        The measurement, for the run's record.

    Raises
    ------
    InputError
        For a shape whose axes cannot be read (``infer_axes``).

    Examples
    --------
    >>> import numpy as np
    >>> img = np.full((64, 64), 200.0); img[20:30, 20:30] = 50
    >>> object_contrast(img)[0]
    'transmitted'
    """
    arr = np.asarray(image, dtype=np.float32)
    ch_ax, _ = infer_axes(arr.shape, channel_axis, None)
    v = arr if ch_ax is None or arr.size == 0 else arr.max(axis=ch_ax)
    if v.size > 1_000_000:  # a regular subsample is enough for percentiles
        v = v.ravel()[:: int(v.size // 1_000_000) + 1]
    v = v[np.isfinite(v)]
    if v.size == 0:  # nothing to measure: the image is refused where it is checked
        return "fluorescence", "no finite pixel to measure: bright objects assumed"
    lo, med, hi = np.percentile(v, [0.5, 50.0, 99.5])
    where = float((med - lo) / (hi - lo)) if hi > lo else 0.0
    dark = where > DARK_OBJECTS_MEDIAN
    reason = (
        f"the median brightness lies {where:.2f} of the way up the image's range "
        f"({'above' if dark else 'at or below'} {DARK_OBJECTS_MEDIAN}): "
        f"{'dark objects on a light field' if dark else 'bright objects on a dark field'}"
    )
    return ("transmitted" if dark else "fluorescence"), reason


def is_builtin_cnn(model) -> bool:
    """Whether ``model`` is the built-in per-image CNN (``"cnn"``): the one that takes position channels.

    Parameters
    ----------
    model : str or torch.nn.Module
        A ``Settings.model`` value.

    Returns
    -------
    bool
        True only for the string ``"cnn"``.
    """
    return isinstance(model, str) and model == "cnn"


def model_kind(model) -> str:
    """The kind of network a ``model`` setting makes: the key of the per-model tables.

    Parameters
    ----------
    model : str or torch.nn.Module
        A ``Settings.model`` value.

    Returns
    -------
    str
        ``"cnn"`` for a network optimised on this image from its initialisation (the
        built-in per-image CNN, or any module that is not a pretrained network);
        ``"unet"`` for a pretrained network (``"unet"``, a model file, or a
        ``napari_levelset.nn.unet.PretrainedNetwork``).

    Examples
    --------
    >>> model_kind("cnn"), model_kind("unet"), model_kind("my_model.pt")
    ('cnn', 'unet', 'unet')
    """
    if isinstance(model, str):
        return "cnn" if model == "cnn" else "unet"
    return "unet" if getattr(model, "pretrained", False) else "cnn"


def region_defaults(kind: str, mode: str) -> tuple[float, float]:
    """``(merge, min_region)``: the merge weight and smallest region of ``mode`` regions for a ``kind`` of model.

    ``kind`` is ``model_kind``'s answer; ``mode`` one of ``classes``, ``connected``,
    ``merged``, ``instances``.  ``min_region`` is a fraction of the image:
    ``MERGED_MIN_REGION[kind]`` for merged regions, else ``MIN_REGION``.

    Parameters
    ----------
    kind : {"cnn", "unet"}
        The kind of model (``model_kind``).
    mode : str
        The regions mode (``Settings.regions``).

    Returns
    -------
    tuple of float
        ``(MERGE_WEIGHT[kind], min_region)``, ``min_region`` a fraction of the image.

    Raises
    ------
    KeyError
        For an unknown ``kind``.

    Examples
    --------
    >>> region_defaults("unet", "merged")
    (2.0, 0.0002)
    """
    return MERGE_WEIGHT[kind], MERGED_MIN_REGION[kind] if mode == "merged" else MIN_REGION


def default_position(model, color: str, n_classes: int, strokes: bool = False) -> float:
    """The position weight a run gets when none is given.

    ``POSITION`` (0.5) for the built-in per-image CNN on an image prepared in CIELAB (a
    colour photograph: objects are compact) with strokes or with at least
    ``POSITION_MIN_CLASSES`` (8) classes; else 0 (the plain colour model).  A stroke says
    where a class is as well as what it looks like: without position channels the strokes
    benchmark on BSDS500 val (2–8 classes) fell from mean IoU 0.770 to 0.613.  With a few
    classes and no strokes, coordinates cut
    uniform areas by straight lines (a table top in three parts, a sky split across), and
    regions merged from them score lower.  First 20 BSDS500 val images, merged regions
    (best merge weight), position 0 against 0.5: SC 0.492 / 0.452 at N 4, 0.525 / 0.509 at
    N 6, 0.517 / 0.521 at N 8; class labels scored as regions favour 0.5 (SC 0.380 / 0.389,
    PRI 0.654 / 0.690 at N 4; ``benchmarks/RESULTS.md``).  Other networks take the
    image's channels only.

    Parameters
    ----------
    model : str or torch.nn.Module
        The ``model`` setting.
    color : str
        The colour the image was prepared in (``Prepared.color``: ``"lab"`` or ``"rgb"``).
    n_classes : int
        Number of classes.
    strokes : bool
        Whether the run has strokes (scribbles) from its start.

    Returns
    -------
    float
        The weight, 0 or ``POSITION``.

    Examples
    --------
    >>> default_position("cnn", "lab", 4), default_position("cnn", "lab", 4, strokes=True)
    (0.0, 0.5)
    """
    if not is_builtin_cnn(model) or color != "lab":
        return 0.0
    return POSITION if strokes or n_classes >= POSITION_MIN_CLASSES else 0.0
