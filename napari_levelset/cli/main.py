"""Command line: ``napari-levelset segment INPUT -o OUTPUT`` and ``napari-levelset train``.

Bad input ends with one line on stderr and exit status 2 (no traceback), and an
output file is only ever written whole (see ``io.write_labels``).  Unless
``--channel-axis`` or ``--spatial-dims`` is given, ``segment`` takes the axes
from the file (``io.ImageFile.layout``), passes its pixel size on as
``spacing`` and writes the labels with the input's axes (minus C) and pixel size.
Several inputs, a folder or a glob pattern make a batch (``napari_levelset.scale.batch``);
a zarr / OME-Zarr input a volume segmented chunk by chunk (``napari_levelset.scale.chunked``).
``--threads`` (``add_threads_option``) sets torch's CPU threads, by default
``default_threads()``: half the usable cores, shared among ``--workers``, at least 1.

Exit statuses: 0 done; 1 a batch with a failed file, or a torch failure; 2 bad input
or out of memory; 130 Ctrl-C; 143 SIGTERM.

Examples
--------
From a shell::

    napari-levelset segment cells.tif -o cells_labels.tif --classes 3 --regions instances
    napari-levelset segment photos/ -o out/ --regions merged --workers 4
    napari-levelset train --help
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import re
import signal
import sys
import tempfile
from pathlib import Path

from napari_levelset.errors import user_message
from napari_levelset.errors import InputError
from napari_levelset.io.images import TIFF_EXT
from napari_levelset.resources import is_out_of_memory
from napari_levelset.validate import LIMITS

PROG = "napari-levelset"


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line on stderr (exit status 2), naming ``--help``."""

    #: the name errors start with (default: ``prog``)
    error_prog: str | None = None

    def error(self, message):  # noqa: D102
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
        if (action.default is not None and action.default is not False and action.default != argparse.SUPPRESS
                and "default" not in text and action.option_strings):  # (0 is a default, though 0 == False)
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


_positive_int = bounded_int(1)
_nonneg_float = bounded_float(0.0)
_positive_float = bounded_float(0.0, lo_open=True)
#: learning rates and seeds, within the library's limits (``napari_levelset.validate.LIMITS``)
learning_rate = bounded_float(*LIMITS["lr"], lo_open=True)
seed = bounded_int(*LIMITS["seed"])
#: the most classes: the widget's cap
MAX_CLASSES = 64
MAX_WIDTH = LIMITS["width"][1]
MAX_DEPTH = LIMITS["depth"][1]

OOM_ADVICE = "out of memory; try a smaller image, fewer classes, a smaller --width or --max-pixels"


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


def error_message(exc: BaseException, prog: str = PROG, interrupted: str = "interrupted",
                  oom_advice: str = OOM_ADVICE) -> tuple[int, str] | None:
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
        Ctrl-C: 130, SIGTERM: 143 (128 + the signal number); bad input (``InputError``,
        ``OSError``) and out of memory: 2; another ``RuntimeError``: 1.  None for an exception
        ``napari_levelset.errors.user_message`` does not handle (a bug).

    Examples
    --------
    >>> error_message(InputError("no such file: a.tif"))
    (2, 'napari-levelset: error: no such file: a.tif')
    >>> error_message(KeyboardInterrupt())
    (130, 'napari-levelset: interrupted')
    """
    if isinstance(exc, KeyboardInterrupt):
        return (128 + (Terminated.signum if isinstance(exc, Terminated) else 2),
                f"{prog}: {'terminated' if isinstance(exc, Terminated) else 'interrupted'}"
                + interrupted.removeprefix("interrupted"))
    msg = user_message(exc, oom_advice)
    if msg is None:
        return None
    bad_input = is_out_of_memory(exc) or isinstance(exc, (InputError, OSError))
    return (2 if bad_input else 1), f"{prog}: error: {msg}"


def report_error(exc: BaseException, prog: str = PROG, interrupted: str = "interrupted",
                 oom_advice: str = OOM_ADVICE) -> int | None:
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


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity where the system tells, else all).

    Returns
    -------
    int
        At least 1.
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def default_threads(processes: int = 1) -> int:
    """The torch thread count a run uses unless told: half the usable cores, shared among ``processes``, at least 1.

    torch's own choice (one thread per core) waits at every parallel step for
    its slowest thread: on a 2-core machine with one other busy process a run
    with 2 threads became 10-15x slower, while with 1 thread it only shares
    its core.  Half the cores leaves room for one such neighbour per thread.

    Parameters
    ----------
    processes : int
        Worker processes sharing the cores (values below 1 count as 1).

    Returns
    -------
    int
        ``usable_cores() // 2 // processes``, at least 1.
    """
    return max(1, usable_cores() // 2 // max(1, int(processes)))


THREADS_RULE = ("torch CPU threads per process (default: half the usable CPU cores, divided among --workers, "
                "at least 1: {default} here; a thread per core slows down many times when another program is busy)")


def add_threads_option(parser, default: int | None = None, rule: str = THREADS_RULE) -> None:
    """``--threads N`` (a whole number >= 1) for a command; ``rule`` (may name ``{default}``) is its help.

    Parameters
    ----------
    parser : argparse.ArgumentParser
        The command's parser; ``--threads`` is added to it.
    default : int, optional
        The option's default; None: ``default_threads()`` decides at run time (and is shown).
    rule : str
        The help text; ``{default}`` is replaced by the default shown.
    """
    shown = default_threads() if default is None else default
    parser.add_argument("--threads", type=bounded_int(1), default=default, metavar="N",
                        help=rule.format(default=shown).replace("%", "%%"))


def set_threads(threads: int | None) -> None:
    """Set torch's CPU thread count (None: leave it).

    Parameters
    ----------
    threads : int or None
        Threads for torch (``torch.set_num_threads``); None or 0 leaves the count as it is.
    """
    if threads:
        import torch

        torch.set_num_threads(int(threads))


@contextlib.contextmanager
def torch_threads(threads: int | None):
    """While active, torch uses ``threads`` CPU threads (None: as it is); the count before is restored after.

    Parameters
    ----------
    threads : int or None
        Threads for torch; None or 0 changes nothing.

    Yields
    ------
    None
    """
    if not threads:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _add_segment(sub) -> None:
    from napari_levelset.settings import MERGE_WEIGHT, MIN_REGION, POSITION, POSITION_MIN_CLASSES, Settings

    D, R = Settings(), Settings().resolved()  # the defaults, and what "default" resolves to for the per-image CNN

    p = sub.add_parser(
        "segment",
        help="segment an image file into N classes",
        formatter_class=DefaultsFormatter,
        description="Segment an image (PNG/JPEG/TIFF; 2D, RGB or a 3D stack) with the level-set loss and "
        "write a label image (TIFF or PNG, by the output's extension) with the input's spatial shape. The axes "
        "and pixel size an ImageJ hyperstack, OME-TIFF or calibrated TIFF gives decide how it is segmented "
        "(C: channels, Z: a volume, T: frame by frame) and go into a TIFF output. Several inputs, a folder or "
        "a glob pattern make a batch written into the folder -o (names kept, --suffix and --ext added; outputs "
        "already there skipped unless --overwrite; one failing file is reported and the rest go on; exit 1 if "
        "any failed), on a dask cluster with --workers or --scheduler. A zarr or OME-Zarr input is a volume "
        "segmented chunk by chunk into a zarr output (-o ending in .zarr).",
    )
    p.error_prog = PROG  # as the errors of the run: "napari-levelset: error: ..."
    p.add_argument("input", nargs="+", help="image file; or several, a folder, a glob pattern (quoted) for a batch; "
                   "or a zarr / OME-Zarr volume")
    p.add_argument("-o", "--output", required=True,
                   help="label image to write (.tif, .tiff or .png); for a batch, an existing folder; for a zarr "
                   "volume, a .zarr path")
    p.add_argument(
        "--classes",
        "-n",
        type=bounded_int(2, MAX_CLASSES),
        default=None,
        help=f"number of classes N (2..{MAX_CLASSES}; default {R.n_classes}, chosen automatically for "
             "--regions instances)",
    )
    p.add_argument("--lam", type=_nonneg_float, default=None,
                   help=f"weight of the smoothness (TV) term (default {R.lam}; 0.02 with --regions "
                        "instances)")
    p.add_argument(
        "--iterations",
        "-k",
        type=bounded_int(0),
        default=None,
        help=f"optimisation steps (default {R.iterations} for the per-image CNN, 0 for a U-Net)",
    )
    p.add_argument("--seed", type=seed, default=0, help="random seed, 0..2**32-1 (CPU results are deterministic)")
    p.add_argument("--scribbles", help="label image of the same shape: 0 unlabelled, k means class k")
    p.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto",
                   help="where the network runs (auto: a GPU when there is one, else the CPU)")
    p.add_argument(
        "--channel-axis",
        type=int,
        default=None,
        help="axis holding channels (default: the file's C axis when it names its axes, else a guess)",
    )
    p.add_argument(
        "--spatial-dims",
        type=int,
        choices=[2, 3],
        default=None,
        help="2: per slice, 3: whole volume (default: 3 when the file has a Z axis, 2 when it names its axes "
        "without one, else a guess)",
    )
    p.add_argument("--lr", type=learning_rate, default=D.lr, help="learning rate (> 0, at most 10)")
    p.add_argument("--width", type=bounded_int(1, MAX_WIDTH), default=D.width,
                   help=f"CNN feature channels (1..{MAX_WIDTH})")
    p.add_argument("--depth", type=bounded_int(1, MAX_DEPTH), default=D.depth,
                   help=f"CNN 3x3 blocks (1..{MAX_DEPTH})")
    p.add_argument("--alpha", type=_nonneg_float, default=D.alpha, help="weight of the scribble term")
    p.add_argument(
        "--color",
        choices=["auto", "rgb", "lab"],
        default=D.color,
        help="auto: CIELAB for RGB images, else rgb; rgb: each channel normalised on its own; lab: CIELAB",
    )
    p.add_argument(
        "--position",
        type=bounded_float(0.0, LIMITS["position"][1]),
        default=None,
        help=f"weight of pixel coordinates in the data term (0: colour only; larger: more compact regions; "
        f"default {POSITION} for RGB images in CIELAB with the per-image CNN and N >= {POSITION_MIN_CLASSES}, "
        "else 0)",
    )
    p.add_argument("--model", default="cnn", help="cnn (per-image CNN), unet (pretrained U-Net) or a model file")
    p.add_argument(
        "--finetune",
        choices=["head", "last", "all"],
        default=None,
        help="with a U-Net and --iterations: what is fine-tuned (head: the class head only, the default; "
        "all: everything, use --lr 0.003)",
    )
    p.add_argument(
        "--init",
        choices=["auto", "kmeans", "network", "random"],
        default=None,
        help="start: kmeans (per-image CNN; a U-Net's head from this image's k-means), network (a U-Net as "
        "trained), random (Kanezaki's); default: kmeans, and for a U-Net network when used directly",
    )
    p.add_argument(
        "--regions",
        choices=["classes", "connected", "merged", "instances"],
        default="classes",
        help="classes: label k = class k; connected: one label per connected region; merged: connected regions, "
        "adjacent ones merged while the level-set energy drops (the number of regions adapts to the image); "
        "instances: one label per object (0 background), touching objects split",
    )
    p.add_argument(
        "--diameter",
        type=_positive_float,
        default=None,
        help="with --regions instances: expected object diameter, in the image's physical units when the file "
        "gives a pixel size (e.g. micrometres), else in pixels (default: estimated)",
    )
    p.add_argument(
        "--foreground",
        type=_positive_int,
        nargs="+",
        default=None,
        metavar="K",
        help="with --regions instances: the class labels that are objects (default: chosen automatically)",
    )
    p.add_argument(
        "--merge",
        type=_nonneg_float,
        default=None,
        help=f"with --regions merged: boundary weight of the merging (default {MERGE_WEIGHT['cnn']}, "
        f"for a U-Net {MERGE_WEIGHT['unet']}; larger gives fewer regions)",
    )
    p.add_argument(
        "--min-region",
        type=_nonneg_float,
        default=None,
        help="with --regions connected/merged: smallest region kept, in pixels (>= 1) or as a fraction of the image "
        f"(default {MIN_REGION}; 0.0002 for merged regions of a U-Net)",
    )
    p.add_argument(
        "--max-pixels",
        type=_positive_int,
        default=None,
        help="most pixels the network sees at once; larger images are optimised on random crops of this "
        "size (default: from the free memory)",
    )
    add_threads_option(p)
    g = p.add_argument_group("batches and volumes")
    g.add_argument("--overwrite", action="store_true",
                   help="batch: replace outputs that exist (default: skip them, so a batch run again resumes); "
                   "zarr: replace an existing output (default: refuse)")
    g.add_argument("--suffix", default="", help="batch: added to each output name before the extension (default: none)")
    g.add_argument("--ext", choices=[".tif", ".tiff", ".png"], default=".tif", help="batch: output format")
    g.add_argument("--workers", type=_positive_int, default=None, metavar="N",
                   help="batch / zarr: start a local dask cluster of N processes (needs dask[distributed])")
    g.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="batch / zarr: run on the dask cluster at ADDRESS (e.g. tcp://host:8786)")
    g.add_argument("--tile", type=bounded_int(16), default=None, metavar="N",
                   help="zarr: pixels per axis of a tile, and of an output chunk (default: the input's chunks)")
    g.add_argument("--crop", type=bounded_int(8), default=64, metavar="N",
                   help="zarr, per-image CNN: side of the random crops it is trained on")
    g.add_argument("--crops", type=_positive_int, default=8, metavar="K",
                   help="zarr, per-image CNN: how many random crops it is trained on")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_segment)


def _check_output(path: Path, inputs=()) -> None:
    ext = path.suffix.lower()
    if ext not in TIFF_EXT | {".png"}:
        raise InputError(f"output must end in .tif, .tiff or .png, got {path.name!r}")
    if not path.parent.exists():
        raise InputError(f"output folder does not exist: {path.parent}")
    if path.is_dir():
        raise InputError(f"output {path} is a directory")
    for given in inputs:
        if given and path.exists() and Path(given).exists() and os.path.samefile(path, given):
            raise InputError(f"the output {path} is an input file: give another name, so the input is kept")
    check_writable_folder(Path(os.path.realpath(path)).parent)


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


#: the library's parameter names that the command spells as flags
_FLAG_OF = {"finetune_iterations": "--iterations", "iterations": "--iterations", "n_classes": "--classes",
            "init": "--init", "lam": "--lam", "lr": "--lr", "seed": "--seed", "device": "--device",
            "channel_axis": "--channel-axis", "spatial_dims": "--spatial-dims", "scribbles": "--scribbles",
            "regions": "--regions", "diameter": "--diameter", "foreground": "--foreground", "merge": "--merge",
            "min_region": "--min-region", "finetune": "--finetune", "model": "--model", "color": "--color",
            "position": "--position", "width": "--width", "depth": "--depth", "alpha": "--alpha",
            "max_pixels": "--max-pixels"}


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
    message = re.sub(r"\bfinetune_iterations\b(?:\s*\(e\.g\. (\d+)\))?",
                     lambda m: f"--iterations (e.g. --iterations {m.group(1) or 20})", message)
    if "fine-tune" in message and "--iterations" not in message:
        message = message.replace("fine-tune", "fine-tune with --iterations (e.g. --iterations 20)", 1)
    return message


def _read_checked(path, read):
    """``read(path)``, with tifffile's log lines held back and an empty result refused as unreadable."""
    logger = logging.getLogger("tifffile")
    held: list[logging.LogRecord] = []

    class Hold(logging.Handler):
        def emit(self, record):
            held.append(record)

    handler, propagate = Hold(), logger.propagate
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
    for record in held:  # a file that was read: its warnings as before
        logger.handle(record)
    return result


def _mode(args) -> str:
    """``single`` (one file to one file, as always), ``batch`` or ``zarr``."""
    from napari_levelset.scale.batch import _is_pattern, _is_zarr

    inputs = args.input
    if len(inputs) == 1 and _is_zarr(Path(inputs[0])) and Path(inputs[0]).exists():
        return "zarr"
    out = args.output
    if (len(inputs) > 1 or Path(inputs[0]).is_dir() or (_is_pattern(inputs[0]) and not Path(inputs[0]).exists())
            or Path(out).is_dir() or out.endswith(("/", os.sep))):
        return "batch"
    return "single"


def _run_segment(args) -> int:
    mode = _mode(args)
    if mode == "single":
        _check_output(Path(args.output), inputs=(args.input[0], args.scribbles))
    # optimisation steps: the per-image CNN has its default, a U-Net is used directly without --iterations
    steps = segment_settings(args).resolved().iterations  # the model's default where not given
    if args.finetune is not None and not steps:
        raise InputError(f"--finetune {args.finetune} needs --iterations (e.g. --iterations 20): "
                         "without it the U-Net is used as trained and nothing is fine-tuned")
    if mode != "single" and args.scribbles:
        raise InputError("--scribbles is for one image: a batch or a zarr volume takes none")
    if mode == "batch":
        return _run_batch(args)
    threads = args.threads or default_threads()
    if mode == "zarr":
        return _run_zarr(args, threads)
    if args.workers or args.scheduler:
        raise InputError("--workers and --scheduler spread a batch or a zarr volume: give several inputs, "
                         "a folder or a glob pattern, with -o a folder")
    from napari_levelset.scale.batch import segment_file

    src = args.input[0]
    out = Path(args.output)
    try:
        with torch_threads(threads):
            labels = segment_file(src, out, channel_axis=args.channel_axis, spatial_dims=args.spatial_dims,
                                  scribbles=args.scribbles, progress=not args.quiet and steps > 0,
                                  settings=segment_settings(args))
    except InputError as exc:  # the library's advice, in the command's words
        raise InputError(cli_words(str(exc))) from None
    if not args.quiet:
        print(f"wrote {out} ({labels.shape}, labels {int(labels.min())}..{int(labels.max())})", file=sys.stderr)
    return 0


def _run_batch(args) -> int:
    from napari_levelset.scale.batch import segment_files

    out = Path(args.output)
    if not out.is_dir():
        raise InputError(f"for several inputs -o must be an existing folder, got {out}")
    processes = args.workers or 1
    threads = args.threads or default_threads(processes)
    try:
        summary = segment_files(args.input, out, suffix=args.suffix, ext=args.ext, overwrite=args.overwrite,
                                client=args.scheduler, workers=args.workers, threads=threads,
                                progress=not args.quiet, channel_axis=args.channel_axis,
                                spatial_dims=args.spatial_dims, settings=segment_settings(args))
    except KeyboardInterrupt as exc:
        summary = getattr(exc, "summary", None)
        if summary is not None:
            print(f"{PROG}: {summary}", file=sys.stderr)
        raise
    if not args.quiet or summary.failed:
        print(f"{PROG}: {summary}", file=sys.stderr)
    return 1 if summary.failed else 0


def _run_zarr(args, threads) -> int:
    from napari_levelset.scale.chunked import segment_volume

    out = Path(args.output)
    if out.suffix.lower() != ".zarr":
        raise InputError(f"a zarr volume is written as zarr: -o must end in .zarr, got {out.name!r}")
    if not out.parent.exists():
        raise InputError(f"output folder does not exist: {out.parent}")
    if args.regions != "classes":
        raise InputError("a zarr volume gives class labels only (--regions classes)")
    if args.spatial_dims is not None or (args.channel_axis not in (None, 0)):
        raise InputError("a zarr volume is segmented whole: its channels (if any) on the first axis, "
                         "no --spatial-dims")
    client, close = None, None
    if args.workers or args.scheduler:
        from napari_levelset.scale.batch import _client

        client, close = _client(args.scheduler, args.workers, threads)
    try:
        given = segment_settings(args)
        settings = {k: getattr(given, k) for k in ("n_classes", "lam", "iterations", "seed", "device", "lr", "width",
                                                   "depth", "model", "finetune", "init", "max_pixels")}
        with torch_threads(threads):
            labels = segment_volume(args.input[0], out, tile=args.tile, crop=args.crop, crops=args.crops,
                                    channel_axis=args.channel_axis, overwrite=args.overwrite,
                                    progress=not args.quiet, client=client,
                                    **{k: v for k, v in settings.items() if v is not None})
    except InputError as exc:
        raise InputError(cli_words(str(exc))) from None
    finally:
        if close is not None:
            close()
    if not args.quiet:
        print(f"wrote {out} ({tuple(labels.shape)}, chunks {tuple(labels.chunks)})", file=sys.stderr)
    return 0


def segment_settings(args):
    """The ``napari_levelset.settings.Settings`` the command's flags give (no image, axes, scribbles, pixel
    size or progress); flags left out keep their ``None``, "the default for this model and output".

    Parameters
    ----------
    args : argparse.Namespace
        ``segment``'s parsed arguments.

    Returns
    -------
    napari_levelset.settings.Settings
        Not resolved (``Settings.resolved`` fills in the per-model defaults).

    Raises
    ------
    InputError
        For a value the settings refuse (e.g. an empty ``--model``).
    """
    from napari_levelset.settings import Settings

    return Settings(
        n_classes=args.classes, lam=args.lam, iterations=args.iterations, device=args.device, seed=args.seed,
        lr=args.lr, width=args.width, depth=args.depth, alpha=args.alpha, color=args.color, position=args.position,
        model=args.model, finetune=args.finetune or "head", max_pixels=args.max_pixels, init=args.init,
        regions=args.regions, merge=args.merge, min_region=args.min_region, diameter=args.diameter,
        foreground=args.foreground,
    )


def _add_train(sub) -> None:
    # listed for --help; ``main`` hands ``train ...`` to napari_levelset.training.train.main
    sub.add_parser("train", help="train a U-Net with the level-set loss on many images (see: train --help)")


def _run_train(args) -> int:
    from napari_levelset.training.train import main as train_main

    return int(train_main(args.rest) or 0)


def build_parser() -> argparse.ArgumentParser:
    """The ``napari-levelset`` parser: ``--version`` and the ``segment`` and ``train`` commands.

    ``train``'s own flags are parsed by ``napari_levelset.training.train.main`` (``main`` hands it the
    arguments); here it is listed for ``--help`` only.

    Returns
    -------
    OneLineParser
        Its errors are one line on stderr, exit status 2.
    """
    parser = OneLineParser(
        prog=PROG, description="Unsupervised and scribble-guided segmentation with the multiphase level-set loss."
    )
    from napari_levelset import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_segment(sub)
    _add_train(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """``napari-levelset ...``: the exit status (0; 2 for bad input or out of memory; 130 Ctrl-C; 143 SIGTERM).

    Parameters
    ----------
    argv : list of str, optional
        The arguments after the program name; None: ``sys.argv[1:]``.

    Returns
    -------
    int
        The exit status: 0 done (also ``--help``, ``--version``); 1 a batch in which a file
        failed, or a torch failure; 2 bad input, a bad argument or out of memory; 130 Ctrl-C;
        143 SIGTERM.  ``train``: ``napari_levelset.training.train.main``'s.  An exception that is a bug
        propagates with its traceback.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    with signals_as_interrupts():  # SIGTERM stops a run like Ctrl-C: temporary files are removed
        if argv[:1] == ["train"]:  # the training CLI has its own parser (napari_levelset.training.train)
            return _run_train(argparse.Namespace(rest=argv[1:]))
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exc:  # --help, --version, or a one-line argument error (2)
            return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
        try:
            return args.func(args)
        except (Exception, KeyboardInterrupt) as exc:
            code = report_error(exc)
            if code is None:
                raise
            return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
