"""Exact (ridge) linear regression by the normal equations: one pass, one allreduce, one solve.

Each rank builds the Gram matrix of its augmented rows ``[x, 1, y]`` (:mod:`mpigd.kernels.gram`),
the ranks sum it in one allreduce of ``(d + 2)²`` float64 values (XᵀX, Xᵀ1, Xᵀy, n, Σy, yᵀy), and
rank 0 solves ``(AᵀA + n·l2·D) θ = Aᵀy`` (A = [X, 1], D the identity on the weights, zero on the
intercept) by Cholesky and broadcasts θ, so every rank holds the same bits.
"""

from __future__ import annotations

import os
import time

import numpy as np

from mpigd import kernels
from mpigd.algorithms.objective import GlobalGradient
from mpigd.errors import MpigdError, UsageError

WORKING_COPIES = 4  # the Gram matrix, its padded accumulator, the allreduce buffer, the factor
MEMORY_FRACTION = 0.5  # refuse when those copies would need more than this share of free memory
# A pivot of the unit-diagonal system's Cholesky factor below this (a condition number past
# ~1e14) is collinearity: a duplicated column left 1e-8, independent features stay near 1.
SINGULAR_PIVOT = 1e-6


def available_memory() -> int | None:
    """Bytes of physical memory free now (``os.sysconf``), or ``None`` where unknown."""
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def memory_problem(n_features: int, available: int | None = None) -> MpigdError | None:
    """Why the normal equations of ``n_features`` features do not fit in memory, or ``None``."""
    available = available_memory() if available is None else available
    needed = WORKING_COPIES * (n_features + 5) ** 2 * 8
    if available is None or needed <= MEMORY_FRACTION * available:
        return None
    return UsageError(
        f"algo normal needs {n_features + 2}x{n_features + 2} float64 matrices for {n_features} features: "
        f"about {needed / 1e9:.1f} GB with working copies, more than {MEMORY_FRACTION:.0%} of the "
        f"{available / 1e9:.1f} GB of free memory; use --algo lbfgs"
    )


def solve(gram: np.ndarray, l2: float) -> tuple[np.ndarray, float]:
    """The parameters ``[w, b]`` and the objective from the summed augmented Gram matrix.

    Cholesky when the system is positive definite; a least-squares (minimum-norm) solution when
    it is singular (collinear features and l2 = 0). The system is first scaled to a unit diagonal,
    so that singular means collinear, not badly scaled: a feature a million times smaller than
    the others is solved for, while a duplicated column, whose Cholesky factor rounding often
    lets through with a pivot of ~1e-8, gets the minimum-norm split (as gd and lbfgs find it), as
    do all other collinear columns (see :func:`_without_null_part`).
    """
    import scipy.linalg  # imported here: only this solver needs SciPy, and it costs start-up time

    m = gram.shape[0] - 1  # d + 1 parameters
    n = gram[m - 1, m - 1]
    system = gram[:m, :m].copy()
    rhs = gram[:m, m].copy()
    system[np.arange(m - 1), np.arange(m - 1)] += n * l2
    unit = np.sqrt(np.diag(system))
    unit[unit == 0.0] = 1.0  # an all-zero feature: its weight stays 0
    scaled = system / np.outer(unit, unit)
    try:
        factor = scipy.linalg.cho_factor(scaled, lower=False, check_finite=False)
        if np.abs(np.diag(factor[0])).min() < SINGULAR_PIVOT:
            raise np.linalg.LinAlgError("numerically singular")
        theta = scipy.linalg.cho_solve(factor, rhs / unit, check_finite=False) / unit
    except np.linalg.LinAlgError:
        theta = scipy.linalg.lstsq(scaled, rhs / unit, cond=SINGULAR_PIVOT**2, check_finite=False)[0] / unit
        theta = _without_null_part(theta, scaled, unit)
    # mean ½(Aθ − y)² + (l2/2)‖w‖² = (θᵀ(AᵀA + n·l2·D)θ − 2θᵀAᵀy + yᵀy) / 2n
    objective = (theta @ system @ theta - 2.0 * theta @ rhs + gram[m, m]) / (2.0 * n)
    return theta, float(objective)


def _without_null_part(theta: np.ndarray, scaled: np.ndarray, unit: np.ndarray) -> np.ndarray:
    """``theta`` less its part in the null space of the unscaled system: the minimum-norm solution.

    Least squares on the unit-diagonal system minimises the *scaled* norm, which is the plain
    one only when the collinear columns have one scale (a duplicated column); a constant column
    beside the intercept, or a copy scaled by 1000, came out up to 0.3 from the minimum-norm
    parameters gd and lbfgs find. The null space is the scaled system's (its eigenvalues below
    lstsq's cut-off), mapped back; removing it changes no prediction and no loss.
    """
    values, vectors = np.linalg.eigh(scaled)
    null = vectors[:, values <= SINGULAR_PIVOT**2 * values.max()] / unit[:, None]
    if not null.shape[1]:
        return theta
    basis = np.linalg.qr(null)[0]
    return theta - basis @ (basis.T @ theta)


class NormalEquations:
    """The whole fit in the first epoch; it then reports convergence and the trainer stops."""

    name = "normal"

    def __init__(self, gradient: GlobalGradient, l2: float) -> None:
        self.gradient, self.comm, self.l2 = gradient, gradient.comm, l2
        self.steps = self.evaluations = 0
        self.converged, self.stop_reason = False, ""
        self.value = float("nan")
        d = gradient.model.n_features
        self.gram = np.zeros((d + 2, d + 2))  # also the allreduce buffer: one contiguous block
        # What the summary reports as the training's reductions: the Gram matrix, once.
        self.reduced_bytes_per_step, self.reduced_bytes = self.gram.nbytes, 0

    def run_epoch(self, params: np.ndarray, epoch: int) -> float:
        """Build, sum and solve the normal equations; return the objective. Collective."""
        if self.converged:
            return self.value
        shard = self.gradient.shard
        start = time.perf_counter()
        if shard.sparse:
            X = shard.X
            kernels.gram_csr(X.indptr, X.indices, X.data, shard.y, self.gram)
        else:
            kernels.gram_default(shard.X, shard.y, self.gram)
        self.gradient.compute_seconds += time.perf_counter() - start
        self.comm.allreduce(self.gram)
        result = np.empty(params.size + 1)
        if self.comm.rank == 0:
            theta, value = solve(self.gram, self.l2)
            result[:-1], result[-1] = theta, value
        self.comm.broadcast(result)
        params[:] = result[:-1]
        self.value = float(result[-1])
        self.steps, self.evaluations = 1, 1
        self.reduced_bytes = self.gram.nbytes
        self.converged, self.stop_reason = True, "solved"
        return self.value
