"""``napari-levelset segment``: its parser (one flag per setting, from ``SPEC``) and its runs.

Unless ``--channel-axis`` or ``--spatial-dims`` is given, the axes come from the file
(``io.ImageFile.layout``); its pixel size goes to the library as ``spacing`` (``--spacing``
overrides it) and the labels are written with the input's axes (minus C) and pixel size.
Several inputs, a folder or a glob pattern make a batch (``napari_levelset.scale.batch``); a
zarr / OME-Zarr input a volume segmented chunk by chunk (``napari_levelset.scale.chunked``).
The library's errors are shown in the command's words (``cli_words``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from napari_levelset.cli._args import (
    DefaultsFormatter,
    add_allow_large_option,
    add_cluster_options,
    add_setting_flag,
    add_threads_option,
    bounded_float,
    bounded_int,
    settings_from_args,
)
from napari_levelset.cli._report import cli_words
from napari_levelset.errors import PROG, InputError
from napari_levelset.io.read import TIFF_EXT
from napari_levelset.resources import run_threads, torch_threads
from napari_levelset.settings import (
    INSTANCE_LAM,
    MAX_OFFERED_CLASSES,
    MERGE_WEIGHT,
    MERGED_MIN_REGION,
    MIN_REGION,
    PHOTO_STROKE_PIXELS,
    POSITION,
    POSITION_MIN_CLASSES,
    SPEC,
    STROKE_PIXELS,
    Settings,
)

__all__ = ["NOTES", "SHORT_FLAGS", "add_segment", "run_segment", "segment_settings"]

_R = Settings().resolved()  # what "default" resolves to for the per-image CNN

#: the one-letter flags of settings
SHORT_FLAGS = {"n_classes": "-n", "iterations": "-k"}
#: what the command adds to a setting's help (``SettingSpec.help``): its per-model defaults, in flags
NOTES = {
    "n_classes": f"default {_R.n_classes}, chosen automatically for --regions instances",
    "lam": f"default {_R.lam}; {INSTANCE_LAM} with --regions instances",
    "iterations": f"default {_R.iterations} for the per-image CNN, 0 for a U-Net",
    "seed": "CPU results are deterministic",
    "finetune": "with a U-Net and --iterations (head: the class head only, the default; all: everything, "
    "use --lr 0.003)",
    "init": "kmeans (per-image CNN; a U-Net's head from this image's k-means), network (a U-Net as trained), "
    "random (Kanezaki's); default: kmeans, and for a U-Net network when used directly",
    "position": f"default {POSITION} for RGB images in CIELAB with the per-image CNN and N >= "
    f"{POSITION_MIN_CLASSES}, else 0",
    "contrast": "default: fluorescence for --regions instances and for --scribbles on integer images of more "
    "than 8 bits, else linear",
    "max_pixels": "default: from the free memory",
    "work_pixels": f"default: {STROKE_PIXELS} with --scribbles ({PHOTO_STROKE_PIXELS} on an RGB photo), "
    "else the whole image",
    "diameter": "with --regions instances; a file's pixel size gives the unit (e.g. micrometres) (default: estimated)",
    "regions": "classes: label k = class k; connected: one label per connected region; merged: connected "
    "regions, adjacent ones merged while the level-set energy drops (the number of regions adapts "
    "to the image); instances: one label per object (0 background), touching objects split",
    "merge": f"with --regions merged (default {MERGE_WEIGHT['cnn']}, for a U-Net {MERGE_WEIGHT['unet']})",
    "min_region": f"with --regions connected/merged (default {MIN_REGION}; {MERGED_MIN_REGION['unet']} for "
    "merged regions of a U-Net)",
    "foreground": "with --regions instances (default: chosen automatically)",
}
#: settings whose flag defaults to None, so the command can tell whether it was given
_GIVEN_ONLY = {"finetune"}

_DESCRIPTION = (
    "Segment an image (PNG/JPEG/TIFF; 2D, RGB or a 3D stack) with the level-set loss and "
    "write a label image (TIFF or PNG, by the output's extension) with the input's spatial shape. The axes "
    "and pixel size an ImageJ hyperstack, OME-TIFF or calibrated TIFF gives decide how it is segmented "
    "(C: channels, Z: a volume, T: frame by frame) and go into a TIFF output. Several inputs, a folder or "
    "a glob pattern make a batch written into the folder -o (names kept, --suffix and --ext added; outputs "
    "already there skipped unless --overwrite; one failing file is reported and the rest go on; exit 1 if "
    "any failed), on a dask cluster with --workers or --scheduler. A zarr or OME-Zarr input is a volume "
    "segmented chunk by chunk into a zarr output (-o ending in .zarr)."
)


def add_segment(sub) -> None:
    """Add the ``segment`` command to the sub-parsers ``sub``: every setting's flag, the image's, batches'.

    Parameters
    ----------
    sub : argparse._SubParsersAction
        ``add_subparsers``' result of the ``napari-levelset`` parser.
    """
    p = sub.add_parser(
        "segment",
        help="segment an image file into N classes",
        formatter_class=DefaultsFormatter,
        description=_DESCRIPTION,
    )
    p.error_prog = PROG  # as the errors of the run: "napari-levelset: error: ..."
    p.add_argument(
        "input",
        nargs="+",
        help="image file; or several, a folder, a glob pattern (quoted) for a batch; or a zarr / OME-Zarr volume",
    )
    p.add_argument(
        "-o",
        "--output",
        required=True,
        help="label image to write (.tif, .tiff or .png); for a batch, a folder (made if missing); for a "
        "zarr volume, a .zarr path",
    )
    s = p.add_argument_group("settings")
    for name, spec in SPEC.items():
        add_setting_flag(
            s,
            spec,
            short=SHORT_FLAGS.get(name),
            note=NOTES.get(name, ""),
            hi=MAX_OFFERED_CLASSES if name == "n_classes" else None,
            given_only=name in _GIVEN_ONLY,
        )
    g = p.add_argument_group("the image")
    g.add_argument("--scribbles", help="label image of the same shape: 0 unlabelled, k means class k")
    g.add_argument(
        "--channel-axis",
        type=int,
        default=None,
        help="axis holding channels (default: the file's C axis when it names its axes, else a guess)",
    )
    g.add_argument(
        "--spatial-dims",
        type=int,
        choices=[2, 3],
        default=None,
        help="2: per slice, 3: whole volume (default: 3 when the file has a Z axis, 2 when it names its "
        "axes without one, else a guess)",
    )
    g.add_argument(
        "--spacing",
        type=bounded_float(0.0, lo_open=True),
        nargs="+",
        default=None,
        metavar="S",
        help="pixel (voxel) size of the axes segmented together, one per axis (Z Y X) or one for all, "
        "for --diameter and instances (default: the file's pixel size; the output keeps the file's)",
    )
    add_allow_large_option(g)
    add_threads_option(p)
    b = p.add_argument_group("batches and volumes")
    b.add_argument(
        "--overwrite",
        action="store_true",
        help="batch: replace outputs that exist (default: skip them, so a batch run again resumes); "
        "zarr: replace an existing output (default: refuse)",
    )
    b.add_argument("--suffix", default="", help="batch: added to each output name before the extension (default: none)")
    b.add_argument("--ext", choices=[".tif", ".tiff", ".png"], default=".tif", help="batch: output format")
    add_cluster_options(b)
    b.add_argument(
        "--tile",
        type=bounded_int(16),
        default=None,
        metavar="N",
        help="zarr: pixels per axis of a tile, and of an output chunk (default: the input's chunks)",
    )
    b.add_argument(
        "--crop",
        type=bounded_int(8),
        default=64,
        metavar="N",
        help="zarr, per-image CNN: side of the random crops it is trained on",
    )
    b.add_argument(
        "--crops",
        type=bounded_int(1),
        default=8,
        metavar="K",
        help="zarr, per-image CNN: how many random crops it is trained on",
    )
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(func=run_segment)


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
    return settings_from_args(args)


def _check_output(path: Path, inputs=()) -> None:
    from napari_levelset.scale.batch import check_writable_folder  # pulls torch: --help stays fast

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


def _mode(args) -> str:
    """``single`` (one file to one file, as always), ``batch`` or ``zarr``."""
    from napari_levelset.scale.batch import _is_pattern, _is_zarr  # pulls torch: --help stays fast

    inputs = args.input
    if len(inputs) == 1 and _is_zarr(Path(inputs[0])) and Path(inputs[0]).exists():
        return "zarr"
    out = args.output
    if (
        len(inputs) > 1
        or Path(inputs[0]).is_dir()
        or (_is_pattern(inputs[0]) and not Path(inputs[0]).exists())
        or Path(out).is_dir()
        or out.endswith(("/", os.sep))
    ):
        return "batch"
    return "single"


def run_segment(args) -> int:
    """Run ``napari-levelset segment`` with the parsed ``args``: one file, a batch or a zarr volume.

    Parameters
    ----------
    args : argparse.Namespace
        ``segment``'s parsed arguments.

    Returns
    -------
    int
        The exit status: 0 done; 1 a batch in which a file failed.

    Raises
    ------
    InputError
        For bad input, in the command's words (flags).
    """
    mode = _mode(args)
    if mode == "single":
        _check_output(Path(args.output), inputs=(args.input[0], args.scribbles))
    # optimisation steps: the per-image CNN has its default, a U-Net is used directly without --iterations
    steps = segment_settings(args).resolved().iterations  # the model's default where not given
    if args.finetune is not None and not steps:
        raise InputError(
            f"--finetune {args.finetune} needs --iterations (e.g. --iterations 20): "
            "without it the U-Net is used as trained and nothing is fine-tuned"
        )
    if mode != "single" and args.scribbles:
        raise InputError("--scribbles is for one image: a batch or a zarr volume takes none")
    if mode == "batch":
        return _run_batch(args)
    threads = args.threads or run_threads(processes=args.workers or 1)  # from the cores free now
    if mode == "zarr":
        return _run_zarr(args, threads)
    if args.workers or args.scheduler:
        raise InputError(
            "--workers and --scheduler spread a batch or a zarr volume: give several inputs, "
            "a folder or a glob pattern, with -o a folder"
        )
    from napari_levelset.scale.batch import segment_file  # pulls torch: --help stays fast

    out = Path(args.output)
    try:
        with torch_threads(threads):
            labels = segment_file(
                args.input[0],
                out,
                channel_axis=args.channel_axis,
                spatial_dims=args.spatial_dims,
                scribbles=args.scribbles,
                progress=not args.quiet and steps > 0,
                spacing=args.spacing,
                allow_large=args.allow_large,
                settings=segment_settings(args),
            )
    except InputError as exc:  # the library's advice, in the command's words
        raise InputError(cli_words(str(exc))) from None
    if not args.quiet:
        print(f"wrote {out} ({labels.shape}, labels {int(labels.min())}..{int(labels.max())})", file=sys.stderr)
    return 0


def _run_batch(args) -> int:
    from napari_levelset.scale.batch import segment_files  # pulls torch: --help stays fast

    out = Path(args.output)
    if not out.is_dir() and out.suffix.lower() in TIFF_EXT | {".png"}:  # a file's name: a slip, not a folder
        raise InputError(f"for several inputs -o must be a folder (made if missing), got the file name {out}")
    threads = args.threads  # None: segment_files chooses from the cores free (per file, or per worker)
    spacing = {} if args.spacing is None else {"spacing": args.spacing}
    try:
        summary = segment_files(
            args.input,
            out,
            suffix=args.suffix,
            ext=args.ext,
            overwrite=args.overwrite,
            client=args.scheduler,
            workers=args.workers,
            threads=threads,
            progress=not args.quiet,
            channel_axis=args.channel_axis,
            spatial_dims=args.spatial_dims,
            words=cli_words,
            settings=segment_settings(args),
            allow_large=args.allow_large,
            **spacing,
        )
    except KeyboardInterrupt as exc:
        summary = getattr(exc, "summary", None)
        if summary is not None:
            print(f"{PROG}: {summary}", file=sys.stderr)
        raise
    if not args.quiet or summary.failed:
        print(f"{PROG}: {summary}", file=sys.stderr)
    return 1 if summary.failed else 0


def _run_zarr(args, threads) -> int:
    from napari_levelset.scale.batch import _client  # pulls torch: --help stays fast
    from napari_levelset.scale.chunked import segment_volume

    out = Path(args.output)
    if out.suffix.lower() != ".zarr":
        raise InputError(f"a zarr volume is written as zarr: -o must end in .zarr, got {out.name!r}")
    if not out.parent.exists():
        raise InputError(f"output folder does not exist: {out.parent}")
    if args.regions != "classes":
        raise InputError("a zarr volume gives class labels only (--regions classes)")
    if args.spatial_dims is not None or (args.channel_axis not in (None, 0)):
        raise InputError("a zarr volume is segmented whole: its channels (if any) on the first axis, no --spatial-dims")
    if args.spacing is not None:
        raise InputError("--spacing is for image files: a zarr volume is segmented without it")
    client, close = None, None
    if args.workers or args.scheduler:
        client, close = _client(args.scheduler, args.workers, threads)
    try:
        given = segment_settings(args)
        settings = {
            k: getattr(given, k)
            for k in (
                "n_classes",
                "lam",
                "iterations",
                "seed",
                "device",
                "lr",
                "width",
                "depth",
                "model",
                "finetune",
                "init",
                "max_pixels",
            )
        }
        with torch_threads(threads):
            labels = segment_volume(
                args.input[0],
                out,
                tile=args.tile,
                crop=args.crop,
                crops=args.crops,
                channel_axis=args.channel_axis,
                overwrite=args.overwrite,
                progress=not args.quiet,
                client=client,
                **{k: v for k, v in settings.items() if v is not None},
            )
    except InputError as exc:
        raise InputError(cli_words(str(exc))) from None
    finally:
        if close is not None:
            close()
    if not args.quiet:
        print(f"wrote {out} ({tuple(labels.shape)}, chunks {tuple(labels.chunks)})", file=sys.stderr)
    return 0
