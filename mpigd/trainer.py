"""The training loop: epochs, evaluation, progress, outputs. It composes data, model, algorithm and
communicator and never imports mpi4py itself."""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from mpigd import __version__
from mpigd.algorithms import make_algorithm
from mpigd.config import SOLVERS, Config
from mpigd.errors import UsageError, warn
from mpigd.evaluation import evaluate, flat
from mpigd.guards import ObjectiveGuard, divergence_advice
from mpigd.outputs import RunOutputs
from mpigd.prepare import prepare
from mpigd.progress import Progress
from mpigd.resilience import RunControl
from mpigd.runlock import RunLock, lock_run_directories
from mpigd.signals import PreemptionFlag, Watchdog, take_early_flag
from mpigd.startup import jit_cache_stats, process_start_time
from mpigd.stopping import Stopping

if TYPE_CHECKING:
    from mpigd.comm import Communicator

__all__ = ["TrainResult", "evaluate", "train"]


@dataclass
class TrainResult:
    """What :func:`train` returns on every rank: the parameters (identical on all ranks) and the
    summary that rank 0 writes to ``summary.json``."""

    coef: np.ndarray | None  # linear models only (None for the mlp: see ``arrays``)
    intercept: np.ndarray | None
    summary: dict[str, Any]
    params: np.ndarray = field(repr=False)
    arrays: dict[str, np.ndarray] = field(repr=False, default_factory=dict)


def train(config: Config, comm=None) -> TrainResult:
    """Train ``config.model`` on ``config.data``; returns the same parameters on every rank.

    Collective: call it on every rank of ``comm`` (an :class:`mpigd.comm.Communicator`; by
    default one over every rank of the job). The sums use ``config.strategy`` either way. Bad input raises one
    :class:`~mpigd.errors.InputError` on every rank; rank 0 alone writes ``config.out``, and holds a
    lock on it and on ``config.checkpoint_dir`` for the run (a second run there is refused).
    SIGTERM or SIGUSR1 during the run (main thread only) stops every rank after the same step
    with a checkpoint and :class:`~mpigd.errors.Preempted`; see :mod:`mpigd.resilience`.
    """
    # Installed first (by the command line before its imports and MPI's start, see
    # catch_preemption_early), so that a signal during start-up is not lost: it stops the first step.
    preemption = take_early_flag() or PreemptionFlag()
    preemption.install()
    watchdog = Watchdog(config.step_timeout, config.startup_timeout)
    watchdog.start()
    lock = RunLock()
    try:
        return _train(config, comm, preemption, watchdog, lock)
    finally:
        watchdog.cancel()  # also when the input was refused: the timer would end the caller later
        lock.release()
        preemption.restore()


def _train(config: Config, comm, preemption: PreemptionFlag, watchdog: Watchdog, lock: RunLock) -> TrainResult:
    from mpigd.comm import as_communicator

    # A communicator handed in gives the ranks; the configuration says how to sum over them.
    comm = as_communicator(comm, config.strategy, config.tune_file)
    if comm.rank == 0 and not config.quiet:
        for message in config.unread_settings():
            warn(message)
    wall_start = time.perf_counter()
    # A Communicator handed in may have summed before (an earlier train() on it): the summary
    # counts this run's sums alone.
    comm_seconds_before, bytes_before, calls_before = comm.comm_seconds, comm.bytes_reduced, comm.allreduce_calls
    gathered_before = comm.bytes_gathered
    prepared = prepare(config, comm)
    shard, test, model = prepared.shard, prepared.test, prepared.model
    # Once the input is known good, and before a file of the run's directories is read or changed.
    comm.together(lock_run_directories if comm.rank == 0 else (lambda *_: None), lock, config)
    params = model.init_params(np.dtype(config.dtype), config.seed)
    algorithm = make_algorithm(config, model, shard, comm)
    # The solvers (lbfgs, owlqn, normal) apply their own tolerance, from allreduced values alone.
    stopping = Stopping(0.0 if config.algo in SOLVERS else config.tol, config.patience)
    control = RunControl(config, comm, shard, algorithm, params, preemption, watchdog, stopping)
    resumed = control.restore() if config.resume else None
    if control.epochs_begun > config.epochs:  # known alike on every rank, before any output is touched
        raise UsageError(f"--epochs {config.epochs}: the checkpoint resumed is {control.epochs_begun} epochs into "
                         f"its run; give --epochs {control.epochs_begun} or more")

    is_root = comm.rank == 0
    outputs = RunOutputs(config.out, is_root)
    # Agreed: rank 0 alone writes, and a full disk there must stop every rank with its one line.
    comm.together(outputs.open, control.first_epoch if resumed is not None else None)
    progress = Progress(config.epochs, shard.n_global, is_root and not config.quiet,
                        epochs_done=control.first_epoch - 1)
    interval = config.evaluation_interval()
    compute_before = algorithm.gradient.compute_seconds
    evaluating = _ComputeClock(comm)
    first_step_at = first_step_done = None
    epoch = control.first_epoch - 1  # the last epoch done: 0, or a resumed run's
    # A resumed run that had stopped on --tol or --patience is over: it ends where it ended.
    last_epoch = epoch if stopping.stopped else config.epochs
    guard = ObjectiveGuard(divergence_advice(config.algo, config.lr))
    evaluated = None  # (metrics, held-out metrics) of the parameters as they are now, if known
    try:
        for epoch in range(control.first_epoch, last_epoch + 1):
            if first_step_at is None:
                first_step_at = time.time()
            loss = control.run_epoch(epoch)
            evaluated = None
            if first_step_done is None:
                first_step_done = time.time()
            guard.check(loss, "the objective", epoch, algorithm.steps)
            # Every value a decision reads below was allreduced: all ranks stop at the same epoch.
            stop = stopping.after_epoch(loss) or getattr(algorithm, "converged", False)
            if stop or epoch % interval == 0 or epoch == config.epochs:
                with evaluating:
                    metrics = evaluate(model, shard, params, comm, config.l2, config.l1)
                    # The last update can overflow even when the objective before it was finite; on
                    # the last epoch no further step would catch it.
                    guard.check(metrics["loss"], "the objective after the update", epoch, algorithm.steps)
                    record = {"epoch": epoch, "step": algorithm.steps, "train_loss": loss, **metrics}
                    held_out = None
                    if test is not None:
                        held_out = evaluate(model, test, params, comm, penalized=False)
                        record.update(flat("test_", held_out))
                        stop = stopping.after_evaluation(held_out["loss"], params, epoch) or stop
                evaluated = (metrics, held_out)
                # Agreed: a full disk on rank 0 stops every rank with its one line.
                comm.together(outputs.metric, {**record, "elapsed": time.perf_counter() - wall_start})
            progress.update(epoch, loss, force=stop or epoch == config.epochs)
            if stop:
                break
        control.finish(epoch + 1)
    finally:
        outputs.close()
    # The watchdog stays armed (train() disarms it): a rank stuck in the final evaluation or the
    # writing of the results is ended as one stuck in a step would be.

    restored = stopping.restore_best(params)
    if restored or evaluated is None:  # the loop's last evaluation was not of these parameters
        with evaluating:  # compute, as the loop's are (it fell in "other" before)
            final = evaluate(model, shard, params, comm, config.l2, config.l1)
            test_metrics = evaluate(model, test, params, comm, penalized=False) if test is not None else None
    else:
        final, test_metrics = evaluated
    wall = time.perf_counter() - wall_start
    communication = comm.comm_seconds - comm_seconds_before
    compute = algorithm.gradient.compute_seconds - compute_before + evaluating.seconds
    arrays = model.arrays(params)
    if prepared.scaler is not None:
        arrays.update(prepared.scaler.arrays())
    per_step = getattr(algorithm, "reduced_bytes_per_step", algorithm.gradient.reduced_bytes)
    summary = {
        "mpigd_version": __version__,
        "config": config.to_dict(),
        "ranks": comm.size,
        "mpi_library": comm.library(),
        "strategy": comm.strategy_label,  # what ran: "auto->ring" for auto
        # auto's timings in this launch, seconds per call by strategy, per message size (bytes)
        "strategy_trials": {str(n): times for n, times in getattr(comm.strategy, "trials", {}).items()} or None,
        "python": platform.python_version(),
        "data": {"source": shard.source, "format": shard.meta.get("format"), "rows": shard.n_global,
                 "features": shard.n_features, "sparse": shard.sparse, "standardized": prepared.scaler is not None},
        "model": model.describe(),
        "epochs": epoch,
        "steps": algorithm.steps,
        "resumed_from_step": resumed,
        # Full passes over the data by the optimiser (lbfgs/owlqn: one per function evaluation).
        "evaluations": algorithm.evaluations,
        "stopped": {"reason": getattr(algorithm, "stop_reason", "") or stopping.reason, "epoch": epoch,
                    "restored_best_epoch": stopping.best_epoch if restored else None},
        "final_loss": final["loss"],
        "metrics": {k: v for k, v in final.items() if k != "loss"},
        "time": {
            "wall_seconds": wall,
            "compute_seconds": compute,
            "communication_seconds": communication,
            "other_seconds": max(0.0, wall - compute - communication),
            # From process start (interpreter, imports, MPI, data) to the first step, and the
            # first step itself (where a JIT compilation or a load from the cache happens).
            "startup_seconds": first_step_at - process_start_time() if first_step_at else None,
            "first_step_seconds": first_step_done - first_step_at if first_step_done else None,
        },
        "jit": jit_cache_stats(),
        "bytes_allreduced": comm.bytes_reduced - bytes_before,
        "bytes_allreduced_per_step": per_step,
        # The training reductions alone (gradients, parameters in local SGD, the normal solver's
        # Gram matrix), without evaluations.
        "bytes_allreduced_training": getattr(algorithm, "reduced_bytes", algorithm.gradient.reductions * per_step),
        "allreduce_calls": comm.allreduce_calls - calls_before,
        # sgd on wide CSR rows (several ranks; softmax on one too): "allgather" of each step's non-zeros
        "gradient_exchange": getattr(algorithm, "gradient_exchange", "allreduce"),
        "bytes_gathered": comm.bytes_gathered - gathered_before,
    }
    if test_metrics is not None:
        summary["test"] = {"rows": test.n_global, "source": test.source, **test_metrics}
    description = model.describe()
    if shard.meta.get("format") == "libsvm":
        # A file handed to predict later may never use index 0 where this one did; read with
        # the training file's base, its columns line up with the model's.
        description["libsvm_zero_based"] = shard.meta["zero_based"]
    # Agreed: every rank returns once the files are there (a script may read them next), or raises
    # rank 0's error (a full disk) with it.
    watchdog.pet()  # the final evaluation is done: the writing gets a whole --step-timeout
    comm.together(outputs.finish, summary, arrays, description)
    return TrainResult(arrays.get("coef"), arrays.get("intercept"), summary, params, arrays)


class _ComputeClock:
    """Seconds spent in ``with clock:`` blocks (the evaluations), less the communicator's seconds
    in them: their allreduces are in the communication time already, and counted twice the split
    added up to more than the wall time."""

    def __init__(self, comm: Communicator) -> None:
        self.comm, self.seconds = comm, 0.0

    def __enter__(self) -> None:
        self._start, self._comm_start = time.perf_counter(), self.comm.comm_seconds

    def __exit__(self, *exception: object) -> None:
        self.seconds += time.perf_counter() - self._start - (self.comm.comm_seconds - self._comm_start)
