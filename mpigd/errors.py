"""The errors mpigd raises on purpose, the exit code each one maps to, and its warnings."""

from __future__ import annotations

import re
import sys
from typing import Mapping

EXIT_OK = 0
EXIT_FAILURE = 1  # an unexpected exception on some rank: the job is aborted
EXIT_USAGE = 2  # bad arguments, bad input data: reported once, every rank exits
EXIT_DIVERGED = 3  # the objective became NaN or Inf
EXIT_PREEMPTED = 75  # stopped on SIGTERM/SIGUSR1 after writing a checkpoint: rerun with --resume (EX_TEMPFAIL)


class MpigdError(Exception):
    """Base class of the errors mpigd raises deliberately, each with a message for the user."""

    exit_code = EXIT_FAILURE


class UsageError(MpigdError):
    """Bad command-line arguments or configuration values."""

    exit_code = EXIT_USAGE


class InputError(MpigdError):
    """Input data that cannot be used: missing file, wrong shape, NaN, invalid labels."""

    exit_code = EXIT_USAGE


class DivergedError(MpigdError):
    """The objective became NaN or infinite: the learning rate is too large, or the data is bad."""

    exit_code = EXIT_DIVERGED


class CheckpointError(UsageError):
    """A checkpoint that cannot be used: none valid to resume from, or one made by a different run."""


class Preempted(MpigdError):
    """The run was asked to stop (SIGTERM or SIGUSR1) and stopped, on every rank at the same step.

    Not a failure: the state was saved (when a checkpoint directory is known) and ``--resume``
    continues the run exactly.
    """

    exit_code = EXIT_PREEMPTED


# Every class here, in a fixed order: ranks agree on an error by its index in this tuple.
KINDS: tuple[type[MpigdError], ...] = (MpigdError, UsageError, InputError, DivergedError, CheckpointError,
                                      Preempted)


# How a message names a setting: by its field, `batch_size`. Not inside a path or a word the user
# wrote ('/tmp/`lr`.csv'), which a message may quote.
_FIELD = re.compile(r"(?<![\w/.`-])`(\w+)`(?![\w/.`-])")
_option_names: dict[str, str] = {}


def name_fields_as(options: Mapping[str, str]) -> None:
    """From now on, :func:`describe` names each field as ``options`` does (the command line: its
    options, ``batch_size`` -> ``--batch-size``)."""
    _option_names.clear()
    _option_names.update(options)


def describe(error: BaseException | str) -> str:
    """The message of ``error`` for the user, each `field` in it named as :func:`name_fields_as` says."""
    return _FIELD.sub(lambda field: _option_names.get(field[1], field[0]), str(error))


def warn(message: str) -> None:
    """A warning on stderr, one line, its fields named as errors' are (callers print on rank 0 only)."""
    print(f"mpigd: warning: {describe(message)}", file=sys.stderr, flush=True)
