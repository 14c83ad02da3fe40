"""Local SGD (model averaging): ``H`` SGD steps on each rank's own rows, then one average of the parameters.

The batches are those of :class:`~mpigd.algorithms.sgd.MiniBatchSGD` (same shuffles, same slices),
grouped into rounds of ``H = local_steps`` consecutive steps (the last round of an epoch may be
shorter). Within a round rank ``r`` moves its own copy ``u_r`` of the parameters, starting from
the shared ``w``, with plain SGD steps at the round's learning rate ``lr``::

    u_r ← u_r − lr · (P · g_r / B_h + l2 · u_r)

where ``g_r`` is the summed gradient of its slice of step ``h``'s global batch of ``B_h`` rows
and ``P`` the rank count (``P · g_r / B_h`` is the local mean gradient when slices are equal).
The round ends with the average of the ranks' parameters, ``w ← (1/P) Σ_r u_r``.

That average is computed in *displacement form*: ``w`` is the same on every rank, so
``(1/P) Σ_r u_r = w − lr · (Σ_r A_r / B_0 + H · l2 · w)``, where each rank's ``A_r`` sums its
gradients (``g_r`` of step ``h`` scaled by ``B_0 / B_h``) and an L2 correction for the moved
copies. One allreduce of ``[A_r..., loss]`` (sum, then divide by ``B_0``) does it, and the
update is then the synchronous one. With ``H = 1`` nothing moves before the reduction, the
scale factors are exactly 1 and the correction is absent, so a round executes operation for
operation what one step of synchronous SGD executes: the results are bitwise identical.

With an optimizer other than plain SGD the averaged displacement is handed to it as a
gradient (an outer optimizer, as in FedOpt/SlowMo); with L1, the proximal step of the whole
round (threshold ``H · lr · l1``) follows the average. Each round moves one buffer of
``n_params + 1`` numbers (``+ 2`` with the trainer's preemption flag on several ranks): ``H`` times
fewer bytes than synchronous SGD.

A local step's arithmetic after the model's gradient is one kernel (``kernels.local_sgd_step``);
a model whose ``local_round(X)`` names a round kernel (every model, dense or CSR rows) takes
steps 1 to ``H - 1`` of a round in one call (``kernels/local_round.py``).
Both do the NumPy operations they replaced, in the same order and dtype: the same bits.

On CSR rows of a linear or logistic model whose steps touch fewer than
:data:`~mpigd.algorithms.chunked.LAZY_BELOW` of the weights, the copy is kept as a scale times a
vector instead (:func:`~mpigd.kernels.csr_glm_lazy_local_steps`): a local step costs its
non-zeros, not the features. That kernel moves the copy to ``u_r^H`` and leaves the round's
corrected sum as ``A_r = (B_0/P)·((w − u_r^H)/lr − H·l2·w)``, from which the same reduction and
update give the average: the same rounds to rounding, not bit for bit. Each round is one call,
so a run repeats its bits and a resumed run ends on the uninterrupted one's.
"""

from __future__ import annotations

import time

import numpy as np

from mpigd import kernels
from mpigd.algorithms.chunked import sparse_steps_plan
from mpigd.algorithms.objective import GlobalGradient
from mpigd.algorithms.sgd import MiniBatchSGD
from mpigd.algorithms.update import Update
from mpigd.optim import kernel_scalar


class LocalSGD(MiniBatchSGD):
    """Model averaging every ``local_steps`` steps; see the module's documentation. Collective."""

    name = "local-sgd"

    def __init__(self, gradient: GlobalGradient, update: Update, batch_size: int, rng: np.random.Generator,
                 size: int, local_steps: int) -> None:
        super().__init__(gradient, update, batch_size, rng, size)
        self.local_steps, self.size = local_steps, size
        self.reduction_steps = 1  # the steps the coming reduction stands for: the current round's
        n, dtype = gradient.model.n_params, gradient.buffer.dtype
        self.copy = np.empty(n, dtype=dtype)  # u_r, this rank's moving copy of the parameters
        self.step_grad = np.empty(n, dtype=dtype)
        self._scalar = kernel_scalar(dtype)
        self.drift = np.zeros(n, dtype=dtype)  # Σ_h (w − u_r^h): what the L2 correction needs
        # A round's later steps are one kernel call (kernels/local_round.py).
        local_round = getattr(gradient.model, "local_round", None)
        self._round_kernel = local_round(gradient.shard.X) if local_round is not None else None
        self._round_scalars = np.empty(2, dtype=dtype)
        # A GLM's copy on wide CSR rows as a scale times a vector (kernels/lazy_sgd.py).
        plan = None
        if self._round_kernel is not None and self._round_kernel[0] is kernels.csr_glm_local_steps:
            plan = sparse_steps_plan(gradient, self.bounds)
        self._slopes = np.empty(plan[0]) if plan is not None else None

    def _advance(self, params: np.ndarray, order: np.ndarray, step: int) -> int:
        """One round from step ``step``: up to ``local_steps`` steps, ending at the epoch's end."""
        length = min(self.local_steps, self.steps_per_epoch - step)
        self.reduction_steps = length
        self._total += self._round(params, order, step, length)
        return length

    def _round(self, params: np.ndarray, order: np.ndarray, first: int, length: int) -> float:
        """The round's steps; returns the sum of their mini-batch objectives (one reduction)."""
        gradient, lr = self.gradient, self.update.rate()
        # The scale must stay positive, and the lazy round divides by the rate.
        if length > 1 and self._slopes is not None and lr > 0 and lr * gradient.l2 < 1:
            self._lazy_round(params, order, first, length, lr)
        else:
            self._exact_round(params, order, first, length, lr)
        value = gradient.reduce(params, self._batch_rows[first], float(length))
        self.update(params, gradient.grad, lr, length)
        return value

    def _exact_round(self, params: np.ndarray, order: np.ndarray, first: int, length: int, lr: float) -> None:
        """The round's steps as the module describes them, leaving ``[A_r..., loss]`` in the buffer."""
        gradient, model, scalar = self.gradient, self.gradient.model, self._scalar
        accumulated, l2, n_penalized = gradient.grad, gradient.l2, model.n_penalized
        first_rows = self._batch_rows[first]
        # Step 0 is evaluated at the shared parameters, exactly as synchronous SGD does.
        gradient.buffer[-1] = gradient.local(params, self.batch(order, first), accumulated)
        if length > 1 and self._round_kernel is not None:
            self._fused_steps(params, order, first, length, lr)
        elif length > 1:
            # Each local step's arithmetic after the model's kernel is one kernel: as NumPy calls
            # (the same operations, in the same order) it took longer than a small model's gradient.
            kernels.local_sgd_start(self.copy, self.drift, params, accumulated, scalar(self.size / first_rows),
                                    scalar(l2), n_penalized, scalar(lr))
            for h in range(1, length):
                rows = self._batch_rows[first + h]
                loss = gradient.local(self.copy, self.batch(order, first + h), self.step_grad)
                factor = first_rows / rows
                kernels.local_sgd_step(self.copy, self.drift, params, accumulated, self.step_grad, scalar(factor),
                                       h < length - 1, scalar(self.size / rows), scalar(l2), n_penalized, scalar(lr))
                gradient.buffer[-1] += factor * loss
        if length > 1 and l2:
            accumulated[:n_penalized] -= (first_rows * l2 / self.size) * self.drift[:n_penalized]

    def _fused_steps(self, params: np.ndarray, order: np.ndarray, first: int, length: int, lr: float) -> None:
        """Steps 1 to ``length - 1`` of the round in one kernel call: the operations of the loop in
        :meth:`_round`, in its order (the same bits), without the Python between them."""
        gradient, scalar = self.gradient, self._scalar
        kernel, rows, model_arguments = self._round_kernel
        start = time.perf_counter()
        kernel(*rows, gradient.shard.y, order, self.bounds, self.batch_rows, first, length, params,
               self.copy, self.drift, gradient.buffer, self.step_grad, self.size, scalar(gradient.l2),
               gradient.model.n_penalized, scalar(lr), gradient.largest, self._round_scalars, *model_arguments)
        gradient.compute_seconds += time.perf_counter() - start

    def _lazy_round(self, params: np.ndarray, order: np.ndarray, first: int, length: int, lr: float) -> None:
        """The round's steps with the copy as a scale times a vector
        (:func:`~mpigd.kernels.csr_glm_lazy_local_steps`): the same steps to rounding, at the cost
        of their non-zeros."""
        gradient = self.gradient
        _, rows, model_arguments = self._round_kernel
        start = time.perf_counter()
        kernels.csr_glm_lazy_local_steps(*rows, gradient.shard.y, order, self.bounds, self.batch_rows, first, length,
                                         params, self.copy, gradient.buffer, self.size, gradient.l2, lr,
                                         gradient.largest, self._slopes, *model_arguments)
        gradient.compute_seconds += time.perf_counter() - start
