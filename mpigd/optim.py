"""Optimizers (SGD, momentum, Nesterov, Adam) and regularisation: L2 in the gradient, L1 as a proximal step.

The objective is ``mean loss + l1·‖w‖₁ + (l2/2)·‖w‖²`` where ``w`` is the first ``n_penalized``
entries of the parameter buffer (intercepts and biases are not penalised). The smooth part
(loss and L2) enters the gradient; the L1 part is applied after each step by soft-thresholding
(proximal gradient), which gives exact zeros.

Every optimizer is deterministic and is fed the same (allreduced) gradient on every rank, so its
state is identical everywhere without communication. ``state_dict()`` returns plain arrays (no
pickle) that ``load_state_dict()`` takes back, bit for bit.
"""

from __future__ import annotations

import math

import numpy as np

from mpigd import kernels
from mpigd.schedules import Schedule, make_schedule

__all__ = ["Adam", "Momentum", "Nesterov", "OPTIMIZERS", "SGD", "Schedule", "apply_l1", "kernel_scalar",
           "l2_penalty", "make_optimizer", "make_schedule", "penalty"]


def kernel_scalar(dtype: np.dtype) -> type:
    """What turns a Python number into a kernel argument computed with in ``dtype``, as NumPy
    computes a Python float with an array of that dtype: ``float`` for float64 (a Python float
    reaches a Numba kernel in half the time of a NumPy scalar, 0.3 against 0.5 us), else the
    dtype's scalar type."""
    return float if np.dtype(dtype) == np.float64 else np.dtype(dtype).type


def l2_penalty(params: np.ndarray, n_penalized: int, l2: float) -> float:
    """(l2/2)·‖w‖², where ``w`` is the first ``n_penalized`` entries of ``params`` (the bits of
    the training objective's term: :func:`mpigd.kernels.mean_with_l2`)."""
    return 0.5 * l2 * kernels.sum_of_squares(params, n_penalized)


def penalty(params: np.ndarray, n_penalized: int, l1: float, l2: float) -> float:
    """l1·‖w‖₁ + (l2/2)·‖w‖²: the regularisation term of the objective."""
    value = l2_penalty(params, n_penalized, l2) if l2 else 0.0
    if l1:
        value += l1 * kernels.sum_of_abs(params, n_penalized)
    return value


def apply_l1(params: np.ndarray, n_penalized: int, threshold: float) -> None:
    """The proximal step of ``threshold``·‖w‖₁: soft-threshold the weights in place (``lr·l1`` after a
    step of size ``lr``)."""
    if threshold > 0.0:
        kernels.soft_threshold(params[:n_penalized], threshold)


class SGD:
    """Plain (stochastic) gradient descent: ``params -= lr * grad``.

    Each optimizer's update is one kernel (:mod:`mpigd.kernels.update`): the NumPy expressions
    it replaced cost a microsecond of dispatch each, most of a small model's step.
    """

    name = "sgd"

    def __init__(self, n_params: int, dtype: np.dtype) -> None:
        self.dtype = np.dtype(dtype)
        self._scalar = kernel_scalar(dtype)

    def step(self, params: np.ndarray, grad: np.ndarray, lr: float) -> None:
        kernels.sgd_step(params, grad, self._scalar(lr))

    def state_dict(self) -> dict[str, np.ndarray]:
        """The optimizer's state as named arrays (empty for plain SGD)."""
        return {}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`state_dict` returned."""
        for name, value in self.state_dict().items():
            if name not in state or np.shape(state[name]) != value.shape:
                raise ValueError(f"{self.name} optimizer state: {name!r} missing or of the wrong shape")
            value[...] = state[name]


class Momentum(SGD):
    """Heavy-ball momentum: ``v = mu·v + grad; params -= lr·v``."""

    name = "momentum"
    nesterov = False

    def __init__(self, n_params: int, dtype: np.dtype, momentum: float = 0.9) -> None:
        super().__init__(n_params, dtype)
        self.momentum = momentum
        self.velocity = np.zeros(n_params, dtype=dtype)

    def step(self, params: np.ndarray, grad: np.ndarray, lr: float) -> None:
        scalar = self._scalar
        kernels.momentum_step(params, grad, self.velocity, scalar(self.momentum), scalar(lr), self.nesterov)

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"velocity": self.velocity}


class Nesterov(Momentum):
    """Nesterov momentum in the form PyTorch and Keras use: ``v = mu·v + grad; params -= lr·(grad + mu·v)``."""

    name = "nesterov"
    nesterov = True


class Adam(SGD):
    """Adam (Kingma & Ba) with bias correction; ``t`` counts the steps taken."""

    name = "adam"

    def __init__(self, n_params: int, dtype: np.dtype, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8) -> None:
        super().__init__(n_params, dtype)
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        self.m = np.zeros(n_params, dtype=dtype)
        self.v = np.zeros(n_params, dtype=dtype)
        self.t = np.zeros(1, dtype=np.int64)
        self._denominator = np.empty(n_params, dtype=dtype)
        scalar = self._scalar
        self._decays = (scalar(1.0 - beta1), scalar(1.0 - beta2), scalar(beta1), scalar(beta2))

    def step(self, params: np.ndarray, grad: np.ndarray, lr: float) -> None:
        self.t[0] += 1
        t = int(self.t[0])
        # The bias corrections fold into the step size and epsilon: no extra pass over the arrays.
        correction = math.sqrt(1.0 - self.beta2**t)
        rate = lr * correction / (1.0 - self.beta1**t)
        kernels.adam_step(params, grad, self.m, self.v, *self._decays, rate, self.eps * correction,
                          self._denominator)

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"m": self.m, "v": self.v, "t": self.t}


OPTIMIZERS = {cls.name: cls for cls in (SGD, Momentum, Nesterov, Adam)}


def make_optimizer(name: str, n_params: int, dtype: np.dtype, momentum: float = 0.9) -> SGD:
    """The optimizer called ``name`` for a parameter buffer of ``n_params`` entries."""
    if name in ("momentum", "nesterov"):
        return OPTIMIZERS[name](n_params, dtype, momentum)
    return OPTIMIZERS[name](n_params, dtype)
