"""A mini-batch SGD step with the fused kernels against the same step with the NumPy expressions
they replaced (commit 809f6df), taking turns in one process, on the real objects.

Run from the repository root with the environment of run/_env.sh, on 1 or more ranks:

    [mpiexec -n P] python benchmarks/sgd_fused_step.py [--batches 1,32,256] [--optimizers sgd,momentum,adam]
        [--dtype float64] [--steps 4000] [--repeats 21] [--rows 200000] [--features 32]

For each batch size (rows per rank: the global batch is that times the rank count) and optimizer
it builds the algorithm and the RunControl as ``mpigd.train`` does (logistic on synthetic rows, l2 1e-4), then, ``--repeats`` times, runs
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
    args = parser.parse_args()
    comm = world()
    if comm.rank == 0:
        print(f"# logistic {args.rows} x {args.features} {args.dtype}, {comm.size} rank(s), {comm.library()}; "
              f"us a step (_advance + after_step), median of {args.repeats} x {args.steps} steps; old/new: median of "
              "the per-repeat ratios")
    for batch in (int(b) for b in args.batches.split(",")):
        for name in args.optimizers.split(","):
            config = Config(model="logistic", algo="sgd", rows=args.rows, features=args.features, epochs=1,
                            lr=0.01, l2=1e-4, batch_size=batch * comm.size, optimizer=name, dtype=args.dtype,
                            quiet=True)
            shard = load_shard(config, comm)
            model = make_model("logistic", args.features)
            algorithm = make_algorithm(config, model, shard, comm)
            params = model.init_params(np.dtype(config.dtype))
            control = RunControl(config, comm, shard, algorithm, params, PreemptionFlag(), Watchdog(0, 0),
                                 Stopping(0, 0))
            gradient, optimizer = algorithm.gradient, algorithm.update.optimizer
            new_reduce, new_step = gradient.reduce, optimizer.step
            old_reduce_bound = lambda p, n, scale=1.0: old_reduce(gradient, p, n, scale)  # noqa: E731
            old_step_bound = old_step(optimizer, gradient.grad.shape[0])
            order = algorithm.rng.permutation(shard.n_local)
            start_state = {k: v.copy() for k, v in optimizer.state_dict().items()}

            def use(old: bool) -> None:
                gradient.reduce = old_reduce_bound if old else new_reduce
                optimizer.step = old_step_bound if old else new_step

            def run(steps: int) -> float:
                comm.barrier()
                start = time.perf_counter()
                for step in range(steps):
                    algorithm._advance(params, order, step % algorithm.steps_per_epoch)
                    control.after_step()
                return (time.perf_counter() - start) / steps * 1e6

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
