"""The training loop: epochs, evaluation, progress, outputs. It composes data, model, algorithm and
communicator and never imports mpi4py itself."""

from __future__ import annotations

import math
import platform
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mpigd import __version__
from mpigd.algorithms import make_algorithm
from mpigd.config import Config
from mpigd.data import Shard, load_shard
from mpigd.errors import DivergedError, InputError
from mpigd.models import Model, make_model
from mpigd.optim import l2_penalty
from mpigd.outputs import RunOutputs
from mpigd.progress import Progress


@dataclass
class TrainResult:
    """What :func:`train` returns on every rank: the parameters (identical on all ranks) and the
    summary that rank 0 writes to ``summary.json``."""

    coef: np.ndarray
    intercept: np.ndarray
    summary: dict[str, Any]
    params: np.ndarray = field(repr=False)
    arrays: dict[str, np.ndarray] = field(repr=False, default_factory=dict)


def evaluate(model: Model, shard: Shard, params: np.ndarray, comm, l2: float) -> dict[str, float]:
    """The objective and the model's metrics over every row of every rank. Collective."""
    stats = np.zeros(model.n_eval_stats)
    model.eval_stats(shard.X, shard.y, params, stats)
    comm.allreduce(stats)
    penalty = l2_penalty(params, model.n_penalized, l2)
    return {"loss": float(stats[0]) / shard.n_global + penalty, **model.metrics(stats, shard.n_global)}


def train(config: Config, comm=None) -> TrainResult:
    """Train ``config.model`` on ``config.data``; returns the same parameters on every rank.

    Collective: call it on every rank of ``comm`` (an :class:`mpigd.comm.Communicator`; by
    default one over every rank of the job, with ``config.strategy``). Bad input raises one
    :class:`~mpigd.errors.InputError` on every rank; rank 0 alone writes ``config.out``.
    """
    if comm is None:
        from mpigd.comm import world

        comm = world(config.strategy, config.tune_file)
    wall_start = time.perf_counter()
    shard = load_shard(config, comm)
    model = make_model(config.model, shard.n_features)
    comm.agree(_label_error(model, shard))
    params = model.init_params(np.dtype(config.dtype))
    algorithm = make_algorithm(config, model, shard, comm)

    is_root = comm.rank == 0
    outputs = RunOutputs(config.out, is_root)
    outputs.open()
    progress = Progress(config.epochs, shard.n_global, is_root and not config.quiet)
    interval = config.evaluation_interval()
    compute_before = algorithm.gradient.compute_seconds
    eval_seconds = 0.0
    try:
        for epoch in range(1, config.epochs + 1):
            loss = algorithm.run_epoch(params, epoch)
            if not math.isfinite(loss):
                raise DivergedError(
                    f"the objective became {loss} at epoch {epoch} (step {algorithm.steps}); "
                    f"try a smaller learning rate than {config.lr:g}"
                )
            if epoch % interval == 0 or epoch == config.epochs:
                start = time.perf_counter()
                metrics = evaluate(model, shard, params, comm, config.l2)
                eval_seconds += time.perf_counter() - start
                outputs.metric({"epoch": epoch, "step": algorithm.steps, "train_loss": loss, **metrics,
                                "elapsed": time.perf_counter() - wall_start})
            progress.update(epoch, loss, force=epoch == config.epochs)
    finally:
        outputs.close()

    final = evaluate(model, shard, params, comm, config.l2)
    wall = time.perf_counter() - wall_start
    compute = algorithm.gradient.compute_seconds - compute_before + eval_seconds
    arrays = model.arrays(params)
    summary = {
        "mpigd_version": __version__,
        "config": config.to_dict(),
        "ranks": comm.size,
        "mpi_library": comm.library(),
        "strategy": comm.strategy_label,  # what ran: "auto->ring" for auto
        "python": platform.python_version(),
        "data": {"source": shard.source, "rows": shard.n_global, "features": shard.n_features},
        "epochs": config.epochs,
        "steps": algorithm.steps,
        "final_loss": final["loss"],
        "metrics": {k: v for k, v in final.items() if k != "loss"},
        "time": {
            "wall_seconds": wall,
            "compute_seconds": compute,
            "communication_seconds": comm.comm_seconds,
            "other_seconds": max(0.0, wall - compute - comm.comm_seconds),
        },
        "bytes_allreduced": comm.bytes_reduced,
        "bytes_allreduced_per_step": algorithm.gradient.buffer.nbytes,
        "allreduce_calls": comm.allreduce_calls,
    }
    outputs.finish(summary, arrays)
    return TrainResult(arrays["coef"], arrays["intercept"], summary, params, arrays)


def _label_error(model: Model, shard: Shard) -> InputError | None:
    problem = model.check_labels(shard.y)
    return InputError(f"{shard.source}: {problem}") if problem else None

