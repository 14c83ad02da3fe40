"""What happens between two training steps to keep a run safe: the watchdog, the agreed decision
to checkpoint or to stop on a preemption signal, the checkpoint itself, and resuming from one.

The trainer owns the loop; it hands each epoch to :meth:`RunControl.run_epoch`, which passes
:meth:`RunControl.after_step` to the algorithm. Every decision that changes which collectives run
is agreed: the preemption flag (each rank's own) and the time-based checkpoint decision (rank 0's
clock). On several ranks whether any rank raised one rides on the gradient's allreduce (one more
number, summed exactly by every strategy: the sums stay the same on every rank and every run), and
only a step where one did makes the tiny ``MAX`` allreduce that says which; that second collective
every step was a third of a small model's step on 2 ranks (see :meth:`RunControl.after_step`).
"""

from __future__ import annotations

import io
import json
import signal
import time

import numpy as np

from mpigd import checkpoint, faults
from mpigd.checkpoint import CheckpointStore
from mpigd.comm.gather import broadcast_bytes, gather_bytes
from mpigd.config import Config
from mpigd.errors import CheckpointError, DivergedError, MpigdError, Preempted, warn
from mpigd.guards import divergence_advice
from mpigd.outputs import npz_bytes
from mpigd.signals import PreemptionFlag, Watchdog
from mpigd.stopping import Stopping


class RunControl:
    """Checkpoints, resume, preemption and the watchdog of one training run. Collective methods
    must be called on every rank at the same point of the run.

    Parameters
    ----------
    config, comm, shard
        The run's configuration, communicator and this rank's data.
    algorithm
        An algorithm with ``run_epoch(params, epoch, after_step)``, ``steps``, ``optimizer`` and
        ``state_dict()``/``load_state_dict()`` (JSON-able, may differ between ranks).
    params
        The parameter buffer the algorithm updates in place (the same on every rank).
    preemption
        The installed :class:`~mpigd.signals.PreemptionFlag`.
    watchdog
        The started :class:`~mpigd.signals.Watchdog`, petted after every step.
    stopping
        The run's :class:`~mpigd.stopping.Stopping`, saved and restored with the checkpoints (the
        held-out loss to beat and the best parameters so far, for ``--patience``).
    """

    def __init__(self, config: Config, comm, shard, algorithm, params: np.ndarray,
                 preemption: PreemptionFlag, watchdog: Watchdog, stopping: Stopping) -> None:
        self.config, self.comm, self.shard, self.algorithm, self.params = config, comm, shard, algorithm, params
        self.preemption, self.watchdog, self.stopping = preemption, watchdog, stopping
        self.first_epoch, self.epoch = 1, 1
        self.epochs_begun = 0  # the last epoch any step of which was taken (a resumed run's)
        # The solvers (lbfgs, owlqn, normal) keep no resumable state: preemption stops them, unsaved.
        self.resumable = hasattr(algorithm, "state_dict")
        directory = config.checkpoint_directory if self.resumable else None
        self.store = CheckpointStore(directory, config.keep) if directory else None
        self._flags = np.zeros(2, dtype=np.int64)  # [preemption signal number, checkpoint now]
        self._last_save_time = time.monotonic()
        self._saved_step, self._saved_name = -1, ""
        self._metadata: dict | None = None
        gradient = getattr(algorithm, "gradient", None)
        hook = faults.hook(faults.from_environment(), comm.rank, comm.size,
                           lambda: (algorithm.steps + 1, algorithm.steps + getattr(algorithm, "reduction_steps", 1)))
        if gradient is not None and hook is not None:
            gradient.before_reduce = hook
        # On several ranks the agreement rides on the gradient's allreduce (see after_step).
        self._carrier = gradient if gradient is not None and comm.size > 1 else None
        if self._carrier is not None:
            self._carrier.carry_flag(self._flag_raised)
        self._reductions_seen = gradient.reductions if self._carrier is not None else 0
        error = None
        if self.store is not None and comm.rank == 0:
            try:
                self.store.check()
                if not config.resume and self.store.steps():  # a later --resume would mix two runs
                    raise CheckpointError(f"{self.store.directory} holds checkpoints of an earlier run: "
                                          "add --resume to continue it, or move them away to start over")
            except CheckpointError as caught:
                error = caught
        comm.agree(error)

    # -- the loop --------------------------------------------------------------------------------
    def run_epoch(self, epoch: int) -> float:
        """Run one epoch of the algorithm with the checks between steps. Collective."""
        self.epoch = epoch
        try:
            if not self.resumable:
                loss = self.algorithm.run_epoch(self.params, epoch)
                self.after_step()
                return loss
            return self.algorithm.run_epoch(self.params, epoch, self.after_step)
        except DivergedError as error:
            raise DivergedError(f"training diverged at step {self.algorithm.steps + 1} (epoch {epoch}): {error}; "
                                f"{divergence_advice(self.config.algo, self.config.lr)}") from None

    def after_step(self) -> None:
        """Between steps: pet the watchdog, agree on preemption and checkpoints, act. Collective.

        On several ranks each gradient reduction carries whether any rank had a signal or a
        checkpoint due (:meth:`GlobalGradient.carry_flag`), so a step whose reductions carried
        nothing needs no agreement of its own; only when one did, or when the algorithm reduced no
        gradient since the last step (``normal``), do the ranks agree on the flags themselves. A
        second allreduce a step was a third of a small model's step on 2 ranks. A signal that
        arrives after the step's reduction is acted on after the next step.
        """
        self.watchdog.pet()
        carrier = self._carrier
        if carrier is not None and carrier.reductions != self._reductions_seen:
            self._reductions_seen = carrier.reductions
            if not carrier.take_flag():
                self._act(0, False)
                return
        flags = self._flags
        flags[0] = self.preemption.signum or 0
        flags[1] = int(self._checkpoint_due())
        self.comm.allreduce_max(flags)
        self._act(int(flags[0]), bool(flags[1]))

    def _flag_raised(self) -> bool:
        """This rank's part of the agreement: a signal arrived, or (rank 0) a timed checkpoint is due."""
        return bool(self.preemption.signum) or self._checkpoint_due()

    def _checkpoint_due(self) -> bool:
        return (self.comm.rank == 0 and self.config.checkpoint_seconds > 0
                and time.monotonic() - self._last_save_time >= self.config.checkpoint_seconds)

    def _act(self, signum: int, checkpoint_due: bool) -> None:
        """Save and stop as the ranks agreed: ``signum`` a signal's number (0: none)."""
        config, step = self.config, self.algorithm.steps
        if signum or checkpoint_due or (config.checkpoint_every and step % config.checkpoint_every == 0):
            self.save(self.epoch)
        if signum:
            self._stop(signum, step)

    def finish(self, next_epoch: int) -> None:
        """After the last epoch: a final checkpoint when checkpoints were asked for, so that the
        run can be extended later with ``--resume --epochs M``. Collective."""
        if self.config.checkpoint_every or self.config.checkpoint_seconds:
            self.save(next_epoch)

    def _stop(self, signum: int, step: int) -> None:
        if self.store is not None:
            where = f"wrote checkpoint {self._saved_name} in {self.store.directory}; run again with --resume"
        elif not self.resumable:
            where = f"no checkpoint: {self.config.algo} keeps none (a short solve: run it again)"
        else:
            where = "no checkpoint written (no --out or --checkpoint-dir)"
        raise Preempted(f"preempted ({signal.Signals(signum).name}): every rank stopped after step {step} "
                        f"(epoch {self.epoch}); {where}")

    # -- checkpoints -----------------------------------------------------------------------------
    def metadata(self) -> dict:
        """What a resume must match (rank 0's copy is the real one). Collective on first call."""
        if self._metadata is None:
            config, shard = self.config, self.shard
            self._metadata = {
                "ranks": self.comm.size, "model": config.model, "algo": config.algo, "dtype": config.dtype,
                "strategy": config.strategy, "optimizer": config.optimizer,
                # What cuts the epochs into steps (and local SGD's steps into rounds).
                "batch_size": config.batch_size if config.algo in ("sgd", "local-sgd") else None,
                "local_steps": config.local_steps if config.algo == "local-sgd" else None,
                # The MLP's architecture: another may have as many parameters (classes and task
                # change the parameter count, which is compared anyway).
                "hidden": list(config.hidden) if config.model == "mlp" else None,
                "activation": config.activation if config.model == "mlp" else None,
                "rows": shard.n_global, "features": shard.n_features,
                "data_sha256": checkpoint.data_fingerprint(shard.X, shard.y, self.comm),
            }
        return self._metadata

    def _hyper(self) -> dict:
        """What a resume may change, with a warning: the values the run's steps and stops depend on."""
        config = self.config
        hyper = {"lr": config.lr, "l2": config.l2, "l1": config.l1, "schedule": config.schedule,
                 "warmup": config.warmup, "clip_grad_norm": config.clip_grad_norm, "tol": config.tol,
                 "patience": config.patience}
        if config.schedule == "step":
            hyper.update(step_size=config.step_size, gamma=config.gamma)
        if config.schedule == "invscaling":
            hyper["power"] = config.power
        if config.optimizer in ("momentum", "nesterov"):
            hyper["momentum"] = config.momentum
        return hyper

    def save(self, epoch: int) -> None:
        """Write a checkpoint of the state after the current step; rank 0 writes. Collective."""
        if self.store is None or self._saved_step == self.algorithm.steps:
            return
        metadata = self.metadata()
        states = gather_bytes(self.comm, json.dumps(self.algorithm.state_dict()).encode())
        error = None
        if self.comm.rank == 0:
            try:
                self._saved_name = self.store.save(
                    self.algorithm.steps, epoch, self.params, self.algorithm.optimizer.state_dict(),
                    [json.loads(state) for state in states], metadata, self._hyper(), self.stopping.state_dict())
            except CheckpointError as caught:
                error = CheckpointError(f"writing a checkpoint in {self.store.directory} failed: {caught}")
            except OSError as caught:  # a full disk: a write that failed, exit code 1 as for the results
                error = MpigdError(f"cannot write a checkpoint in {self.store.directory}: {caught.strerror or caught}")
        self.comm.agree(error)
        self._saved_step, self._saved_name = self.algorithm.steps, f"ckpt-{self.algorithm.steps:010d}"
        self._last_save_time = time.monotonic()

    def restore(self) -> int | None:
        """Load the newest valid checkpoint on every rank; its step, or ``None`` if there is none.

        Rank 0 reads and verifies it, refuses one made by a different run (a
        :class:`~mpigd.errors.CheckpointError` on every rank, exit code 2), and broadcasts it.
        Collective.
        """
        metadata = self.metadata()
        arrays, header, error = b"", b"", None
        if self.comm.rank == 0:
            try:
                found = self.store.newest_valid(warn)
                if found is not None:
                    problems = checkpoint.mismatches(found.metadata, metadata)
                    if found.params.shape != self.params.shape or found.params.dtype != self.params.dtype:
                        problems.append(f"parameters {found.params.dtype}{found.params.shape} in the checkpoint")
                    if problems:
                        raise CheckpointError(f"{self.store.directory}/{found.name} is from a different run: "
                                              + "; ".join(problems))
                    now = self._hyper()
                    for key, value in found.hyper.items():
                        # A key only one side has belongs to a schedule or optimizer the other lacks,
                        # or to a checkpoint from before it was recorded: the change shows elsewhere.
                        if key in now and now[key] != value:
                            warn(f"{key} was {value} before the resume and is {now[key]} now")
                    arrays = npz_bytes(checkpoint.pack_arrays(found.params, found.optimizer, found.stopping_arrays))
                    header = json.dumps({"step": found.step, "epoch": found.epoch, "ranks": found.ranks,
                                         "stopping": found.stopping}).encode()
            except CheckpointError as caught:
                error = caught
        self.comm.agree(error)
        header = broadcast_bytes(self.comm, header)
        if not header:
            if self.comm.rank == 0:
                warn(f"--resume: no checkpoint in {self.store.directory}; starting from the beginning")
            return None
        arrays = broadcast_bytes(self.comm, arrays)
        state = json.loads(header)
        name = f"ckpt-{int(state['step']):010d}"
        # Each rank applies its own entry of the manifest, which may have been edited by hand: one that
        # does not fit (a missing field, a wrong type or shape) must stop every rank together, not one.
        error = None
        try:
            with np.load(io.BytesIO(arrays), allow_pickle=False) as archive:
                params, optimizer, stopping = checkpoint.unpack_arrays({k: archive[k] for k in archive.files})
            self.params[:] = params
            self.algorithm.optimizer.load_state_dict(optimizer)
            self.algorithm.load_state_dict(state["ranks"][self.comm.rank])
            if state["stopping"]:  # empty in a checkpoint from before the stopping state was saved
                self.stopping.load_state_dict(state["stopping"], stopping, self.params)
        except (KeyError, IndexError, TypeError, ValueError) as caught:
            error = CheckpointError(f"{self.store.directory}/{name} cannot be resumed "
                                    f"on rank {self.comm.rank}: bad state {caught!r}")
        self.comm.agree(error)
        self.first_epoch = self.epoch = int(state["epoch"])
        self.epochs_begun = self.first_epoch - (0 if self.algorithm.mid_epoch else 1)
        self._saved_step, self._saved_name = int(state["step"]), name
        return int(state["step"])
