"""The command line: parse arguments into a Config, hand it to the trainer or a benchmark, print on
rank 0. No logic of its own beyond that."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from mpigd import __version__
from mpigd.config import ALGORITHMS, DTYPES, MODELS, STRATEGIES, Config
from mpigd.environment import expected_ranks, launch_rank
from mpigd.errors import EXIT_OK, EXIT_USAGE, MpigdError, UsageError


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, and prints help on rank 0 only."""

    def error(self, message: str):
        raise UsageError(f"{message} (see '{self.prog} --help')")

    def _print_message(self, message, file=None):
        if launch_rank() == 0:
            super()._print_message(message, file)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mpigd", description="Data-parallel training of classical models with MPI.")
    parser.add_argument("--version", action="version", version=f"mpigd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = commands.add_parser("train", help="train a model (run under mpiexec for several ranks)")
    defaults = Config()
    add = train.add_argument
    add("--model", choices=MODELS, default=defaults.model)
    add("--data", default=defaults.data, help="'synthetic' or a .npz file with arrays X and y")
    add("--rows", type=int, default=defaults.rows, help="rows of synthetic data (global)")
    add("--features", type=int, default=defaults.features, help="features of synthetic data")
    add("--algo", choices=ALGORITHMS, default=defaults.algo)
    add("--epochs", type=int, default=defaults.epochs)
    add("--lr", type=float, default=defaults.lr, help="learning rate")
    add("--batch-size", type=int, default=defaults.batch_size, help="global mini-batch size (sgd)")
    add("--l2", type=float, default=defaults.l2, help="L2 penalty: objective += l2/2 * |w|^2")
    add("--l1", type=float, default=defaults.l1, help="L1 penalty: objective += l1 * |w|_1 (algo owlqn)")
    add("--tol", type=float, default=defaults.tol,
        help="stop lbfgs/owlqn at this relative gradient norm or objective change (0: 1e-10 for them)")
    add("--memory", type=int, default=defaults.memory, help="L-BFGS/OWL-QN history length")
    add("--dtype", choices=DTYPES, default=defaults.dtype)
    add("--seed", type=int, default=defaults.seed)
    add("--strategy", choices=STRATEGIES, default=defaults.strategy, help="allreduce strategy")
    add("--eval-every", type=int, default=defaults.eval_every, help="epochs between evaluations (0: auto)")
    add("--out", default=None, help="directory for summary.json, metrics.jsonl, params.npz")
    add("--quiet", action="store_true", help="print nothing but errors")
    train.set_defaults(run=_train)

    info = commands.add_parser("info", help="MPI library, rank count, Numba and threading set-up")
    info.set_defaults(run=_info)

    bench = commands.add_parser("bench", help="benchmarks")
    benches = bench.add_subparsers(dest="bench", required=True, parser_class=_Parser)
    kernel = benches.add_parser("kernel", help="fused gradient kernels vs NumPy and a streaming read")
    kernel.add_argument("--rows", type=int, default=1_000_000)
    kernel.add_argument("--features", type=int, default=32)
    kernel.add_argument("--dtype", choices=DTYPES + ("both",), default="both")
    kernel.add_argument("--repeats", type=int, default=7)
    kernel.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    kernel.set_defaults(run=_bench_kernel)

    scaling = benches.add_parser("scaling", help="time per training step at this rank count (one launch per count)")
    scaling.add_argument("--mode", choices=("strong", "weak"), default="strong")
    scaling.add_argument("--rows", type=int, default=1_000_000, help="global rows (strong) or rows per rank (weak)")
    scaling.add_argument("--features", type=int, default=32)
    scaling.add_argument("--model", choices=MODELS, default="logistic")
    scaling.add_argument("--dtype", choices=DTYPES, default="float64")
    scaling.add_argument("--steps", type=int, default=20)
    scaling.add_argument("--strategy", choices=STRATEGIES, default="native")
    scaling.add_argument("--output", metavar="FILE", help="append the record to this JSON-lines file")
    scaling.set_defaults(run=_bench_scaling)

    solvers = benches.add_parser("solvers", help="time to accuracy of lbfgs/normal/gd on 1..P ranks vs scikit-learn")
    solvers.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    solvers.add_argument("--rows", type=int, default=1_000_000)
    solvers.add_argument("--features", type=int, default=32)
    solvers.add_argument("--l2", type=float, default=1e-4, help="L2 penalty of the logistic problem")
    solvers.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    solvers.add_argument("--repeats", type=int, default=5)
    solvers.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    solvers.set_defaults(run=_bench_solvers)
    worker = benches.add_parser("solvers-worker", help="(launched by 'bench solvers' under mpiexec)")
    for name, kind in (("--model", str), ("--rows", int), ("--features", int), ("--l2", float),
                       ("--target", float), ("--repeats", int), ("--output", str)):
        worker.add_argument(name, type=kind, required=True)
    worker.set_defaults(run=_bench_solvers_worker)

    scaling_report = benches.add_parser("scaling-report", help="speedup and efficiency from scaling records")
    scaling_report.add_argument("records", help="JSON-lines file written by 'mpigd bench scaling --output'")
    scaling_report.add_argument("--csv", metavar="FILE")
    scaling_report.add_argument("--json", metavar="FILE")
    scaling_report.add_argument("--plot", metavar="PREFIX", help="write PREFIX-strong.png / PREFIX-weak.png")
    scaling_report.set_defaults(run=_bench_scaling_report)
    return parser


def _config_from(args: argparse.Namespace) -> Config:
    fields = Config.__dataclass_fields__
    return Config(**{name: value for name, value in vars(args).items() if name in fields})


def _train(args: argparse.Namespace) -> int:
    from mpigd.comm import run_or_abort
    from mpigd.trainer import train

    config = _config_from(args)
    comm = _world(config.strategy)

    def job() -> int:
        result = train(config, comm)
        if comm.rank == 0 and not config.quiet:
            summary = result.summary
            metrics = "  ".join(f"{k} {v:.6g}" for k, v in summary["metrics"].items())
            times = summary["time"]
            print(f"final loss {summary['final_loss']:.8g}  {metrics}  ({summary['ranks']} ranks, "
                  f"{times['wall_seconds']:.2f}s wall, {times['communication_seconds']:.3f}s allreduce)")
            if config.out:
                print(f"wrote {config.out}/summary.json, metrics.jsonl, params.npz")
        return EXIT_OK

    return run_or_abort(job, comm.rank)


def _world(strategy: str):
    """The job's communicator, refusing a launch that started independent one-rank worlds."""
    from mpigd.comm import world

    comm = world(strategy)
    expected = expected_ranks()
    if expected is not None and expected != comm.size:
        raise UsageError(
            f"this job should have {expected} ranks but MPI sees {comm.size}: the launcher started independent "
            "processes (with srun, pass the --mpi plugin your MPI needs, e.g. --mpi=pmi2 or --mpi=pmix)"
        )
    return comm


def _info(args: argparse.Namespace) -> int:
    from mpigd.comm import world
    from mpigd.info import describe

    comm = world()
    facts = describe(comm)
    if comm.rank == 0:
        width = max(map(len, facts))
        for key, value in facts.items():
            print(f"{key:<{width}}  {value}")
    return EXIT_OK


def _bench_kernel(args: argparse.Namespace) -> int:
    from mpigd.bench import kernel

    dtypes = DTYPES if args.dtype == "both" else (args.dtype,)
    results = []
    for dtype in dtypes:
        rows = kernel.run(args.rows, args.features, dtype, args.repeats)
        print(kernel.table(rows), flush=True)
        results += rows
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)
    return EXIT_OK


def _bench_scaling(args: argparse.Namespace) -> int:
    from mpigd.bench import scaling
    from mpigd.comm import run_or_abort

    comm = _world(args.strategy)

    def job() -> int:
        record = scaling.measure(comm, args.mode, args.rows, args.features, args.model, args.dtype, args.steps)
        if comm.rank == 0:
            print(json.dumps(record))
            if args.output:
                scaling.append_record(args.output, record)
        return EXIT_OK

    return run_or_abort(job, comm.rank)


def _bench_solvers(args: argparse.Namespace) -> int:
    from mpigd.bench import solvers

    results = solvers.run(args.models, args.rows, args.features, args.l2, args.ranks, args.repeats)
    print(solvers.table(results))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)
    return EXIT_OK


def _bench_solvers_worker(args: argparse.Namespace) -> int:
    from mpigd.bench import solvers
    from mpigd.comm import run_or_abort

    comm = _world("native")

    def job() -> int:
        records = solvers.worker(comm, args.model, args.rows, args.features, args.l2, args.target, args.repeats)
        if comm.rank == 0:
            with open(args.output, "w", encoding="utf-8") as handle:
                json.dump(records, handle)
        return EXIT_OK

    return run_or_abort(job, comm.rank)


def _bench_scaling_report(args: argparse.Namespace) -> int:
    import csv

    from mpigd.bench import scaling

    try:
        with open(args.records, encoding="utf-8") as handle:
            rows = scaling.report([json.loads(line) for line in handle if line.strip()])
    except (OSError, ValueError) as error:
        raise UsageError(f"{args.records}: {error}") from None
    print(scaling.table(rows))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(rows, handle, indent=2)
    if args.csv:
        with open(args.csv, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    if args.plot:
        for path in scaling.plot(rows, args.plot):
            print(f"wrote {path}")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mpigd`` console script and of ``python -m mpigd``."""
    try:
        args = build_parser().parse_args(argv)
        return args.run(args)
    except MpigdError as error:  # raised identically on every rank before any collective
        if launch_rank() == 0:
            print(f"mpigd: error: {error}", file=sys.stderr)
        return error.exit_code if error.exit_code else EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
