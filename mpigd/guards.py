"""Numerical guards on the gradient path: cheap finiteness tests and global-norm clipping.

Plain NumPy on purpose: a finiteness test inside a ``fastmath`` Numba kernel can be optimised
away (see ../shared/RELIABILITY.md), so the guards stay outside the kernels.
"""

from __future__ import annotations

import math

import numpy as np

from mpigd.errors import DivergedError


def finite(buffer: np.ndarray) -> bool:
    """Whether every entry of ``buffer`` is finite, in one pass and no allocation.

    The sum of the entries is NaN or infinite if any entry is; a sum that overflows from finite
    entries also counts as not finite, which for a gradient means divergence all the same.
    """
    return math.isfinite(float(np.add.reduce(buffer)))


def clip_norm(grad: np.ndarray, max_norm: float) -> float:
    """Scale ``grad`` in place so that its Euclidean norm is at most ``max_norm``; return the norm
    it had. Run on the reduced gradient, it does the same on every rank."""
    norm = float(np.sqrt(np.dot(grad, grad)))
    if norm > max_norm:
        grad *= grad.dtype.type(max_norm / norm)
    return norm


def nonfinite_error(rank: int, local: bool) -> DivergedError:
    """The error for a gradient that became NaN or Inf, naming the rank where it started if known."""
    if local:
        return DivergedError(f"the local gradient of rank {rank} is NaN or Inf before the allreduce "
                             "(bad values in its rows, or an overflow)")
    return DivergedError("the global gradient is NaN or Inf although every rank's local gradient was finite "
                         "(the sum or the L2 term overflowed)")
