"""The training loop: epochs, evaluation, progress, outputs. It composes data, model, algorithm and
communicator and never imports mpi4py itself."""

from __future__ import annotations

import dataclasses
import math
import platform
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mpigd import __version__
from mpigd.algorithms import make_algorithm
from mpigd.config import Config
from mpigd.data import Shard, load_shard, standardize
from mpigd.errors import DivergedError, InputError
from mpigd.models import Model, make_model
from mpigd.optim import l2_penalty
from mpigd.outputs import RunOutputs
from mpigd.progress import Progress
from mpigd.resilience import RunControl
from mpigd.signals import PreemptionFlag


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
    SIGTERM or SIGUSR1 during the run (main thread only) stops every rank after the same step
    with a checkpoint and :class:`~mpigd.errors.Preempted`; see :mod:`mpigd.resilience`.
    """
    # Installed first, so that a signal during start-up is not lost: it stops the first step.
    preemption = PreemptionFlag()
    preemption.install()
    try:
        return _train(config, comm, preemption)
    finally:
        preemption.restore()


def _train(config: Config, comm, preemption: PreemptionFlag) -> TrainResult:
    if comm is None:
        from mpigd.comm import world

        comm = world(config.strategy)
    wall_start = time.perf_counter()
    shard = load_shard(config, comm)
    test = None
    if config.test_data is not None:
        test = load_shard(config, comm, test=True, n_features=shard.n_features,
                          zero_based=shard.meta.get("zero_based"))
    model = make_model(config.model, shard.n_features)
    comm.agree(_label_error(model, shard))
    if test is not None:
        comm.agree(_label_error(model, test))
    scaler = None
    if config.standardize:
        scaler = standardize.fit(shard, comm)
        # Centring makes sparse rows dense: the CSR form no longer describes X.
        shard = dataclasses.replace(shard, csr=None)
        for part in (shard, test) if test is not None else (shard,):
            scaler.apply(part.X)
    params = model.init_params(np.dtype(config.dtype))
    algorithm = make_algorithm(config, model, shard, comm)
    control = RunControl(config, comm, shard, algorithm, params, preemption)
    resumed = control.restore() if config.resume else None

    is_root = comm.rank == 0
    outputs = RunOutputs(config.out, is_root)
    outputs.open(resumed)
    progress = Progress(config.epochs, shard.n_global, is_root and not config.quiet)
    interval = config.evaluation_interval()
    compute_before = algorithm.gradient.compute_seconds
    eval_seconds = 0.0
    try:
        for epoch in range(control.first_epoch, config.epochs + 1):
            loss = control.run_epoch(epoch)
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
        control.finish(config.epochs + 1)
    finally:
        control.stop()
        outputs.close()

    final = evaluate(model, shard, params, comm, config.l2)
    wall = time.perf_counter() - wall_start
    compute = algorithm.gradient.compute_seconds - compute_before + eval_seconds
    arrays = model.arrays(params)
    if scaler is not None:
        arrays.update(scaler.arrays())
    summary = {
        "mpigd_version": __version__,
        "config": config.to_dict(),
        "ranks": comm.size,
        "mpi_library": comm.library(),
        "strategy": comm.strategy.name,
        "python": platform.python_version(),
        "data": {"source": shard.source, "format": shard.meta.get("format"), "rows": shard.n_global,
                 "features": shard.n_features, "standardized": scaler is not None},
        "epochs": config.epochs,
        "steps": algorithm.steps,
        "resumed_from_step": resumed,
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
    if test is not None:
        # The plain mean loss on unseen rows: the L2 penalty is part of the training objective only.
        summary["test"] = {**evaluate(model, test, params, comm, 0.0), "rows": test.n_global,
                           "source": test.source}
    outputs.finish(summary, arrays)
    return TrainResult(arrays["coef"], arrays["intercept"], summary, params, arrays)


def _label_error(model: Model, shard: Shard) -> InputError | None:
    problem = model.check_labels(shard.y)
    return InputError(f"{shard.source}: {problem}") if problem else None

