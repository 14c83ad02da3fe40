"""Algorithms decide when gradients (or parameters) are computed and reduced; they get a communicator."""

from __future__ import annotations

import numpy as np

from mpigd.algorithms.gd import GradientDescent
from mpigd.algorithms.lbfgs import LBFGS
from mpigd.algorithms.normal import NormalEquations, memory_problem
from mpigd.algorithms.objective import GlobalGradient
from mpigd.algorithms.owlqn import OWLQN
from mpigd.algorithms.sgd import MiniBatchSGD
from mpigd.config import Config
from mpigd.errors import UsageError
from mpigd.optim import SGD

__all__ = ["GlobalGradient", "GradientDescent", "LBFGS", "MiniBatchSGD", "NormalEquations", "OWLQN", "REGISTRY",
           "make_algorithm"]

REGISTRY = {cls.name: cls for cls in (GradientDescent, MiniBatchSGD, LBFGS, OWLQN, NormalEquations)}


def make_algorithm(config: Config, model, shard, comm):
    """The algorithm ``config.algo`` over ``shard`` (gd and sgd with plain SGD updates).

    Collective: a problem found on any rank (the normal equations too large for one rank's
    memory) is raised on every rank.
    """
    gradient = GlobalGradient(model, shard, comm, config.l2)
    if config.algo == "lbfgs":
        return LBFGS(gradient, config.memory, config.stopping_tol())
    if config.algo == "owlqn":
        return OWLQN(gradient, config.memory, config.stopping_tol(), config.l1)
    if config.algo == "normal":
        comm.agree(memory_problem(model.n_features))
        return NormalEquations(gradient, config.l2)
    optimizer = SGD(model.n_params, shard.X.dtype)
    if config.algo == "gd":
        return GradientDescent(gradient, optimizer, config.lr)
    if config.batch_size < comm.size:
        raise UsageError(f"batch_size ({config.batch_size}) must be at least the rank count ({comm.size})")
    rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(2, comm.rank)))
    return MiniBatchSGD(gradient, optimizer, config.lr, config.batch_size, rng, comm.size)
