"""One-line checks of a command's arguments, raised as :class:`~mpigd.errors.UsageError`.

They live in the library, not the CLI, so that a Python caller of the function behind a command
(``mpigd.bench.plan.make_plan``, ``mpigd.comm.tuning.calibrate``, ...) is refused exactly as the
command is. Messages name the command-line option (``--max-bytes``), which also tells a Python
caller which argument is meant. Pure Python: no MPI, usable on a login node.
"""

from __future__ import annotations

import math
import numbers
from typing import Iterable, Sequence

from mpigd.environment import physical_memory_bytes
from mpigd.errors import UsageError

# Copies of the largest message a rank holds while timing it: the message, tree's receive buffer or
# tune's output, and auto's saved copy during its trial.
MESSAGE_COPIES = 3


def check_fits_memory(need: int, what: str, advice: str = "") -> None:
    """Refuse, in one line, work whose arrays need more than this node's memory: caught before they
    are allocated, as train refuses synthetic data that cannot fit, instead of a MemoryError on every
    rank. ``advice`` ends the message."""
    memory = physical_memory_bytes()
    if memory is not None and need > memory:
        raise UsageError(f"{what} needs about {need / 1e9:,.0f} GB per rank, more than this node's "
                         f"{memory / 1e9:,.0f} GB{'; ' + advice if advice else ''}")


def check_choice(option: str, value: object, allowed: Iterable[str]) -> None:
    """Refuse ``value`` unless it is one of ``allowed`` (what argparse's ``choices`` does for the CLI)."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise UsageError(f"{option} must be one of {', '.join(allowed)}; got {value!r}")


def check_choices(option: str, values: Sequence[str], allowed: Iterable[str]) -> None:
    """Refuse an empty ``values`` or one with a name not in ``allowed`` (the CLI's comma-separated lists)."""
    allowed = tuple(allowed)
    unknown = [value for value in values if value not in allowed]
    # A bare string is a sequence of characters: "linear" would be refused as l, i, n, ... below.
    if isinstance(values, str) or unknown or not values:
        raise UsageError(f"{option} must be a non-empty list of {', '.join(allowed)}; got {values!r}")


def check_finite(option: str, value: float | None) -> None:
    """Refuse NaN and infinities, which pass every comparison a range check makes (``None``: not given)."""
    if value is not None and not math.isfinite(value):
        raise UsageError(f"{option} must be a finite number; got {value}")


def whole_element_sizes(sizes: Sequence[int], itemsize: int) -> list[int]:
    """``sizes`` in bytes as the messages that are really sent: whole elements of ``itemsize``
    bytes, at least one, each size once (1 to 15 bytes of float64 are 8 or 16 bytes: five rows of
    "8 bytes" from ``--min-bytes 1 --max-bytes 12``, one table row, were written before)."""
    return list(dict.fromkeys(max(1, size // itemsize) * itemsize for size in sizes))


def check_message_sizes(sizes: Sequence[int]) -> None:
    """Refuse message sizes below one byte, and a largest one whose buffers cannot fit this node's
    memory (the same on every rank, before any collective): ``mpigd tune`` and ``bench allreduce``."""
    if any(not isinstance(size, numbers.Integral) or size < 1 for size in sizes):
        raise UsageError(f"message sizes must be integers >= 1 byte; got {list(sizes)}")
    if sizes:
        largest = max(sizes)
        check_fits_memory(MESSAGE_COPIES * largest, f"--max-bytes {largest:,}")
