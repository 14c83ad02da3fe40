"""Algorithms decide when gradients (or parameters) are computed and reduced; they get a communicator."""

from __future__ import annotations

import numpy as np

from mpigd.algorithms.gd import GradientDescent
from mpigd.algorithms.objective import GlobalGradient
from mpigd.algorithms.sgd import MiniBatchSGD
from mpigd.config import Config
from mpigd.errors import UsageError
from mpigd.optim import SGD

__all__ = ["GlobalGradient", "GradientDescent", "MiniBatchSGD", "REGISTRY", "make_algorithm"]

REGISTRY = {cls.name: cls for cls in (GradientDescent, MiniBatchSGD)}


def make_algorithm(config: Config, model, shard, comm):
    """The algorithm ``config.algo`` over ``shard``, with plain SGD updates."""
    gradient = GlobalGradient(model, shard, comm, config.l2, config.clip_grad_norm)
    optimizer = SGD(model.n_params, shard.X.dtype)
    if config.algo == "gd":
        return GradientDescent(gradient, optimizer, config.lr)
    if config.batch_size < comm.size:
        raise UsageError(f"batch_size ({config.batch_size}) must be at least the rank count ({comm.size})")
    rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(2, comm.rank)))
    return MiniBatchSGD(gradient, optimizer, config.lr, config.batch_size, rng, comm.size)
