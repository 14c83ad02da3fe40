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
