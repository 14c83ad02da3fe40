"""Pieces every command shares: the rank-0-only parser, argument types, the data options, the
communicator check, and turning parsed arguments into a Config."""

from __future__ import annotations

import argparse
import copy
import os
import shlex
from typing import Any, Mapping

from mpigd.config import DATA_FORMATS, DTYPES, HEADER_CHOICES, STRATEGIES, Config
from mpigd.environment import launch_rank
from mpigd.outputs import check_output_directory, check_output_file
from mpigd.errors import UsageError


class DefaultsShown(argparse.HelpFormatter):
    """``--help`` with each option's default, unless its text already speaks of it or it has none
    (``None``; a flag): users look for the defaults there, not in the README's tables."""

    def _format_action(self, action: argparse.Action) -> str:
        default = action.default
        shown = (action.option_strings and action.nargs != 0 and not action.required
                 and default is not None and default != "" and default is not argparse.SUPPRESS
                 and "default" not in (action.help or "") and action.help is not argparse.SUPPRESS)
        if shown:
            # A list as it is typed: space-separated for nargs ("--ranks 1 2"), else comma-separated.
            joiner = " " if action.nargs in ("+", "*") else ","
            value = joiner.join(map(str, default)) if isinstance(default, (tuple, list)) else str(default)
            said = f"default: {value}".replace("%", "%%")  # the help text is a %-format
            action = copy.copy(action)
            action.help = f"{action.help} ({said})" if action.help else said
        return super()._format_action(action)


class Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, prints help on rank 0 only, and shows defaults."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", DefaultsShown)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        raise UsageError(f"{message} (see '{self.prog} --help')")

    def _print_message(self, message, file=None):
        if launch_rank() == 0:
            super()._print_message(message, file)


def check_output_paths(files: Mapping[str, str | None] | None = None,
                       directories: Mapping[str, str | None] | None = None,
                       inputs: Mapping[str, str | None] | None = None) -> None:
    """Refuse, before any work, output paths that cannot be written (an empty one too): ``files``
    and ``directories`` map an option's name (for the message) to its path; ``None`` is skipped.
    Two of ``files`` naming one file (the second would replace the first), or one naming a file of
    ``inputs`` (what the command reads, such as ``the --tune-file``, to its path: writing it would destroy it), are
    refused too. A device or FIFO (``/dev/stdout``) is written directly, so it may be named twice.

    Called first in a command's handler, on every rank alike, so that a :class:`UsageError` is
    printed once by rank 0 and nothing has been computed or written (see :mod:`mpigd.outputs`).
    """
    for option, path in (files or {}).items():
        if path is not None:
            check_output_file(option, path)
    for option, path in (directories or {}).items():
        if path is not None:
            check_output_directory(option, path)
    seen: dict[str, str] = {}
    for option, path in (files or {}).items():
        if path is None or (os.path.exists(path) and not os.path.isfile(path)):
            continue
        for other, earlier in [*((name, p) for name, p in (inputs or {}).items() if p is not None), *seen.items()]:
            if _same_file(path, earlier):
                if other in seen:
                    raise UsageError(f"{option} {path}: is also the file of {other}; give each its own")
                raise UsageError(f"{option} {path}: is {other}, an input; writing it would destroy it")
        seen[option] = path


def _same_file(a: str, b: str) -> bool:
    # realpath catches symbolic links and ../ spellings; samefile also catches hard links.
    return os.path.realpath(a) == os.path.realpath(b) or (
        os.path.exists(a) and os.path.exists(b) and os.path.samefile(a, b))


def command_line(args: argparse.Namespace, ranks: int | None = None) -> str:
    """The command that re-runs ``args`` (``mpiexec -n RANKS mpigd ...`` for ``ranks``), each word
    quoted for a POSIX shell where it needs it: the words :func:`mpigd.cli.main` parsed, whether they
    came from the command line or from a caller of ``main(argv)``."""
    launch = ["mpiexec", "-n", str(ranks)] if ranks is not None else []
    return shlex.join([*launch, "mpigd", *getattr(args, "argv", [])])


def option_names(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Each destination of ``parser``'s options, by the first long option that sets it (``batch_size``
    -> ``--batch-size``, ``epochs`` -> ``--epochs`` rather than ``--max-epochs``)."""
    names: dict[str, str] = {}
    for action in parser._actions:
        for option in action.option_strings:
            if option.startswith("--"):
                names.setdefault(action.dest, option)
    return names


def option_defaults(parser: argparse.ArgumentParser) -> dict[str, Any]:
    """Each destination of ``parser``'s options with its default as parsing gives it (a string
    default passes through the option's type, as argparse does: ``--hidden``'s "64" is ``(64,)``)."""
    defaults = {}
    for action in parser._actions:
        default = action.default
        if isinstance(default, str) and action.type is not None:
            default = action.type(default)
        defaults[action.dest] = default
    return defaults


def config_from(args: argparse.Namespace) -> Config:
    fields = Config.__dataclass_fields__
    return Config(**{name: value for name, value in vars(args).items() if name in fields and value is not None})


def numbers(metrics: dict) -> str:
    """The scalar metrics on one line (per-class lists stay in summary.json)."""
    return "  ".join(f"{k} {v:.6g}" for k, v in metrics.items() if isinstance(v, (int, float)))


def nonempty_path(text: str) -> str:
    """An argparse type: a file or directory name. An empty one is refused: taken as "no path" it
    would silently mean the default (or nothing), which is not what was asked for."""
    if not text:
        raise argparse.ArgumentTypeError("expected a path; got ''")
    return text


def widths(text: str) -> tuple[int, ...]:
    """An argparse type: layer widths such as ``64,32``, each at least 1."""
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected widths >= 1 such as 64,32; got {text!r}")
    return values


def at_least(low: int):
    """An argparse type: an integer no smaller than ``low``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}; got {text!r}")
        return value

    return parse


def fractions(text: str) -> list[float]:
    """An argparse type: comma-separated numbers in (0, 1], such as densities."""
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        values = []
    if not values or not all(0 < v <= 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated fractions in (0, 1]; got {text!r}")
    return values


def byte_count(text: str) -> int:
    """``8``, ``64K``, ``16M``, ``1G``: a size in bytes (binary units)."""
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:].upper(), 1)
    digits = text[:-1] if scale > 1 else text
    if not digits.isdigit() or int(digits) < 1:
        raise argparse.ArgumentTypeError(f"not a size in bytes: {text!r} (e.g. 8, 64K, 16M)")
    return int(digits) * scale


def strategy_names(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in STRATEGIES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown strategies {unknown}; choose from {','.join(STRATEGIES)}")
    return names


def choice_list(*allowed: str):
    """An argparse type: a comma-separated list of names from ``allowed``, in the order given."""

    def parse(text: str) -> list[str]:
        names = [name.strip() for name in text.split(",") if name.strip()]
        unknown = [name for name in names if name not in allowed]
        if unknown or not names:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {', '.join(allowed)}; got {text!r}")
        return names

    return parse


def size_range(parser: argparse.ArgumentParser, low: str, high: str) -> None:
    parser.add_argument("--min-bytes", type=byte_count, default=byte_count(low), help=f"smallest message in bytes, e.g. 512, 64K, 16M (default: {low})")
    parser.add_argument("--max-bytes", type=byte_count, default=byte_count(high), help=f"largest message in bytes (default: {high})")


def add_data_arguments(parser: argparse._ActionsContainer, defaults: Config) -> None:
    """The options that say where the rows come from (a parser or an argument group)."""
    add = parser.add_argument
    add("--data", type=nonempty_path, default=defaults.data,
        help="'synthetic', or a data file: .npz (X and y, or a CSR: indptr, indices, data, shape, y), "
             ".npy (with --labels), a directory of X.npy and y.npy, .csv, .libsvm/.svm/.svmlight, .h5/.hdf5")
    add("--labels", type=nonempty_path, default=None, help="the labels .npy file when --data is a features .npy file")
    add("--format", choices=("auto",) + DATA_FORMATS, default=defaults.format,
        help="data format (default: from the file name)")
    add("--label-column", default=None, help="CSV: label column index (negative from the end) or header name; "
                                             "default: the last column")
    add("--header", choices=HEADER_CHOICES, default=defaults.header,
        help="CSV: whether the first line names the columns (auto: when it is not all numbers)")
    base = parser.add_mutually_exclusive_group()
    base.add_argument("--zero-based", dest="zero_based", action="store_true", default=None,
                      help="LIBSVM: indices count from 0 (default: detected; 0-based when some index is 0)")
    base.add_argument("--one-based", dest="zero_based", action="store_false", help="LIBSVM: indices count from 1")
    add("--x-key", default=defaults.x_key, help="HDF5: dataset of the features")
    add("--y-key", default=defaults.y_key, help="HDF5: dataset of the labels")
    add("--rows", type=int, default=defaults.rows, help="rows of synthetic data (global)")
    add("--features", type=int, default=defaults.features, help="features of synthetic data")
    add("--density", type=float, default=defaults.density,
        help="synthetic data: fraction of non-zeros in [0, 1) (CSR); 0: dense")
    add("--dtype", choices=DTYPES, default=defaults.dtype)
    add("--seed", type=int, default=defaults.seed)
