"""The summed gradient buffer made ready for the update, in one pass: the mean, the L2 term, the check.

A small model's step reduces a few dozen numbers; done as NumPy calls (a finiteness test, a
division, a slice, a product and a sum, a dot product, another test) each costs a microsecond of
dispatch, most of a mini-batch step. One call here costs a few hundred nanoseconds.

``fastmath`` is off: every element gets the same operations in the same order as the NumPy
expressions they replace (no fused multiply-add), so the parameters keep their bits. The
finiteness tests are comparisons, which vectorise without it.
"""

from __future__ import annotations

import numpy as np

from mpigd.kernels.jit import kernel


@kernel(fastmath=False)
def all_finite(values):
    """Whether every entry of ``values`` is finite (no NaN, no Inf)."""
    finite = True
    for i in range(values.shape[0]):
        finite &= np.isfinite(values[i])
    return finite


@kernel(fastmath=False)
def sum_of_squares(values, n):
    """``sum(values[:n] ** 2)`` in float64, in four interleaved partial sums: an order fixed by
    this code, not by the compiler or a BLAS (the L2 penalty of training and of evaluation are
    the same bits), and no loop-carried chain through one sum."""
    s0 = s1 = s2 = s3 = 0.0
    quads = n - n % 4
    for i in range(0, quads, 4):
        a, b = np.float64(values[i]), np.float64(values[i + 1])
        c, d = np.float64(values[i + 2]), np.float64(values[i + 3])
        s0 += a * a
        s1 += b * b
        s2 += c * c
        s3 += d * d
    for i in range(quads, n):
        a = np.float64(values[i])
        s0 += a * a
    return (s0 + s1) + (s2 + s3)


@kernel(fastmath=False)
def sum_of_abs(values, n):
    """``sum(abs(values[:n]))`` in float64, in the order of :func:`sum_of_squares`: the L1 penalty of
    a step taken alone and of steps taken many in one kernel call are the same bits."""
    s0 = s1 = s2 = s3 = 0.0
    quads = n - n % 4
    for i in range(0, quads, 4):
        s0 += abs(np.float64(values[i]))
        s1 += abs(np.float64(values[i + 1]))
        s2 += abs(np.float64(values[i + 2]))
        s3 += abs(np.float64(values[i + 3]))
    for i in range(quads, n):
        s0 += abs(np.float64(values[i]))
    return (s0 + s1) + (s2 + s3)


@kernel(fastmath=False)
def clip_to_norm(values, n, max_norm, factor):
    """Scale ``values[:n]`` in place to a Euclidean norm of at most ``max_norm``; return the norm they
    had (from :func:`sum_of_squares`, a fixed order). ``factor`` is scratch of one entry of the
    values' dtype: the scale is rounded into it, as NumPy rounds a scalar of the array's type."""
    norm = np.sqrt(sum_of_squares(values, n))
    if norm > max_norm:
        factor[0] = max_norm / norm
        for i in range(n):
            values[i] = values[i] * factor[0]
    return norm


@kernel(fastmath=False)
def mean_with_l2(buffer, rows, params, n_penalized, l2, half_l2):
    """Finish a summed ``[gradient..., loss]`` buffer in place; return the objective, or NaN.

    Divides every entry by ``rows`` (the global batch, of the buffer's dtype), adds ``l2 * w`` to
    the gradient's first ``n_penalized`` entries (``l2`` of the buffer's dtype, ``w`` those
    entries of ``params``), and returns ``mean loss + half_l2 * ‖w‖²`` (``half_l2`` = l2 / 2 in
    float64). NaN if the buffer, before or after, holds a NaN or an Inf: the caller's one test.
    """
    n = buffer.shape[0]
    finite = True
    # One pass: on 10^5 weights the three it was (the mean, the L2 term, the test) took 100-140 us.
    penalized = n_penalized if half_l2 != 0 else 0  # the float64 value: a float32 l2 may have rounded to 0
    for i in range(penalized):
        mean = buffer[i] / rows
        buffer[i] = mean + l2 * params[i]
        finite &= np.isfinite(buffer[i])
    for i in range(penalized, n):
        buffer[i] = buffer[i] / rows
        finite &= np.isfinite(buffer[i])
    # As `loss + penalty` always was, with a penalty of 0.0 when there is no L2 (-0.0 + 0.0 is 0.0).
    value = np.float64(buffer[n - 1]) + (half_l2 * sum_of_squares(params, n_penalized) if half_l2 != 0 else 0.0)
    return value if finite else np.nan
