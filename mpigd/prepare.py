"""Before the first step: read the data, split off held-out rows, agree on the classes, build the model.

Shared by training and by ``mpigd predict`` / ``mpigd evaluate``. Every decision that could
differ between ranks (the number of classes, whether the labels fit) is taken from reduced
values or agreed with :meth:`~mpigd.comm.Communicator.agree`, so all ranks go on or stop together.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mpigd.config import Config
from mpigd.data import Shard, load_shard
from mpigd.data.holdout import split
from mpigd.errors import InputError
from mpigd.models import Model, make_model


@dataclass
class Prepared:
    """The training rows, the held-out rows (or ``None``) and the model, on this rank."""

    shard: Shard
    test: Shard | None
    model: Model


def infer_classes(shards: list[Shard], comm) -> int:
    """The largest label over every rank's rows, plus one. Collective."""
    top = np.array([max((float(s.y.max()) for s in shards if s.n_local), default=0.0)])
    comm.allreduce_max(top)
    return int(top[0]) + 1


def check(model: Model, shards: list[Shard], comm) -> None:
    """Raise one :class:`InputError` on every rank if any rank's rows do not fit ``model``. Collective."""
    problem = None
    for shard in shards:
        input_check = getattr(model, "check_input", None)
        reason = (input_check(shard.X) if input_check else None) or model.check_labels(shard.y)
        if reason:
            problem = InputError(f"{shard.source}: {reason}")
            break
    comm.agree(problem)


def prepare(config: Config, comm) -> Prepared:
    """Read, split and check the data of ``config`` and build its model. Collective."""
    shard = load_shard(config, comm)
    test = load_shard(config, comm, config.test_data) if config.test_data else None
    if config.holdout:
        shard, test = split(shard, config.holdout, config.seed, comm)
        if min(shard.n_global, test.n_global) == 0:
            comm.agree(InputError(f"holdout {config.holdout:g} leaves no rows on one side of the split"))
    shards = [shard] + ([test] if test is not None else [])
    if test is not None and test.n_features != shard.n_features:
        comm.agree(InputError(f"{test.source}: {test.n_features} features, but the training data has "
                              f"{shard.n_features}"))
    classes = 2
    if config.model == "softmax" or (config.model == "mlp" and config.task_of_model == "classification"):
        classes = config.classes or max(2, infer_classes(shards, comm))
    model = make_model(config.model, shard.n_features, classes, config.hidden, config.activation,
                       config.task_of_model)
    check(model, shards, comm)
    return Prepared(shard, test, model)
