"""Before the first step: read the data, split off held-out rows, agree on the classes, build the model.

Shared by training and by ``mpigd predict`` / ``mpigd evaluate``. Every decision that could
differ between ranks (the number of classes, whether the labels fit) is taken from reduced
values or agreed with :meth:`~mpigd.comm.Communicator.agree`, so all ranks go on or stop together.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from mpigd.config import Config
from mpigd.data import Shard, load_shard, standardize, synthetic_too_large
from mpigd.data.holdout import split
from mpigd.environment import physical_memory_bytes
from mpigd.errors import InputError
from mpigd.models import Model, make_model, memory_bytes


@dataclass
class Prepared:
    """The training rows, the held-out rows (or ``None``), the model, and the scaler that
    ``--standardize`` fitted (or ``None``), on this rank."""

    shard: Shard
    test: Shard | None
    model: Model
    scaler: standardize.Scaler | None = None


MAX_LABEL_SPAN = 1 << 20


def class_labels(shards: list[Shard], comm) -> tuple[int, ...]:
    """A classifier's labels: the distinct integers every rank's rows hold, sorted (LIBSVM's 1 .. k
    give k classes, not k + 1 with an empty class 0). ``(0, 1)`` where some label is not an integer:
    :func:`check` then names it. Collective: the ranks reduce the label range, then which of its
    values occur."""
    extremes = np.full(3, -np.inf)  # minus the lowest label, the highest, whether one is fractional
    for shard in shards:
        if shard.n_local:
            y = shard.y
            extremes[:] = np.maximum(extremes, [-float(y.min()), float(y.max()), float((y != np.round(y)).any())])
    comm.allreduce_max(extremes)
    low, high, fractional = -extremes[0], extremes[1], extremes[2] > 0
    if fractional or not (np.isfinite(low) and np.isfinite(high)):
        return 0, 1
    span = int(high - low) + 1
    if span > MAX_LABEL_SPAN:
        raise InputError(f"class labels run from {low:g} to {high:g}, more than {MAX_LABEL_SPAN} values apart: "
                         f"is this a regression target?")
    present = np.zeros(span)
    for shard in shards:
        if shard.n_local:
            present[np.unique(shard.y).astype(np.int64) - int(low)] = 1.0
    comm.allreduce_max(present)
    values = tuple(int(v) for v in np.flatnonzero(present) + int(low))
    if len(values) >= 2:
        return values
    # One label: classes 0 .. max(1, label), as "--classes 0" always meant; a negative one fails check.
    return tuple(range(max(2, values[0] + 1))) if values[0] >= 0 else (0, 1)


def binary_label_values(shards: list[Shard], comm) -> tuple[int, int]:
    """A logistic regression's two labels: the data's own where every row holds one of exactly two
    integers (LIBSVM's -1 and +1, or 1 and 2), else 0 and 1. Collective."""
    bounds = np.full(2, -np.inf)  # minus the lowest label, the highest
    for shard in shards:
        if shard.n_local:
            bounds[:] = np.maximum(bounds, [-float(shard.y.min()), float(shard.y.max())])
    comm.allreduce_max(bounds)
    low, high = -bounds[0], bounds[1]
    if not (np.isfinite(low) and np.isfinite(high)) or low >= high or (low, high) == (0, 1) \
            or low != np.round(low) or high != np.round(high):
        return 0, 1
    others = np.array([float(any(((s.y != low) & (s.y != high)).any() for s in shards if s.n_local))])
    comm.allreduce_max(others)
    return (0, 1) if others[0] else (int(low), int(high))


def encode_labels(model: Model, shard: Shard | None) -> Shard | None:
    """``shard`` with its labels as the model trains on them (logistic: 0 and 1)."""
    encode = getattr(model, "encode_labels", None)
    if shard is None or encode is None:
        return shard
    return dataclasses.replace(shard, y=encode(shard.y))


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
    multi_class = config.model == "softmax" or (config.model == "mlp" and config.task_of_model == "classification")
    if config.data == "synthetic" and multi_class:
        # The model is known before the rows are made (3 classes unless --classes says): a --classes
        # whose evaluation sums cannot fit is refused before the rows are made. The rows' own check
        # comes first, which bounds the classes the model is built with; one agreement for both.
        error = synthetic_too_large(config, comm.size)
        if error is None:
            early = make_model(config.model, config.features, config.classes or 3, config.hidden, config.activation)
            error = too_large(early, np.dtype(config.dtype).itemsize, "synthetic data")
        comm.agree(error)
    shard = load_shard(config, comm)
    test = None
    if config.test_data:
        test = load_shard(config, comm, test=True, n_features=shard.n_features,
                          zero_based=shard.meta.get("zero_based"))
    if config.holdout:
        shard, test = split(shard, config.holdout, config.seed, comm)
        if min(shard.n_global, test.n_global) == 0:
            comm.agree(InputError(f"holdout {config.holdout!r} leaves no rows on one side of the split"))
    shards = [shard] + ([test] if test is not None else [])
    values = None
    if multi_class:
        values = range(config.classes) if config.classes else class_labels(shards, comm)
    model = make_model(config.model, shard.n_features, len(values) if values else 2, config.hidden,
                       config.activation, config.task_of_model)
    comm.agree(too_large(model, np.dtype(config.dtype).itemsize, shard.source))
    if model.name == "logistic":
        model.label_values = binary_label_values(shards, comm)
    elif values:
        model.label_values = values
    check(model, shards, comm)
    shard, test = encode_labels(model, shard), encode_labels(model, test)
    scaler = None
    if config.standardize:
        # Centring makes sparse rows dense, so standardized data is held dense.
        shard, test = (_dense(part) for part in (shard, test))
        scaler = standardize.fit(shard, comm)
        for part in (shard, test):
            if part is not None:
                scaler.apply(part.X)
    return Prepared(shard, test, model, scaler)


def too_large(model: Model, itemsize: int, source: str) -> InputError | None:
    """An error if the model's buffers cannot fit this node's memory (a LIBSVM index of 10^11, a
    huge --classes or --hidden), so that it is refused in one line instead of a MemoryError, or of
    a rank that Linux's OOM killer ends (:func:`mpigd.models.memory_bytes`)."""
    memory = physical_memory_bytes()
    need = memory_bytes(model, itemsize)
    if memory is None or need <= memory:
        return None
    classes = f" with {model.n_classes:,} classes" if getattr(model, "n_classes", 0) > 2 else ""
    return InputError(f"{source}: a {model.name} model of {model.n_params:,} parameters{classes} needs about "
                      f"{need / 1e9:,.0f} GB per rank for its parameters, gradient, update, kernel and evaluation "
                      f"buffers, more than this node's {memory / 1e9:,.0f} GB")


def _dense(shard: Shard | None) -> Shard | None:
    if shard is None or not shard.sparse:
        return shard
    return dataclasses.replace(shard, X=shard.X.toarray())
