"""Command line: ``napari-levelset segment INPUT -o OUTPUT`` and ``napari-levelset train``.

Bad input ends with one line on stderr and exit status 2 (no traceback), and an
output file is only ever written whole (see ``io.write_labels``).  ``segment``
(``napari_levelset.cli.segment``) has one flag per setting, generated from
``napari_levelset.settings.SPEC`` (``napari_levelset.cli._args``); ``train`` has its own
parser (``napari_levelset.cli.train``).  ``--threads`` sets torch's CPU threads, by
default one per core that other programs leave free when a run starts
(``resources.run_threads``; ``OMP_NUM_THREADS`` fixes it where set), shared among
``--workers``, at least 1.

Exit statuses: 0 done; 1 a batch with a failed file, or a torch failure; 2 bad input
or out of memory; 130 Ctrl-C; 143 SIGTERM (``napari_levelset.cli._report``).

Examples
--------
From a shell::

    napari-levelset segment cells.tif -o cells_labels.tif --classes 3 --regions instances
    napari-levelset segment photos/ -o out/ --regions merged --workers 4
    napari-levelset train --help
"""

from __future__ import annotations

import argparse
import sys
import warnings

from napari_levelset import __version__
from napari_levelset.cli import train as train_command
from napari_levelset.cli._args import OneLineParser
from napari_levelset.cli._report import cli_words, report_error, signals_as_interrupts
from napari_levelset.cli.segment import add_segment
from napari_levelset.errors import PROG, FewerClassesWarning

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The ``napari-levelset`` parser: ``--version`` and the ``segment`` and ``train`` commands.

    ``train``'s own flags are parsed by ``napari_levelset.cli.train.main`` (``main`` hands it the
    arguments); here it is listed for ``--help`` only.

    Returns
    -------
    OneLineParser
        Its errors are one line on stderr, exit status 2.
    """
    parser = OneLineParser(
        prog=PROG, description="Unsupervised and scribble-guided segmentation with the multiphase level-set loss."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    add_segment(sub)
    sub.add_parser("train", help="train a U-Net with the level-set loss on many images (see: train --help)")
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
        143 SIGTERM.  ``train``: ``napari_levelset.cli.train.main``'s.  An exception that is a bug
        propagates with its traceback.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    with signals_as_interrupts():  # SIGTERM stops a run like Ctrl-C: temporary files are removed
        if argv[:1] == ["train"]:  # the training command has its own parser
            return int(train_command.main(argv[1:]) or 0)
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as exc:  # --help, --version, or a one-line argument error (2)
            return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("always", FewerClassesWarning)  # every file of a batch says it
                warnings.showwarning = _show_warning
                return args.func(args)
        except (Exception, KeyboardInterrupt) as exc:
            code = report_error(exc)
            if code is None:
                raise
            return code


def _show_warning(message, category, filename, lineno, file=None, line=None, _default=warnings.showwarning):
    """A ``FewerClassesWarning`` as one line in the command's words; other warnings as Python shows them."""
    if issubclass(category, FewerClassesWarning):
        print(f"{PROG}: warning: {cli_words(str(message))}", file=sys.stderr)
    else:
        _default(message, category, filename, lineno, file, line)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
