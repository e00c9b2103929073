"""What each setting of a run is: its type, default, range or choices, unit, help, kind and flag.

``SPEC`` holds one ``SettingSpec`` per field of ``napari_levelset.settings.Settings``, in
the fields' order; every range and list of choices is written here once.  The checks
(``napari_levelset.validate``: its ``LIMITS`` for these names come from here), the
``Settings`` object, the command line's flags (``napari_levelset.cli``) and the widget's
form read it.  No imports from the package, and no numpy or torch: anything may import it.

Examples
--------
>>> SPEC["lr"].range_text()
'in (0, 10]'
>>> SPEC["n_classes"].flag, SPEC["regions"].choices[:2]
('--classes', ('classes', 'connected'))
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

__all__ = ["DEVICES", "DEVICE_WORDS", "KINDS", "MAX_OFFERED_CLASSES", "SPEC", "SettingSpec", "is_device"]

#: the kinds of setting: may change during a run / makes a new network (a run restarts) /
#: how long to run / what is made of the labels afterwards
KINDS = ("live", "network", "run", "output")

#: the device names a run accepts; ``cuda:N`` (a CUDA device by its index) too
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda", "mps")
#: the devices in words, for messages
DEVICE_WORDS = "auto, cpu, cuda (or cuda:N) or mps"
_CUDA_INDEX = re.compile(r"cuda:\d+")

#: the most classes the widget and the command line offer (the library takes up to ``SPEC["n_classes"].hi``)
MAX_OFFERED_CLASSES = 64


def is_device(name) -> bool:
    """Whether ``name`` is a device a run accepts: one of ``DEVICES`` or ``cuda:N``.

    Parameters
    ----------
    name : object
        The ``device`` setting given (compared as ``str(name)``).

    Returns
    -------
    bool
        True for ``"auto"``, ``"cpu"``, ``"cuda"``, ``"mps"`` and ``"cuda:0"``, ``"cuda:1"``, ...

    Examples
    --------
    >>> is_device("cuda:1"), is_device("tpu")
    (True, False)
    """
    text = str(name)
    return text in DEVICES or _CUDA_INDEX.fullmatch(text) is not None


@dataclass(frozen=True)
class SettingSpec:
    """One setting: what it is and what it allows.

    Parameters
    ----------
    name : str
        The ``Settings`` field.
    type : type
        ``int``, ``float``, ``str`` or ``tuple`` (``model`` also takes a torch module).
    default : object
        The field's default; None means "the default for this model and output"
        (``Settings.resolved``).
    lo, hi : int or float, optional
        The range of a number (of each label for ``foreground``); None: unbounded on that side.
    lo_open, hi_open : bool
        Whether ``lo`` (``hi``) itself is refused.
    choices : tuple, optional
        The values allowed (None among them where "default" is one), or for ``device`` the
        names offered (``cuda:N`` is allowed too, see ``is_device``); None for numbers.
    unit : str
        The unit of a number ("" where it has none).
    help : str
        A few words: lower case, no final stop (help texts and tooltips).
    kind : {"live", "network", "run", "output"}
        May change during a run; needs a new network; how long to run; what is made of the labels.
    flag : str
        The command line's flag (``napari-levelset segment``).
    """

    name: str
    type: type
    default: Any
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    choices: tuple | None = None
    unit: str = ""
    help: str = ""
    kind: str = "network"
    flag: str = ""

    def range_text(self, hi: float | None = None) -> str:
        """The range in words: ``2..65535`` (whole numbers), ``in (0, 10]``, ``>= 0``, ``> 0``; "" when unbounded.

        Parameters
        ----------
        hi : int or float, optional
            Another high end to show (e.g. ``MAX_OFFERED_CLASSES``); None: ``self.hi``.

        Returns
        -------
        str
            The range as messages and help texts write it.

        Examples
        --------
        >>> SPEC["width"].range_text(), SPEC["merge"].range_text(), SPEC["diameter"].range_text()
        ('1..1024', '>= 0', '> 0')
        """
        hi = self.hi if hi is None else hi
        if self.lo is None and hi is None:
            return ""
        if self.type is int or self.type is tuple:
            return f"{self.lo}..{hi}" if hi is not None else f">= {self.lo}"
        if hi is None:
            return f"{'>' if self.lo_open else '>='} {self.lo:g}"
        if self.lo is None:
            return f"{'<' if self.hi_open else '<='} {hi:g}"
        return f"in {'(' if self.lo_open else '['}{self.lo:g}, {hi:g}{')' if self.hi_open else ']'}"


def _spec(name, type_, default, help, kind, flag, **more) -> SettingSpec:
    return SettingSpec(name=name, type=type_, default=default, help=help, kind=kind, flag=flag, **more)


_SPECS = (
    _spec("n_classes", int, None, "number of classes N", "network", "--classes", lo=2, hi=65535),
    _spec(
        "lam",
        float,
        None,
        "weight of the total-variation (boundary length) term λ; larger: smoother, fewer regions",
        "live",
        "--lam",
        lo=0.0,
        hi=1e3,
    ),
    _spec("lr", float, 0.01, "Adam learning rate", "live", "--lr", lo=0.0, hi=10.0, lo_open=True),
    _spec("alpha", float, 1.0, "weight of the scribbles' cross-entropy α", "live", "--alpha", lo=0.0, hi=1e3),
    # more than 100 000 steps is hours of work: surely a slip (2**64 ran "forever")
    _spec("iterations", int, None, "optimisation steps", "run", "--iterations", lo=0, hi=100_000),
    _spec(
        "width",
        int,
        None,
        "feature channels of the per-image CNN (16; 8 for instances on a grey image)",
        "network",
        "--width",
        lo=1,
        hi=1024,
    ),
    _spec("depth", int, 2, "3x3 blocks of the per-image CNN", "network", "--depth", lo=1, hi=16),
    _spec(
        "model",
        str,
        "cnn",
        "the network: cnn (optimised on this image), unet (the pretrained U-Net) or a model file",
        "network",
        "--model",
    ),
    _spec("init", str, None, "the start", "network", "--init", choices=(None, "auto", "kmeans", "random", "network")),
    _spec(
        "finetune",
        str,
        "head",
        "what a U-Net's fine-tune trains",
        "network",
        "--finetune",
        choices=("head", "last", "all"),
    ),
    _spec(
        "color",
        str,
        "auto",
        "how colour is compared: auto (CIELAB for an RGB image), rgb (each channel "
        "normalised on its own) or lab (CIELAB)",
        "network",
        "--color",
        choices=("auto", "rgb", "lab"),
    ),
    _spec(
        "position",
        float,
        None,
        "weight of the pixel coordinates appended as channels (0: colour only; larger: more compact regions)",
        "network",
        "--position",
        lo=0.0,
        hi=100.0,
    ),
    _spec(
        "contrast",
        str,
        None,
        "how intensities are prepared: linear (as they are), fluorescence (bright objects: background "
        "removed, log) or transmitted (dark objects on a light field, bright-field or stains: made bright, "
        "background removed, linear)",
        "network",
        "--contrast",
        choices=(None, "linear", "fluorescence", "transmitted"),
    ),
    _spec("seed", int, 0, "random seed of the network's start and crops", "network", "--seed", lo=0, hi=2**32 - 1),
    _spec(
        "device",
        str,
        "auto",
        "where the network runs (auto: a GPU when there is one, else the CPU)",
        "network",
        "--device",
        choices=DEVICES,
    ),
    _spec(
        "max_pixels",
        int,
        None,
        "most pixels one step holds activations for (larger images are optimised on random crops)",
        "network",
        "--max-pixels",
        lo=1,
        unit="pixels",
    ),
    _spec(
        "work_pixels",
        int,
        None,
        "per-image CNN: most pixels per image of the copy it is optimised on",
        "network",
        "--work-pixels",
        lo=16,
        unit="pixels",
    ),
    # an object a million units across (pixels, or micrometres: a metre of nanometres) is surely a slip
    _spec(
        "diameter",
        float,
        None,
        "expected object diameter of instances",
        "network",
        "--diameter",
        lo=0.0,
        hi=1e6,
        lo_open=True,
        unit="the unit of the spacing (pixels without one)",
    ),
    _spec(
        "regions",
        str,
        "classes",
        "what is returned: class labels or regions",
        "output",
        "--regions",
        choices=("classes", "connected", "merged", "instances"),
    ),
    _spec(
        "merge", float, None, "boundary weight of merged regions (larger: fewer regions)", "output", "--merge", lo=0.0
    ),
    _spec(
        "min_region",
        float,
        None,
        "smallest region kept: pixels (>= 1) or a fraction of the image (< 1)",
        "output",
        "--min-region",
        lo=0.0,
    ),
    _spec("foreground", tuple, None, "class labels that are objects, for instances", "output", "--foreground", lo=1),
)

#: one ``SettingSpec`` per ``Settings`` field, in the fields' order
SPEC: dict[str, SettingSpec] = {s.name: s for s in _SPECS}
