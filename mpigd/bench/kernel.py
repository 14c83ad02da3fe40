"""``mpigd bench kernel``: the fused gradient kernels against a streaming read and against NumPy.

Throughput is counted as bytes of ``X`` and ``y`` read per second. The streaming read (a plain
sum of every element) is what memory bandwidth allows one core; NumPy's ``X.T @ (X @ w - y)``
(with the loss, as the kernel computes it) is what a user would write, and reads ``X`` twice.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from mpigd import kernels
from mpigd.bench.timing import measure


def _numpy_squared(X, y, params):
    """The same work as the fused kernel, as a NumPy user writes it: loss and gradient."""
    d = X.shape[1]
    residual = X @ params[:d] + params[d] - y
    return 0.5 * residual @ residual, X.T @ residual, residual.sum()


def _numpy_logistic(X, y, params):
    d = X.shape[1]
    margin = X @ params[:d] + params[d]
    delta = 1.0 / (1.0 + np.exp(-margin)) - y
    return np.sum(np.logaddexp(0.0, margin) - y * margin), X.T @ delta, delta.sum()


def run(rows: int, features: int, dtype: str, repeats: int, seed: int = 0) -> list[dict[str, Any]]:
    """One row per variant: median seconds, GB/s, and ratios to the stream read and to NumPy."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows, features)).astype(dtype)
    y_real = rng.standard_normal(rows).astype(dtype)
    y_label = (y_real > 0).astype(dtype)
    params = (rng.standard_normal(features + 1) / np.sqrt(features)).astype(dtype)
    grad = np.empty_like(params)
    nbytes = X.nbytes + y_real.nbytes

    variants: list[tuple[str, str, Callable[[], object]]] = [
        ("stream read", "-", lambda: kernels.stream_sum(X)),
        ("fused squared", "linear", lambda: kernels.glm_loss_grad(X, y_real, params, grad, kernels.SQUARED)),
        ("numpy squared", "linear", lambda: _numpy_squared(X, y_real, params)),
        ("fused logistic", "logistic", lambda: kernels.glm_loss_grad(X, y_label, params, grad, kernels.LOGISTIC)),
        ("numpy logistic", "logistic", lambda: _numpy_logistic(X, y_label, params)),
    ]
    results = []
    for name, model, call in variants:
        timing = measure(call, repeats=repeats)
        results.append({"variant": name, "model": model, "rows": rows, "features": features, "dtype": dtype,
                        "gb_per_s": nbytes / timing.median / 1e9, **timing.as_dict()})
    stream = results[0]["median_s"]
    by_name = {r["variant"]: r for r in results}
    for r in results:
        r["fraction_of_stream"] = stream / r["median_s"]
        if r["variant"].startswith("fused"):
            r["speedup_vs_numpy"] = by_name["numpy " + r["variant"].split()[1]]["median_s"] / r["median_s"]
    return results


def table(results: list[dict[str, Any]]) -> str:
    lines = [f"{'variant':<16} {'dtype':<8} {'median ms':>10} {'GB/s':>7} {'of stream':>9} {'vs numpy':>9}"]
    for r in results:
        speedup = f"{r['speedup_vs_numpy']:.2f}x" if "speedup_vs_numpy" in r else "-"
        lines.append(f"{r['variant']:<16} {r['dtype']:<8} {r['median_s'] * 1e3:>10.2f} {r['gb_per_s']:>7.2f} "
                     f"{r['fraction_of_stream']:>9.2f} {speedup:>9}")
    return "\n".join(lines)
