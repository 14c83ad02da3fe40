"""Where one mini-batch SGD step goes: each part of the step timed alone, on the real objects.

Run from the repository root with the environment of run/_env.sh, on 1 or more ranks:

    [mpiexec -n P] python benchmarks/sgd_step_parts.py [--model logistic] [--batch 1] [--rows 200000]
        [--features 32] [--calls 5000] [--repeats 9] [--compare-agreement]

Builds the algorithm and the trainer's RunControl as ``mpigd.train`` does (synthetic data, l2 1e-4,
native allreduce), then times each part in a loop of ``--calls`` calls, median of ``--repeats``,
and the whole step (``_advance`` + ``after_step``), in microseconds a call. Rank 0 prints the table.
The parts overlap (``gradient.local`` holds the kernel; ``gradient.reduce`` holds the finiteness
check, the allreduce and ``mean_with_l2``), so they do not sum to the whole step.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from mpigd import kernels
from mpigd.algorithms import make_algorithm
from mpigd.comm import world
from mpigd.config import Config
from mpigd.data import load_shard
from mpigd.guards import finite
from mpigd.models import make_model
from mpigd.resilience import RunControl
from mpigd.signals import PreemptionFlag, Watchdog
from mpigd.stopping import Stopping


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="logistic", choices=["logistic", "linear"])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--compare-agreement", action="store_true",
                        help="instead: whole steps with the preemption flag on the gradient's allreduce against "
                             "steps with the flags in an allreduce of their own (the code before), taking turns")
    args = parser.parse_args()
    comm = world()
    config = Config(model=args.model, algo="sgd", rows=args.rows, features=args.features, epochs=1, lr=0.01,
                    l2=1e-4, batch_size=args.batch, quiet=True)
    shard = load_shard(config, comm)
    model = make_model(args.model, args.features)
    algorithm = make_algorithm(config, model, shard, comm)
    algorithm._chunk = None  # the parts of one step: on one rank, steps one by one, not many in a kernel call
    params = model.init_params(np.dtype(config.dtype))
    control = RunControl(config, comm, shard, algorithm, params, PreemptionFlag(), Watchdog(0, 0), Stopping(0, 0))
    gradient = algorithm.gradient
    order = algorithm.rng.permutation(shard.n_local)
    rows, n_rows = algorithm.batch(order, 0), int(algorithm.batch_rows[0])
    scratch, zeros = gradient.buffer.copy(), np.zeros_like(gradient.grad)
    one = scratch.dtype.type(1.0)  # dividing by 1 and adding 1 * w leave the scratch finite call after call
    d = model.n_penalized

    def reduce_fresh() -> None:
        gradient.buffer.fill(1e-3)  # summed over ranks call after call, the buffer would overflow
        gradient.reduce(params, n_rows)

    def allreduce_fresh() -> None:
        gradient.buffer.fill(1e-3)
        comm.allreduce(gradient.buffer)

    def whole() -> None:
        algorithm._advance(params, order, 3)
        control.after_step()

    if args.compare_agreement:
        compare_agreement(comm, control, gradient, whole, args)
        return
    parts = {
        "whole step (_advance + after_step)": whole,
        "kernel via model.loss_grad": lambda: model.loss_grad(shard.X, shard.y, params, gradient.grad, rows),
        "gradient.local (kernel + timers)": lambda: gradient.local(params, rows, gradient.grad),
        "gradient.reduce (fill included)": reduce_fresh,
        "  finite(buffer)": lambda: finite(gradient.buffer),
        "  comm.allreduce (fill included)": allreduce_fresh,
        "  mean_with_l2 (mean, L2, check)": lambda: kernels.mean_with_l2(scratch, one, params, d, one, 0.5),
        "update (rate, optimizer, L1)": lambda: algorithm.update(params, zeros, algorithm.update.rate()),
        "control.after_step": control.after_step,
        "  comm.allreduce_max(flags)": lambda: comm.allreduce_max(control._flags),
        "batch slice": lambda: algorithm.batch(order, 7),
        "buffer.fill (to subtract)": lambda: gradient.buffer.fill(1e-3),
    }
    medians = {}
    for name, part in parts.items():
        part()
        samples = []
        for _ in range(args.repeats):
            comm.barrier()
            start = time.perf_counter()
            for _ in range(args.calls):
                part()
            samples.append((time.perf_counter() - start) / args.calls * 1e6)
        medians[name] = statistics.median(samples)
        params[:] = 0
    if comm.rank == 0:
        print(f"# {args.model}, batch {args.batch}, {comm.size} rank(s), {args.rows} x {args.features} "
              f"{config.dtype}, {comm.library()}; us a call, median of {args.repeats} x {args.calls} calls")
        for name, value in medians.items():
            print(f"{name:40s} {value:8.2f}")


def compare_agreement(comm, control, gradient, whole, args) -> None:
    """Whole steps, the flag carried by the gradient's allreduce ("folded") and the flags agreed in a
    MAX allreduce of their own after each step ("separate", as before), taking turns in every
    repeat (the one that goes first alternates); rank 0 prints the medians and of the per-repeat ratios."""
    carrier = control._carrier

    def separate() -> None:  # what RunControl did before the flag rode on the gradient
        control._carrier, gradient._raised, gradient._reduced = None, None, gradient.buffer

    def folded() -> None:
        control._carrier = carrier
        gradient.carry_flag(control._flag_raised)

    samples = {"separate": [], "folded": []}
    for repeat in range(args.repeats):
        for name in (("separate", "folded") if repeat % 2 == 0 else ("folded", "separate")):
            (separate if name == "separate" else folded)()
            whole()
            comm.barrier()
            start = time.perf_counter()
            for _ in range(args.calls):
                whole()
            samples[name].append((time.perf_counter() - start) / args.calls * 1e6)
    ratios = [old / new for old, new in zip(samples["separate"], samples["folded"])]
    if comm.rank == 0:
        print(f"# batch {args.batch}, {comm.size} rank(s), {comm.library()}; us a whole step, median of "
              f"{args.repeats} x {args.calls} steps, taking turns")
        for name, values in samples.items():
            print(f"{name:10s} {statistics.median(values):8.2f}  ({min(values):.2f}-{max(values):.2f})")
        print(f"separate / folded, median of the per-repeat ratios: {statistics.median(ratios):.3f} "
              f"({min(ratios):.3f}-{max(ratios):.3f})")


if __name__ == "__main__":
    main()
