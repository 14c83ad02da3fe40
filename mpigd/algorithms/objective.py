"""The global objective and its gradient over rows spread across ranks, with one allreduce."""

from __future__ import annotations

import time

import numpy as np

from mpigd.data import Shard
from mpigd.models import Model
from mpigd.optim import add_l2


class GlobalGradient:
    """Mean loss over a set of rows of all ranks, plus (l2/2)·‖w‖², and its gradient.

    Each call runs the model's fused kernel on this rank's rows, then sums gradient and loss
    across ranks in one buffer (``[gradient..., loss]``) with a single allreduce. Collective.
    """

    def __init__(self, model: Model, shard: Shard, comm, l2: float) -> None:
        self.model, self.shard, self.comm, self.l2 = model, shard, comm, l2
        self.buffer = np.zeros(model.n_params + 1, dtype=shard.X.dtype)
        self.grad = self.buffer[:-1]
        self.compute_seconds = 0.0

    def __call__(self, params: np.ndarray, n_rows: int, rows: np.ndarray | None = None) -> float:
        """The objective at ``params`` over ``n_rows`` rows in all (this rank's: all of its rows,
        or the local indices ``rows``); its gradient is left in :attr:`grad`."""
        start = time.perf_counter()
        self.buffer[-1] = self.model.loss_grad(self.shard.X, self.shard.y, params, self.grad, rows)
        self.compute_seconds += time.perf_counter() - start
        self.comm.allreduce(self.buffer)
        self.buffer /= n_rows
        return float(self.buffer[-1]) + add_l2(params, self.grad, self.model.n_penalized, self.l2)
