"""Loss-and-gradient kernels over CSR rows (``indptr``, ``indices``, ``data``): linear, logistic, softmax.

The parameter layouts are those of the dense kernels (:mod:`mpigd.kernels.glm`,
:mod:`mpigd.kernels.softmax`). A row's work is proportional to its non-zeros: the margin gathers
the weights of the row's columns and the gradient scatters into the same columns, so a pass
costs ``O(nnz * k)`` plus ``O(d * k)`` once per call to clear the private accumulator, never
``O(rows * features)``. Column indices within a row need not be sorted; duplicates add up, as
in ``scipy.sparse``.

``rows`` is ``None`` (every row) or an int64 array of local row indices, as in the dense kernels.
"""

from __future__ import annotations

import numpy as np

from mpigd.kernels.glm import BLOCK_ROWS, LOGISTIC, SQUARED, _point, row_index
from mpigd.kernels.jit import kernel
from mpigd.kernels.softmax import softmax_delta

# Positions and columns are unsigned: Numba guards every signed index against negative
# (wrap-around) values, a compare and a select per access that also kept the gather loops from
# vectorising; the readers have already rejected negative columns. 1.4-3.1x faster
# (benchmarks/RESULTS.md, *CSR kernels*).


@kernel(inline="always")
def _n_rows(indptr, rows):
    return indptr.shape[0] - 1 if rows is None else rows.shape[0]


@kernel(inline="always")
def _span(indptr, i):
    """Positions ``[lo, hi)`` of row ``i``'s non-zeros, unsigned."""
    return np.uint64(indptr[i]), np.uint64(indptr[i + 1])


@kernel(inline="always")
def _csr_margin(indptr, indices, data, i, params):
    lo, hi = _span(indptr, i)
    z = params[params.shape[0] - 1]
    for p in range(lo, hi):
        z += data[p] * params[np.uint64(indices[p])]
    return z


@kernel
def csr_glm_loss_grad(indptr, indices, data, y, rows, params, grad, loss):
    """Summed loss (``loss`` = SQUARED or LOGISTIC) over CSR rows; summed gradient to ``grad``."""
    return csr_glm_loss_grad_into(indptr, indices, data, y, rows, params, grad, loss, np.empty_like(grad),
                                  np.empty(2 * BLOCK_ROWS))


@kernel(inline="always")
def csr_glm_loss_grad_into(indptr, indices, data, y, rows, params, grad, loss, acc, blocks):
    """As :func:`csr_glm_loss_grad`, with the caller's scratch (as
    :func:`~mpigd.kernels.glm.glm_loss_grad_rows_into`; no arithmetic of its own, so inlined)."""
    acc[:] = 0
    if loss == LOGISTIC:
        total = _csr_logistic_rows(indptr, indices, data, y, rows, params, acc, blocks[:BLOCK_ROWS],
                                   blocks[BLOCK_ROWS:])
    else:
        total = _csr_squared_rows(indptr, indices, data, y, rows, params, acc)
    grad[:] = acc
    return total


@kernel(inline="always")
def _csr_update(indptr, indices, data, i, r, acc):
    lo, hi = _span(indptr, i)
    for p in range(lo, hi):
        acc[np.uint64(indices[p])] += r * data[p]
    acc[acc.shape[0] - 1] += r


@kernel
def _csr_squared_rows(indptr, indices, data, y, rows, params, acc):
    total = 0.0
    for t in range(_n_rows(indptr, rows)):
        i = row_index(rows, t)
        value, r = _point(_csr_margin(indptr, indices, data, i, params), y[i], SQUARED)
        total += value
        _csr_update(indptr, indices, data, i, r, acc)
    return total


@kernel
def _csr_logistic_rows(indptr, indices, data, y, rows, params, acc, z, r):
    """In blocks, as the dense log-loss kernel. Here the two passes over a block's non-zeros cost
    what the vectorised ``exp`` saves (one pass overlaps a row's gather with the previous row's
    scatter): the same time as one row at a time with libm, and the same per-row arithmetic as the
    dense kernel. ``z`` and ``r``: a block's margins and slopes, :data:`BLOCK_ROWS` float64 each."""
    n = _n_rows(indptr, rows)
    total = 0.0
    for start in range(0, n, BLOCK_ROWS):
        m = min(BLOCK_ROWS, n - start)
        for t in range(m):
            z[t] = _csr_margin(indptr, indices, data, row_index(rows, start + t), params)
        for t in range(m):
            value, r[t] = _point(z[t], y[row_index(rows, start + t)], LOGISTIC)
            total += value
        for t in range(m):
            _csr_update(indptr, indices, data, row_index(rows, start + t), r[t], acc)
    return total


@kernel
def csr_glm_margins(indptr, indices, data, params, out):
    """The margin ``x . w + b`` of every CSR row, written to ``out``."""
    for i in range(indptr.shape[0] - 1):
        out[i] = _csr_margin(indptr, indices, data, i, params)


@kernel
def csr_softmax_loss_grad(indptr, indices, data, y, rows, params, grad, k):
    """Summed softmax log-loss over CSR rows; summed gradient to ``grad`` (weights ``d x k``, then ``k``
    intercepts)."""
    return csr_softmax_loss_grad_into(indptr, indices, data, y, rows, params, grad, k, np.empty_like(grad),
                                      np.empty(k, dtype=grad.dtype))


@kernel
def csr_softmax_loss_grad_into(indptr, indices, data, y, rows, params, grad, k, acc, z):
    """As :func:`csr_softmax_loss_grad`, with the caller's scratch: ``acc`` shaped as ``grad``, ``z``
    of ``k`` entries of its dtype. Not inlined: inlined, its arithmetic would take the caller's
    fastmath flags."""
    b = params.shape[0] - k
    weights = params[:b].reshape(b // k, k)
    acc[:] = 0
    acc_weights = acc[:b].reshape(b // k, k)
    total = 0.0
    for t in range(_n_rows(indptr, rows)):
        i = row_index(rows, t)
        lo, hi = _span(indptr, i)
        for c in range(k):
            z[c] = params[b + c]
        for p in range(lo, hi):
            x = data[p]
            row = weights[np.uint64(indices[p])]
            for c in range(k):
                z[c] += x * row[c]
        total += softmax_delta(z, int(y[i]))
        for p in range(lo, hi):
            x = data[p]
            row = acc_weights[np.uint64(indices[p])]
            for c in range(k):
                row[c] += x * z[c]
        for c in range(k):
            acc[b + c] += z[c]
    grad[:] = acc
    return total


@kernel
def csr_softmax_logits(indptr, indices, data, params, out):
    """The logits of every CSR row, written to ``out`` (``n x k``)."""
    k = out.shape[1]
    b = params.shape[0] - k
    weights = params[:b].reshape(b // k, k)
    for i in range(indptr.shape[0] - 1):
        lo, hi = _span(indptr, i)
        for c in range(k):
            out[i, c] = params[b + c]
        for p in range(lo, hi):
            x = data[p]
            row = weights[np.uint64(indices[p])]
            for c in range(k):
                out[i, c] += x * row[c]
