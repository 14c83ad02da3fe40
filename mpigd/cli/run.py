"""The commands that train and apply models: train, gen, predict, evaluate, info, compile."""

from __future__ import annotations

import argparse

from mpigd.cli.common import (add_data_arguments, check_output_paths, choice_list, config_from, nonempty_path, numbers,
                              widths)
from mpigd.config import ACTIVATIONS, ALGORITHMS, DTYPES, MODELS, OPTIMIZERS, SCHEDULES, STRATEGIES, TASKS, Config
from mpigd.errors import EXIT_OK
from mpigd.outputs import json_text, written
from mpigd.wording import counted


def register(commands) -> None:
    """Add the subcommands to ``commands`` (an argparse sub-parsers action)."""
    defaults = Config()
    train = commands.add_parser("train", help="train a model (run under mpiexec for several ranks)")
    data = train.add_argument_group("data")
    add_data_arguments(data, defaults)
    add = data.add_argument
    add("--standardize", action="store_true", help="scale features to global mean 0, variance 1 (saved in params.npz)")
    add("--test-data", type=nonempty_path, default=None,
        help="held-out data, same format rules; test metrics go to summary.json")
    add("--test-labels", type=nonempty_path, default=None, help="the labels .npy file of --test-data")
    add("--holdout", type=float, default=defaults.holdout, help="fraction of rows held out for evaluation")
    add = train.add_argument_group("model").add_argument
    add("--model", choices=MODELS, default=defaults.model)
    add("--classes", type=int, default=defaults.classes,
        help="classes of softmax/mlp (0: the labels found; K: labels 0..K-1)")
    add("--hidden", type=widths, default=defaults.hidden, help="mlp hidden widths, e.g. 64,32")
    add("--activation", choices=ACTIVATIONS, default=defaults.activation, help="mlp hidden activation")
    add("--task", choices=TASKS, default=defaults.task or None, help="mlp head (default: classification)")
    add("--l1", type=float, default=defaults.l1, help="L1 penalty: objective += l1 * |w|_1 (proximal step)")
    add("--l2", type=float, default=defaults.l2, help="L2 penalty: objective += l2/2 * |w|^2")
    add = train.add_argument_group("optimisation").add_argument
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
    add("--memory", type=int, default=defaults.memory, help="L-BFGS/OWL-QN history length")
    add = train.add_argument_group("stopping and evaluation").add_argument
    add("--tol", type=float, default=defaults.tol,
        help="stop when the objective changes by <= tol (relative); lbfgs/owlqn: also the relative gradient "
             "norm (0: 1e-10 for them)")
    add("--patience", type=int, default=defaults.patience,
        help="stop after this many evaluations without a better held-out loss (0: off)")
    add("--eval-every", type=int, default=defaults.eval_every, help="epochs between evaluations (0: auto)")
    add = train.add_argument_group("communication").add_argument
    add("--strategy", choices=STRATEGIES, default=defaults.strategy, help="allreduce strategy")
    add("--tune-file", type=nonempty_path, default=defaults.tune_file, metavar="FILE",
        help="calibration for --strategy auto and ring (default: $MPIGD_TUNE_FILE, then mpigd tune's default path)")
    add = train.add_argument_group("output").add_argument
    add("--out", type=nonempty_path, default=None,
        help="directory for summary.json, metrics.jsonl, params.npz, model.json")
    add("--quiet", action="store_true", help="print nothing but errors")
    ft = train.add_argument_group("fault tolerance (see README: Fault tolerance and checkpoints)").add_argument
    ft("--checkpoint-every", type=int, default=defaults.checkpoint_every, metavar="N", help="steps between checkpoints")
    ft("--checkpoint-seconds", type=float, default=defaults.checkpoint_seconds, metavar="S",
       help="seconds between checkpoints (rank 0's clock, agreed by all ranks)")
    ft("--checkpoint-dir", type=nonempty_path, default=None, metavar="DIR",
       help="where checkpoints go (default: OUT/checkpoints)")
    ft("--keep", type=int, default=defaults.keep, metavar="K", help="keep the newest K checkpoints")
    ft("--resume", action="store_true", help="continue from the newest valid checkpoint, if any")
    ft("--step-timeout", type=float, default=defaults.step_timeout, metavar="T",
       help="end the job, with every stack printed, if no step finishes for T seconds (0: off)")
    ft("--startup-timeout", type=float, default=defaults.startup_timeout, metavar="S",
       help="end the job, with every stack printed, if the first step has not finished S seconds after "
            "training began: data reading and kernel compilation included (0: off)")
    ft("--clip-grad-norm", type=float, default=defaults.clip_grad_norm, metavar="C",
       help="scale the global gradient to norm at most C (local-sgd: a round of H steps to H*C) (0: off)")
    train.set_defaults(run=_train)

    gen = commands.add_parser("gen", help="write a synthetic data set to a file (in parallel under mpiexec)")
    gen.add_argument("--rows", type=int, required=True, help="rows to write")
    gen.add_argument("--features", type=int, required=True, help="features per row")
    gen.add_argument("--task", choices=("regression", "classification"), default="classification")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--format", choices=("npy", "hdf5", "libsvm", "csv"), required=True)
    gen.add_argument("--density", type=float, default=0.0,
                     help="fraction of non-zero features in [0, 1), as train's; 0 (default): dense, every feature "
                          "non-zero; every format (LIBSVM leaves the zeros out)")
    gen.add_argument("--output", type=nonempty_path, required=True,
                     help="file to write (npy: a directory for X.npy and y.npy)")
    gen.add_argument("--quiet", action="store_true", help="print nothing but errors")
    gen.set_defaults(run=_gen)

    for name, helptext, run in (("predict", "write the predictions of a trained model to a .npy file", _predict),
                                ("evaluate", "the loss and metrics of a trained model on a data set", _evaluate)):
        command = commands.add_parser(name, help=helptext)
        command.add_argument("--params", type=nonempty_path, required=True,
                             help="params.npz of a run (model.json beside it)")
        add_data_arguments(command, defaults)
        command.add_argument("--output", type=nonempty_path, required=name == "predict",
                             help="predictions (.npy)" if name == "predict" else "also write the metrics (JSON)")
        command.add_argument("--quiet", action="store_true", help="print nothing but errors")
        command.set_defaults(run=run)

    info = commands.add_parser("info", help="MPI library, rank count, Numba and threading set-up")
    info.set_defaults(run=_info)

    compile_ = commands.add_parser(
        "compile", help="fill Numba's kernel cache ahead of a job (on 2+ ranks for the several-rank paths too)")
    compile_.add_argument("--models", type=choice_list(*MODELS), default=",".join(MODELS),
                          help="comma-separated (default: all four)")
    compile_.add_argument("--dtype", choices=DTYPES + ("both",), default="both")
    compile_.add_argument("--quiet", action="store_true")
    compile_.set_defaults(run=_compile)


def _train(args: argparse.Namespace) -> int:
    from mpigd.signals import catch_preemption_early, release_early_flag

    catch_preemption_early()  # before the imports, MPI's start and the data: seconds at scale
    try:
        return _train_caught(args)
    finally:
        release_early_flag()  # train() takes it over; refused input never got there


def _train_caught(args: argparse.Namespace) -> int:
    from mpigd.comm import run_or_abort, world
    from mpigd.trainer import train

    config = config_from(args)
    check_output_paths(directories={"--out": config.out, "--checkpoint-dir": config.checkpoint_directory})
    comm = world(config.strategy, config.tune_file)

    def job() -> int:
        result = train(config, comm)
        if comm.rank == 0 and not config.quiet:
            summary = result.summary
            metrics = numbers(summary["metrics"])
            times = summary["time"]
            print(f"final loss {summary['final_loss']:.8g}  {metrics}  ({counted(summary['ranks'], 'rank')}, "
                  f"{times['wall_seconds']:.2f}s wall, {times['communication_seconds']:.3f}s allreduce "
                  f"by {summary['strategy']})")
            if "test" in summary:
                print(f"held-out ({summary['test']['rows']} rows): loss {summary['test']['loss']:.8g}  "
                      f"{numbers({k: v for k, v in summary['test'].items() if k not in ('loss', 'rows')})}")
            if config.out:
                print(f"wrote {config.out}/summary.json, metrics.jsonl, params.npz, model.json")
        return EXIT_OK

    return run_or_abort(job, comm.rank)


def _gen(args: argparse.Namespace) -> int:
    from mpigd.comm import run_or_abort, world
    from mpigd.data import generate

    spec = generate.Spec(args.rows, args.features, args.task, args.seed, args.format, args.output, args.density)
    comm = world("native")

    def job() -> int:
        written = generate.write(spec, comm)
        if comm.rank == 0 and not args.quiet:
            print(f"wrote {spec.output}: {spec.rows} rows x {spec.features} features, {spec.format}, "
                  f"{written / 1e6:.2f} MB, {counted(comm.size, 'rank')}")
        return EXIT_OK

    return run_or_abort(job, comm.rank)


def _predict(args: argparse.Namespace) -> int:
    return _apply(args, "predict")


def _evaluate(args: argparse.Namespace) -> int:
    return _apply(args, "evaluate")


def _apply(args: argparse.Namespace, what: str) -> int:
    from mpigd.comm import run_or_abort, world
    from mpigd.predict import evaluate_file, predict

    config = config_from(args)
    check_output_paths({"--output": args.output})
    comm = world(config.strategy)

    def job() -> int:
        if what == "predict":
            result = predict(config, args.params, args.output, comm)
        else:
            result = evaluate_file(config, args.params, comm, output=args.output)
        if comm.rank == 0:
            text = json_text(result, indent=2, sort_keys=True)
            if what == "evaluate" and args.output:
                with written(args.output) as path, open(path, "w", encoding="utf-8") as handle:
                    handle.write(text + "\n")
            if not args.quiet:
                print(text if what == "evaluate" else f"wrote {result['rows']} predictions to {args.output}")
        return EXIT_OK

    return run_or_abort(job, comm.rank)


def _info(args: argparse.Namespace) -> int:
    from mpigd.comm import world
    from mpigd.info import describe

    comm = world(check_launch=False)  # info reports the rank count MPI sees, even when the launch is wrong
    facts = describe(comm)
    if comm.rank == 0:
        width = max(map(len, facts))
        for key, value in facts.items():
            print(f"{key:<{width}}  {value}")
    return EXIT_OK


def _compile(args: argparse.Namespace) -> int:
    import os

    from mpigd.comm import run_or_abort, world
    from mpigd.warmup import fill_cache

    comm = world("native")

    def job() -> int:
        done = fill_cache(comm, tuple(args.models), DTYPES if args.dtype == "both" else (args.dtype,))
        if comm.rank == 0 and not args.quiet:
            cache = os.environ.get("NUMBA_CACHE_DIR")
            print(f"compiled {done['compiled']} kernels and loaded {done['loaded']} from the cache "
                  f"{'in ' + cache if cache else 'next to the kernels'}: {done['workloads']} trainings on "
                  f"{counted(comm.size, 'rank')} in {done['seconds']:.1f}s")
            if comm.size == 1:
                print("one rank: the kernels of runs on several ranks were left out (run it under mpiexec -n 2)")
        return EXIT_OK

    return run_or_abort(job, comm.rank)
