"""The command line's parsers: one-line errors, defaults in the help, checked numbers, and the flags of
the settings generated from ``napari_levelset.settings.SPEC``.

Each ``Settings`` field is one flag (``SettingSpec.flag``) whose type, range or choices, default
and help come from its spec (``add_setting_flag``); ``settings_from_args`` reads them back into a
``Settings``.
"""

from __future__ import annotations

import argparse
import math
import re

from napari_levelset.resources import MAX_THREADS, max_workers, usable_cores
from napari_levelset.settings import DEVICE_WORDS, SPEC, Settings, SettingSpec, is_device

__all__ = [
    "THREADS_RULE",
    "DefaultsFormatter",
    "OneLineParser",
    "add_allow_large_option",
    "add_cluster_options",
    "add_setting_flag",
    "add_threads_option",
    "bounded_float",
    "bounded_int",
    "device_name",
    "flag_type",
    "scheduler_address",
    "settings_from_args",
]


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line on stderr (exit status 2), naming ``--help``."""

    #: the name errors start with (default: ``prog``)
    error_prog: str | None = None

    def error(self, message):
        """Print ``<prog>: error: <message> (see <prog> --help)`` on stderr and exit with status 2.

        Parameters
        ----------
        message : str
            argparse's message.

        Returns
        -------
        typing.NoReturn
            Never returns.

        Raises
        ------
        SystemExit
            Always, with status 2.
        """
        self.exit(2, f"{self.error_prog or self.prog}: error: {message} (see {self.prog} --help)\n")


class DefaultsFormatter(argparse.HelpFormatter):
    """Adds "(default: X)" to a help text that does not give its default already (and has one)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (
            action.default is not None
            and action.default is not False
            and action.default != argparse.SUPPRESS
            and "default" not in text
            and action.option_strings
        ):  # (0 is a default, though 0 == False)
            text += " (default: %(default)s)"
        return text


def bounded_int(lo: int, hi: int | None = None, what: str = ""):
    """An argparse type: a whole number in ``lo..hi`` (``hi`` None: no upper bound).

    Parameters
    ----------
    lo : int
        The smallest value allowed.
    hi : int, optional
        The largest value allowed; None: no upper bound.
    what : str
        Added to the message after the bound (e.g. ``" classes"``).

    Returns
    -------
    callable
        ``parse(text) -> int``, raising ``argparse.ArgumentTypeError`` for text that is not a
        whole number in range (argparse turns it into a one-line error).

    Examples
    --------
    >>> bounded_int(2, 64)("3")
    3
    >>> bounded_int(2, 64)("99")
    Traceback (most recent call last):
    ...
    argparse.ArgumentTypeError: must be from 2 to 64, got 99
    """

    def parse(text: str) -> int:
        """``text`` as a whole number in range.

        Parameters
        ----------
        text : str
            The command-line value.

        Returns
        -------
        int
            The value.

        Raises
        ------
        argparse.ArgumentTypeError
            For text that is not a whole number, or a number out of range.
        """
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if v < lo or (hi is not None and v > hi):
            bound = f"from {lo} to {hi}" if hi is not None else f">= {lo}"
            raise argparse.ArgumentTypeError(f"must be {bound}{what}, got {v}")
        return v

    return parse


def bounded_float(lo: float = 0.0, hi: float | None = None, lo_open: bool = False):
    """An argparse type: a finite number >= ``lo`` (> ``lo`` with ``lo_open``) and <= ``hi``.

    Parameters
    ----------
    lo : float
        The low end.
    hi : float, optional
        The largest value allowed; None: no upper bound.
    lo_open : bool
        Whether ``lo`` itself is refused.

    Returns
    -------
    callable
        ``parse(text) -> float``, raising ``argparse.ArgumentTypeError`` for text that is not a
        finite number in range.

    Examples
    --------
    >>> bounded_float(0.0, 10.0, lo_open=True)("0.5")
    0.5
    """

    def parse(text: str) -> float:
        """``text`` as a finite number in range.

        Parameters
        ----------
        text : str
            The command-line value.

        Returns
        -------
        float
            The value.

        Raises
        ------
        argparse.ArgumentTypeError
            For text that is not a number, NaN, an infinity, or a number out of range.
        """
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        low_ok = v > lo if lo_open else v >= lo
        if not (math.isfinite(v) and low_ok and (hi is None or v <= hi)):
            bound = f"{'>' if lo_open else '>='} {lo:g}" + (f" and <= {hi:g}" if hi is not None else "")
            raise argparse.ArgumentTypeError(f"must be a finite number {bound}, got {text}")
        return v

    return parse


def device_name(text: str) -> str:
    """An argparse type: a device a run accepts (``napari_levelset.settings.is_device``).

    Parameters
    ----------
    text : str
        The command-line value.

    Returns
    -------
    str
        ``text``.

    Raises
    ------
    argparse.ArgumentTypeError
        For a name that is not ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.

    Examples
    --------
    >>> device_name("cuda:1")
    'cuda:1'
    """
    if not is_device(text):
        raise argparse.ArgumentTypeError(f"unknown device {text!r}: use {DEVICE_WORDS}")
    return text


def flag_type(spec: SettingSpec, hi: float | None = None):
    """The argparse type of the flag of ``spec``: its range checked as ``bounded_int`` / ``bounded_float`` do.

    Parameters
    ----------
    spec : napari_levelset.settings.SettingSpec
        The setting.
    hi : int or float, optional
        A lower high end than ``spec.hi`` (``--classes`` offers ``MAX_OFFERED_CLASSES``).

    Returns
    -------
    callable
        ``parse(text)``: an ``int``, a ``float`` or the text (a device name checked).

    Examples
    --------
    >>> flag_type(SPEC["depth"])("3")
    3
    """
    hi = spec.hi if hi is None else hi
    if spec.name == "device":
        return device_name
    if spec.type in (int, tuple):  # a tuple: whole numbers each (foreground's labels)
        return bounded_int(spec.lo, hi)
    if spec.type is float:
        return bounded_float(spec.lo, hi, lo_open=spec.lo_open)
    return str


def add_setting_flag(
    parser,
    spec: SettingSpec,
    *,
    short: str | None = None,
    note: str = "",
    hi: float | None = None,
    given_only: bool = False,
) -> argparse.Action:
    """Add the flag of the setting ``spec`` to ``parser``: type, range or choices, default and help from the spec.

    The help is ``spec.help``, its range and unit, then ``note``; argparse's ``dest``
    is the field's name.  A setting of several values (``foreground``) takes one or more.

    Parameters
    ----------
    parser : argparse.ArgumentParser or argument group
        Where the flag goes.
    spec : napari_levelset.settings.SettingSpec
        The setting.
    short : str, optional
        A one-letter form too (``-n``).
    note : str
        What the command adds to the help (its per-model defaults, in flags).
    hi : int or float, optional
        A lower high end than the spec's (see ``flag_type``).
    given_only : bool
        Default None (the command tells whether the flag was given; the setting's default
        applies) rather than the spec's default.

    Returns
    -------
    argparse.Action
        The flag.
    """
    names = [spec.flag] + ([short] if short else [])
    extra: dict = {}
    choices = None if spec.choices is None else [c for c in spec.choices if c is not None]
    if spec.name == "device":
        extra["metavar"] = "{" + ",".join(choices[:3] + ["cuda:N"] + choices[3:]) + "}"
        what = ""
    elif choices is not None:
        extra["choices"] = choices
        what = ""
    else:
        what = spec.range_text(hi)
    if spec.type is tuple:
        extra.update(nargs="+", metavar="K")
    if "metavar" not in extra:
        extra["metavar"] = spec.flag.lstrip("-").upper().replace("-", "_") if choices is None else None
    help_text = ", ".join(t for t in (spec.help, what, spec.unit and f"in {spec.unit}") if t)
    if note:
        help_text += f"; {note}"
    return parser.add_argument(
        *names,
        dest=spec.name,
        type=flag_type(spec, hi),
        default=None if given_only else spec.default,
        help=help_text.replace("%", "%%"),
        **extra,
    )


def settings_from_args(args: argparse.Namespace) -> Settings:
    """The ``Settings`` the setting flags give: flags left out (None) keep the settings' defaults.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed arguments holding one attribute per ``Settings`` field (``add_setting_flag``).

    Returns
    -------
    napari_levelset.settings.Settings
        Not resolved (``Settings.resolved`` fills in the per-model defaults).

    Raises
    ------
    InputError
        For a value the settings refuse (e.g. an empty ``--model``).
    """
    given = {name: getattr(args, name) for name in SPEC}
    return Settings(**{name: value for name, value in given.items() if value is not None})


THREADS_RULE = (
    "torch CPU threads per process (default: one per CPU core that other programs leave free when a run "
    "starts, divided among --workers, at least 1; {default} cores here; OMP_NUM_THREADS fixes it where set; "
    "a thread on a busy core slows the others down many times)"
)


def add_threads_option(parser, default: int | None = None, rule: str = THREADS_RULE) -> None:
    """``--threads N`` (a whole number >= 1) for a command; ``rule`` (may name ``{default}``) is its help.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The command's parser; ``--threads`` is added to it.
    default : int, optional
        The option's default; None: chosen at run time from the cores free then
        (``resources.run_threads``; the help shows the usable cores).
    rule : str
        The help text; ``{default}`` is replaced by the default given, or the usable cores.
    """
    shown = usable_cores() if default is None else default
    parser.add_argument(
        "--threads",
        type=bounded_int(1, MAX_THREADS),
        default=default,
        metavar="N",
        help=rule.format(default=shown).replace("%", "%%"),
    )


#: a dask scheduler's address: ``protocol://...`` or ``host:port``
_ADDRESS = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+|[^\s/:]+(?::[^\s/:]*)*:\d+/?")


def scheduler_address(text: str) -> str:
    """An argparse type: a dask scheduler's address, ``protocol://...`` or ``host:port``.

    Parameters
    ----------
    text : str
        The command-line value.

    Returns
    -------
    str
        ``text``.

    Raises
    ------
    argparse.ArgumentTypeError
        For text that is not of that form (empty, a name without a port).

    Examples
    --------
    >>> scheduler_address("tcp://10.0.0.5:8786")
    'tcp://10.0.0.5:8786'
    """
    if not _ADDRESS.fullmatch(text):
        raise argparse.ArgumentTypeError(f"not a scheduler address such as tcp://host:8786, got {text!r}")
    return text


def add_cluster_options(parser) -> None:
    """``--workers N`` (at most what this machine runs side by side: ``resources.max_workers``) and
    ``--scheduler ADDRESS``.

    Parameters
    ----------
    parser : argparse.ArgumentParser or argument group
        Where the options go.
    """
    most = max_workers()
    parser.add_argument(
        "--workers",
        type=bounded_int(1, most, " (the processes this machine's cores and memory run)"),
        default=None,
        metavar="N",
        help=f"batch / zarr: start a local dask cluster of N processes, 1..{most} here (needs dask[distributed])",
    )
    parser.add_argument(
        "--scheduler",
        type=scheduler_address,
        default=None,
        metavar="ADDRESS",
        help="batch / zarr: run on the dask cluster at ADDRESS (e.g. tcp://host:8786)",
    )


def add_allow_large_option(parser) -> None:
    """``--allow-large``: read image files that declare more pixels than their size can honestly hold.

    Parameters
    ----------
    parser : argparse.ArgumentParser or argument group
        Where the option goes.
    """
    parser.add_argument(
        "--allow-large",
        action="store_true",
        help="read an image file that declares far more pixels than its size holds (a sparse or "
        "highly compressed genuine image; default: refuse it); what memory cannot hold is refused "
        "all the same",
    )
