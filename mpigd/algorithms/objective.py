"""The global objective and its gradient over rows spread across ranks, with one allreduce."""

from __future__ import annotations

import math
import time
from typing import Callable

import numpy as np

from mpigd import kernels
from mpigd.data import Shard
from mpigd.guards import clip_norm, finite, nonfinite_error
from mpigd.models import Model
from mpigd.optim import kernel_scalar


class GlobalGradient:
    """Mean loss over a set of rows of all ranks, plus l1·‖w‖₁ + (l2/2)·‖w‖², and the smooth part's gradient.

    Each call runs the model's fused kernel on this rank's rows, then sums gradient and loss
    across ranks in one buffer (``[gradient..., loss]``) with a single allreduce. Collective.
    The L1 term is in the objective's value only: it enters the parameters as a proximal step.

    Each rank tests its local buffer for NaN/Inf before the allreduce (afterwards every rank
    holds the NaN and the culprit is lost); if the reduced buffer is not finite, the ranks agree
    on a :class:`~mpigd.errors.DivergedError` naming the first culprit. With ``clip > 0`` the
    reduced gradient is scaled to a Euclidean norm of at most ``clip`` (times :meth:`reduce`'s
    ``scale``), identically everywhere.
    ``before_reduce`` (test-only fault injection, :mod:`mpigd.faults`) sees the local buffer.

    With a ``raised`` callable (:meth:`carry_flag`; the trainer's preemption and checkpoint
    agreement) one more number rides on the allreduce, 1 where ``raised()`` held on that rank and 0
    elsewhere: :attr:`flag_raised` then tells every rank alike whether any rank raised it in the
    reductions since :meth:`take_flag` last read it, without an allreduce of its own.
    """

    def __init__(self, model: Model, shard: Shard, comm, l2: float, l1: float = 0.0, clip: float = 0.0) -> None:
        self.model, self.shard, self.comm, self.l2, self.l1, self.clip = model, shard, comm, l2, l1, clip
        # [gradient..., loss, flag]: the flag is reduced only while one is carried (see carry_flag).
        self._wire = np.zeros(model.n_params + 2, dtype=shard.dtype)
        self.buffer = self._wire[:-1]
        self.grad = self.buffer[:-1]
        self._reduced, self._raised, self.flag_raised = self.buffer, None, False
        self.largest = float(np.finfo(self.buffer.dtype).max)  # a larger loss counts as Inf
        self._scalar = kernel_scalar(self.buffer.dtype)
        self.compute_seconds = 0.0
        self.reductions = 0  # allreduces of the training buffer (evaluations not counted)
        self.before_reduce = None

    def local(self, params: np.ndarray, rows: np.ndarray | None, grad: np.ndarray) -> float:
        """This rank's summed loss over its rows (all, or the local indices ``rows``); the summed gradient
        goes to ``grad``. No communication. A loss beyond the buffer's dtype is returned as Inf."""
        start = time.perf_counter()
        loss = self.model.loss_grad(self.shard.X, self.shard.y, params, grad, rows)
        self.compute_seconds += time.perf_counter() - start
        # Stored into a float32 buffer, such a loss would become Inf anyway (which reduce() reports
        # as a divergence), but with a NumPy overflow warning printed before the one-line error.
        return loss if abs(loss) <= self.largest else math.inf

    def reduce(self, params: np.ndarray, n_rows: int, scale: float = 1.0) -> float:
        """Sum :attr:`buffer` across ranks, divide by ``n_rows`` and add ``scale`` times the penalty's
        gradient; return the objective. Collective.

        ``scale`` is 1 except in local SGD, where one reduction stands for several steps.
        """
        if self.before_reduce is not None:
            self.before_reduce(self.buffer)
        local_finite = finite(self.buffer)
        if self._raised is not None:
            self._wire[-1] = self.local_flag()
        self.comm.allreduce(self._reduced)
        if self._raised is not None and self._wire[-1]:
            self.flag_raised = True
        self.reductions += 1
        # The mean, the L2 gradient and penalty, and the finiteness test of the result, in one
        # kernel: as NumPy calls they were half of a small model's step.
        l2 = self.l2 * scale
        scalar = self._scalar
        value = kernels.mean_with_l2(self.buffer, scalar(n_rows), params, self.model.n_penalized, scalar(l2), 0.5 * l2)
        if self.l1:
            value += self.l1 * scale * kernels.sum_of_abs(params, self.model.n_penalized)
        # The reduced buffer is the same on every rank, so every rank takes this branch or none.
        if not math.isfinite(value):
            self.comm.agree(None if local_finite else nonfinite_error(self.comm.rank, local=True))
            raise nonfinite_error(self.comm.rank, local=False)
        if self.clip > 0:  # a local SGD round's displacement may move as far as its steps could
            clip_norm(self.grad, self.clip * scale)
        return value

    def carry_flag(self, raised: Callable[[], bool]) -> None:
        """From now on each reduction also sums ``raised()`` of every rank (see the class)."""
        self._raised, self._reduced = raised, self._wire

    def local_flag(self) -> int:
        """This rank's part of the carried flag (:meth:`carry_flag`): 1 where ``raised()`` holds, else 0."""
        return 1 if self._raised is not None and self._raised() else 0

    @property
    def reduced_bytes(self) -> int:
        """Bytes each reduction sums: the buffer, and the flag while one is carried."""
        return self._reduced.nbytes

    def take_flag(self) -> bool:
        """Whether a rank raised the flag in a reduction since the last call (the same on every rank)."""
        raised, self.flag_raised = self.flag_raised, False
        return raised

    def __call__(self, params: np.ndarray, n_rows: int, rows: np.ndarray | None = None) -> float:
        """The objective at ``params`` over ``n_rows`` rows in all (this rank's: all of its rows,
        or the local indices ``rows``); its gradient is left in :attr:`grad`. Collective."""
        self.buffer[-1] = self.local(params, rows, self.grad)
        return self.reduce(params, n_rows)
