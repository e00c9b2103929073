"""One check for each public setting of ``segment``, ``Segmenter`` and ``train``: type, whole-number-ness,
finiteness, range.

Numpy only.  Every check raises ``InputError`` with a message that names the
setting, the value given and what is allowed, and returns the value in the
type the library works with (``int`` or ``float``).

Whole numbers may be given as any integral number (``3``, ``np.int64(3)``,
``3.0``); fractions, NaN, infinities, booleans and strings are refused.  A 0-d
numpy array counts as its value.

Examples
--------
>>> integer("width", 3.0)
3
>>> number("lam", "0.1")
Traceback (most recent call last):
...
napari_levelset.errors.InputError: lam must be a number in [0, 1000], got '0.1'
"""

from __future__ import annotations

import numbers

import numpy as np

from napari_levelset.errors import InputError
from napari_levelset.spec import SPEC

__all__ = [
    "LIMITS",
    "TRAIN_LIMITS",
    "channel_axis",
    "class_counts",
    "image_array",
    "integer",
    "number",
    "optional_integer",
    "optional_number",
    "scribble_array",
    "seed",
    "spatial_dims",
]

#: (low, high) of each bounded setting, inclusive (but see ``_OPEN_LOW``); ``None``: unbounded.  Those of
#: the ``Settings`` fields are ``napari_levelset.spec.SPEC``'s; the rest are other arguments' of ``segment``
#: and ``Segmenter.run``.
LIMITS: dict[str, tuple] = {
    **{name: (s.lo, s.hi) for name, s in SPEC.items() if s.type in (int, float)},
    "finetune_iterations": (SPEC["iterations"].lo, SPEC["iterations"].hi),
    "every": (1, None),
    "spatial_dims": (2, 3),
}
#: (low, high) of ``train``'s own settings (``lam``, ``lr``, ``alpha`` and ``seed`` as above); the
#: network's size as ``unet.ARCH_LIMITS`` allows a model file to declare it
TRAIN_LIMITS: dict[str, tuple] = dict(
    steps=(1, 10_000_000),
    crop=(16, 16384),
    batch_size=(1, 4096),
    checkpoint_every=(1, None),
    warmup=(0, None),
    kmeans_weight=(0.0, 1e3),
    kmeans_steps=(0.0, None),
    kmeans_heads=(0, 254),
    base=(1, 1024),
    levels=(1, 8),
    embed=(1, 1024),
    threads=(1, 4096),
    stop_after=(1, None),
)
#: settings whose low end is excluded (must be larger)
_OPEN_LOW = {name for name, s in SPEC.items() if s.lo_open}


def _is_bool(value) -> bool:
    return isinstance(value, (bool, np.bool_))


def _is_real(value) -> bool:
    """A real number (Python or numpy scalar, or a 0-d numeric array), not a bool."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    return isinstance(value, (numbers.Real, np.integer, np.floating)) and not _is_bool(value)


def _scalar(value):
    return value[()] if isinstance(value, np.ndarray) and value.ndim == 0 else value


def _range_text(name: str, lo, hi) -> str:
    """``in [0, 1000]``, ``in (0, 10]``, ``>= 0``, ``> 0``."""
    if hi is None:
        return f"> {lo:g}" if name in _OPEN_LOW else f">= {lo:g}"
    left = "(" if name in _OPEN_LOW else "["
    return f"in {left}{lo:g}, {hi:g}]"


def _shown(value) -> str:
    """``repr(value)``, shortened when long (a huge integer)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:30] + "..." + text[-6:]


def _limits(name: str, lo, hi):
    if lo is None and hi is None:
        if name in LIMITS:
            return LIMITS[name]
        if name in TRAIN_LIMITS:
            return TRAIN_LIMITS[name]
    return lo, hi


def integer(name: str, value, lo=None, hi=None, *, bounded: bool = True) -> int:
    """``value`` as an ``int`` in ``lo..hi`` (defaults: ``LIMITS[name]``; ``bounded=False``: any).

    Parameters
    ----------
    name : str
        The setting's name: for the message, and the key of ``LIMITS`` or ``TRAIN_LIMITS``
        when ``lo`` and ``hi`` are both None.
    value : int, float, numpy scalar or 0-d array
        An integral number (``3``, ``np.int64(3)``, ``3.0``); not a bool.
    lo, hi : int, optional
        Inclusive range; None: unbounded on that side.
    bounded : bool
        False: any whole number (``lo`` and ``hi`` ignored).

    Returns
    -------
    int
        The value.

    Raises
    ------
    InputError
        For a fraction, NaN, infinity, bool, string or other non-number, or a value out of
        range; the message names the setting, the value and what is allowed.

    Examples
    --------
    >>> integer("depth", np.int64(4))
    4
    >>> integer("depth", 17)
    Traceback (most recent call last):
    ...
    napari_levelset.errors.InputError: depth must be a whole number in 1..16, got 17
    """
    lo, hi = _limits(name, lo, hi) if bounded else (None, None)
    allowed = (
        f"a whole number in {lo}..{hi}"
        if hi is not None
        else (f"a whole number >= {lo}" if lo is not None else "a whole number")
    )
    v = _scalar(value)
    if isinstance(v, (numbers.Integral, np.integer)) and not _is_bool(v):
        out = int(v)
    elif _is_real(v) and np.isfinite(float(v)) and float(v) == np.floor(float(v)):
        out = int(float(v))  # an integral float (3.0)
    else:
        raise InputError(f"{name} must be {allowed}, got {_shown(value)}")
    if (lo is not None and out < lo) or (hi is not None and out > hi):
        raise InputError(f"{name} must be {allowed}, got {_shown(value)}")
    return out


def number(name: str, value, lo=None, hi=None) -> float:
    """``value`` as a finite ``float`` in the range of ``LIMITS[name]`` (or ``lo``, ``hi``).

    Parameters
    ----------
    name : str
        The setting's name: for the message, and the key of ``LIMITS`` or ``TRAIN_LIMITS``
        when ``lo`` and ``hi`` are both None.  For ``lr`` and ``diameter`` the low end is
        excluded.
    value : int, float, numpy scalar or 0-d array
        A real number; not a bool.
    lo, hi : float, optional
        Range, inclusive (but see ``name``); None: unbounded on that side.

    Returns
    -------
    float
        The value.

    Raises
    ------
    InputError
        For NaN, infinity (or an integer too large for a float), a bool, string or other
        non-number, or a value out of range.

    Examples
    --------
    >>> number("lr", 1)
    1.0
    >>> number("lr", 0)
    Traceback (most recent call last):
    ...
    napari_levelset.errors.InputError: lr must be a number in (0, 10], got 0
    """
    lo, hi = _limits(name, lo, hi)
    allowed = f"a number {_range_text(name, lo, hi)}" if (lo is not None or hi is not None) else "a finite number"
    v = _scalar(value)
    try:
        out = float(v) if _is_real(v) else float("nan")
    except OverflowError:  # an int too large for a float
        out = float("inf")
    if not np.isfinite(out):
        raise InputError(f"{name} must be {allowed}, got {_shown(value)}")
    low_bad = lo is not None and (out <= lo if name in _OPEN_LOW else out < lo)
    if low_bad or (hi is not None and out > hi):
        raise InputError(f"{name} must be {allowed}, got {_shown(value)}")
    return out


def optional_integer(name: str, value, lo=None, hi=None) -> int | None:
    """None, or ``integer(name, value, lo, hi)``.

    Parameters
    ----------
    name : str
        The setting's name (see ``integer``).
    value : int, float, numpy scalar, 0-d array or None
        The value to check.
    lo, hi : int, optional
        Inclusive range (default: the setting's limits).

    Returns
    -------
    int or None
        The value, None for None.

    Raises
    ------
    InputError
        As ``integer``.
    """
    return None if value is None else integer(name, value, lo, hi)


def optional_number(name: str, value, lo=None, hi=None) -> float | None:
    """None, or ``number(name, value, lo, hi)``.

    Parameters
    ----------
    name : str
        The setting's name (see ``number``).
    value : int, float, numpy scalar, 0-d array or None
        The value to check.
    lo, hi : float, optional
        Range (default: the setting's limits).

    Returns
    -------
    float or None
        The value, None for None.

    Raises
    ------
    InputError
        As ``number``.
    """
    return None if value is None else number(name, value, lo, hi)


def seed(value) -> int:
    """A seed for numpy and torch: a whole number in 0..2**32-1.

    Parameters
    ----------
    value : int, float, numpy scalar or 0-d array
        The seed given.

    Returns
    -------
    int
        The seed.

    Raises
    ------
    InputError
        For anything but a whole number in 0..2**32-1.
    """
    return integer("seed", value)


def channel_axis(value) -> int | None:
    """None or a whole number (its range is checked against the image's axes in ``io.infer_axes``).

    Parameters
    ----------
    value : int or None
        The channel axis given (negative counts from the end).

    Returns
    -------
    int or None
        The axis, None for None.

    Raises
    ------
    InputError
        For a value that is not a whole number.
    """
    return None if value is None else integer("channel_axis", value, bounded=False)


def spatial_dims(value) -> int | None:
    """None, 2 or 3.

    Parameters
    ----------
    value : int or None
        The number of spatial axes segmented together given; None: from the image.

    Returns
    -------
    int or None
        2, 3, or None.

    Raises
    ------
    InputError
        For any other value.
    """
    if value is None:
        return None
    v = _scalar(value)
    if not _is_real(v) or v not in (2, 3):
        raise InputError(f"spatial_dims must be 2 or 3 (or None: from the image), got {_shown(value)}")
    return int(float(v))


def image_array(image) -> np.ndarray:
    """``image`` as a numpy array; a ragged nesting of lists is an ``InputError``.

    Parameters
    ----------
    image : array_like
        The image (an array, or nested sequences of numbers).

    Returns
    -------
    numpy.ndarray
        ``numpy.asarray(image)`` (no copy for an array): any shape, any dtype but object.

    Raises
    ------
    InputError
        For nested sequences of different lengths, or an array of dtype object.
    """
    try:
        arr = np.asarray(image)
    except (ValueError, TypeError) as exc:
        raise InputError(
            f"the image is not a rectangular array ({exc.__class__.__name__}: nested sequences of different lengths?)"
        ) from None
    if arr.dtype == object:
        raise InputError("the image is not a rectangular array of numbers (dtype object)")
    return arr


def scribble_array(scribbles) -> np.ndarray:
    """``scribbles`` as a numpy array of real, finite, whole numbers (bool or integer dtype, or integral floats).

    Their shape and range (0..N) are checked where the image is known
    (``Segmenter.set_scribbles``).

    Parameters
    ----------
    scribbles : array_like
        Labels, 0 unlabelled.

    Returns
    -------
    numpy.ndarray
        ``numpy.asarray(scribbles)``, dtype unchanged (bool, integer or float).

    Raises
    ------
    InputError
        For a ragged array, a dtype that is not bool, integer or float, or floats holding
        fractions, NaN or infinity.

    Examples
    --------
    >>> scribble_array([[0, 1], [2.0, 0]]).dtype
    dtype('float64')
    """
    try:
        s = np.asarray(scribbles)
    except (ValueError, TypeError) as exc:
        raise InputError(f"scribbles are not a rectangular array ({exc.__class__.__name__})") from None
    if s.dtype == bool or np.issubdtype(s.dtype, np.integer):
        return s
    if not np.issubdtype(s.dtype, np.floating):
        raise InputError(f"scribbles must be integer labels (0 = unlabelled), got an array of dtype {s.dtype}")
    if not np.isfinite(s).all() or not np.all(np.mod(s, 1) == 0):
        raise InputError("scribbles must be integer labels (0 = unlabelled): these hold fractions, NaN or infinity")
    return s


def n_classes(value) -> int:
    """The number of classes: a whole number in 2..65535.

    Parameters
    ----------
    value : int, float, numpy scalar or 0-d array
        The number of classes given.

    Returns
    -------
    int
        The number of classes.

    Raises
    ------
    InputError
        For anything but a whole number, or one outside 2..65535 (the message says which end).
    """
    lo, hi = LIMITS["n_classes"]
    try:
        n = integer("n_classes", value, bounded=False)
    except InputError:
        raise InputError(f"n_classes must be a whole number in {lo}..{hi}, got {_shown(value)}") from None
    if n < lo:
        raise InputError(f"need at least {lo} classes, got n_classes={n} (allowed: {lo}..{hi})")
    if n > hi:
        raise InputError(f"at most {hi} classes are supported, got n_classes={n} (allowed: {lo}..{hi})")
    return n


def class_counts(text: str, lo: int = 2, hi: int = 255) -> list[int]:
    """Class counts written as text: ``"4"``, ``"2-16"`` or ``"2,3,5"`` (a U-Net's heads).

    Parameters
    ----------
    text : str
        Counts and ranges ``a-b``, separated by commas.
    lo, hi : int
        The smallest and largest count allowed.

    Returns
    -------
    list of int
        Sorted, distinct counts in ``lo..hi``.

    Raises
    ------
    InputError
        When the text is not written so, names no count, or a count lies outside ``lo..hi``.

    Examples
    --------
    >>> class_counts("2-4, 7")
    [2, 3, 4, 7]
    """
    out: set[int] = set()
    try:
        for part in str(text).split(","):
            a, sep, b = part.strip().partition("-")
            out.update(range(int(a), int(b) + 1) if sep else [int(a)])
    except ValueError:
        raise InputError(f"classes must be written like 4, 2-16 or 2,3,5; got {text!r}") from None
    if not out or min(out) < lo or max(out) > hi:
        raise InputError(f"classes must be class counts in {lo}..{hi} written like 4, 2-16 or 2,3,5; got {text!r}")
    return sorted(out)
