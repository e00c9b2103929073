"""One rule for what the user is told about a failure: the CLI, ``train`` and the napari widget share it.

No torch, Qt or napari here.  :func:`user_message` turns an exception into one line of text, or
None for an exception that is a bug (those keep their traceback).  Each front end adds its own
frame: the CLI its program name and exit status (``cli.error_message``), the widget a
notification (``_qt._worker.error_message``), and each its own advice for running out of
memory, in its own words (command-line flags, or the widget's settings).
"""

from __future__ import annotations

from .io import InputError
from .resources import is_out_of_memory

__all__ = ["user_message"]


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
        "No space left on device: out.tif").  Out of memory: ``oom_advice``.  Another
        ``RuntimeError`` (a torch failure): its first line.  None for anything else.

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
    if isinstance(exc, (InputError, OSError)):
        msg = str(exc).strip()
        if isinstance(exc, OSError) and exc.strerror and exc.filename:
            msg = f"{exc.strerror}: {exc.filename}"
        return " ".join(msg.split()) or exc.__class__.__name__
    if isinstance(exc, RuntimeError):
        return (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
    return None
