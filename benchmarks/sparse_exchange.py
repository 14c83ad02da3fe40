"""Plain SGD on wide CSR rows: each step's gradient non-zeros exchanged as pairs, against every weight summed.

Run from the repository root with the environment of run/_env.sh, on 1 or more ranks:

    mpiexec -n P python benchmarks/sparse_exchange.py [--models logistic softmax] [--classes 20]
        [--rows 20000] [--features 100000] [--density 0.0005] [--batches 2,64] [--lr 0.01]
        [--l2 1e-4] [--epochs 2] [--repeats 5] [--skewed] [--json FILE]

For every model and global batch, ``mpigd.train`` (``--algo sgd``, constant rate, one evaluation at
the end) on mpigd's synthetic CSR rows (``--skewed``: rows of lengths spread as text's), written
once by rank 0 as a CSR ``.npz``, with the sparse exchange
(:class:`~mpigd.algorithms.sparse_exchange.SparseExchange`: on several ranks, and for softmax on one
rank too) and with it switched off in this process (every weight's gradient allreduced; on one
rank the step kernels over every weight), taking turns in every repeat after a warm-up. Whole fits
are timed (reading the rows, the epochs, the evaluation), on the slowest rank. Prints the median
time per epoch of each, their ratio, and the final objective of each, which must agree to rounding.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np

from mpigd import Config, train
from mpigd.algorithms.sparse_exchange import SparseExchange
from mpigd.comm import world
from mpigd.data.synthetic_models import generate_sparse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["logistic", "softmax"],
                        choices=["logistic", "linear", "softmax"])
    parser.add_argument("--classes", type=int, default=20, help="softmax's classes")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--features", type=int, default=100_000)
    parser.add_argument("--density", type=float, default=0.0005)
    parser.add_argument("--skewed", action="store_true",
                        help="row lengths spread as text's are (lognormal), about the same mean, instead of "
                             "mpigd's synthetic rows")
    parser.add_argument("--batches", default="2,64", help="global batch sizes, comma-separated")
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--l2", type=float, default=1e-4)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    comm = world()
    records = []
    scratch = comm.mpi_comm.bcast(tempfile.mkdtemp(prefix="sparse_exchange_") if comm.rank == 0 else None, root=0)
    for model in args.models:
        classes = args.classes if model == "softmax" else 2
        data = str(Path(scratch) / f"{model}.npz")
        if comm.rank == 0:
            task = "regression" if model == "linear" else "classification"
            if args.skewed:
                indptr, indices, values, y = skewed_rows(task, args.rows, args.features, args.density, classes)
            else:
                X, y = generate_sparse(task, args.features, classes, args.density, 0, 0, args.rows, "float64")
                indptr, indices, values = X.indptr, X.indices, X.data
            np.savez(data, indptr=indptr, indices=indices, data=values, shape=np.array([args.rows, args.features]),
                     y=y)
        comm.barrier()
        for batch in (int(b) for b in args.batches.split(",")):
            config = Config(model=model, data=data, algo="sgd", batch_size=batch, lr=args.lr, l2=args.l2,
                            epochs=args.epochs, eval_every=args.epochs, seed=0, quiet=True)

            def fit(exchanged: bool) -> tuple[float, dict]:
                """The slowest rank's seconds for the whole fit, and this rank's summary."""
                switch = mock.patch.object(SparseExchange, "for_run", classmethod(lambda cls, sgd: None))
                with contextlib.nullcontext() if exchanged else switch:
                    comm.barrier()
                    start = time.perf_counter()
                    summary = train(config, comm).summary
                    seconds = np.array([time.perf_counter() - start])
                comm.allreduce_max(seconds)
                return float(seconds[0]), summary

            times: dict[bool, list[float]] = {True: [], False: []}
            summaries = {}
            for exchanged in (True, False):  # warm-up: JIT cache, first touch
                fit(exchanged)
            for _ in range(args.repeats):
                for exchanged in (True, False):
                    seconds, summaries[exchanged] = fit(exchanged)
                    times[exchanged].append(seconds / args.epochs)
            gathered, summed = statistics.median(times[True]), statistics.median(times[False])
            records.append({
                "model": model, "batch": batch, "ranks": comm.size, "rows": args.rows, "features": args.features,
                "density": args.density, "classes": classes,
                "exchange": summaries[True]["gradient_exchange"],
                "exchanged_s_per_epoch": gathered, "summed_s_per_epoch": summed, "speedup": summed / gathered,
                "exchanged_objective": summaries[True]["final_loss"],
                "summed_objective": summaries[False]["final_loss"],
            })
    comm.barrier()
    if comm.rank == 0:
        shutil.rmtree(scratch)
        print(f"# {comm.size} rank(s), {comm.library()}, float64, {args.rows} x {args.features} CSR, density "
              f"{args.density:g}, lr {args.lr:g}, l2 {args.l2:g}, {args.epochs} epochs, median of {args.repeats}")
        print("| model | batch | exchange | exchanged s/epoch | summed s/epoch | summed / exchanged | objectives |")
        print("|---|---|---|---|---|---|---|")
        for r in records:
            print(f"| {r['model']} | {r['batch']} | {r['exchange']} | {r['exchanged_s_per_epoch']:.4f} | "
                  f"{r['summed_s_per_epoch']:.4f} | {r['speedup']:.1f}x | "
                  f"{r['exchanged_objective']:.6f} / {r['summed_objective']:.6f} |")
        if args.json:
            Path(args.json).write_text(json.dumps(records, indent=2) + "\n")
    sys.stdout.flush()


def skewed_rows(task: str, rows: int, features: int, density: float, classes: int, seed: int = 0):
    """CSR rows whose lengths are lognormal (sigma 1.2: a median about half the mean, a longest row
    some 50 times it) with a mean of about ``density * features``, distinct random columns, values
    of variance one over the mean length; labels from a random linear model (``classes`` > 2: the
    class of the largest of that many scores; regression: the margin plus noise)."""
    rng = np.random.default_rng(seed)
    mean = density * features
    lengths = rng.lognormal(np.log(mean) - 0.72, 1.2, rows).astype(np.int64).clip(1, features // 4)
    indptr = np.concatenate(([0], np.cumsum(lengths)))
    indices = np.concatenate([np.sort(rng.choice(features, n, replace=False)) for n in lengths]).astype(np.int32)
    values = rng.standard_normal(indptr[-1]) / np.sqrt(mean)
    scores = np.stack([np.add.reduceat(values * rng.standard_normal(features)[indices], indptr[:-1])
                       for _ in range(classes if classes > 2 else 1)], axis=1)
    if task == "regression":
        y = scores[:, 0] + 0.1 * rng.standard_normal(rows)
    elif classes > 2:
        y = scores.argmax(axis=1).astype(np.float64)
    else:
        y = (scores[:, 0] + 0.3 * rng.standard_normal(rows) > 0).astype(np.float64)
    return indptr, indices, values, y


if __name__ == "__main__":
    main()
