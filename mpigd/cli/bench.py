"""The benchmark commands (kernel, allreduce, scaling, solvers, sparse), tune, and plan (a projection)."""

from __future__ import annotations

import argparse
import importlib.util
import json

from mpigd.cli.common import (Parser, at_least, check_output_paths, choice_list, command_line, fractions,
                              nonempty_path, size_range, strategy_names, widths)
from mpigd.config import DTYPES, MODELS, STRATEGIES
from mpigd.errors import EXIT_OK, UsageError, warn
from mpigd.outputs import json_text, parent_made, write_json_report, written
from mpigd.wording import counted


def register(commands) -> None:
    """Add ``bench`` with its subcommands, ``tune`` and ``plan`` to ``commands``."""
    bench = commands.add_parser("bench", help="benchmarks")
    benches = bench.add_subparsers(dest="bench", required=True, parser_class=Parser)
    kernel = benches.add_parser("kernel", help="each model's fused gradient kernel vs NumPy/SciPy and a streaming read")
    kernel.add_argument("--models", type=choice_list("linear", "logistic", "softmax", "mlp"),
                        default="linear,logistic,softmax,mlp", help="comma-separated (default: all four)")
    kernel.add_argument("--layout", type=choice_list("dense", "sparse"), default="dense,sparse",
                        help="dense rows, CSR rows, or both (the mlp is dense only)")
    kernel.add_argument("--density", type=float, default=0.01, help="fraction of non-zeros of the CSR rows")
    kernel.add_argument("--rows", type=int, default=1_000_000)
    kernel.add_argument("--features", type=int, default=32)
    kernel.add_argument("--classes", type=int, default=10, help="classes of the softmax and mlp models")
    kernel.add_argument("--hidden", type=widths, default="64", help="mlp hidden widths, comma-separated")
    kernel.add_argument("--dtype", choices=DTYPES + ("both",), default="both")
    kernel.add_argument("--repeats", type=int, default=7, help="timed runs after one warm-up (median, min, max)")
    kernel.add_argument("--json", type=nonempty_path, metavar="FILE",
                        help="also write the results and their metadata as JSON")
    kernel.add_argument("--csv", type=nonempty_path, metavar="FILE", help="also write the results as CSV")
    kernel.set_defaults(run=_bench_kernel)

    scaling = benches.add_parser("scaling", help="time per training step at this rank count (one launch per count)")
    scaling.add_argument("--mode", choices=("strong", "weak"), default="strong")
    scaling.add_argument("--rows", type=at_least(1), default=1_000_000, help="global rows (strong) or rows per rank (weak)")
    scaling.add_argument("--features", type=at_least(1), default=32)
    scaling.add_argument("--model", choices=MODELS, default="logistic")
    scaling.add_argument("--dtype", choices=DTYPES, default="float64")
    scaling.add_argument("--steps", type=at_least(1), default=20)
    scaling.add_argument("--strategy", choices=STRATEGIES, default="native")
    scaling.add_argument("--output", type=nonempty_path, metavar="FILE",
                         help="append the record to this JSON-lines file")
    scaling.set_defaults(run=_bench_scaling)

    solvers = benches.add_parser("solvers", help="time to accuracy of lbfgs/normal/gd on 1..P ranks vs scikit-learn")
    solvers.add_argument("--models", nargs="+", choices=("linear", "logistic", "softmax"),
                         default=["linear", "logistic", "softmax"])
    solvers.add_argument("--rows", type=at_least(1), default=1_000_000)
    solvers.add_argument("--features", type=at_least(1), default=32)
    solvers.add_argument("--l2", type=float, default=1e-4, help="L2 penalty of the logistic problem")
    solvers.add_argument("--ranks", type=at_least(1), nargs="+", default=[1, 2])
    solvers.add_argument("--repeats", type=at_least(1), default=5)
    solvers.add_argument("--json", type=nonempty_path, metavar="FILE", help="also write the results as JSON")
    solvers.set_defaults(run=_bench_solvers)
    # Launched by 'bench solvers' under mpiexec, not by users: no help=, so it is not listed, and kept
    # out of the choices shown in the usage (benches.metavar below).
    worker = benches.add_parser("solvers-worker")
    for name, kind in (("--model", str), ("--rows", int), ("--features", int), ("--l2", float),
                       ("--target", float), ("--repeats", int), ("--output", str)):
        worker.add_argument(name, type=kind, required=True)
    worker.set_defaults(run=_bench_solvers_worker)

    scaling_report = benches.add_parser("scaling-report", help="speedup and efficiency from scaling records")
    scaling_report.add_argument("records", type=nonempty_path,
                                help="JSON-lines file written by 'mpigd bench scaling --output'")
    scaling_report.add_argument("--csv", type=nonempty_path, metavar="FILE")
    scaling_report.add_argument("--json", type=nonempty_path, metavar="FILE")
    scaling_report.add_argument("--plot", type=nonempty_path, metavar="PREFIX",
                                help="write PREFIX-strong.png / PREFIX-weak.png (a directory: scaling-strong.png ... in it)")
    scaling_report.set_defaults(run=_bench_scaling_report)

    sparse = benches.add_parser("sparse", help="CSR kernels: time against non-zeros, vs the dense kernel")
    sparse.add_argument("--rows", type=at_least(1), default=100_000)
    sparse.add_argument("--features", type=at_least(1), default=1000)
    sparse.add_argument("--densities", type=fractions, default="0.001,0.003,0.01,0.03,0.1")
    sparse.add_argument("--classes", type=at_least(1), default=1, help="1: logistic kernel; k > 1: softmax kernel")
    sparse.add_argument("--repeats", type=at_least(1), default=5)
    sparse.add_argument("--json", type=nonempty_path, metavar="FILE", help="also write the results as JSON")
    sparse.set_defaults(run=_bench_sparse)

    reduce = benches.add_parser("allreduce", help="allreduce strategies vs MPI's own, per message size")
    size_range(reduce, "8", "64M")
    reduce.add_argument("--factor", type=int, choices=(2, 4), default=2, help="step between sizes")
    reduce.add_argument("--dtype", choices=DTYPES, default="float64", help="(default: float64, as train)")
    reduce.add_argument("--strategies", type=strategy_names, default=",".join(STRATEGIES),
                        help="comma-separated, from " + ",".join(STRATEGIES))
    reduce.add_argument("--repeats", type=at_least(1), default=7, help="timed repeats per size (median reported)")
    reduce.add_argument("--tune-file", type=nonempty_path, metavar="FILE",
                        help="calibration for auto and ring (as in train)")
    reduce.add_argument("--json", type=nonempty_path, metavar="FILE", help="write the results and metadata as JSON")
    reduce.add_argument("--csv", type=nonempty_path, metavar="FILE", help="write the results as CSV")
    reduce.add_argument("--plot", type=nonempty_path, metavar="FILE",
                        help="write a PNG of bandwidth vs size (needs matplotlib)")
    reduce.set_defaults(run=_bench_allreduce)
    benches.metavar = "{" + ",".join(name for name in benches.choices if name != "solvers-worker") + "}"

    tune = commands.add_parser(
        "tune", help="calibrate the cost model, the ring's segment and auto's crossover on these ranks")
    size_range(tune, "8", "64M")
    tune.add_argument("--dtype", choices=DTYPES, default="float64")
    tune.add_argument("--repeats", type=at_least(1), default=7, help="timed repeats per size (median used)")
    tune.add_argument("--output", type=nonempty_path, metavar="FILE",
                      help="where to write (default: ~/.cache/mpigd/tune-<hostname>-<ranks>ranks.json)")
    tune.set_defaults(run=_tune)
    _register_plan(commands)


def _register_plan(commands) -> None:
    plan = commands.add_parser(
        "plan", help="project step time and efficiency to many nodes from the cost model (a model, no MPI)",
        description="Project the time per full-batch gradient step and the parallel efficiency on 1, 2, 4, ... "
                    "nodes from the alpha-beta-gamma cost model (calibrated by 'mpigd tune') and the compute "
                    "rate of the model's kernel measured here. A MODEL, not a measurement. Runs without MPI.")
    plan.add_argument("--nodes", type=int, default=1024, help="largest node count")
    plan.add_argument("--ranks-per-node", type=int, default=1,
                      help="ranks per node; > 1 models a reduce/broadcast inside each node")
    plan.add_argument("--rows", type=int, required=True, help="global rows (strong) or rows per rank (weak)")
    plan.add_argument("--features", type=int, required=True, help="features per row")
    plan.add_argument("--mode", choices=("strong", "weak"), default="strong")
    plan.add_argument("--model", choices=MODELS, default="logistic")
    plan.add_argument("--classes", type=int, default=10, help="classes of the softmax and mlp models")
    plan.add_argument("--hidden", type=widths, default="64", help="mlp hidden widths, comma-separated")
    plan.add_argument("--dtype", choices=DTYPES, default="float64")
    plan.add_argument("--compute-rate", type=float, metavar="ROWS_PER_S",
                      help="rows per second per rank (default: measure the model's kernel here)")
    plan.add_argument("--sample-rows", type=int, default=200_000, help="rows timed to measure the rate")
    plan.add_argument("--repeats", type=int, default=5, help="timed kernel calls after a warm-up (median)")
    plan.add_argument("--tune-file", type=nonempty_path, metavar="FILE",
                      help="calibration (default: $MPIGD_TUNE_FILE, the default path of 'mpigd tune', else "
                           "built-in defaults)")
    plan.add_argument("--network", choices=("ib100",),
                      help="replace alpha and beta between nodes with a preset: ib100 = 100 Gb/s InfiniBand-like, "
                           "alpha 2 us, beta 1/(12 GB/s) (the calibration is intra-node)")
    plan.add_argument("--alpha", type=float, metavar="SECONDS", help="latency between nodes (overrides)")
    plan.add_argument("--beta", type=float, metavar="S_PER_BYTE", help="inverse bandwidth between nodes (overrides)")
    plan.add_argument("--gamma", type=float, metavar="S_PER_BYTE", help="local add cost per byte (overrides)")
    plan.add_argument("--json", type=nonempty_path, metavar="FILE",
                      help="write the projection and its parameters as JSON")
    plan.add_argument("--csv", type=nonempty_path, metavar="FILE", help="write the projection as CSV")
    plan.add_argument("--plot", type=nonempty_path, metavar="FILE", help="write a PNG (needs matplotlib)")
    plan.set_defaults(run=_plan)


def _bench_kernel(args: argparse.Namespace) -> int:
    from mpigd.bench import kernel, metadata

    _one_process("bench kernel")
    dtypes = DTYPES if args.dtype == "both" else (args.dtype,)
    kernel.check_arguments(args.rows, args.features, dtypes, args.repeats, args.models, args.layout, args.classes,
                           args.hidden, args.density)
    check_output_paths({"--json": args.json, "--csv": args.csv})
    _warn_unread(args, {"--density": "sparse" in args.layout,
                        "--classes": bool({"softmax", "mlp"} & set(args.models)), "--hidden": "mlp" in args.models},
                 "with --models " + ",".join(args.models) + " and --layout " + ",".join(args.layout))
    results = []
    for dtype in dtypes:
        rows = kernel.run(args.rows, args.features, dtype, args.repeats, models=args.models, layouts=args.layout,
                          classes=args.classes, hidden=args.hidden, density=args.density)
        print(kernel.table(rows), flush=True)
        results += rows
    if args.json:
        options = {key: value for key, value in vars(args).items()
                   if key not in ("run", "command", "bench", "argv", "option_names", "option_defaults")}
        write_json_report(args.json, {"metadata": {**metadata.describe(), "command": command_line(args),
                                                   "options": options}, "results": results})
    if args.csv:
        with written(args.csv) as path:
            kernel.write_csv(path, results)
    return EXIT_OK


def _bench_scaling(args: argparse.Namespace) -> int:
    from mpigd.bench import scaling
    from mpigd.comm import run_or_abort, world

    check_output_paths({"--output": args.output})
    comm = world(args.strategy)

    def job() -> int:
        record = scaling.measure(comm, args.mode, args.rows, args.features, args.model, args.dtype, args.steps)
        if comm.rank == 0:
            record["command"] = command_line(args, comm.size)  # the command that re-runs it
            print(json_text(record))
            if args.output:
                scaling.append_record(args.output, record)
        return EXIT_OK

    return run_or_abort(job, comm.rank)


def _bench_scaling_report(args: argparse.Namespace) -> int:
    import csv

    from mpigd.bench import scaling

    _one_process("bench scaling-report")
    check_output_paths({"--json": args.json, "--csv": args.csv,
                        "--plot": args.plot and scaling.plot_paths(args.plot, ["strong"])["strong"]},
                       inputs={"the records file": args.records})
    _check_plotting(args.plot)
    rows = scaling.report(args.records)
    print(scaling.table(rows))
    if args.json:
        write_json_report(args.json, rows)
    if args.csv:
        with written(args.csv) as path, open(path, "w", newline="", encoding="utf-8") as handle:
            # Every field of every record: records written by other versions need not hold the same ones.
            writer = csv.DictWriter(handle, fieldnames=list(dict.fromkeys(key for row in rows for key in row)))
            writer.writeheader()
            writer.writerows(rows)
    if args.plot:
        for mode, path in scaling.plot_paths(args.plot, scaling.modes(rows)).items():
            with written(parent_made(path)) as temporary:
                scaling.plot(rows, mode, temporary)
            print(f"wrote {path}")
    return EXIT_OK


def _bench_allreduce(args: argparse.Namespace) -> int:
    from mpigd.bench import allreduce
    from mpigd.bench.metadata import run_metadata
    from mpigd.comm import run_or_abort, world

    sizes = allreduce.message_sizes(args.min_bytes, args.max_bytes, args.factor)
    check_output_paths({"--json": args.json, "--csv": args.csv, "--plot": args.plot},
                       inputs={"the --tune-file": args.tune_file})
    _check_plotting(args.plot)
    comm = world("native", args.tune_file)

    def job() -> int:
        rows = allreduce.run(comm, sizes, args.dtype, args.strategies, args.repeats, args.tune_file)
        if comm.rank == 0:
            # The file auto and ring read, wherever it was found: the command alone does not name one
            # found through $MPIGD_TUNE_FILE or the default path, and a re-run without it differs.
            meta = run_metadata(comm, dtype=args.dtype, repeats=args.repeats,
                                **allreduce.tune_file_read(args.tune_file, args.strategies, comm.size),
                                command=command_line(args, comm.size))
            print(f"# {meta['mpi_library']}, {counted(comm.size, 'rank')}, {args.dtype}, median of {args.repeats}; "
                  f"xnat = speedup vs native, /best = auto's time over the best of the others "
                  f"(both paired: median over repeats of the ratio within a repeat)")
            print(allreduce.table(rows), flush=True)
            for path, write in ((args.json, allreduce.write_json), (args.csv, allreduce.write_csv),
                                (args.plot, allreduce.plot)):
                if path:
                    with written(path) as temporary:
                        write(temporary, meta, rows)
        return EXIT_OK

    return run_or_abort(job, comm.rank)


def _bench_solvers(args: argparse.Namespace) -> int:
    from mpigd.bench import solvers

    _one_process("bench solvers", " (it launches its own mpiexec jobs)")
    check_output_paths({"--json": args.json})
    results = solvers.run(args.models, args.rows, args.features, args.l2, args.ranks, args.repeats)
    results["metadata"]["command"] = command_line(args)
    print(solvers.table(results))
    if args.json:
        write_json_report(args.json, results)
    return EXIT_OK


def _bench_solvers_worker(args: argparse.Namespace) -> int:
    from mpigd.bench import solvers
    from mpigd.comm import run_or_abort, world

    comm = world("native")

    def job() -> int:
        records = solvers.worker(comm, args.model, args.rows, args.features, args.l2, args.target, args.repeats)
        if comm.rank == 0:
            with open(args.output, "w", encoding="utf-8") as handle:
                json.dump(records, handle)
        return EXIT_OK

    return run_or_abort(job, comm.rank)


def _bench_sparse(args: argparse.Namespace) -> int:
    from mpigd.bench import sparse

    _one_process("bench sparse")
    check_output_paths({"--json": args.json})
    results = sparse.run(args.rows, args.features, args.densities, args.classes, args.repeats)
    print(sparse.table(results), flush=True)
    if args.json:
        from mpigd.bench import metadata

        # As bench kernel's: a bare list of records said neither what machine, commit nor command.
        write_json_report(args.json, {"metadata": {**metadata.describe(), "command": command_line(args)},
                                      "results": results})
    return EXIT_OK


def _tune(args: argparse.Namespace) -> int:
    from mpigd.bench.allreduce import message_sizes
    from mpigd.comm import run_or_abort, tuning, world

    sizes = message_sizes(args.min_bytes, args.max_bytes, 2)
    check_output_paths({"--output": args.output})
    comm = world()
    if args.output is None:
        # The default path (its name holds the rank count) was only tried once the measuring was
        # done: a cache directory that cannot be written was a traceback and an abort, minutes late.
        check_output_paths({"the default tune file (set --output or $XDG_CACHE_HOME)":
                            str(tuning.default_path(comm.size))})

    def job() -> int:
        result = tuning.calibrate(comm, sizes, args.dtype, args.repeats)
        if comm.rank == 0:
            from mpigd.bench.metadata import run_metadata

            # What re-makes the file: the command, and the commit and versions it ran.
            result.metadata = run_metadata(comm, repeats=args.repeats,
                                           command=command_line(args, comm.size))
            path = tuning.save(result, args.output)
            m = result.model
            print(f"alpha {m.alpha * 1e6:.2f} us, beta {m.beta * 1e9:.4f} ns/byte "
                  f"({1e-9 / m.beta if m.beta else float('inf'):.2f} GB/s), gamma {m.gamma * 1e9:.4f} ns/byte")
            if result.crossover is not None:
                steps = ", ".join(f"{row['strategy']} up to {row['max_bytes']} B" if row["max_bytes"]
                                  else f"{row['strategy']} beyond" for row in result.crossover.as_list())
                print(f"auto on {counted(comm.size, 'rank')}: {steps}")
            print(f"wrote {path}")
        return EXIT_OK

    return run_or_abort(job, comm.rank)


def _plan(args: argparse.Namespace) -> int:
    # Imports nothing from mpi4py: a projection needs no MPI, and may run on a login node.
    from mpigd.bench import plan, plan_report

    _one_process("plan")
    check_output_paths({"--json": args.json, "--csv": args.csv, "--plot": args.plot},
                       inputs={"the --tune-file": args.tune_file})
    _check_plotting(args.plot)
    result = plan.make_plan(args.model, args.rows, args.features, args.nodes, args.dtype, args.classes,
                            tuple(args.hidden), args.ranks_per_node, args.mode, args.compute_rate, args.sample_rows,
                            args.repeats, args.tune_file, args.network, args.alpha, args.beta, args.gamma)
    # After make_plan's checks: a refusal stays the one line it is.
    _warn_unread(args, {"--classes": args.model in ("softmax", "mlp"), "--hidden": args.model == "mlp"},
                 f"with --model {args.model}")
    result["metadata"]["command"] = command_line(args)
    print(plan_report.table(result), flush=True)
    for path, write in ((args.json, plan_report.write_json), (args.csv, plan_report.write_csv),
                        (args.plot, plan_report.plot)):
        if path:
            with written(path) as temporary:
                write(temporary, result)
            print(f"wrote {path}")
    return EXIT_OK


def _warn_unread(args: argparse.Namespace, read: dict[str, bool], why: str) -> None:
    """Warn about each option in ``read`` given a value other than its default where the command,
    as configured (``why``), does not read it: a --classes 100 with --model logistic was ignored in
    silence, and the projection looked like the one asked for."""
    for option, is_read in read.items():
        name = option[2:]
        if not is_read and getattr(args, name) != args.option_defaults[name]:
            warn(f"{option} is not read {why}")


def _one_process(command: str, why: str = "") -> None:
    """Refuse a command that runs as one process when it was launched on several ranks: each rank ran
    it whole, printing every table once per rank, writing each file from every rank, and timing
    kernels that competed with each other for the cores and the memory bandwidth."""
    from mpigd.environment import launch_size

    ranks = launch_size()
    if ranks > 1:
        raise UsageError(f"{command} runs as one process{why}: run it without mpiexec (this launch has {ranks} ranks)")


def _check_plotting(plot_path: str | None) -> None:
    """Refuse ``--plot`` without matplotlib before the work, not after it."""
    if plot_path and importlib.util.find_spec("matplotlib") is None:
        raise UsageError("--plot needs matplotlib: pip install 'mpigd[plot]'")
