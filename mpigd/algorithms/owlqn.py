"""OWL-QN (Andrew & Gao 2007, as in Spark MLlib / Breeze): L-BFGS for objectives with an L1 term.

The objective is the smooth part of :class:`GlobalGradient` (mean loss + (l2/2)·‖w‖²) plus
``l1·‖w‖₁`` over the penalised weights. The L1 term has no gradient at zero, so OWL-QN steers by
the *pseudo-gradient* (the steepest-descent direction's negative, one-sided at zero), keeps each
step inside one orthant, and sets to exactly zero every weight that would cross zero. The curvature
pairs are those of the smooth part alone. As with :mod:`mpigd.algorithms.lbfgs`, an epoch is one
iteration and every rank runs the same arithmetic on allreduced values.
"""

from __future__ import annotations

import numpy as np

from mpigd.algorithms.lbfgs import History, SmoothObjective, gradient_norm
from mpigd.algorithms.linesearch import backtracking
from mpigd.algorithms.objective import GlobalGradient


def l1_penalty(params: np.ndarray, n_penalized: int, l1: float) -> float:
    """l1·‖w‖₁, where ``w`` is the first ``n_penalized`` entries of ``params``."""
    return l1 * float(np.abs(params[:n_penalized].astype(np.float64, copy=False)).sum()) if l1 else 0.0


def pseudo_gradient(x: np.ndarray, grad: np.ndarray, n_penalized: int, l1: float) -> np.ndarray:
    """The pseudo-gradient of smooth + l1·‖w‖₁ at ``x``: the gradient where ``|w_i|`` is
    differentiable, and at ``w_i = 0`` the one-sided derivative that points downhill, or 0 when
    neither side does (the weight is optimal at zero)."""
    out = grad.copy()
    w, g = x[:n_penalized], grad[:n_penalized]
    right, left = g + l1, g - l1  # derivatives to the right and to the left of w_i
    at_zero = np.where(right < 0.0, right, np.where(left > 0.0, left, 0.0))
    out[:n_penalized] = np.where(w > 0.0, right, np.where(w < 0.0, left, at_zero))
    return out


class OWLQN:
    """Orthant-wise limited-memory quasi-Newton; stops like :class:`~mpigd.algorithms.lbfgs.LBFGS`
    with the pseudo-gradient's norm in place of the gradient's."""

    name = "owlqn"

    def __init__(self, gradient: GlobalGradient, memory: int, tol: float, l1: float) -> None:
        self.gradient, self.tol, self.l1 = gradient, tol, l1
        self.n_penalized = gradient.model.n_penalized
        self.history = History(memory, gradient.model.n_params)
        self.steps = 0
        self.converged, self.stop_reason = False, ""
        self._objective: SmoothObjective | None = None
        self._x = self._value = self._grad = None
        self._pg0_norm = 0.0

    @property
    def evaluations(self) -> int:
        """Function-and-gradient evaluations so far: each one full pass over the data."""
        return self._objective.evaluations if self._objective else 0

    def _total(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        smooth, grad = self._objective(x)
        return smooth + l1_penalty(x, self.n_penalized, self.l1), grad

    def run_epoch(self, params: np.ndarray, epoch: int) -> float:
        """One iteration; return the whole objective (with the L1 term) at the new parameters.
        Collective."""
        if self._objective is None:
            self._objective = SmoothObjective(self.gradient, params)
            self._x = params.astype(np.float64)
            self._value, self._grad = self._total(self._x)
            self._pg0_norm = gradient_norm(pseudo_gradient(self._x, self._grad, self.n_penalized, self.l1))
        x, value, grad = self._x, self._value, self._grad
        pg = pseudo_gradient(x, grad, self.n_penalized, self.l1)
        if gradient_norm(pg) <= self.tol * self._pg0_norm:
            self.converged, self.stop_reason = True, "gradient_tol"
            return value
        direction = -self.history.apply_inverse(pg)
        direction[direction * pg >= 0.0] = 0.0  # keep only the components that descend
        if not float(direction @ pg) < 0.0:
            self.history.clear()
            direction = -pg
        # The orthant of the step: the sign of x_i, or where x_i = 0 the sign of the descent.
        orthant = np.where(x != 0.0, np.sign(x), -np.sign(pg))
        orthant[self.n_penalized:] = 0.0  # unpenalised entries are free to change sign
        first_step = 1.0 if self.history.count else min(1.0, 1.0 / gradient_norm(pg))

        def phi(step: float):
            point = x + step * direction
            crossed = point[: self.n_penalized] * orthant[: self.n_penalized] <= 0.0
            point[: self.n_penalized][crossed] = 0.0  # exact zeros: the projection onto the orthant
            trial_value, trial_grad = self._total(point)
            return trial_value, float(pg @ (point - x)), (point, trial_grad)

        accepted = backtracking(phi, value, first_step)
        self.steps += 1
        if accepted is None:
            params[:] = x
            self.converged, self.stop_reason = True, "line_search"
            return value
        _, new_value, (point, new_grad) = accepted
        self.history.push(point - x, new_grad - grad)
        self._x, self._value, self._grad = point, new_value, new_grad
        params[:] = point
        if abs(value - new_value) <= self.tol * max(abs(value), abs(new_value)):
            self.converged, self.stop_reason = True, "tol"
        return new_value
