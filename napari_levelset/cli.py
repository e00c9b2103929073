"""Command line: ``napari-levelset segment INPUT -o OUTPUT`` and ``napari-levelset train``.

Bad input ends with one line on stderr and exit status 2 (no traceback), and an
output file is only ever written whole (see ``io.write_labels``).  Unless
``--channel-axis`` or ``--spatial-dims`` is given, ``segment`` takes the axes
from the file (``io.ImageFile.layout``), passes its pixel size on as
``spacing`` and writes the labels with the input's axes (minus C) and pixel size.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .io import TIFF_EXT, InputError

PROG = "napari-levelset"


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {v}")
    return v


def _nonneg_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not v >= 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return v


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < v < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return v


def _add_segment(sub) -> None:
    from .defaults import DEFAULTS, MERGE_WEIGHT

    p = sub.add_parser(
        "segment",
        help="segment an image file into N classes",
        description="Segment an image (PNG/JPEG/TIFF; 2D, RGB or a 3D stack) with the level-set loss and "
        "write a label image (TIFF or PNG, by the output's extension) with the input's spatial shape. The axes "
        "and pixel size an ImageJ hyperstack, OME-TIFF or calibrated TIFF gives decide how it is segmented "
        "(C: channels, Z: a volume, T: frame by frame) and go into a TIFF output.",
    )
    p.add_argument("input", help="image file")
    p.add_argument("-o", "--output", required=True, help="label image to write (.tif, .tiff or .png)")
    p.add_argument(
        "--classes",
        "-n",
        type=int,
        default=None,
        help=f"number of classes N (>= 2; default {DEFAULTS['n_classes']}, chosen automatically for --regions instances)",
    )
    p.add_argument("--lam", type=_nonneg_float, default=None,
                   help=f"weight of the smoothness (TV) term (default {DEFAULTS['lam']}; 0.02 with --regions instances)")
    p.add_argument(
        "--iterations",
        "-k",
        type=int,
        default=None,
        help=f"optimisation steps (default {DEFAULTS['iterations']} for the per-image CNN, 0 for a U-Net)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (CPU results are deterministic)")
    p.add_argument("--scribbles", help="label image of the same shape: 0 unlabelled, k means class k")
    p.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto")
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
    p.add_argument("--lr", type=float, default=DEFAULTS["lr"], help="learning rate")
    p.add_argument("--width", type=_positive_int, default=DEFAULTS["width"], help="CNN feature channels")
    p.add_argument("--depth", type=_positive_int, default=DEFAULTS["depth"], help="CNN 3x3 blocks")
    p.add_argument("--alpha", type=_nonneg_float, default=DEFAULTS["alpha"], help="weight of the scribble term")
    p.add_argument(
        "--color",
        choices=["auto", "rgb", "lab"],
        default=DEFAULTS["color"],
        help="auto: CIELAB for RGB images, else rgb; rgb: each channel normalised on its own; lab: CIELAB",
    )
    p.add_argument(
        "--position",
        type=_nonneg_float,
        default=None,
        help=f"weight of pixel coordinates in the data term (0: colour only; larger: more compact regions; "
        f"default {DEFAULTS['position']} for RGB images in CIELAB with the per-image CNN, else 0)",
    )
    p.add_argument("--model", default="cnn", help="cnn (per-image CNN), unet (pretrained U-Net) or a model file")
    p.add_argument(
        "--finetune",
        choices=["head", "last", "all"],
        default="head",
        help="with a U-Net: what --iterations fine-tune (head: the class head only; all: everything, use --lr 0.003)",
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
        "(default 0.001; 0.0002 for merged regions of a U-Net)",
    )
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


def _run_segment(args) -> int:
    from .engine import segment
    from .io import infer_axes, read_image, read_image_file, write_labels

    out = Path(args.output)
    _check_output(out, inputs=(args.input, args.scribbles))
    if args.classes is not None and args.classes < 2:
        raise InputError(f"need at least 2 classes, got {args.classes}")
    if args.iterations is not None and args.iterations < 0:
        raise InputError(f"iterations must be >= 0, got {args.iterations}")
    infile = read_image_file(args.input)
    image = infile.data
    channel_axis, spatial_dims = args.channel_axis, args.spatial_dims
    if channel_axis is None and spatial_dims is None:  # what the file says about its axes
        channel_axis, spatial_dims = infile.layout()
    ch, sdims = infer_axes(image.shape, channel_axis, spatial_dims)
    if out.suffix.lower() == ".png" and image.ndim - (ch is not None) != 2:  # find out before the run, not after
        raise InputError(f"PNG holds 2D labels only; an image of shape {image.shape} gives more: write a .tif instead")
    out_axes = infile.label_axes(ch)
    # the pixel size of the axes segmented together, when the file gives it
    spacing = infile.spacing_of(out_axes[-sdims:]) if out_axes else None
    scribbles = read_image(args.scribbles, labels=True) if args.scribbles else None
    labels = segment(
        image,
        n_classes=args.classes,
        lam=args.lam,
        iterations=args.iterations,
        scribbles=scribbles,
        channel_axis=channel_axis,
        spatial_dims=spatial_dims,
        device=args.device,
        seed=args.seed,
        progress=not args.quiet,
        lr=args.lr,
        width=args.width,
        depth=args.depth,
        alpha=args.alpha,
        color=args.color,
        position=args.position,
        model=args.model,
        finetune=args.finetune,
        **({} if args.init is None else {"init": args.init}),
        regions=args.regions,
        merge=args.merge,
        min_region=args.min_region,
        diameter=args.diameter,
        foreground=args.foreground,
        spacing=spacing,
    )
    if out_axes is None:  # a channel axis other than the file's C: its axis names do not apply
        write_labels(out, labels)
    else:  # the input's axes without C, and its pixel size
        write_labels(out, labels, axes=out_axes, spacing=infile.spacing, unit=infile.unit)
    if not args.quiet:
        print(f"wrote {out} ({labels.shape}, labels {int(labels.min())}..{int(labels.max())})", file=sys.stderr)
    return 0


def _add_train(sub) -> None:
    # listed for --help; ``main`` hands ``train ...`` to napari_levelset.train.main
    sub.add_parser("train", help="train a U-Net with the level-set loss on many images (see: train --help)")


def _run_train(args) -> int:
    from .train import main as train_main

    return int(train_main(args.rest) or 0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Unsupervised and scribble-guided segmentation with the multiphase level-set loss."
    )
    from . import __version__

    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_segment(sub)
    _add_train(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["train"]:  # the training CLI has its own parser (napari_levelset.train)
        return _run_train(argparse.Namespace(rest=argv[1:]))
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except InputError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"{PROG}: error: out of memory; try a smaller image, fewer classes or --width", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except RuntimeError as exc:  # torch errors, e.g. CUDA out of memory
        msg = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        print(f"{PROG}: error: {msg}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
