"""A mini-batch SGD step with the fused kernels against the same step with the NumPy expressions
they replaced (commit 809f6df; local SGD's local steps: commit 186819a), taking turns in one
process, on the real objects.

Run from the repository root with the environment of run/_env.sh, on 1 or more ranks:

    [mpiexec -n P] python benchmarks/sgd_fused_step.py [--batches 1,32,256] [--optimizers sgd,momentum,adam]
        [--dtype float64] [--steps 4000] [--repeats 21] [--rows 200000] [--features 32]
        [--local-steps 1] [--old reduce,step,round] [--model logistic] [--classes 10] [--hidden 16] [--l1 0]
        [--clip-grad-norm 0]

``--local-steps H`` above 1 times local SGD (``algo="local-sgd"``, rounds of ``H`` steps; a step's
time is a round's over ``H``). ``--old`` names the parts the old step takes in their NumPy form: the
finish of the reduced gradient (``reduce``), the optimizer (``step``), local SGD's local steps
(``round``), synchronous steps taken one by one instead of many in one kernel call on one rank
(``chunk``: only the new side chunks them, and only where it is named); the others are the fused
kernels in both.

For each batch size (rows per rank: the global batch is that times the rank count) and optimizer
it builds the algorithm and the RunControl as ``mpigd.train`` does (``--model``, logistic by default,
on synthetic rows, l2 1e-4, ``--l1``, ``--clip-grad-norm``; softmax and mlp with ``--classes`` classes, mlp with ``--hidden`` units), then, ``--repeats`` times, runs
``--steps`` whole steps (``_advance`` + ``after_step``) with the old code patched in and as many
with the new, in alternating order. It prints, per configuration, the median us per step of
each and the median of the per-repeat ratios old/new (above 1: the new step is faster), and
checks that both reach the same parameters bit for bit from the same start.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np

from mpigd.algorithms import make_algorithm
from mpigd.comm import world
from mpigd.config import Config
from mpigd.data import load_shard
from mpigd.guards import clip_norm, nonfinite_error
from mpigd.models import make_model
from mpigd.optim import Adam, Momentum
from mpigd.resilience import RunControl
from mpigd.signals import PreemptionFlag, Watchdog
from mpigd.stopping import Stopping


def old_finite(buffer: np.ndarray) -> bool:
    return math.isfinite(float(np.add.reduce(buffer)))


def old_reduce(gradient, params: np.ndarray, n_rows: int, scale: float = 1.0) -> float:
    """GlobalGradient.reduce as it was: NumPy calls for the mean, the L2 term and the checks."""
    local_finite = old_finite(gradient.buffer)
    gradient.comm.allreduce(gradient.buffer)
    gradient.reductions += 1
    gradient.buffer /= n_rows
    l2, d = gradient.l2 * scale, gradient.model.n_penalized
    value = float(gradient.buffer[-1])
    if l2 != 0.0:
        gradient.grad[:d] += l2 * params[:d]
        weights = params[:d].astype(np.float64, copy=False)
        value += 0.5 * l2 * float(weights @ weights)
    if not (math.isfinite(value) and old_finite(gradient.grad)):
        gradient.comm.agree(None if local_finite else nonfinite_error(gradient.comm.rank, local=True))
        raise nonfinite_error(gradient.comm.rank, local=False)
    if gradient.clip > 0:
        clip_norm(gradient.grad, gradient.clip)
    return value


def old_round(algorithm):
    """LocalSGD._round as it was: NumPy calls for each local step's accumulation and move."""
    gradient, model = algorithm.gradient, algorithm.gradient.model
    scratch = np.empty_like(algorithm.copy)

    def local_step(grad, rows, lr):
        nonlocal scratch  # updated in place; the augmented assignment would make it local
        np.multiply(grad, algorithm.size / rows, out=scratch)
        if gradient.l2:
            scratch[:model.n_penalized] += gradient.l2 * algorithm.copy[:model.n_penalized]
        scratch *= lr
        algorithm.copy -= scratch

    def round_(params, order, first, length):
        nonlocal scratch
        accumulated, l2, n_penalized = gradient.grad, gradient.l2, model.n_penalized
        lr = algorithm.update.rate()
        first_rows = int(algorithm.batch_rows[first])
        gradient.buffer[-1] = gradient.local(params, algorithm.batch(order, first), accumulated)
        if length > 1:
            algorithm.copy[:] = params
            algorithm.drift[:] = 0
            local_step(accumulated, first_rows, lr)
            for h in range(1, length):
                rows = int(algorithm.batch_rows[first + h])
                loss = gradient.local(algorithm.copy, algorithm.batch(order, first + h), algorithm.step_grad)
                factor = first_rows / rows
                np.multiply(algorithm.step_grad, factor, out=scratch)
                accumulated += scratch
                gradient.buffer[-1] += factor * loss
                algorithm.drift += params
                algorithm.drift -= algorithm.copy
                if h < length - 1:
                    local_step(algorithm.step_grad, rows, lr)
            if l2:
                accumulated[:n_penalized] -= (first_rows * l2 / algorithm.size) * algorithm.drift[:n_penalized]
        value = gradient.reduce(params, first_rows, float(length))
        algorithm.update(params, gradient.grad, lr, length)
        return value

    return round_


def old_step(optimizer, n_params: int):
    """The optimizer's step as it was, with its own scratch arrays."""
    step, scratch = np.empty(n_params, dtype=optimizer.dtype), np.empty(n_params, dtype=optimizer.dtype)

    def sgd(params, grad, lr):
        np.multiply(grad, lr, out=step)
        params -= step

    def momentum(params, grad, lr):
        nonlocal step  # updated in place; the augmented assignment would make it local
        optimizer.velocity *= optimizer.momentum
        optimizer.velocity += grad
        direction = optimizer.velocity
        if optimizer.nesterov:
            np.multiply(optimizer.velocity, optimizer.momentum, out=step)
            step += grad
            direction = step
        np.multiply(direction, lr, out=step)
        params -= step

    def adam(params, grad, lr):
        nonlocal step, scratch  # updated in place; the augmented assignments would make them local
        optimizer.t += 1
        t = int(optimizer.t[0])
        optimizer.m *= optimizer.beta1
        np.multiply(grad, 1.0 - optimizer.beta1, out=scratch)
        optimizer.m += scratch
        np.multiply(grad, grad, out=scratch)
        scratch *= 1.0 - optimizer.beta2
        optimizer.v *= optimizer.beta2
        optimizer.v += scratch
        rate = lr * np.sqrt(1.0 - optimizer.beta2**t) / (1.0 - optimizer.beta1**t)
        np.sqrt(optimizer.v, out=scratch)
        scratch += optimizer.eps * np.sqrt(1.0 - optimizer.beta2**t)
        np.divide(optimizer.m, scratch, out=step)
        step *= rate
        params -= step

    if isinstance(optimizer, Adam):
        return adam
    return momentum if isinstance(optimizer, Momentum) else sgd


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--batches", default="1,32,256")
    parser.add_argument("--optimizers", default="sgd,momentum,adam")
    parser.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--local-steps", type=int, default=1)
    parser.add_argument("--model", default="logistic", choices=["linear", "logistic", "softmax", "mlp"])
    parser.add_argument("--classes", type=int, default=10, help="softmax and mlp")
    parser.add_argument("--hidden", type=int, default=16, help="mlp: one hidden layer of this width")
    parser.add_argument("--l1", type=float, default=0.0, help="L1 weight (its proximal step every step)")
    parser.add_argument("--clip-grad-norm", type=float, default=0.0, help="clip each step's gradient to this norm")
    parser.add_argument("--old", default="reduce,step,round", help="the parts the old step runs in their old form: reduce, step, round in NumPy; chunk one step a call")
    args = parser.parse_args()
    old_parts = set(args.old.split(","))
    algo = "local-sgd" if args.local_steps > 1 else "sgd"
    comm = world()
    if comm.rank == 0:
        print(f"# {algo} (H {args.local_steps}; old: {args.old}; l1 {args.l1:g}; clip {args.clip_grad_norm:g}), "
              f"{args.model} {args.rows} x {args.features} {args.dtype}, {comm.size} rank(s), {comm.library()}; "
              f"us a step (_advance + after_step), median of {args.repeats} x {args.steps} steps; old/new: median of "
              "the per-repeat ratios")
    for batch in (int(b) for b in args.batches.split(",")):
        for name in args.optimizers.split(","):
            shape = {}
            if args.model in ("softmax", "mlp"):
                shape["classes"] = args.classes
            if args.model == "mlp":
                shape["hidden"] = (args.hidden,)
            config = Config(model=args.model, algo=algo, rows=args.rows, features=args.features, epochs=1,
                            lr=0.01, l2=1e-4, l1=args.l1, clip_grad_norm=args.clip_grad_norm,
                            batch_size=batch * comm.size, optimizer=name, dtype=args.dtype,
                            local_steps=args.local_steps, quiet=True, **shape)
            shard = load_shard(config, comm)
            model = make_model(args.model, args.features, n_classes=args.classes, hidden=(args.hidden,))
            algorithm = make_algorithm(config, model, shard, comm)
            params = model.init_params(np.dtype(config.dtype))
            control = RunControl(config, comm, shard, algorithm, params, PreemptionFlag(), Watchdog(0, 0),
                                 Stopping(0, 0))
            gradient, optimizer = algorithm.gradient, algorithm.update.optimizer
            new_reduce, new_step, new_round = gradient.reduce, optimizer.step, getattr(algorithm, "_round", None)
            new_chunk = getattr(algorithm, "_chunk", None)
            old_round_bound = old_round(algorithm) if new_round is not None else None
            old_reduce_bound = lambda p, n, scale=1.0: old_reduce(gradient, p, n, scale)  # noqa: E731
            old_step_bound = old_step(optimizer, gradient.grad.shape[0])
            order = algorithm.rng.permutation(shard.n_local)
            start_state = {k: v.copy() for k, v in optimizer.state_dict().items()}

            def use(old: bool) -> None:
                gradient.reduce = old_reduce_bound if old and "reduce" in old_parts else new_reduce
                optimizer.step = old_step_bound if old and "step" in old_parts else new_step
                if new_round is not None:
                    algorithm._round = old_round_bound if old and "round" in old_parts else new_round
                if new_chunk is not None:  # chunked steps only where they are what the new side times
                    algorithm._chunk = new_chunk if not old and "chunk" in old_parts else None

            def run(steps: int) -> float:
                # Chunked steps end at multiples of checkpoint_every: from a reset (0 steps) the bits
                # are compared after exactly `steps` steps, as the step-by-step side takes.
                algorithm.checkpoint_every = steps
                comm.barrier()
                start = time.perf_counter()
                taken = 0
                while taken < steps:
                    taken += algorithm._advance(params, order, taken % algorithm.steps_per_epoch)
                    control.after_step()
                return (time.perf_counter() - start) / taken * 1e6

            def reset() -> None:
                params[:] = 0
                algorithm.update.steps = 0
                optimizer.load_state_dict({k: v.copy() for k, v in start_state.items()})

            ends = []
            for old in (True, False):  # the same start, the same steps: the same bits
                use(old)
                reset()
                run(500)
                ends.append(params.copy())
            same = bool(np.array_equal(ends[0], ends[1]))
            times = {True: [], False: []}
            for repeat in range(args.repeats):
                for old in ((True, False) if repeat % 2 == 0 else (False, True)):
                    use(old)
                    reset()
                    times[old].append(run(args.steps))
            ratios = [a / b for a, b in zip(times[True], times[False])]
            if comm.rank == 0:
                print(f"batch {batch * comm.size:4d} {name:9s} old {statistics.median(times[True]):7.2f} us  "
                      f"new {statistics.median(times[False]):7.2f} us  old/new {statistics.median(ratios):5.2f} "
                      f"(range {min(ratios):.2f}-{max(ratios):.2f})  same bits: {same}", flush=True)


if __name__ == "__main__":
    main()
