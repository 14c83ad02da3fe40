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

from mpigd.kernels.glm import _point
from mpigd.kernels.jit import kernel
from mpigd.kernels.softmax import row_index, softmax_delta

# Positions and columns are unsigned: Numba guards every signed index against negative
# (wrap-around) values, a compare and a select per access that also kept the gather loops from
# vectorising; the readers have already rejected negative columns. 1.4-2.5x faster
# (benchmarks/RESULTS.md, *CSR kernels*).


@kernel
def _n_rows(indptr, rows):
    return indptr.shape[0] - 1 if rows is None else rows.shape[0]


@kernel
def _span(indptr, i):
    """Positions ``[lo, hi)`` of row ``i``'s non-zeros, unsigned."""
    return np.uint64(indptr[i]), np.uint64(indptr[i + 1])


@kernel
def csr_glm_loss_grad(indptr, indices, data, y, rows, params, grad, loss):
    """Summed loss (``loss`` = SQUARED or LOGISTIC) over CSR rows; summed gradient to ``grad``."""
    d = params.shape[0] - 1
    acc = np.zeros_like(grad)
    total = 0.0
    for t in range(_n_rows(indptr, rows)):
        i = row_index(rows, t)
        lo, hi = _span(indptr, i)
        z = params[d]
        for p in range(lo, hi):
            z += data[p] * params[np.uint64(indices[p])]
        value, r = _point(z, y[i], loss)
        total += value
        for p in range(lo, hi):
            acc[np.uint64(indices[p])] += r * data[p]
        acc[d] += r
    grad[:] = acc
    return total


@kernel
def csr_glm_margins(indptr, indices, data, params, out):
    """The margin ``x . w + b`` of every CSR row, written to ``out``."""
    d = params.shape[0] - 1
    for i in range(indptr.shape[0] - 1):
        lo, hi = _span(indptr, i)
        z = params[d]
        for p in range(lo, hi):
            z += data[p] * params[np.uint64(indices[p])]
        out[i] = z


@kernel
def csr_softmax_loss_grad(indptr, indices, data, y, rows, params, grad, k):
    """Summed softmax log-loss over CSR rows; summed gradient to ``grad`` (weights ``d x k``, then ``k``
    intercepts)."""
    b = params.shape[0] - k
    weights = params[:b].reshape(b // k, k)
    acc = np.zeros_like(grad)
    acc_weights = acc[:b].reshape(b // k, k)
    z = np.empty(k, dtype=grad.dtype)
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
