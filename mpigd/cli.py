"""The command line: parse arguments into a Config, hand it to the trainer or a benchmark, print on
rank 0. No logic of its own beyond that."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from mpigd import __version__
from mpigd.config import ALGORITHMS, DTYPES, MODELS, STRATEGIES, Config
from mpigd.environment import launch_rank
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
    add("--dtype", choices=DTYPES, default=defaults.dtype)
    add("--seed", type=int, default=defaults.seed)
    add("--strategy", choices=STRATEGIES, default=defaults.strategy, help="allreduce strategy")
    add("--tune-file", default=defaults.tune_file, metavar="FILE",
        help="calibration for --strategy auto (default: $MPIGD_TUNE_FILE, then mpigd tune's default path)")
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

    reduce = benches.add_parser("allreduce", help="allreduce strategies vs MPI's own, per message size")
    _size_range(reduce, "8", "64M")
    reduce.add_argument("--factor", type=int, choices=(2, 4), default=2, help="step between sizes")
    reduce.add_argument("--dtype", choices=DTYPES, default="float64", help="(default: float64, as train)")
    reduce.add_argument("--strategies", type=_names, default=",".join(STRATEGIES),
                        help="comma-separated, from " + ",".join(STRATEGIES))
    reduce.add_argument("--repeats", type=int, default=7, help="timed repeats per size (median reported)")
    reduce.add_argument("--tune-file", metavar="FILE", help="calibration for auto (as in train)")
    reduce.add_argument("--json", metavar="FILE", help="write the results and metadata as JSON")
    reduce.add_argument("--csv", metavar="FILE", help="write the results as CSV")
    reduce.add_argument("--plot", metavar="FILE", help="write a PNG of bandwidth vs size (needs matplotlib)")
    reduce.set_defaults(run=_bench_allreduce)

    tune = commands.add_parser("tune", help="calibrate the cost model and auto's crossover on these ranks")
    _size_range(tune, "8", "64M")
    tune.add_argument("--dtype", choices=DTYPES, default="float64")
    tune.add_argument("--repeats", type=int, default=7, help="timed repeats per size (median used)")
    tune.add_argument("--output", metavar="FILE",
                      help="where to write (default ~/.cache/mpigd/tune-<hostname>-<ranks>ranks.json)")
    tune.set_defaults(run=_tune)
    return parser


def _byte_count(text: str) -> int:
    """``8``, ``64K``, ``16M``, ``1G``: a size in bytes (binary units)."""
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:].upper(), 1)
    digits = text[:-1] if scale > 1 else text
    if not digits.isdigit() or int(digits) < 1:
        raise argparse.ArgumentTypeError(f"not a size in bytes: {text!r} (e.g. 8, 64K, 16M)")
    return int(digits) * scale


def _names(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in STRATEGIES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown strategies {unknown}; choose from {','.join(STRATEGIES)}")
    return names


def _size_range(parser: argparse.ArgumentParser, low: str, high: str) -> None:
    parser.add_argument("--min-bytes", type=_byte_count, default=_byte_count(low), help=f"(default {low})")
    parser.add_argument("--max-bytes", type=_byte_count, default=_byte_count(high), help=f"(default {high})")


def _config_from(args: argparse.Namespace) -> Config:
    fields = Config.__dataclass_fields__
    return Config(**{name: value for name, value in vars(args).items() if name in fields})


def _train(args: argparse.Namespace) -> int:
    from mpigd.comm import run_or_abort, world
    from mpigd.trainer import train

    config = _config_from(args)
    comm = world(config.strategy, config.tune_file)

    def job() -> int:
        result = train(config, comm)
        if comm.rank == 0 and not config.quiet:
            summary = result.summary
            metrics = "  ".join(f"{k} {v:.6g}" for k, v in summary["metrics"].items())
            times = summary["time"]
            print(f"final loss {summary['final_loss']:.8g}  {metrics}  ({summary['ranks']} ranks, "
                  f"{times['wall_seconds']:.2f}s wall, {times['communication_seconds']:.3f}s allreduce "
                  f"by {summary['strategy']})")
            if config.out:
                print(f"wrote {config.out}/summary.json, metrics.jsonl, params.npz")
        return EXIT_OK

    return run_or_abort(job, comm.rank)


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


def _bench_allreduce(args: argparse.Namespace) -> int:
    from mpigd.bench import allreduce
    from mpigd.bench.metadata import run_metadata
    from mpigd.comm import run_or_abort, world

    comm = world("native", args.tune_file)

    def job() -> int:
        sizes = allreduce.message_sizes(args.min_bytes, args.max_bytes, args.factor)
        rows = allreduce.run(comm, sizes, args.dtype, args.strategies, args.repeats)
        if comm.rank == 0:
            meta = run_metadata(comm, dtype=args.dtype, repeats=args.repeats, tune_file=args.tune_file,
                                command=f"mpiexec -n {comm.size} mpigd " + " ".join(sys.argv[1:]))
            print(f"# {meta['mpi_library']}, {comm.size} ranks, {args.dtype}, median of {args.repeats}; "
                  f"xnat = speedup vs native, /best = auto's time over the best of native, ring, tree "
                  f"(both paired: median over repeats of the ratio within a repeat)")
            print(allreduce.table(rows), flush=True)
            if args.json:
                allreduce.write_json(args.json, meta, rows)
            if args.csv:
                allreduce.write_csv(args.csv, meta, rows)
            if args.plot:
                allreduce.plot(args.plot, meta, rows)
        return EXIT_OK

    return run_or_abort(job, comm.rank)


def _tune(args: argparse.Namespace) -> int:
    from mpigd.bench.allreduce import message_sizes
    from mpigd.comm import run_or_abort, tuning, world

    comm = world()

    def job() -> int:
        sizes = message_sizes(args.min_bytes, args.max_bytes, 2)
        result = tuning.calibrate(comm.mpi_comm, sizes, args.dtype, args.repeats)
        if comm.rank == 0:
            path = args.output or str(tuning.default_path(comm.size))
            tuning.save(result, path)
            m = result.model
            print(f"alpha {m.alpha * 1e6:.2f} us, beta {m.beta * 1e9:.4f} ns/byte "
                  f"({1e-9 / m.beta if m.beta else float('inf'):.2f} GB/s), gamma {m.gamma * 1e9:.4f} ns/byte")
            if result.crossover is not None:
                steps = ", ".join(f"{row['strategy']} up to {row['max_bytes']} B" if row["max_bytes"]
                                  else f"{row['strategy']} beyond" for row in result.crossover.as_list())
                print(f"auto on {comm.size} ranks: {steps}")
            print(f"wrote {path}")
        return EXIT_OK

    return run_or_abort(job, comm.rank)


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
