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


@kernel
def _n_rows(indptr, rows):
    return indptr.shape[0] - 1 if rows is None else rows.shape[0]


@kernel
def csr_glm_loss_grad(indptr, indices, data, y, rows, params, grad, loss):
    """Summed loss (``loss`` = SQUARED or LOGISTIC) over CSR rows; summed gradient to ``grad``."""
    d = params.shape[0] - 1
    acc = np.zeros_like(grad)
    total = 0.0
    for t in range(_n_rows(indptr, rows)):
        i = row_index(rows, t)
        lo, hi = indptr[i], indptr[i + 1]
        z = params[d]
        for p in range(lo, hi):
            z += data[p] * params[indices[p]]
        value, r = _point(z, y[i], loss)
        total += value
        for p in range(lo, hi):
            acc[indices[p]] += r * data[p]
        acc[d] += r
    grad[:] = acc
    return total


@kernel
def csr_glm_margins(indptr, indices, data, params, out):
    """The margin ``x . w + b`` of every CSR row, written to ``out``."""
    d = params.shape[0] - 1
    for i in range(indptr.shape[0] - 1):
        z = params[d]
        for p in range(indptr[i], indptr[i + 1]):
            z += data[p] * params[indices[p]]
        out[i] = z


@kernel
def csr_softmax_loss_grad(indptr, indices, data, y, rows, params, grad, k):
    """Summed softmax log-loss over CSR rows; summed gradient to ``grad`` (weights ``d x k``, then ``k``
    intercepts)."""
    b = params.shape[0] - k
    acc = np.zeros_like(grad)
    z = np.empty(k, dtype=grad.dtype)
    total = 0.0
    for t in range(_n_rows(indptr, rows)):
        i = row_index(rows, t)
        lo, hi = indptr[i], indptr[i + 1]
        for c in range(k):
            z[c] = params[b + c]
        for p in range(lo, hi):
            x = data[p]
            base = indices[p] * k
            for c in range(k):
                z[c] += x * params[base + c]
        total += softmax_delta(z, int(y[i]))
        for p in range(lo, hi):
            x = data[p]
            base = indices[p] * k
            for c in range(k):
                acc[base + c] += x * z[c]
        for c in range(k):
            acc[b + c] += z[c]
    grad[:] = acc
    return total


@kernel
def csr_softmax_logits(indptr, indices, data, params, out):
    """The logits of every CSR row, written to ``out`` (``n x k``)."""
    k = out.shape[1]
    b = params.shape[0] - k
    for i in range(indptr.shape[0] - 1):
        for c in range(k):
            out[i, c] = params[b + c]
        for p in range(indptr[i], indptr[i + 1]):
            x = data[p]
            base = indices[p] * k
            for c in range(k):
                out[i, c] += x * params[base + c]
