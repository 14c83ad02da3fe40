"""Algorithms decide when gradients (or parameters) are computed and reduced; they get a communicator."""

from __future__ import annotations

import numpy as np

from mpigd.algorithms.gd import GradientDescent
from mpigd.algorithms.lbfgs import LBFGS
from mpigd.algorithms.local_sgd import LocalSGD
from mpigd.algorithms.normal import NormalEquations, memory_problem
from mpigd.algorithms.objective import GlobalGradient
from mpigd.algorithms.owlqn import OWLQN
from mpigd.algorithms.sgd import MiniBatchSGD
from mpigd.algorithms.update import Update
from mpigd.config import SOLVERS, Config
from mpigd.errors import UsageError
from mpigd.optim import make_optimizer, make_schedule

__all__ = ["GlobalGradient", "GradientDescent", "LBFGS", "LocalSGD", "MiniBatchSGD", "NormalEquations", "OWLQN",
           "REGISTRY", "Update", "make_algorithm"]

REGISTRY = {cls.name: cls for cls in (GradientDescent, MiniBatchSGD, LocalSGD, LBFGS, OWLQN, NormalEquations)}


def make_algorithm(config: Config, model, shard, comm):
    """The algorithm ``config.algo`` over ``shard``: the first-order ones with ``config.optimizer``
    and its schedule, the solvers (lbfgs, owlqn, normal) with their own steps.

    Collective: a problem found on any rank (the normal equations too large for one rank's
    memory) is raised on every rank.
    """
    # A solver's line search needs the true gradient: clipping is for the first-order steps.
    clip = 0.0 if config.algo in SOLVERS else config.clip_grad_norm
    gradient = GlobalGradient(model, shard, comm, config.l2, config.l1, clip)
    if config.algo == "lbfgs":
        return LBFGS(gradient, config.memory, config.stopping_tol())
    if config.algo == "owlqn":
        # OWL-QN handles the L1 term itself: the gradient it evaluates is the smooth part's.
        gradient.l1 = 0.0
        return OWLQN(gradient, config.memory, config.stopping_tol(), config.l1)
    if config.algo == "normal":
        comm.agree(memory_problem(model.n_features))
        return NormalEquations(gradient, config.l2)
    optimizer = make_optimizer(config.optimizer, model.n_params, shard.dtype, config.momentum)
    if config.algo == "gd":
        steps_per_epoch = 1
    else:
        if config.batch_size < comm.size:
            raise UsageError(f"`batch_size` ({config.batch_size}) must be at least the rank count ({comm.size})")
        steps_per_epoch = -(-shard.n_global // config.batch_size)
    update = Update(optimizer, make_schedule(config, config.epochs * steps_per_epoch), config.l1, model.n_penalized)
    if config.algo == "gd":
        return GradientDescent(gradient, update)
    # The same generator for sgd and local-sgd: the same shuffles, so H = 1 reproduces sgd exactly.
    rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(2, comm.rank)))
    if config.algo == "local-sgd":
        return LocalSGD(gradient, update, config.batch_size, rng, comm.size, config.local_steps)
    return MiniBatchSGD(gradient, update, config.batch_size, rng, comm.size, config.checkpoint_every)
