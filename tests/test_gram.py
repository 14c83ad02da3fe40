"""The augmented Gram kernels against NumPy's [X, 1, y]ᵀ[X, 1, y]."""

import numpy as np
import pytest

from mpigd import kernels


@pytest.mark.parametrize("gram", [kernels.gram_numba, kernels.gram_blas])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows, features", [(0, 3), (1, 1), (5, 2), (300, 7), (1027, 13)])
def test_gram_matches_numpy(gram, dtype, rows, features):
    rng = np.random.default_rng(rows + features)
    X = rng.standard_normal((rows, features)).astype(dtype)
    y = rng.standard_normal(rows).astype(dtype)
    A = np.hstack([X, np.ones((rows, 1)), y[:, None]]).astype(np.float64)
    G = np.full((features + 2, features + 2), np.nan)
    gram(X, y, G)
    assert np.allclose(G, A.T @ A, rtol=1e-12, atol=1e-9)
    assert np.array_equal(G, G.T)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows, features, density", [(0, 3, 0.5), (1, 1, 1.0), (300, 7, 0.3), (1027, 40, 0.05)])
def test_csr_gram_matches_the_dense_rows(dtype, rows, features, density):
    from mpigd.data.csr import CSRMatrix

    rng = np.random.default_rng(rows + features)
    X = rng.standard_normal((rows, features)) * (rng.random((rows, features)) < density)
    X = X.astype(dtype)
    y = rng.standard_normal(rows).astype(dtype)
    nonzero = X != 0
    indptr = np.concatenate([[0], np.cumsum(nonzero.sum(axis=1))]).astype(np.int64)
    csr = CSRMatrix(indptr, np.nonzero(nonzero)[1].astype(np.int32), X[nonzero], (rows, features))
    A = np.hstack([X, np.ones((rows, 1)), y[:, None]]).astype(np.float64)
    G = np.full((features + 2, features + 2), np.nan)
    kernels.gram_csr(csr.indptr, csr.indices, csr.data, y, G)
    assert np.allclose(G, A.T @ A, rtol=1e-12, atol=1e-9)
    assert np.array_equal(G, G.T)


@pytest.mark.parametrize("block_rows", [1, 4, 10, 11])
def test_gram_blas_sums_every_row_block(block_rows):
    """Rows in several blocks, the last one short: each block brings its own rows of X and y."""
    rng = np.random.default_rng(block_rows)
    X, y = rng.standard_normal((11, 3)), rng.standard_normal(11)
    A = np.hstack([X, np.ones((11, 1)), y[:, None]])
    G = np.full((5, 5), np.nan)
    kernels.gram_blas(X, y, G, block_rows=block_rows)
    assert np.allclose(G, A.T @ A, rtol=1e-12, atol=1e-12)


def test_csr_gram_sums_duplicate_columns_of_a_row():
    # Row [2 at column 1, 3 at column 1] is the dense row [0, 5].
    G = np.zeros((4, 4))
    kernels.gram_csr(np.array([0, 2]), np.array([1, 1]), np.array([2.0, 3.0]), np.array([1.0]), G)
    a = np.array([0.0, 5.0, 1.0, 1.0])
    assert np.array_equal(G, np.outer(a, a))
