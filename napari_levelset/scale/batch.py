"""Many images with one set of settings: in this process, or spread over a dask cluster.

``segment_files`` segments files (paths, folders, glob patterns) into an
output folder, ``segment_arrays`` arrays in memory; both apply
``napari_levelset.segment`` to each item with the same settings, exactly as
``napari-levelset segment IN -o OUT`` does for one file (axes and pixel size
from the file, labels written atomically with them).

* A failing item is reported with its reason (the command's one-line wording,
  ``napari_levelset.errors.command_message``; ``words`` may reword it, as the command
  does in its flags) and the batch goes on; the result lists what was done, skipped
  and failed.
* An output that exists already is skipped unless ``overwrite``: outputs are
  written whole or not at all (``io.atomic_write``), so running an interrupted
  batch again resumes it.
* ``client`` (a ``dask.distributed.Client``, or a scheduler address) spreads
  the items over an existing cluster, ``workers=N`` over a local one of N
  processes (one thread each).  Each item is one task; a pretrained U-Net is
  read from its file once per worker process and copied for each item (the
  copy is what a fine-tune changes), so every item is computed as it would be
  alone, and the labels equal the single-process ones for the same torch
  thread count (``threads``).

Sources: dask.distributed (https://distributed.dask.org) for the cluster, tqdm
for the progress bar.
"""

from __future__ import annotations

import glob
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from napari_levelset import validate
from napari_levelset.errors import PROG, InputError, command_message, disk_full, is_disk_full
from napari_levelset.io.axes import infer_axes
from napari_levelset.io.read import PLAIN_EXT, TIFF_EXT, read_image, read_image_file
from napari_levelset.io.write import write_labels
from napari_levelset.method import segmentation as engine  # engine.segment, looked up at each call
from napari_levelset.resources import MAX_THREADS, max_workers, run_threads, torch_threads

__all__ = [
    "ArrayResults",
    "BatchSummary",
    "check_writable_folder",
    "find_inputs",
    "make_folder",
    "output_for",
    "read_checked",
    "segment_arrays",
    "segment_file",
    "segment_files",
]

#: the image files a folder is searched for
IMAGE_EXT = TIFF_EXT | PLAIN_EXT


def _is_pattern(text: str) -> bool:
    return any(ch in text for ch in "*?[")


def find_inputs(items: Iterable[str | os.PathLike]) -> list[Path]:
    """The image files that ``items`` name.

    Files as given, a folder's image files (``IMAGE_EXT``, sorted, not recursive, hidden
    files left out; a zarr folder counts as a file), a glob pattern's matches (sorted).
    Duplicates (the same file by its real path) are dropped.

    Parameters
    ----------
    items : iterable of str or os.PathLike
        Files, folders and glob patterns (``*``, ``?``, ``[``).

    Returns
    -------
    list of pathlib.Path
        In the order the items name them.

    Raises
    ------
    InputError
        For an item that names nothing: a missing file, a folder without image files, a
        pattern without matches.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> for name in ("b.tif", "a.png", "notes.txt"):
    ...     _ = (d / name).write_bytes(b"")
    >>> [p.name for p in find_inputs([d, d / "a.png"])]
    ['a.png', 'b.tif']
    """
    out: list[Path] = []
    for item in items:
        text = str(item)
        p = Path(text)
        if p.is_dir() and not _is_zarr(p):
            found = sorted(
                q for q in p.iterdir() if q.is_file() and q.suffix.lower() in IMAGE_EXT and not q.name.startswith(".")
            )
            if not found:
                raise InputError(f"no image files ({', '.join(sorted(IMAGE_EXT))}) in {p}")
            out += found
        elif p.exists():
            out.append(p)
        elif _is_pattern(text):
            found = sorted(Path(q) for q in glob.glob(text) if Path(q).is_file())
            if not found:
                raise InputError(f"no files match {text!r}")
            out += found
        else:
            raise InputError(f"no such file: {text}")
    seen, unique = set(), []
    for p in out:
        key = os.path.realpath(p)
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique


def _is_zarr(p: Path) -> bool:
    return p.suffix.lower() == ".zarr" or any((p / m).exists() for m in (".zarray", ".zgroup", "zarr.json"))


def check_writable_folder(folder: Path) -> None:
    """Refuse a folder a file cannot be made in, before any work (by making a temporary file there).

    Parameters
    ----------
    folder : pathlib.Path
        The folder outputs go to.

    Raises
    ------
    InputError
        When a file cannot be made there (it does not exist, no permission, read-only).
    """
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".napari-levelset-check."):
            pass
    except OSError as exc:
        raise InputError(f"cannot write to {folder} ({exc.strerror or exc.__class__.__name__})") from None


def make_folder(folder: str | os.PathLike) -> Path:
    """The output folder ``folder``, made with its parents when it does not exist (as ``mkdir -p``).

    Parameters
    ----------
    folder : str or os.PathLike
        The folder outputs go to.

    Returns
    -------
    pathlib.Path
        ``folder``.

    Raises
    ------
    InputError
        When it is a file, or cannot be made (no permission, a file among its parents).
    """
    out = Path(folder)
    if out.exists() and not out.is_dir():
        raise InputError(f"the output folder {out} is a file")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot make the output folder {out} ({exc.strerror or exc.__class__.__name__})") from None
    return out


class _Hold(logging.Handler):
    """Keeps the records it is given, to be handled later (or dropped)."""

    def __init__(self):
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


def read_checked(path, read: Callable):
    """``read(path)``, with tifffile's log lines held back and an empty result refused as unreadable.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    read : callable
        ``read(path)``: e.g. ``io.read_image_file``.

    Returns
    -------
    object
        What ``read`` returned.  tifffile's log lines about the file are logged after a read
        that gave data, and dropped when the file holds none.

    Raises
    ------
    InputError
        When the result (or its ``data``) is empty: a damaged TIFF reads as an empty array.
    """
    logger = logging.getLogger("tifffile")
    handler, propagate = _Hold(), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        result = read(path)
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate
    data = getattr(result, "data", result)
    if getattr(data, "size", 1) == 0:  # a damaged TIFF reads as an empty array (tifffile logs why)
        raise InputError(f"cannot read {path} as an image (the file holds no image data)")
    for record in handler.records:  # a file that was read: its warnings as before
        logger.handle(record)
    return result


def output_for(path: str | os.PathLike, output_dir: str | os.PathLike, suffix: str = "", ext: str = ".tif") -> Path:
    """``output_dir / (stem + suffix + ext)`` for input ``path`` (``a/b/field_01.png`` -> ``OUT/field_01.tif``).

    A double extension such as ``.ome.tif`` counts as one.

    Parameters
    ----------
    path : str or os.PathLike
        The input file.
    output_dir : str or os.PathLike
        The output folder.
    suffix : str
        Added to the stem (e.g. ``"_labels"``).
    ext : str
        The output's extension, with its dot.

    Returns
    -------
    pathlib.Path
        The output file's path (nothing is created).

    Examples
    --------
    >>> output_for("a/b/field_01.ome.tiff", "OUT", suffix="_labels").as_posix()
    'OUT/field_01_labels.tif'
    """
    name = Path(path).name
    stem = (
        name[: -len(".ome.tif")]
        if name.lower().endswith(".ome.tif")
        else (name[: -len(".ome.tiff")] if name.lower().endswith(".ome.tiff") else Path(name).stem)
    )
    return Path(output_dir) / f"{stem}{suffix}{ext}"


# -- one file ----------------------------------------------------------------------------------
def segment_file(
    path,
    output,
    *,
    channel_axis: int | None = None,
    spatial_dims: int | None = None,
    scribbles=None,
    progress: bool = False,
    spacing=None,
    allow_large: bool = False,
    **settings,
) -> np.ndarray:
    """Segment the image file ``path`` and write its labels to ``output``; returns the labels.

    What ``napari-levelset segment path -o output`` does: the axes and pixel
    size the file gives decide how it is segmented (unless ``channel_axis`` or
    ``spatial_dims`` is given), ``settings`` go to ``napari_levelset.segment``,
    and the labels are written atomically with the input's axes (minus C) and
    pixel size (``io.write_labels``).

    Parameters
    ----------
    path : str or os.PathLike
        The image file (anything ``io.read_image_file`` reads).
    output : str or os.PathLike
        The label file, ``.tif``/``.tiff`` or ``.png`` (2D labels only).
    channel_axis : int or None
        Overrides the file's channel axis (see ``io.infer_axes``).
    spatial_dims : int or None
        Overrides how many trailing axes are segmented together (2 or 3).
    scribbles : str or os.PathLike or numpy.ndarray or None
        A label file path (read as indices) or an array: 0 unlabelled, ``k`` class ``k - 1``.
    progress : bool
        Show a progress bar.
    spacing : float or sequence of float, optional
        The pixel (voxel) size of the axes segmented together, for ``segment``; None: the
        file's, where it gives one.  The labels are written with the file's pixel size.
    allow_large : bool
        Read files that declare more pixels than their size can honestly hold (``io.read_image``).
    **settings
        Go to ``napari_levelset.segment`` (``n_classes``, ``iterations``, ``model``, ...).

    Returns
    -------
    numpy.ndarray
        The labels, the image's shape without its channel axis (as ``segment`` returns them).

    Raises
    ------
    InputError
        For bad input (in the library's words: ``n_classes``, ``init='kmeans'``), e.g. a PNG
        output for labels that are not 2D, or a file that holds no image data.
    OSError
        When the output cannot be written (``ENOSPC``, naming it, when the disk is full).
    """
    out = Path(output)
    infile = read_checked(path, lambda p: read_image_file(p, allow_large=allow_large))
    image = infile.data
    if channel_axis is None and spatial_dims is None:  # what the file says about its axes
        channel_axis, spatial_dims = infile.layout()
    ch, sdims = infer_axes(image.shape, channel_axis, spatial_dims)
    if out.suffix.lower() == ".png" and image.ndim - (ch is not None) != 2:  # find out before the run, not after
        raise InputError(f"PNG holds 2D labels only; an image of shape {image.shape} gives more: write a .tif instead")
    out_axes = infile.label_axes(ch)
    if spacing is None:  # the pixel size of the axes segmented together, when the file gives it
        spacing = infile.spacing_of(out_axes[-sdims:]) if out_axes else None
    if scribbles is not None and not isinstance(scribbles, np.ndarray):
        scribbles = read_checked(scribbles, lambda p: read_image(p, labels=True, allow_large=allow_large))
    labels = engine.segment(
        image,
        scribbles=scribbles,
        channel_axis=channel_axis,
        spatial_dims=spatial_dims,
        spacing=spacing,
        progress=progress,
        **settings,
    )
    try:
        if out_axes is None:  # a channel axis other than the file's C: its axis names do not apply
            write_labels(out, labels)
        else:  # the input's axes without C, and its pixel size
            write_labels(out, labels, axes=out_axes, spacing=infile.spacing, unit=infile.unit)
    except (OSError, RuntimeError) as exc:  # a write that stopped short gives no reason and no file name
        if is_disk_full(exc) and not getattr(exc, "filename", None):
            raise disk_full(out) from exc
        raise
    return labels


# -- a pretrained model read once per process --------------------------------------------------
# ``napari_levelset.nn.unet`` keeps the last model file it read in memory (by path, size and
# modification time), so every item of a batch after the first, in this process or on a dask
# worker, builds its network from memory; each item gets a network of its own, so a fine-tune
# of one never reaches the next.


# -- many files ----------------------------------------------------------------------------------
@dataclass
class BatchSummary:
    """What a batch did (the result of :func:`segment_files`).

    ``str(summary)`` gives one line, e.g. ``"2 done, 1 skipped (output exists), 0 failed"``.

    Parameters
    ----------
    done : list of tuple
        ``(input, output)`` paths of the files segmented.
    skipped : list of tuple
        ``(input, output)`` where the output was already there.
    failed : list of tuple
        ``(input, reason)``, the reason one line of text.
    interrupted : bool
        True when Ctrl-C or SIGTERM ended the batch.
    """

    done: list = field(default_factory=list)
    skipped: list = field(default_factory=list)
    failed: list = field(default_factory=list)
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        """True when nothing failed and the batch ran to the end."""
        return not self.failed and not self.interrupted

    def __str__(self) -> str:
        text = f"{len(self.done)} done, {len(self.skipped)} skipped (output exists), {len(self.failed)} failed"
        return text + (" (interrupted)" if self.interrupted else "")


def _reason(exc: BaseException, words: Callable[[str], str] | None = None) -> str:
    """The one line about a failed item: the command's (``command_message``), reworded by ``words``."""
    line = command_message(exc)
    if line is None:
        line = f"{exc.__class__.__name__}: {exc}"
    return line if words is None else words(line)


def _file_task(path, output, settings, channel_axis, spatial_dims, threads, words=None, allow_large=False):
    """One item of a batch (runs on a worker): ``("done", labels summary)`` or ``("failed", reason)``."""
    try:  # threads=None: segment() chooses from the cores free on this worker
        labels = segment_file(
            path,
            output,
            channel_axis=channel_axis,
            spatial_dims=spatial_dims,
            allow_large=allow_large,
            threads=threads,
            **settings,
        )
    except Exception as exc:  # the batch goes on; the reason travels back as text
        return "failed", _reason(exc, words)
    return "done", f"{labels.shape}, labels {int(labels.min())}..{int(labels.max())}"


def _limits(workers, threads) -> tuple[int | None, int | None]:
    """``workers`` (at most ``resources.max_workers()``) and ``threads`` (at most ``MAX_THREADS``) checked."""
    if workers is not None:
        workers = validate.integer("workers", workers, 1, max_workers())
    if threads is not None:
        threads = validate.integer("threads", threads, 1, MAX_THREADS)
    return workers, threads


def _client(client, workers, threads):
    """``(client, close)``: the given client, one for a scheduler address, or a local cluster of ``workers``
    (at most ``resources.max_workers()``: what this machine runs side by side)."""
    if client is None and workers is None:
        return None, None
    if client is None:
        workers = validate.integer("workers", workers, 1, max_workers())
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise InputError("a dask cluster needs dask.distributed: pip install 'napari-levelset[scale]'") from None

    if client is not None:
        if isinstance(client, str):
            try:
                c = Client(client)
            except (OSError, ValueError, TypeError) as exc:  # no address, or nothing answers there
                detail = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
                raise InputError(f"cannot reach the dask scheduler at {client!r} ({detail})") from None
            return c, c.close
        return client, None
    # the workers' own log lines (start, the heartbeats cut at shutdown) stay out of the command's output;
    # a task's failure comes back as its result, with its reason
    cluster = LocalCluster(
        n_workers=int(workers),
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.CRITICAL,
    )
    c = Client(cluster)

    def close():
        c.shutdown()
        c.close()
        cluster.close()

    return c, close


def _output_plan(files: list[Path], out_dir: Path, suffix: str, ext: str) -> list[tuple[Path, Path]]:
    """``(input, output)`` of each file; ``InputError`` for two inputs with one output, or an output that is
    an input."""
    plan, names = [], {}
    for f in files:
        o = output_for(f, out_dir, suffix, ext)
        key = os.path.realpath(o)
        if key in names:
            raise InputError(f"{names[key]} and {f} would both be written to {o}: give --suffix, or separate runs")
        if o.exists() and os.path.samefile(o, f):
            raise InputError(f"the output {o} is an input file: give another folder or --suffix")
        names[key] = f
        plan.append((f, o))
    return plan


def _run_on_cluster(c, todo, record, settings, channel_axis, spatial_dims, threads, words, allow_large) -> None:
    """Segment the ``(input, output)`` pairs of ``todo`` on the dask client ``c``, calling ``record(f, o,
    status, text)`` as each ends."""
    from dask.distributed import as_completed

    futures = {
        c.submit(
            _file_task,
            str(f),
            str(o),
            settings,
            channel_axis,
            spatial_dims,
            threads,
            words,
            allow_large,
            pure=False,
        ): (f, o)
        for f, o in todo
    }
    for fut in as_completed(list(futures)):
        f, o = futures[fut]
        try:
            status, text = fut.result()
        except Exception as exc:  # a worker lost, a task that could not run
            status, text = "failed", _reason(exc, words)
        record(f, o, status, text)


def segment_files(
    inputs: Sequence[str | os.PathLike] | str,
    output_dir: str | os.PathLike,
    *,
    suffix: str = "",
    ext: str = ".tif",
    overwrite: bool = False,
    client=None,
    workers: int | None = None,
    threads: int | None = None,
    progress: bool = True,
    channel_axis: int | None = None,
    spatial_dims: int | None = None,
    report=None,
    words: Callable[[str], str] | None = None,
    allow_large: bool = False,
    **settings,
) -> BatchSummary:
    """Segment every image file ``inputs`` names (files, folders, glob patterns) into ``output_dir``.

    Output names: ``output_for(input, output_dir, suffix, ext)`` (``ext``
    ``.tif`` or ``.png``).  ``settings`` go to ``napari_levelset.segment`` for
    every file (``n_classes``, ``iterations``, ``model``, ``regions``, ...).
    ``client``: a ``dask.distributed.Client`` or a scheduler address;
    ``workers``: start a local cluster of that many processes; neither: one by
    one in this process.  ``threads``: torch CPU threads per process (None:
    chosen from the cores other programs leave free, ``resources.run_threads``; in
    this process the count before is restored after).
    ``report(line)`` is called with each failure's one-line reason (default:
    printed on stderr).

    Parameters
    ----------
    inputs : str or os.PathLike or sequence of them
        Files, folders and glob patterns (see :func:`find_inputs`).
    output_dir : str or os.PathLike
        A writable folder; made (with its parents) when it does not exist.
    suffix : str
        Added to each output's stem.
    ext : str
        ``.tif``, ``.tiff`` or ``.png``.
    overwrite : bool
        Segment files whose output exists (otherwise they are skipped, so running an
        interrupted batch again resumes it).
    client : dask.distributed.Client or str or None
        A client, or a scheduler address, to spread the files over.
    workers : int or None
        Start a local dask cluster of that many processes (one thread each), at most
        ``resources.max_workers()``: what this machine's cores and memory run side by side.
    threads : int or None
        torch CPU threads per process, 1..``resources.MAX_THREADS`` (None: one per core other
        programs leave free, ``resources.run_threads``: at the start of each item in this process
        or on a given cluster's workers, shared among ``workers`` once for a local cluster; in
        this process the count before is restored after).
    progress : bool
        Show a progress bar (tqdm) on stderr.
    channel_axis : int or None
        Overrides every file's channel axis.
    spatial_dims : int or None
        Overrides how many trailing axes are segmented together.
    report : callable or None
        ``report(line)`` is called with each failure's one-line reason (default: printed
        on stderr, above the bar).
    words : callable or None
        ``words(reason) -> reason``: how each failure's reason is worded (the command gives
        the library's names as its flags); None: as ``napari_levelset.errors.command_message``
        words it.
    allow_large : bool
        Read files that declare more pixels than their size can honestly hold (``io.read_image``).
    **settings
        Go to ``napari_levelset.segment`` for every file (and ``spacing`` to
        :func:`segment_file`).

    Returns
    -------
    BatchSummary
        What was done, skipped and failed.

    Raises
    ------
    InputError
        Before any work: for inputs that name nothing, an output folder that cannot be made
        or written, an unknown ``ext``, two inputs with one output name, an output that is an
        input, ``workers`` or ``threads`` out of range, a scheduler that cannot be reached, or
        ``client``/``workers`` without dask.distributed.
    KeyboardInterrupt
        Ctrl-C ends the batch after the files written so far: it is raised again with the
        summary as its ``summary`` attribute.

    Notes
    -----
    The cluster is dask.distributed's (``Client``, ``LocalCluster``, ``as_completed``).
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    workers, threads = _limits(workers, threads)
    if threads is None and client is None and workers:  # a local cluster shares the cores free now
        threads = run_threads(processes=workers)
    files = find_inputs(inputs)
    if not isinstance(ext, str) or ext.lower() not in TIFF_EXT | {".png"}:
        raise InputError(f"output extension must be .tif, .tiff or .png, got {ext!r}")
    if not isinstance(suffix, str):
        raise InputError(f"suffix must be text, got {suffix!r}")
    out_dir = make_folder(output_dir)
    check_writable_folder(out_dir)
    plan = _output_plan(files, out_dir, suffix, ext)
    summary = BatchSummary()
    todo = []
    for f, o in plan:
        if o.exists() and not overwrite:
            summary.skipped.append((f, o))
        else:
            todo.append((f, o))
    bar = None
    if progress:
        bar = tqdm(total=len(plan), initial=len(summary.skipped), unit="file", desc="files")
    if report is None:

        def report(line):  # above the bar, which stays whole
            if bar is not None:
                bar.write(line, file=sys.stderr)
            else:
                print(line, file=sys.stderr)

    def record(f, o, status, text):
        if status == "done":
            summary.done.append((f, o))
        else:
            summary.failed.append((f, text))
            report(f"{PROG}: error: {f}: {text.removeprefix(PROG + ': error: ')}")
        if bar is not None:
            bar.update(1)
            bar.set_postfix(failed=len(summary.failed))

    c, close = _client(client, workers, threads)
    try:
        if c is None:
            with torch_threads(threads):
                for f, o in todo:
                    record(f, o, *_file_task(f, o, settings, channel_axis, spatial_dims, None, words, allow_large))
        else:
            _run_on_cluster(c, todo, record, settings, channel_axis, spatial_dims, threads, words, allow_large)
    except KeyboardInterrupt as exc:
        summary.interrupted = True
        exc.summary = summary
        raise
    finally:
        if bar is not None:
            bar.close()
        if close is not None:
            close()
    return summary


# -- many arrays ---------------------------------------------------------------------------------
@dataclass
class ArrayResults:
    """The result of :func:`segment_arrays`.

    Parameters
    ----------
    labels : list
        ``labels[i]``: the labels of item ``i`` (a numpy array), None where it failed.
    failed : list of tuple
        ``(i, reason)``, sorted by ``i``.
    """

    labels: list
    failed: list = field(default_factory=list)


def _array_task(image, settings, threads):
    try:  # threads=None: segment() chooses from the cores free on this worker
        return "done", engine.segment(image, threads=threads, **settings)
    except Exception as exc:
        return "failed", _reason(exc)


def segment_arrays(
    images: Iterable[Any],
    *,
    client=None,
    workers: int | None = None,
    threads: int | None = None,
    progress: bool = False,
    **settings,
) -> ArrayResults:
    """``napari_levelset.segment(image, **settings)`` for each of ``images``, one failure not ending the rest.

    Parameters
    ----------
    images : iterable of array-like
        The images (read whole into a list first).
    client : dask.distributed.Client or str or None
        As in :func:`segment_files` (the arrays are sent to the workers).
    workers : int or None
        As in :func:`segment_files`.
    threads : int or None
        As in :func:`segment_files`.
    progress : bool
        Show a progress bar (tqdm).
    **settings
        Go to ``napari_levelset.segment`` for every image.

    Returns
    -------
    ArrayResults
        Labels in input order, and the failures with their reasons.

    Raises
    ------
    InputError
        When ``workers`` or ``threads`` is out of range (as in :func:`segment_files`), the
        scheduler cannot be reached, or ``client``/``workers`` is given without
        dask.distributed installed.

    Examples
    --------
    >>> import numpy as np
    >>> images = [np.random.rand(32, 32), np.zeros((32, 32))]  # the second is constant
    >>> out = segment_arrays(images, n_classes=2, iterations=2)
    >>> out.labels[0].shape, out.labels[1], [i for i, _ in out.failed]
    ((32, 32), None, [1])
    """
    workers, threads = _limits(workers, threads)
    if threads is None and client is None and workers:  # a local cluster shares the cores free now
        threads = run_threads(processes=workers)
    images = list(images)
    results: list = [None] * len(images)
    failed = []
    bar = None
    if progress:
        bar = tqdm(total=len(images), unit="image", desc="images")
    c, close = _client(client, workers, threads)
    try:
        if c is None:

            def local():
                with torch_threads(threads):
                    for i, im in enumerate(images):
                        yield i, _array_task(im, settings, None)

            outcomes = local()
        else:
            from dask.distributed import as_completed

            futures = {c.submit(_array_task, im, settings, threads, pure=False): i for i, im in enumerate(images)}
            outcomes = ((futures[f], f.result()) for f in as_completed(list(futures)))
        for i, (status, value) in outcomes:
            if status == "done":
                results[i] = value
            else:
                failed.append((i, value))
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        if close is not None:
            close()
    return ArrayResults(results, sorted(failed))
