"""Where training writes: its model file (never over a file of another kind unless asked) and checkpoints.

A write that stops short on a full disk is said to be one (``ENOSPC``, naming the file).
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from napari_levelset.errors import InputError, disk_full, is_disk_full
from napari_levelset.nn.model_files import save_model

__all__ = ["check_output", "is_model_file", "save_model_file"]


def check_output(out: Path, overwrite: bool = False) -> None:
    """Refuse an output training cannot write, before any work.

    Parameters
    ----------
    out : pathlib.Path
        The model file to write.
    overwrite : bool
        Replace a file there that is not a model file (a model file, or an empty file, is replaced anyway).

    Raises
    ------
    InputError
        When ``out`` is a non-empty file that is not a model file (without ``overwrite``), a folder, or in a
        folder that does not exist or cannot be written.
    """
    if out.is_file() and not overwrite and out.stat().st_size and not is_model_file(out):
        raise InputError(
            f"{out} exists and is not a model file: give another name, or overwrite=True (--overwrite) to replace it"
        )
    if out.is_dir():
        raise InputError(f"output {out} is a directory: give a file name such as model.pt")
    if not out.parent.is_dir():
        raise InputError(f"output folder does not exist: {out.parent}")
    if not os.access(out.parent, os.W_OK):
        raise InputError(f"cannot write to {out.parent}")


def is_model_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a file ``torch.save`` wrote: a zip archive holding a ``data.pkl``.

    Parameters
    ----------
    path : str or os.PathLike
        The file.

    Returns
    -------
    bool
        True for a model or checkpoint file (of this package or not); False for anything else.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> photo = pathlib.Path(tempfile.mkdtemp()) / "photo.png"
    >>> _ = photo.write_bytes(b"\\x89PNG\\r\\n\\x1a\\n")
    >>> is_model_file(photo)
    False
    """
    try:
        with zipfile.ZipFile(path) as z:
            return any(name.endswith("data.pkl") for name in z.namelist())
    except (OSError, zipfile.BadZipFile, ValueError):
        return False


def save_model_file(path: Path, net, meta: dict, **extra) -> None:
    """``napari_levelset.nn.model_files.save_model``, a full disk said to be one.

    Parameters
    ----------
    path : pathlib.Path
        The model or checkpoint file.
    net : torch.nn.Module
        The network.
    meta : dict
        Its metadata.
    **extra
        Stored beside (an optimiser state, the step, the losses).

    Raises
    ------
    OSError
        ``ENOSPC`` naming ``path`` for a write that stopped short on a full disk (torch's writer gives
        neither the reason nor the file); other failures to write as they are.
    """
    try:
        save_model(path, net, meta, **extra)
    except (OSError, RuntimeError) as exc:
        if is_disk_full(exc) and not getattr(exc, "filename", None):
            raise disk_full(path) from exc
        raise
