"""``napari-levelset train``: its parser and its run (``napari_levelset.training.train.train``).

The options' defaults are ``DEFAULT_TRAIN``'s, their ranges ``validate.TRAIN_LIMITS``' (the U-Net's
size and the run's) and ``SPEC``'s (``--lam``, ``--lr``, ``--alpha``, ``--seed``).  Ctrl-C and
SIGTERM keep the checkpoint, and the same command again resumes from it.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Sequence

from napari_levelset import validate
from napari_levelset.cli._args import (
    DefaultsFormatter,
    OneLineParser,
    add_allow_large_option,
    add_threads_option,
    bounded_float,
    bounded_int,
    flag_type,
)
from napari_levelset.cli._report import report_error, signals_as_interrupts
from napari_levelset.errors import PROG
from napari_levelset.settings import DEVICE_WORDS, SPEC
from napari_levelset.training.labels import BOUNDARY_MODES, LABEL_KINDS

__all__ = ["build_parser", "main"]

_PROG = f"{PROG} train"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``napari-levelset train``.

    Returns
    -------
    argparse.ArgumentParser
        Options and defaults as ``DEFAULT_TRAIN`` and ``validate.TRAIN_LIMITS`` give them.
    """
    from napari_levelset.training.train import DEFAULT_TRAIN as d  # pulls torch: segment --help stays fast

    def whole(name):  # the range train() itself allows
        return bounded_int(*validate.TRAIN_LIMITS[name])

    def real(name):
        return bounded_float(*validate.TRAIN_LIMITS[name])

    p = OneLineParser(
        prog=_PROG,
        description="Train the U-Net on many images with the level-set loss (unsupervised; "
        "optional label images add a cross-entropy term).",
        formatter_class=DefaultsFormatter,
    )
    p.add_argument(
        "images", help="folder of images (png, jpg, tif) or one image/stack file (a 3D tif is a stack of 2D images)"
    )
    p.add_argument(
        "-o",
        "--output",
        required=True,
        help="model file to write (e.g. model.pt); a file there that is not a model file is kept unless --overwrite",
    )
    p.add_argument("--overwrite", action="store_true", help="replace the output even when it is not a model file")
    add_allow_large_option(p)
    p.add_argument(
        "--classes",
        default=None,
        help="class counts to train heads for: N, A-B or A,B,C (default: 2-16, or the --init model's heads; "
        "objects on a background, such as nuclei, are 2 classes whatever their number)",
    )
    p.add_argument("--lam", type=flag_type(SPEC["lam"]), default=d["lam"], help="weight of the total-variation term")
    p.add_argument("--steps", type=whole("steps"), default=d["steps"], help="optimiser steps")
    p.add_argument("--crop", type=whole("crop"), default=d["crop"], help="side of the random training crops (pixels)")
    p.add_argument("--batch-size", type=whole("batch_size"), default=d["batch_size"], help="crops per step")
    p.add_argument(
        "--lr", type=flag_type(SPEC["lr"]), default=d["lr"], help="Adam learning rate (warm-up, cosine decay)"
    )
    p.add_argument(
        "--labels",
        default=None,
        help="folder of label images matched to the images by name (t01.tif, t01_masks.tif, 't01 level-set.tif', "
        "man_seg01.tif for t01.tif): instance masks, 0/255 or 0/1 foreground masks (0 = background) or class "
        "labels (0 = unlabelled; --label-kind classes); for nuclei train --classes 2",
    )
    p.add_argument(
        "--label-kind",
        choices=list(LABEL_KINDS),
        default="auto",
        help="what the label images are; auto: two values with 0 = foreground mask, more with 0 = instance mask, "
        "no 0 = class labels (decided per file and printed)",
    )
    p.add_argument(
        "--contrast",
        choices=["linear", "fluorescence"],
        default="linear",
        help="image preparation after the normalisation: as is, or the fluorescence contrast of "
        "--regions instances (bright objects on a dark field); the model records it and segmenting uses it",
    )
    p.add_argument(
        "--boundary",
        choices=list(BOUNDARY_MODES),
        default="keep",
        help="instance masks: the line where two objects touch stays foreground, is left unlabelled or made background",
    )
    p.add_argument(
        "--alpha", type=flag_type(SPEC["alpha"]), default=d["alpha"], help="weight of the label cross-entropy"
    )
    p.add_argument("--device", default="auto", help=f"where the network runs: {DEVICE_WORDS}")
    p.add_argument(
        "--checkpoint-every",
        type=whole("checkpoint_every"),
        default=d["checkpoint_every"],
        help="steps between checkpoints",
    )
    p.add_argument(
        "--resume", action=argparse.BooleanOptionalAction, default=True, help="continue from OUTPUT.ckpt when it exists"
    )
    p.add_argument("--seed", type=flag_type(SPEC["seed"]), default=0, help="random seed (initialisation and crops)")
    p.add_argument(
        "--kmeans-weight",
        type=real("kmeans_weight"),
        default=d["kmeans_weight"],
        help="initial weight of the k-means warm-start cross-entropy",
    )
    p.add_argument(
        "--kmeans-steps",
        type=real("kmeans_steps"),
        default=d["kmeans_steps"],
        help="length of the k-means warm start: a fraction of --steps (<= 1) or a step count "
        "(default: 0.3 from random weights, 0 from a model)",
    )
    p.add_argument(
        "--kmeans-heads",
        type=whole("kmeans_heads"),
        default=d["kmeans_heads"],
        help="heads given the k-means cross-entropy per step",
    )
    p.add_argument("--base", type=whole("base"), default=d["base"], help="U-Net channels at full resolution")
    p.add_argument("--levels", type=whole("levels"), default=d["levels"], help="U-Net down-samplings")
    p.add_argument("--embed", type=whole("embed"), default=d["embed"], help="embedding channels fed to the heads")
    p.add_argument(
        "--init",
        default=d["init"],
        help="the start: auto (the shipped U-Net where the run fits it, else random weights), unet (the shipped "
        "model: 3 channels, heads 2-16; grey images are repeated), a model file (its architecture is kept, "
        "--classes must be among its heads), or none (random weights)",
    )
    p.add_argument("--finetune", choices=["all", "last", "head"], default=d["finetune"], help="what the run trains")
    p.add_argument(
        "--labelled-share",
        type=bounded_float(0.0, 1.0),
        default=d["labelled_share"],
        help="with --labels: the share of every batch's crops taken from the labelled images",
    )
    p.add_argument(
        "--color",
        choices=["rgb", "lab"],
        default="rgb",
        help="input the network sees: normalised channels (rgb) or CIELAB (lab; RGB images only)",
    )
    add_threads_option(
        p,
        rule="torch CPU threads (default: one per CPU core that other programs leave free when training "
        "starts, at least 1; {default} cores here; OMP_NUM_THREADS fixes it where set; a thread on a busy core "
        "slows the others down many times)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no notes")
    return p


@contextlib.contextmanager
def _quiet_tifffile():
    """While active, tifffile's log lines are dropped: a file it cannot read is the run's one error line."""
    logger = logging.getLogger("tifffile")
    handler, propagate = logging.NullHandler(), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def main(argv: Sequence[str] | None = None) -> int:
    """``napari-levelset train ...``: parse the arguments and run ``napari_levelset.training.train.train``.

    Parameters
    ----------
    argv : sequence of str or None
        The arguments after ``train`` (None: ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit code: 0; 2 on bad input or out of memory; 130 on Ctrl-C, 143 on SIGTERM,
        both with the checkpoint kept.
    """
    from napari_levelset.training.train import checkpoint_path, parse_classes, train  # pulls torch

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a one-line argument error (2)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    smallest = max(2**args.levels, 16)  # a crop holds whole 2**levels blocks, and at least 16 pixels
    if args.crop < smallest:
        print(
            f"{_PROG}: error: argument --crop: must be >= {smallest} with --levels {args.levels}, got {args.crop}",
            file=sys.stderr,
        )
        return 2
    try:
        with signals_as_interrupts(), _quiet_tifffile():
            res = train(
                args.images,
                args.output,
                n_classes=None if args.classes is None else parse_classes(args.classes),
                lam=args.lam,
                steps=args.steps,
                crop=args.crop,
                batch_size=args.batch_size,
                lr=args.lr,
                labels=args.labels,
                alpha=args.alpha,
                device=args.device,
                checkpoint_every=args.checkpoint_every,
                resume=args.resume,
                progress=not args.quiet,
                seed=args.seed,
                base=args.base,
                levels=args.levels,
                embed=args.embed,
                init=args.init,
                finetune=args.finetune,
                labelled_share=args.labelled_share,
                threads=args.threads,  # None: train() chooses from the cores free
                color=args.color,
                kmeans_weight=args.kmeans_weight,
                kmeans_steps=args.kmeans_steps,
                kmeans_heads=args.kmeans_heads,
                metadata=dict(command=f"{_PROG} " + " ".join(sys.argv[1:] if argv is None else argv)),
                overwrite=args.overwrite,
                allow_large=args.allow_large,
                label_kind=args.label_kind,
                boundary=args.boundary,
                contrast=args.contrast,
            )
    except (Exception, KeyboardInterrupt) as exc:
        code = report_error(
            exc,
            _PROG,
            interrupted=f"interrupted; checkpoint saved to {checkpoint_path(args.output)} "
            "(run the same command again to resume)",
            oom_advice="out of memory; try a smaller --crop, --batch-size or --base",
        )
        if code is None:
            raise
        return code
    if not args.quiet:
        print(
            f"wrote {res.path} ({res.steps} steps, final loss {res.metadata.get('final_loss'):.4f}, "
            f"{res.seconds:.0f} s)",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
