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

import numpy as np

from mpigd import kernels
from mpigd.schedules import Schedule, make_schedule

__all__ = ["Adam", "Momentum", "Nesterov", "OPTIMIZERS", "SGD", "Schedule", "add_l2", "apply_l1",
           "l2_penalty", "make_optimizer", "make_schedule", "penalty"]


def l2_penalty(params: np.ndarray, n_penalized: int, l2: float) -> float:
    """(l2/2)·‖w‖², where ``w`` is the first ``n_penalized`` entries of ``params``."""
    weights = params[:n_penalized].astype(np.float64, copy=False)
    return 0.5 * l2 * float(weights @ weights)


def penalty(params: np.ndarray, n_penalized: int, l1: float, l2: float) -> float:
    """l1·‖w‖₁ + (l2/2)·‖w‖²: the regularisation term of the objective."""
    value = l2_penalty(params, n_penalized, l2) if l2 else 0.0
    if l1:
        value += l1 * float(np.abs(params[:n_penalized].astype(np.float64, copy=False)).sum())
    return value


def add_l2(params: np.ndarray, grad: np.ndarray, n_penalized: int, l2: float) -> float:
    """Add the gradient of (l2/2)·‖w‖² to ``grad`` in place and return the penalty's value.

    ``w`` is the first ``n_penalized`` entries of ``params``: intercepts are not penalised.
    """
    if l2 == 0.0:
        return 0.0
    grad[:n_penalized] += l2 * params[:n_penalized]
    return l2_penalty(params, n_penalized, l2)


def apply_l1(params: np.ndarray, n_penalized: int, threshold: float) -> None:
    """The proximal step of ``threshold``·‖w‖₁: soft-threshold the weights in place (``lr·l1`` after a
    step of size ``lr``)."""
    if threshold > 0.0:
        kernels.soft_threshold(params[:n_penalized], threshold)


class SGD:
    """Plain (stochastic) gradient descent: ``params -= lr * grad``."""

    name = "sgd"

    def __init__(self, n_params: int, dtype: np.dtype) -> None:
        self._step = np.empty(n_params, dtype=dtype)

    def step(self, params: np.ndarray, grad: np.ndarray, lr: float) -> None:
        np.multiply(grad, lr, out=self._step)
        params -= self._step

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

    def __init__(self, n_params: int, dtype: np.dtype, momentum: float = 0.9) -> None:
        super().__init__(n_params, dtype)
        self.momentum = momentum
        self.velocity = np.zeros(n_params, dtype=dtype)

    def step(self, params: np.ndarray, grad: np.ndarray, lr: float) -> None:
        self.velocity *= self.momentum
        self.velocity += grad
        np.multiply(self._direction(grad), lr, out=self._step)
        params -= self._step

    def _direction(self, grad: np.ndarray) -> np.ndarray:
        return self.velocity

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"velocity": self.velocity}


class Nesterov(Momentum):
    """Nesterov momentum in the form PyTorch and Keras use: ``v = mu·v + grad; params -= lr·(grad + mu·v)``."""

    name = "nesterov"

    def _direction(self, grad: np.ndarray) -> np.ndarray:
        np.multiply(self.velocity, self.momentum, out=self._step)
        self._step += grad
        return self._step


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
        self._scratch = np.empty(n_params, dtype=dtype)

    def step(self, params: np.ndarray, grad: np.ndarray, lr: float) -> None:
        self.t += 1
        t = int(self.t[0])
        self.m *= self.beta1
        np.multiply(grad, 1.0 - self.beta1, out=self._scratch)
        self.m += self._scratch
        np.multiply(grad, grad, out=self._scratch)
        self._scratch *= 1.0 - self.beta2
        self.v *= self.beta2
        self.v += self._scratch
        # The bias corrections fold into the step size and epsilon: no extra pass over the arrays.
        rate = lr * np.sqrt(1.0 - self.beta2**t) / (1.0 - self.beta1**t)
        np.sqrt(self.v, out=self._scratch)
        self._scratch += self.eps * np.sqrt(1.0 - self.beta2**t)
        np.divide(self.m, self._scratch, out=self._step)
        self._step *= rate
        params -= self._step

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"m": self.m, "v": self.v, "t": self.t}


OPTIMIZERS = {cls.name: cls for cls in (SGD, Momentum, Nesterov, Adam)}


def make_optimizer(name: str, n_params: int, dtype: np.dtype, momentum: float = 0.9) -> SGD:
    """The optimizer called ``name`` for a parameter buffer of ``n_params`` entries."""
    if name in ("momentum", "nesterov"):
        return OPTIMIZERS[name](n_params, dtype, momentum)
    return OPTIMIZERS[name](n_params, dtype)
