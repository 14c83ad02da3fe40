"""The Gram matrix of the augmented rows ``a_i = [x_i, 1, y_i]`` in one pass: everything the
normal equations of (ridge) linear regression need.

``G = Σ a_i a_iᵀ`` of shape ``(d + 2, d + 2)`` holds XᵀX, Xᵀ1 (column sums), Xᵀy, the row count,
Σy and yᵀy. Sums are accumulated in float64 whatever the dtype of ``X``. Two ways are offered:

- :func:`gram_numba`: a Numba kernel that transposes blocks of rows into L1 cache and builds the
  upper triangle from 4 x 4 register tiles (the way BLAS micro-kernels work);
- :func:`gram_blas`: row blocks copied into an augmented buffer that stays in cache, then
  ``Aᵀ A`` by BLAS (NumPy sends ``A.T @ A`` to ``syrk``, which computes one triangle).

``mpigd bench solvers`` times both; the faster is :data:`DEFAULT` (measured on 10^6 x 32 float64,
one core: Numba 53 ms, BLAS blocks 162 ms, a plain ``X.T @ X`` alone 123 ms, a streaming read of X
31 ms). Both fill the full matrix.
"""

from __future__ import annotations

import numpy as np

from mpigd.kernels.jit import kernel

BLOCK_ROWS = 2048  # 2048 x 34 float64 = 557 KB: stays in L2 between the copy and the product
# 128 rows x 36 columns of float64 = 37 KB: the transposed block stays in L1 (256 rows was 3x slower).
TILE_ROWS = 128


@kernel
def _transpose_block(X, y, start, rows, T):
    """Columns of the augmented block ``[X, 1, y][start : start + rows]`` as rows of ``T``;
    the unused tail of ``T`` (padding rows and columns) is zero."""
    d = X.shape[1]
    for r in range(rows):
        for j in range(d):
            T[j, r] = X[start + r, j]
        T[d, r] = 1.0
        T[d + 1, r] = y[start + r]
    for r in range(rows, T.shape[1]):
        for j in range(T.shape[0]):
            T[j, r] = 0.0


@kernel
def _tile(T, j0, k0, acc):
    """acc[j0:j0+4, k0:k0+4] += T[j0:j0+4] T[k0:k0+4]ᵀ: 16 running sums in registers, 8 loads
    per 16 multiply-adds, vectorised along the rows of the block."""
    c00 = c01 = c02 = c03 = c10 = c11 = c12 = c13 = 0.0
    c20 = c21 = c22 = c23 = c30 = c31 = c32 = c33 = 0.0
    for r in range(T.shape[1]):
        a0, a1, a2, a3 = T[j0, r], T[j0 + 1, r], T[j0 + 2, r], T[j0 + 3, r]
        b0, b1, b2, b3 = T[k0, r], T[k0 + 1, r], T[k0 + 2, r], T[k0 + 3, r]
        c00 += a0 * b0
        c01 += a0 * b1
        c02 += a0 * b2
        c03 += a0 * b3
        c10 += a1 * b0
        c11 += a1 * b1
        c12 += a1 * b2
        c13 += a1 * b3
        c20 += a2 * b0
        c21 += a2 * b1
        c22 += a2 * b2
        c23 += a2 * b3
        c30 += a3 * b0
        c31 += a3 * b1
        c32 += a3 * b2
        c33 += a3 * b3
    acc[j0, k0] += c00
    acc[j0, k0 + 1] += c01
    acc[j0, k0 + 2] += c02
    acc[j0, k0 + 3] += c03
    acc[j0 + 1, k0] += c10
    acc[j0 + 1, k0 + 1] += c11
    acc[j0 + 1, k0 + 2] += c12
    acc[j0 + 1, k0 + 3] += c13
    acc[j0 + 2, k0] += c20
    acc[j0 + 2, k0 + 1] += c21
    acc[j0 + 2, k0 + 2] += c22
    acc[j0 + 2, k0 + 3] += c23
    acc[j0 + 3, k0] += c30
    acc[j0 + 3, k0 + 1] += c31
    acc[j0 + 3, k0 + 2] += c32
    acc[j0 + 3, k0 + 3] += c33


@kernel
def gram_numba(X, y, G):
    """Write the augmented Gram matrix of ``X``, ``y`` into float64 ``G`` of shape (d+2, d+2).

    Rows are taken :data:`TILE_ROWS` at a time, transposed into a float64 block that fits in L1
    cache, and the upper triangle is built from 4 x 4 tiles of that block.
    """
    n, d = X.shape
    m = d + 2
    padded = (m + 3) // 4 * 4
    T = np.zeros((padded, TILE_ROWS))
    acc = np.zeros((padded, padded))
    for start in range(0, n, TILE_ROWS):
        _transpose_block(X, y, start, min(TILE_ROWS, n - start), T)
        for j0 in range(0, padded, 4):
            for k0 in range(j0, padded, 4):
                _tile(T, j0, k0, acc)
    for j in range(m):
        for k in range(j, m):
            G[j, k] = acc[j, k]
            G[k, j] = acc[j, k]


def gram_blas(X: np.ndarray, y: np.ndarray, G: np.ndarray, block_rows: int = BLOCK_ROWS) -> None:
    """As :func:`gram_numba`, through BLAS on cache-sized row blocks."""
    n, d = X.shape
    A = np.empty((min(block_rows, max(n, 1)), d + 2))
    A[:, d] = 1.0
    G[:, :] = 0.0
    for start in range(0, n, block_rows):
        m = min(block_rows, n - start)
        A[:m, :d] = X[start : start + m]
        A[:m, d + 1] = y[start : start + m]
        block = A[:m]
        G += block.T @ block


@kernel
def gram_csr(indptr, indices, data, y, G):
    """:func:`gram_numba` for rows in CSR form: each row adds the products of its non-zeros (with
    the 1 and y of the augmented row), ``nnz²`` per row instead of ``d²``. Duplicate column
    indices in a row are summed, as in the product of the row with itself."""
    n = indptr.size - 1
    m = G.shape[0]
    d = m - 2
    G[:, :] = 0.0
    for i in range(n):
        lo, hi = indptr[i], indptr[i + 1]
        yi = np.float64(y[i])
        for a in range(lo, hi):
            ja, va = indices[a], np.float64(data[a])
            G[ja, ja] += va * va
            for b in range(a + 1, hi):
                jb, product = indices[b], va * np.float64(data[b])
                G[ja, jb] += product
                G[jb, ja] += product
            G[ja, d] += va
            G[d, ja] += va
            G[ja, d + 1] += va * yi
            G[d + 1, ja] += va * yi
        G[d, d] += 1.0
        G[d, d + 1] += yi
        G[d + 1, d] += yi
        G[d + 1, d + 1] += yi * yi


DEFAULT = gram_numba
