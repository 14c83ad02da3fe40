"""Objective and metrics over every row of every rank, from allreduced sums."""

from __future__ import annotations

import numpy as np

from mpigd.data import Shard
from mpigd.models import Model
from mpigd.optim import penalty


def evaluate(model: Model, shard: Shard, params: np.ndarray, comm, l2: float = 0.0, l1: float = 0.0,
             penalized: bool = True) -> dict[str, object]:
    """``loss`` (the objective, or with ``penalized=False`` the mean loss alone) and the model's
    metrics over every row of ``shard`` on every rank. Collective."""
    stats = np.zeros(model.n_eval_stats)
    n = max(shard.n_global, 1)
    shift = {}
    if model.task == "regression":
        # r2's spread is summed about the targets' global mean: about 0 it loses every digit
        # when the mean is large next to the spread (see metrics.regression_stats).
        total = np.array([np.sum(shard.y, dtype=np.float64)])
        comm.allreduce(total)
        shift = {"target_shift": float(total[0]) / n}
    # Parameters that ran away overflow the sums: the loss is then Inf, which the trainer reports
    # as a divergence, without NumPy's warnings before it.
    with np.errstate(over="ignore", invalid="ignore"):
        model.eval_stats(shard.X, shard.y, params, stats, **shift)
    comm.allreduce(stats)
    extra = penalty(params, model.n_penalized, l1, l2) if penalized else 0.0
    return {"loss": float(stats[0]) / n + extra, **model.metrics(stats, shard.n_global)}


def flat(prefix: str, metrics: dict[str, object]) -> dict[str, object]:
    """``metrics`` with each key prefixed (``test_accuracy``), for one line of ``metrics.jsonl``."""
    return {f"{prefix}{key}": value for key, value in metrics.items()}
