"""The command line: parse arguments into a Config, hand it to the trainer or a benchmark, print on
rank 0. No logic of its own beyond that."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from mpigd import __version__
from mpigd.config import (ACTIVATIONS, ALGORITHMS, DATA_FORMATS, DTYPES, HEADER_CHOICES, MODELS, OPTIMIZERS,
                          SCHEDULES, STRATEGIES, TASKS, Config)
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
    _add_data_arguments(train, defaults)
    add("--standardize", action="store_true", help="scale features to global mean 0, variance 1 (saved in params.npz)")
    add("--test-data", default=None, help="held-out data, same format rules; test metrics go to summary.json")
    add("--test-labels", default=None, help="the labels .npy file of --test-data")
    add("--classes", type=int, default=defaults.classes, help="classes of softmax/mlp (0: max label + 1)")
    add("--hidden", type=_widths, default=defaults.hidden, help="mlp hidden widths, e.g. 64,32")
    add("--activation", choices=ACTIVATIONS, default=defaults.activation, help="mlp hidden activation")
    add("--task", choices=TASKS, default=defaults.task or None, help="mlp head (default classification)")
    add("--algo", choices=ALGORITHMS, default=defaults.algo)
    add("--epochs", "--max-epochs", dest="epochs", type=int, default=defaults.epochs, help="most epochs to run")
    add("--lr", type=float, default=defaults.lr, help="learning rate")
    add("--batch-size", type=int, default=defaults.batch_size, help="global mini-batch size (sgd, local-sgd)")
    add("--local-steps", type=int, default=defaults.local_steps, help="local-sgd: steps between averages")
    add("--optimizer", choices=OPTIMIZERS, default=defaults.optimizer)
    add("--momentum", type=float, default=defaults.momentum, help="momentum coefficient (momentum, nesterov)")
    add("--schedule", choices=SCHEDULES, default=defaults.schedule, help="learning-rate schedule")
    add("--warmup", type=int, default=defaults.warmup, help="steps of linear learning-rate warm-up")
    add("--step-size", type=int, default=defaults.step_size, help="step schedule: steps between decays")
    add("--gamma", type=float, default=defaults.gamma, help="step schedule: decay factor")
    add("--power", type=float, default=defaults.power, help="invscaling schedule: lr / (1 + t)^power")
    add("--l1", type=float, default=defaults.l1, help="L1 penalty: objective += l1 * |w|_1 (proximal step)")
    add("--l2", type=float, default=defaults.l2, help="L2 penalty: objective += l2/2 * |w|^2")
    add("--tol", type=float, default=defaults.tol,
        help="stop when the objective changes by <= tol (relative); lbfgs/owlqn: also the relative gradient "
             "norm (0: 1e-10 for them)")
    add("--memory", type=int, default=defaults.memory, help="L-BFGS/OWL-QN history length")
    add("--patience", type=int, default=defaults.patience,
        help="stop after this many evaluations without a better held-out loss (0: off)")
    add("--holdout", type=float, default=defaults.holdout, help="fraction of rows held out for evaluation")
    add("--strategy", choices=STRATEGIES, default=defaults.strategy, help="allreduce strategy")
    add("--eval-every", type=int, default=defaults.eval_every, help="epochs between evaluations (0: auto)")
    add("--out", default=None, help="directory for summary.json, metrics.jsonl, params.npz")
    add("--quiet", action="store_true", help="print nothing but errors")
    ft = train.add_argument_group("fault tolerance (see README: Fault tolerance and checkpoints)").add_argument
    ft("--checkpoint-every", type=int, default=defaults.checkpoint_every, metavar="N", help="steps between checkpoints")
    ft("--checkpoint-seconds", type=float, default=defaults.checkpoint_seconds, metavar="S",
       help="seconds between checkpoints (rank 0's clock, agreed by all ranks)")
    ft("--checkpoint-dir", default=None, metavar="DIR", help="where checkpoints go (default OUT/checkpoints)")
    ft("--keep", type=int, default=defaults.keep, metavar="K", help="keep the newest K checkpoints")
    ft("--resume", action="store_true", help="continue from the newest valid checkpoint, if any")
    ft("--step-timeout", type=float, default=defaults.step_timeout, metavar="T",
       help="end the job, with every stack printed, if no step finishes for T seconds (0: off)")
    ft("--clip-grad-norm", type=float, default=defaults.clip_grad_norm, metavar="C",
       help="scale the global gradient to norm at most C (0: off)")
    train.set_defaults(run=_train)

    gen = commands.add_parser("gen", help="write a synthetic data set to a file (in parallel under mpiexec)")
    gen.add_argument("--rows", type=int, required=True)
    gen.add_argument("--features", type=int, required=True)
    gen.add_argument("--task", choices=("regression", "classification"), default="classification")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--format", choices=("npy", "hdf5", "libsvm", "csv"), required=True)
    gen.add_argument("--density", type=float, default=1.0, help="fraction of non-zero features (libsvm)")
    gen.add_argument("--output", required=True, help="file to write (npy: a directory for X.npy and y.npy)")
    gen.add_argument("--quiet", action="store_true")
    gen.set_defaults(run=_gen)

    for name, helptext, run in (("predict", "write the predictions of a trained model to a .npy file", _predict),
                                ("evaluate", "the loss and metrics of a trained model on a data set", _evaluate)):
        command = commands.add_parser(name, help=helptext)
        command.add_argument("--params", required=True, help="params.npz of a run (model.json beside it)")
        _add_data_arguments(command, defaults)
        command.add_argument("--output", required=name == "predict",
                             help="predictions (.npy)" if name == "predict" else "also write the metrics (JSON)")
        command.add_argument("--quiet", action="store_true")
        command.set_defaults(run=run)

    info = commands.add_parser("info", help="MPI library, rank count, Numba and threading set-up")
    info.set_defaults(run=_info)

    bench = commands.add_parser("bench", help="benchmarks")
    benches = bench.add_subparsers(dest="bench", required=True, parser_class=_Parser)
    kernel = benches.add_parser("kernel", help="each model's fused gradient kernel vs NumPy/SciPy and a streaming read")
    kernel.add_argument("--models", type=_names("linear", "logistic", "softmax", "mlp"),
                        default="linear,logistic,softmax,mlp", help="comma-separated (default: all four)")
    kernel.add_argument("--layout", type=_names("dense", "sparse"), default="dense,sparse",
                        help="dense rows, CSR rows, or both (the mlp is dense only)")
    kernel.add_argument("--density", type=float, default=0.01, help="fraction of non-zeros of the CSR rows")
    kernel.add_argument("--rows", type=int, default=1_000_000)
    kernel.add_argument("--features", type=int, default=32)
    kernel.add_argument("--classes", type=int, default=10, help="classes of the softmax and mlp models")
    kernel.add_argument("--hidden", type=_widths, default="64", help="mlp hidden widths, comma-separated")
    kernel.add_argument("--dtype", choices=DTYPES + ("both",), default="both")
    kernel.add_argument("--repeats", type=int, default=7, help="timed runs after one warm-up (median, min, max)")
    kernel.add_argument("--json", metavar="FILE", help="also write the results and their metadata as JSON")
    kernel.add_argument("--csv", metavar="FILE", help="also write the results as CSV")
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

    sparse = benches.add_parser("sparse", help="CSR kernels: time against non-zeros, vs the dense kernel")
    sparse.add_argument("--rows", type=int, default=100_000)
    sparse.add_argument("--features", type=int, default=1000)
    sparse.add_argument("--densities", default="0.001,0.003,0.01,0.03,0.1")
    sparse.add_argument("--classes", type=int, default=1, help="1: logistic kernel; k > 1: softmax kernel")
    sparse.add_argument("--repeats", type=int, default=5)
    sparse.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    sparse.set_defaults(run=_bench_sparse)
    return parser


def _widths(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected widths such as 64,32; got {text!r}") from None


def _add_data_arguments(parser: argparse.ArgumentParser, defaults: Config) -> None:
    add = parser.add_argument
    add("--data", default=defaults.data,
        help="'synthetic', or a data file: .npz (X and y, or a CSR: indptr, indices, data, shape, y), "
             ".npy (with --labels), a directory of X.npy and y.npy, .csv, .libsvm/.svm/.svmlight, .h5/.hdf5")
    add("--labels", default=None, help="the labels .npy file when --data is a features .npy file")
    add("--format", choices=("auto",) + DATA_FORMATS, default=defaults.format,
        help="data format (default: from the file name)")
    add("--label-column", default=None, help="CSV: label column index (negative from the end) or header name; "
                                             "default: the last column")
    add("--header", choices=HEADER_CHOICES, default=defaults.header,
        help="CSV: whether the first line names the columns (auto: when it is not all numbers)")
    base = parser.add_mutually_exclusive_group()
    base.add_argument("--zero-based", dest="zero_based", action="store_true", default=None,
                      help="LIBSVM: indices count from 0 (default: detected; 0-based when some index is 0)")
    base.add_argument("--one-based", dest="zero_based", action="store_false", help="LIBSVM: indices count from 1")
    add("--x-key", default=defaults.x_key, help="HDF5: dataset of the features")
    add("--y-key", default=defaults.y_key, help="HDF5: dataset of the labels")
    add("--rows", type=int, default=defaults.rows, help="rows of synthetic data (global)")
    add("--features", type=int, default=defaults.features, help="features of synthetic data")
    add("--density", type=float, default=defaults.density, help="synthetic data: fraction of non-zeros (CSR)")
    add("--dtype", choices=DTYPES, default=defaults.dtype)
    add("--seed", type=int, default=defaults.seed)


def _config_from(args: argparse.Namespace) -> Config:
    fields = Config.__dataclass_fields__
    return Config(**{name: value for name, value in vars(args).items() if name in fields and value is not None})


def _numbers(metrics: dict) -> str:
    """The scalar metrics on one line (per-class lists stay in summary.json)."""
    return "  ".join(f"{k} {v:.6g}" for k, v in metrics.items() if isinstance(v, (int, float)))


def _train(args: argparse.Namespace) -> int:
    from mpigd.comm import run_or_abort
    from mpigd.trainer import train

    config = _config_from(args)
    comm = _world(config.strategy)

    def job() -> int:
        result = train(config, comm)
        if comm.rank == 0 and not config.quiet:
            summary = result.summary
            metrics = _numbers(summary["metrics"])
            times = summary["time"]
            print(f"final loss {summary['final_loss']:.8g}  {metrics}  ({summary['ranks']} ranks, "
                  f"{times['wall_seconds']:.2f}s wall, {times['communication_seconds']:.3f}s allreduce)")
            if "test" in summary:
                print(f"held-out ({summary['test']['rows']} rows): loss {summary['test']['loss']:.8g}  "
                      f"{_numbers({k: v for k, v in summary['test'].items() if k not in ('loss', 'rows')})}")
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


def _gen(args: argparse.Namespace) -> int:
    from mpigd.comm import run_or_abort
    from mpigd.data import generate

    spec = generate.Spec(args.rows, args.features, args.task, args.seed, args.format, args.output, args.density)
    comm = _world("native")

    def job() -> int:
        written = generate.write(spec, comm)
        if comm.rank == 0 and not args.quiet:
            print(f"wrote {spec.output}: {spec.rows} rows x {spec.features} features, {spec.format}, "
                  f"{written / 1e6:.2f} MB, {comm.size} ranks")
        return EXIT_OK

    return run_or_abort(job, comm.rank)


def _predict(args: argparse.Namespace) -> int:
    return _apply(args, "predict")


def _evaluate(args: argparse.Namespace) -> int:
    return _apply(args, "evaluate")


def _apply(args: argparse.Namespace, what: str) -> int:
    from mpigd.comm import run_or_abort
    from mpigd.predict import evaluate_file, predict

    config = _config_from(args)
    comm = _world(config.strategy)

    def job() -> int:
        if what == "predict":
            result = predict(config, args.params, args.output, comm)
        else:
            result = evaluate_file(config, args.params, comm)
        if comm.rank == 0:
            text = json.dumps(result, indent=2, sort_keys=True)
            if what == "evaluate" and args.output:
                with open(args.output, "w", encoding="utf-8") as handle:
                    handle.write(text + "\n")
            if not args.quiet:
                print(text if what == "evaluate" else f"wrote {result['rows']} predictions to {args.output}")
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


def _names(*allowed: str):
    """An argparse type: a comma-separated list of names from ``allowed``, in the order given."""

    def parse(text: str) -> list[str]:
        names = [name.strip() for name in text.split(",") if name.strip()]
        unknown = [name for name in names if name not in allowed]
        if unknown or not names:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {', '.join(allowed)}; got {text!r}")
        return names

    return parse


def _bench_kernel(args: argparse.Namespace) -> int:
    from mpigd.bench import kernel, metadata

    if args.rows < 1 or args.features < 1 or args.repeats < 1 or args.classes < 2 or not 0 < args.density <= 1:
        raise UsageError("bench kernel needs --rows, --features, --repeats >= 1, --classes >= 2, 0 < --density <= 1")
    dtypes = DTYPES if args.dtype == "both" else (args.dtype,)
    results = []
    for dtype in dtypes:
        rows = kernel.run(args.rows, args.features, dtype, args.repeats, models=args.models, layouts=args.layout,
                          classes=args.classes, hidden=args.hidden, density=args.density)
        print(kernel.table(rows), flush=True)
        results += rows
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            options = {key: value for key, value in vars(args).items() if key not in ("run", "command", "bench")}
            json.dump({"metadata": {**metadata.describe(), "options": options}, "results": results}, handle,
                      indent=2)
    if args.csv:
        kernel.write_csv(args.csv, results)
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


def _bench_sparse(args: argparse.Namespace) -> int:
    from mpigd.bench import sparse

    densities = [float(d) for d in args.densities.split(",")]
    results = sparse.run(args.rows, args.features, densities, args.classes, args.repeats)
    print(sparse.table(results), flush=True)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)
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
