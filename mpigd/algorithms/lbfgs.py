"""Data-parallel L-BFGS: every function evaluation is one full pass and one allreduce of
``[gradient..., loss]``; everything else runs identically on every rank.

The two-loop recursion, the line search and the stopping tests use only allreduced values (the
objective and its gradient), so every rank computes the same bits and keeps the same parameters
without exchanging them. An *epoch* of L-BFGS is one iteration: a search direction and a strong
Wolfe line search along it (usually one function evaluation, sometimes a few); the number of
evaluations, each a full data pass, is counted in :attr:`LBFGS.evaluations`.
"""

from __future__ import annotations

import numpy as np

from mpigd.algorithms.linesearch import Trial, strong_wolfe
from mpigd.algorithms.objective import GlobalGradient
from mpigd.errors import DivergedError


def gradient_norm(gradient: np.ndarray) -> float:
    """The Euclidean norm of an allreduced (pseudo-)gradient, the same on every rank. Raises
    :class:`~mpigd.errors.DivergedError` where it overflows, though each entry is finite (features
    of 1e154 and more): the stopping test, ``inf <= tol·inf``, would report convergence at once."""
    with np.errstate(over="ignore"):  # said once by the error, not as a warning on every rank
        norm = float(np.linalg.norm(gradient))
    if not np.isfinite(norm):
        raise DivergedError("the gradient's norm overflows float64, though each of its entries is finite")
    return norm


class History:
    """The last ``memory`` pairs ``s = x_{k+1} − x_k``, ``y = g_{k+1} − g_k``, in float64."""

    def __init__(self, memory: int, n: int) -> None:
        self.s = np.zeros((memory, n))
        self.y = np.zeros((memory, n))
        self.rho = np.zeros(memory)
        self.alpha = np.zeros(memory)
        self.count = 0  # pairs stored so far (the newest is at (count - 1) % memory)

    def push(self, s: np.ndarray, y: np.ndarray) -> bool:
        """Store a pair if its curvature ``s·y`` is positive (else the update would not be
        positive definite); return whether it was stored."""
        curvature = float(s @ y)
        if not curvature > 1e-12 * float(np.sqrt((s @ s) * (y @ y))):
            return False
        slot = self.count % len(self.rho)
        self.s[slot], self.y[slot], self.rho[slot] = s, y, 1.0 / curvature
        self.count += 1
        return True

    def clear(self) -> None:
        self.count = 0

    def apply_inverse(self, g: np.ndarray) -> np.ndarray:
        """``H g`` by the two-loop recursion (Nocedal & Wright, algorithm 7.4), with the initial
        matrix ``(s·y / y·y) I`` from the newest pair; ``g`` itself when there is no history."""
        q = g.copy()
        memory = len(self.rho)
        stored = min(self.count, memory)
        newest = [(self.count - 1 - k) % memory for k in range(stored)]
        for i in newest:
            self.alpha[i] = self.rho[i] * float(self.s[i] @ q)
            q -= self.alpha[i] * self.y[i]
        if stored:
            last = newest[0]
            q *= 1.0 / (self.rho[last] * float(self.y[last] @ self.y[last]))
        for i in reversed(newest):
            beta = self.rho[i] * float(self.y[i] @ q)
            q += (self.alpha[i] - beta) * self.s[i]
        return q


class SmoothObjective:
    """The objective of :class:`GlobalGradient` as a function of float64 parameters ``x``.

    ``params`` (the run's buffer, in the data's dtype) is the evaluation point handed to the
    kernels. Each call is one full pass and one allreduce. Collective.
    """

    def __init__(self, gradient: GlobalGradient, params: np.ndarray) -> None:
        self.gradient, self.params = gradient, params
        self.evaluations = 0

    def __call__(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        self.params[:] = x
        value = self.gradient(self.params, self.gradient.shard.n_global)
        self.evaluations += 1
        return value, self.gradient.grad.astype(np.float64)


class LBFGS:
    """Limited-memory BFGS with a strong Wolfe line search, for every smooth objective.

    Stops (sets :attr:`converged` and :attr:`stop_reason`) when the gradient norm falls to
    ``tol`` times its starting value (``"gradient_tol"``), when the objective changes by at most
    ``tol`` relative to its size (``"tol"``, as gd and sgd say it), or when no step along the
    direction lowers the objective (``"line_search"``).
    """

    name = "lbfgs"

    def __init__(self, gradient: GlobalGradient, memory: int, tol: float) -> None:
        self.gradient, self.tol = gradient, tol
        self.history = History(memory, gradient.model.n_params)
        self.steps = 0
        self.converged, self.stop_reason = False, ""
        self._objective: SmoothObjective | None = None
        self._x = self._value = self._grad = None
        self._grad0_norm = 0.0

    @property
    def evaluations(self) -> int:
        """Function-and-gradient evaluations so far: each one full pass over the data."""
        return self._objective.evaluations if self._objective else 0

    def _start(self, params: np.ndarray) -> None:
        self._objective = SmoothObjective(self.gradient, params)
        self._x = params.astype(np.float64)
        self._value, self._grad = self._objective(self._x)
        self._grad0_norm = gradient_norm(self._grad)

    def run_epoch(self, params: np.ndarray, epoch: int) -> float:
        """One iteration; return the objective at the new parameters (written to ``params``).
        Collective."""
        if self._objective is None:
            self._start(params)
            if self._stop_on_gradient():
                return self._value
        x, value, grad = self._x, self._value, self._grad
        direction = -self.history.apply_inverse(grad)
        slope = float(grad @ direction)
        if not slope < 0.0:  # rounding made H lose definiteness: restart from steepest descent
            self.history.clear()
            direction, slope = -grad, -float(grad @ grad)
        first_step = 1.0 if self.history.count else min(1.0, 1.0 / gradient_norm(grad))

        def phi(step: float) -> Trial:
            point = x + step * direction
            trial_value, trial_grad = self._objective(point)
            return Trial(step, trial_value, float(trial_grad @ direction), (point, trial_grad))

        accepted = strong_wolfe(phi, Trial(0.0, value, slope, None), first_step)
        self.steps += 1
        if accepted is None:
            params[:] = x
            self.converged, self.stop_reason = True, "line_search"
            return value
        point, new_grad = accepted.payload
        self.history.push(point - x, new_grad - grad)
        self._x, self._value, self._grad = point, accepted.value, new_grad
        params[:] = point
        if not self._stop_on_gradient() and abs(value - accepted.value) <= self.tol * max(abs(value), abs(accepted.value)):
            self.converged, self.stop_reason = True, "tol"
        return accepted.value

    def _stop_on_gradient(self) -> bool:
        if gradient_norm(self._grad) <= self.tol * self._grad0_norm:
            self.converged, self.stop_reason = True, "gradient_tol"
        return self.converged
