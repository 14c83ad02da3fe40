"""The command line: parse arguments into a Config, hand it to the trainer or a benchmark, print on
rank 0. No logic of its own beyond that: each command's module only wires options to a function."""

from __future__ import annotations

import argparse
import gc
import sys
from typing import Sequence

from mpigd.environment import launch_rank, one_thread_per_rank

one_thread_per_rank()  # before the imports below load NumPy and its BLAS

from mpigd import __version__  # noqa: E402
from mpigd.cli import bench, run  # noqa: E402
from mpigd.cli.common import Parser, option_defaults, option_names  # noqa: E402
from mpigd.errors import EXIT_USAGE, MpigdError, describe, name_fields_as  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="mpigd", description="Data-parallel training of classical models with MPI.")
    parser.add_argument("--version", action="version", version=f"mpigd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    run.register(commands)
    bench.register(commands)
    _remember_option_names(parser)
    return parser


def _remember_option_names(parser: argparse.ArgumentParser) -> None:
    """Give each command's parser its options by field, for :func:`main` to name fields with, and
    their defaults, for a command to tell an option given from one left alone."""
    commands = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    for action in commands:
        for command in action.choices.values():
            _remember_option_names(command)
    if not commands:
        parser.set_defaults(option_names=option_names(parser), option_defaults=option_defaults(parser))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mpigd`` console script and of ``python -m mpigd``."""
    try:
        args = build_parser().parse_args(argv)
        # The words parsed, for the command lines that reports record (main(argv) in Python too).
        args.argv = list(sys.argv[1:] if argv is None else argv)
        # Messages name settings by their field (`batch_size`); here, by the option typed (--batch-size).
        name_fields_as(args.option_names)
        return args.run(args)
    except MpigdError as error:  # raised identically on every rank before any collective
        if launch_rank() == 0:
            print(f"mpigd: error: {describe(error)}", file=sys.stderr)
        return error.exit_code if error.exit_code else EXIT_USAGE


def console() -> None:
    """The ``mpigd`` console script and ``python -m mpigd``: :func:`main`, then exit with its status.

    Python's shutdown collects the cycles of Numba's and LLVM's objects (over 100,000 once a kernel
    is loaded) several times over, 0.2-0.4 s of a 1-1.5 s ``mpigd train``, on every rank. One
    collection here finalizes what is garbage now; freezing the rest leaves it to the operating
    system. ``main(argv)`` called from Python leaves the caller's collector alone.
    """
    status = main()
    gc.collect()
    gc.freeze()
    sys.exit(status)
