"""``mpigd bench sparse``: the CSR loss-and-gradient kernel's time against its non-zeros.

The same rows are stored at several densities; the CSR kernel's time should follow the
non-zeros (ns per non-zero roughly flat), while the dense kernel on the same matrix (the
baseline, measured in the same run) costs rows x features whatever the density.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mpigd import kernels
from mpigd.bench.timing import measure
from mpigd.checks import check_fits_memory
from mpigd.data.synthetic_models import generate_sparse
from mpigd.errors import UsageError


def run(rows: int, features: int, densities: list[float], classes: int = 1, repeats: int = 5,
        seed: int = 0) -> list[dict[str, Any]]:
    """One row per density: median seconds of the CSR kernel and of the dense kernel, ns per non-zero.

    ``mpigd bench sparse`` (print the rows with :func:`table`). One process, not collective.
    ``classes`` 1 times the logistic kernel, more the softmax one. Arguments the command refuses
    raise :class:`~mpigd.errors.UsageError`; the matrix is held dense too, so rows x features must
    fit this node's memory.
    """
    if min(rows, features, classes, repeats) < 1:
        raise UsageError("bench sparse needs --rows, --features, --classes, --repeats >= 1")
    if isinstance(densities, str) or not densities or not all(0 < d <= 1 for d in densities):
        raise UsageError(f"bench sparse needs --densities: fractions in (0, 1]; got {densities!r}")
    check_fits_memory(rows * features * 8 + int(max(densities) * rows * features * 16),
                      f"{rows:,} rows x {features:,} features")
    results = []
    task_classes = max(classes, 2)
    for density in densities:
        X, y = generate_sparse("classification", features, task_classes, density, seed, 0, rows, "float64")
        dense = X.toarray()
        k = classes
        params = np.random.default_rng(seed).standard_normal(features * k + k) * 0.01
        grad = np.empty_like(params)
        if k == 1:
            sparse_call = lambda: kernels.csr_glm_loss_grad(X.indptr, X.indices, X.data, y, None, params, grad,
                                                            kernels.LOGISTIC)
            dense_call = lambda: kernels.glm_loss_grad(dense, y, params, grad, kernels.LOGISTIC)
        else:
            sparse_call = lambda: kernels.csr_softmax_loss_grad(X.indptr, X.indices, X.data, y, None, params,
                                                                grad, k)
            dense_call = lambda: kernels.softmax_loss_grad(dense, y, None, params, grad, k)
        sparse_time = measure(sparse_call, repeats=repeats)
        dense_time = measure(dense_call, repeats=repeats)
        del dense
        results.append({
            "rows": rows, "features": features, "density": density, "nnz": X.nnz, "classes": k,
            "dtype": "float64", "kernel": "logistic" if k == 1 else "softmax",
            "csr_median_s": sparse_time.median, "csr_min_s": sparse_time.low, "csr_max_s": sparse_time.high,
            "dense_median_s": dense_time.median, "repeats": repeats,
            "ns_per_nnz": sparse_time.median / max(X.nnz, 1) * 1e9,
            "speedup_vs_dense": dense_time.median / sparse_time.median,
        })
    return results


def table(results: list[dict[str, Any]]) -> str:
    lines = [f"{'density':>8} {'nnz':>11} {'csr ms':>9} {'ns/nnz':>7} {'dense ms':>9} {'csr speedup':>11}"]
    for r in results:
        lines.append(f"{r['density']:>8g} {r['nnz']:>11,} {r['csr_median_s'] * 1e3:>9.2f} {r['ns_per_nnz']:>7.2f} "
                     f"{r['dense_median_s'] * 1e3:>9.2f} {r['speedup_vs_dense']:>10.1f}x")
    return "\n".join(lines)
