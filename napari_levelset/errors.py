"""One rule for what the user is told about a failure: the CLI, ``train`` and the napari widget share it.

No torch, Qt or napari here.  :func:`user_message` turns an exception into one line of text, or
None for an exception that is a bug (those keep their traceback).  Each front end adds its own
frame: the command its program name (``command_message``, which a batch's reports share) and
exit status (``napari_levelset.cli``), the widget a notification (``widget_message``), and each
its own advice for running out of memory, in its own words (command-line flags, or the
widget's settings).
"""

from __future__ import annotations

import errno
import os
import re

from napari_levelset.resources import is_out_of_memory

__all__ = [
    "COMMAND_OOM_ADVICE",
    "PROG",
    "WIDGET_OOM_ADVICE",
    "FewerClassesWarning",
    "InputError",
    "RunFailed",
    "command_message",
    "disk_full",
    "is_bad_input",
    "is_disk_full",
    "user_message",
    "widget_message",
]

#: the command's name: each line it (and a batch) prints about a failure starts with it
PROG = "napari-levelset"
#: what the command advises when memory runs out, in its flags
COMMAND_OOM_ADVICE = "out of memory; try a smaller image, fewer classes, a smaller --width or --max-pixels"


class FewerClassesWarning(UserWarning):
    """A run gives fewer distinct labels than the ``n_classes`` asked for; the message says why and what
    to change (``napari_levelset.method.classes``)."""


class InputError(ValueError):
    """Bad input from the user: the message is meant to be shown as it is.

    A ``ValueError``; raised by the readers, the settings, the engine, the CLI and the widget
    for input they cannot use.  :func:`user_message` shows it on one line.

    Examples
    --------
    >>> try:
    ...     raise InputError("need at least 2 spatial axes, got an image of shape (5,)")
    ... except InputError as exc:
    ...     print(exc)
    need at least 2 spatial axes, got an image of shape (5,)
    """


#: what a write that stopped short says where the system gave no reason (numpy's ``tofile``, which tifffile
#: writes with; torch's zip writer, which ``torch.save`` uses)
_SHORT_WRITE = re.compile(
    r"\d+ requested and \d+ written|PytorchStreamWriter failed writing|file write failed"
    r"|inline_container\.cc.*unexpected pos"
)
#: what a run says when the input is nested deeper than it can be read (JSON, pickles)
TOO_DEEP = "nested too deeply to read (maximum recursion depth exceeded)"


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` says a write found no space: ``ENOSPC`` / ``EDQUOT``, or a write that stopped short.

    Parameters
    ----------
    exc : BaseException
        What a write raised.

    Returns
    -------
    bool
        True for an ``OSError`` with errno ``ENOSPC`` or ``EDQUOT``, and for the messages of a write that
        stopped short without a reason (numpy's "65536 requested and 3760 written", torch's zip writer's
        "unexpected pos" or "file write failed").

    Examples
    --------
    >>> is_disk_full(OSError("65536 requested and 3760 written"))
    True
    >>> is_disk_full(OSError(errno.EACCES, "Permission denied", "out.tif"))
    False
    """
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        return True
    return isinstance(exc, (OSError, RuntimeError)) and _SHORT_WRITE.search(str(exc)) is not None


def disk_full(path: str | os.PathLike) -> OSError:
    """The ``OSError`` (``ENOSPC``) of a full disk while writing ``path``: ``user_message`` names the file.

    Parameters
    ----------
    path : str or os.PathLike
        The file being written.

    Returns
    -------
    OSError
        ``OSError(ENOSPC, "No space left on device", path)``, to raise from what a write raised.

    Examples
    --------
    >>> user_message(disk_full("out.tif"), "use less memory")
    'No space left on device: out.tif'
    """
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(path))


def is_bad_input(exc: BaseException) -> bool:
    """Whether ``exc`` is the input's fault or the machine's (exit status 2), not a failure of the run.

    Parameters
    ----------
    exc : BaseException
        What a run raised.

    Returns
    -------
    bool
        True for ``InputError``, ``OSError`` (a full disk among them), running out of memory and
        input nested too deeply to read (``RecursionError``).
    """
    return is_out_of_memory(exc) or is_disk_full(exc) or isinstance(exc, (InputError, OSError, RecursionError))


def user_message(exc: BaseException, oom_advice: str) -> str | None:
    """One line for the user about ``exc``.

    Parameters
    ----------
    exc : BaseException
        What a run, a read or a write raised.
    oom_advice : str
        The whole message for running out of memory (``resources.is_out_of_memory``).

    Returns
    -------
    str or None
        ``InputError``: its message, on one line.  ``OSError``: "<reason>: <file>" (e.g.
        "No space left on device: out.tif"); a write that stopped short without a reason
        (``is_disk_full``): "No space left on device".  Out of memory: ``oom_advice``.  Input
        nested too deeply to read (``RecursionError``): says so.  Another ``RuntimeError`` (a
        torch failure): its first line.  None for anything else.

    Examples
    --------
    >>> import errno
    >>> user_message(OSError(errno.ENOSPC, "No space left on device", "out.tif"), "use less memory")
    'No space left on device: out.tif'
    >>> user_message(MemoryError(), "use less memory")
    'use less memory'
    >>> user_message(KeyError("x"), "use less memory") is None
    True
    """
    if is_out_of_memory(exc):
        return oom_advice
    if is_disk_full(exc) and not (isinstance(exc, OSError) and exc.strerror and exc.filename):
        return f"{os.strerror(errno.ENOSPC)} (the disk is full)"
    if isinstance(exc, RecursionError):
        return f"the input is {TOO_DEEP}"
    if isinstance(exc, (InputError, OSError)):
        msg = str(exc).strip()
        if isinstance(exc, OSError) and exc.strerror and exc.filename:
            msg = f"{exc.strerror}: {exc.filename}"
        return " ".join(msg.split()) or exc.__class__.__name__
    if isinstance(exc, RuntimeError):
        return (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
    return None


def command_message(exc: BaseException, prog: str = PROG, oom_advice: str = COMMAND_OOM_ADVICE) -> str | None:
    """The command's line about ``exc``: ``"<prog>: error: <user_message>"``; None for an exception that is a bug.

    Parameters
    ----------
    exc : BaseException
        What a run, a read or a write raised.
    prog : str
        The name the line starts with.
    oom_advice : str
        The message for running out of memory.

    Returns
    -------
    str or None
        The line, or None where ``user_message`` gives none.

    Examples
    --------
    >>> command_message(InputError("no such file: a.tif"))
    'napari-levelset: error: no such file: a.tif'
    """
    msg = user_message(exc, oom_advice)
    return None if msg is None else f"{prog}: error: {msg}"


class RunFailed(Exception):
    """A ``RuntimeError`` of a run (torch's out-of-memory among them), passed on as another type.

    superqt's generator worker takes a ``RuntimeError`` raised by the generator
    for the end of the generator and reports neither ``errored`` nor
    ``finished``, which would leave the widget waiting for good.  The original
    is the ``__cause__``.
    """


#: what the widget advises when memory runs out, in the widget's words
WIDGET_OOM_ADVICE = (
    "out of memory: try fewer classes, a smaller network width, '2D per slice' for volumes, "
    "a smaller image or the CPU device"
)


def widget_message(exc: BaseException) -> str:
    """The napari widget's message for any exception a run may raise (shown as a notification).

    Parameters
    ----------
    exc : BaseException
        What the run raised (a ``RunFailed`` is read as its cause).

    Returns
    -------
    str
        ``InputError``: its message; what ``napari_levelset.errors.user_message`` handles (with
        the widget's advice for running out of memory, ``WIDGET_OOM_ADVICE``); else
        ``"<type>: <message>"``.

    Examples
    --------
    >>> widget_message(ValueError("bad value"))
    'ValueError: bad value'
    """
    if isinstance(exc, RunFailed) and exc.__cause__ is not None:
        exc = exc.__cause__
    if isinstance(exc, InputError):
        return str(exc)
    msg = user_message(exc, WIDGET_OOM_ADVICE)
    if msg is not None:
        return msg
    name, text = type(exc).__name__, str(exc)
    return f"{name}: {text}" if text else name
