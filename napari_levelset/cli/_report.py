"""How the command line reports: one line and an exit status per failure, the library's names as flags,
and SIGTERM stopping a run like Ctrl-C.

Exit statuses: bad input (``InputError``, ``OSError``, a full disk, input nested too deeply to read) and
out of memory 2; another
``RuntimeError`` (a torch failure) 1; Ctrl-C 130; SIGTERM 143.  The line itself is
``napari_levelset.errors.command_message``'s, which a batch's reports share.
"""

from __future__ import annotations

import contextlib
import re
import signal
import sys

from napari_levelset.errors import COMMAND_OOM_ADVICE, PROG, command_message, is_bad_input
from napari_levelset.settings import SPEC

__all__ = ["OOM_ADVICE", "Terminated", "cli_words", "error_message", "report_error", "signals_as_interrupts"]

#: what the command advises when memory runs out (``napari_levelset.errors.COMMAND_OOM_ADVICE``)
OOM_ADVICE = COMMAND_OOM_ADVICE


class Terminated(KeyboardInterrupt):
    """Raised by the SIGTERM handler ``signals_as_interrupts`` installs: stops the run like Ctrl-C."""

    signum = 15


@contextlib.contextmanager
def signals_as_interrupts():
    """While active (in the main thread), SIGTERM raises ``Terminated``, so cleanups run as for Ctrl-C.

    Outside the main thread, or where there is no SIGTERM, it does nothing.  The handler
    before is restored on exit.

    Yields
    ------
    None

    Raises
    ------
    Terminated
        In the main thread, when SIGTERM arrives while active.
    """

    def handler(signum, frame):
        raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except (ValueError, AttributeError, OSError):  # not the main thread, or no SIGTERM here
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def error_message(
    exc: BaseException, prog: str = PROG, interrupted: str = "interrupted", oom_advice: str = OOM_ADVICE
) -> tuple[int, str] | None:
    """``(exit status, one line)`` for ``exc``, as ``report_error`` prints it; None for an exception not handled.

    Parameters
    ----------
    exc : BaseException
        What the command raised.
    prog : str
        The name the line starts with.
    interrupted : str
        The line for Ctrl-C after ``prog: ``, starting with ``"interrupted"`` (for SIGTERM
        that word becomes "terminated").
    oom_advice : str
        The message for running out of memory.

    Returns
    -------
    tuple of (int, str), or None
        Ctrl-C: 130, SIGTERM: 143 (128 + the signal number); bad input
        (``napari_levelset.errors.is_bad_input``: ``InputError``, ``OSError``, a full disk) and out of
        memory: 2; another ``RuntimeError``: 1.  None for an exception
        ``napari_levelset.errors.user_message`` does not handle (a bug).

    Examples
    --------
    >>> from napari_levelset.errors import InputError
    >>> error_message(InputError("no such file: a.tif"))
    (2, 'napari-levelset: error: no such file: a.tif')
    >>> error_message(KeyboardInterrupt())
    (130, 'napari-levelset: interrupted')
    """
    if isinstance(exc, KeyboardInterrupt):
        return (
            128 + (Terminated.signum if isinstance(exc, Terminated) else 2),
            f"{prog}: {'terminated' if isinstance(exc, Terminated) else 'interrupted'}"
            + interrupted.removeprefix("interrupted"),
        )
    line = command_message(exc, prog, oom_advice)
    if line is None:
        return None
    return (2 if is_bad_input(exc) else 1), line


def report_error(
    exc: BaseException, prog: str = PROG, interrupted: str = "interrupted", oom_advice: str = OOM_ADVICE
) -> int | None:
    """Print the one line for ``exc`` on stderr and return the exit status; None for an exception not handled.

    Bad input (``InputError``, ``OSError``) and out of memory: 2; Ctrl-C: 130;
    SIGTERM (see ``signals_as_interrupts``): 143; another ``RuntimeError``
    (a torch failure): its first line, 1.

    Parameters
    ----------
    exc : BaseException
        What the command raised.
    prog, interrupted, oom_advice : str
        As for ``error_message``.

    Returns
    -------
    int or None
        The exit status; None (nothing printed) for an exception not handled.
    """
    handled = error_message(exc, prog, interrupted, oom_advice)
    if handled is None:
        return None
    print(handled[1], file=sys.stderr)
    return handled[0]


#: the library's parameter names that the command spells as flags: every setting's (``SPEC``), and the rest
_FLAG_OF = {
    **{name: spec.flag for name, spec in SPEC.items()},
    "finetune_iterations": "--iterations",
    "channel_axis": "--channel-axis",
    "spatial_dims": "--spatial-dims",
    "scribbles": "--scribbles",
    "spacing": "--spacing",
}


def cli_words(message: str) -> str:
    """The library's advice in the command's words: ``init='kmeans'`` becomes ``--init kmeans``, and so on.

    Parameters
    ----------
    message : str
        An ``InputError``'s message from the library.

    Returns
    -------
    str
        The message with the library's parameter names as flags (``finetune_iterations``
        as ``--iterations``).

    Examples
    --------
    >>> cli_words("lower lr or use init='kmeans'")
    'lower lr or use --init kmeans'
    """
    names = "|".join(sorted(_FLAG_OF, key=len, reverse=True))

    def flag(m):
        value = m.group(3)
        if m.group(1) in ("finetune_iterations", "iterations") and not value:
            return "--iterations"
        return _FLAG_OF[m.group(1)] + (f" {value}" if value else "")

    # name='value', name=value, and a bare finetune_iterations
    message = re.sub(rf"\b({names})=(['\"]?)([\w.\-]+)\2", flag, message)
    message = re.sub(
        r"\bfinetune_iterations\b(?:\s*\(e\.g\. (\d+)\))?",
        lambda m: f"--iterations (e.g. --iterations {m.group(1) or 20})",
        message,
    )
    if "fine-tune" in message and "--iterations" not in message:
        message = message.replace("fine-tune", "fine-tune with --iterations (e.g. --iterations 20)", 1)
    return message
