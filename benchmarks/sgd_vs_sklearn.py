"""Mini-batch SGD against scikit-learn's SGDClassifier / SGDRegressor: time per epoch and objective.

Run from the repository root with the environment of run/_env.sh, on 1 or more ranks:

    mpiexec -n P python benchmarks/sgd_vs_sklearn.py [--models logistic linear] [--rows 200000]
        [--features 32] [--epochs 3] [--batches 1:0.01,32:0.1,256:0.5] [--l2 1e-4] [--repeats 5]
        [--local-steps H [--local-only]] [--density F [--allreduced-too]]

Rank 0 writes mpigd's synthetic data set (float64) as X.npy / y.npy in a scratch directory; every
contender fits those rows. mpigd: ``mpigd.train(Config(algo="sgd", data=DIR, ...), comm)`` on every
rank, constant learning rate, the given global batch, ``--epochs`` epochs, one evaluation (at the
end). scikit-learn, on rank 0 while the other ranks wait without spinning: ``SGDClassifier(
loss="log_loss")`` or ``SGDRegressor(loss="squared_error")``, penalty l2 with ``alpha = l2`` (the
same objective: mean loss + (l2/2)‖w‖², intercept unpenalised), ``learning_rate="constant"``,
``eta0`` = batch 1's rate, ``max_iter = epochs``, ``tol=None``, shuffle, no early stopping, no
averaging. ``--local-steps H`` adds ``algo="local-sgd"`` (rounds of ``H`` steps) at every batch size
(``--local-only``: instead of ``sgd``).
``--density F`` below 1 makes the rows sparse instead (about ``F`` of the features non-zero, mpigd's
synthetic CSR rows): written as a CSR ``.npz`` for mpigd, handed to scikit-learn as a SciPy CSR matrix.
``--allreduced-too`` adds, at every batch size, ``sgd`` with every weight's gradient allreduced at
each step (the path that wide CSR rows on several ranks took before
:class:`~mpigd.algorithms.sparse_exchange.SparseExchange` gathered their non-zeros; it is switched
off in this process for that contender).
With batch 1 and a constant rate both run the same algorithm (one row a step, the same
per-row update); only the shuffles differ. Contenders take turns in every repeat (scikit-learn, then
each batch size); the table gives medians over ``--repeats`` after a warm-up, per epoch, and each
contender's median as a ratio to scikit-learn's in the same launch. Whole fits are timed on both
sides (mpigd: reading its rows from the .npy files, the epochs, the final evaluation; scikit-learn:
its input checks and the epochs), divided by the epochs. The objective is the README's, evaluated
on every row (mpigd's ``final_loss``; scikit-learn's from its coefficients). Writes JSON with
``--json``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
from mpi4py import MPI

from mpigd import Config, train
from mpigd.algorithms.sparse_exchange import SparseExchange
from mpigd.comm import world
from mpigd.data import synthetic


def objective(model: str, X: np.ndarray, y: np.ndarray, coef: np.ndarray, intercept: float, l2: float) -> float:
    """The README's objective on every row."""
    z = X @ coef + intercept
    loss = 0.5 * (z - y) ** 2 if model == "linear" else np.logaddexp(0.0, z) - y * z
    return float(loss.mean() + 0.5 * l2 * float(coef @ coef))


def write_rows(task: str, features: int, rows: int, density: float, path: str):
    """mpigd's synthetic rows, written where ``path`` says (a directory of X.npy and y.npy, or with a
    density below 1 a CSR ``.npz``); returns them as scikit-learn takes them (SciPy CSR when sparse)."""
    if density >= 1:
        X, y = synthetic.generate(task, features, 0, 0, rows, "float64")
        np.save(Path(path) / "X.npy", X)
        np.save(Path(path) / "y.npy", y)
        return X, y
    from scipy.sparse import csr_matrix

    from mpigd.data.synthetic_models import generate_sparse

    X, y = generate_sparse(task, features, 2, density, 0, 0, rows, "float64")
    np.savez(path, indptr=X.indptr, indices=X.indices, data=X.data, shape=np.array(X.shape), y=y)
    return csr_matrix((X.data, X.indices, X.indptr), shape=X.shape), y


def sklearn_estimator(model: str, l2: float, lr: float, epochs: int, seed: int):
    from sklearn.linear_model import SGDClassifier, SGDRegressor

    common = dict(penalty="l2", alpha=l2, learning_rate="constant", eta0=lr, max_iter=epochs, tol=None,
                  shuffle=True, early_stopping=False, average=False, fit_intercept=True, random_state=seed)
    if model == "logistic":
        return SGDClassifier(loss="log_loss", **common)
    return SGDRegressor(loss="squared_error", **common)


def wait_quietly(mpi_comm: MPI.Comm) -> None:
    """A barrier the waiting ranks poll with sleeps, so they leave the cores to rank 0's scikit-learn."""
    request = mpi_comm.Ibarrier()
    while not request.Test():
        time.sleep(0.002)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["logistic", "linear"], choices=["logistic", "linear"])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batches", default="1:0.01,32:0.1,256:0.5", help="batch:lr,... (batch 1's lr is eta0)")
    parser.add_argument("--local-steps", type=int, default=0,
                        help="also time --algo local-sgd with this many local steps at every batch (0: not)")
    parser.add_argument("--local-only", action="store_true", help="with --local-steps: time local-sgd, not sgd")
    parser.add_argument("--l2", type=float, default=1e-4)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--density", type=float, default=1.0, help="below 1: sparse rows, this fraction non-zero")
    parser.add_argument("--allreduced-too", action="store_true",
                        help="also time sgd with every weight's gradient allreduced (no sparse exchange)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    batches = [(int(b), float(lr)) for b, lr in (item.split(":") for item in args.batches.split(","))]
    eta0 = dict(batches).get(1, batches[0][1])
    comm = world()
    mpi_comm = comm.mpi_comm
    rank = comm.rank
    records = []
    for model in args.models:
        task = "regression" if model == "linear" else "classification"
        scratch = tempfile.mkdtemp(prefix="sgd_vs_sklearn_") if rank == 0 else None
        scratch = mpi_comm.bcast(scratch, root=0)
        data = str(Path(scratch) / "rows.npz") if args.density < 1 else scratch
        if rank == 0:
            X, y = write_rows(task, args.features, args.rows, args.density, data)
        mpi_comm.Barrier()
        times: dict[str, list[float]] = {}
        objectives: dict[str, float] = {}

        def ours(batch: int, lr: float, local_steps: int = 0, allreduced: bool = False) -> tuple[float, float]:
            algo = dict(algo="local-sgd", local_steps=local_steps) if local_steps else dict(algo="sgd")
            config = Config(model=model, data=data, batch_size=batch, lr=lr, l2=args.l2,
                            epochs=args.epochs, eval_every=args.epochs, seed=0, quiet=True, **algo)
            with mock.patch.object(SparseExchange, "for_run", classmethod(lambda cls, sgd: None)) if allreduced \
                    else contextlib.nullcontext():
                mpi_comm.Barrier()
                start = time.perf_counter()
                result = train(config, comm)
                elapsed = mpi_comm.allreduce(time.perf_counter() - start, op=MPI.MAX)
            return elapsed, result.summary["final_loss"]

        def theirs() -> tuple[float, float]:
            value = None
            mpi_comm.Barrier()
            if rank == 0:
                estimator = sklearn_estimator(model, args.l2, eta0, args.epochs, 0)
                start = time.perf_counter()
                estimator.fit(X, y)
                elapsed = time.perf_counter() - start
                value = objective(model, X, y, np.ravel(estimator.coef_), float(np.ravel(estimator.intercept_)[0]),
                                  args.l2)
            wait_quietly(mpi_comm)
            return mpi_comm.bcast((elapsed, value) if rank == 0 else None, root=0)

        contenders = {"sklearn": theirs}
        if not (args.local_only and args.local_steps):
            contenders.update({f"sgd b={b} lr={lr:g}": (lambda b=b, lr=lr: ours(b, lr)) for b, lr in batches})
        if args.allreduced_too:
            contenders.update({f"sgd allreduced b={b} lr={lr:g}": (lambda b=b, lr=lr: ours(b, lr, allreduced=True))
                               for b, lr in batches})
        if args.local_steps:
            contenders.update({f"local-sgd H={args.local_steps} b={b} lr={lr:g}":
                               (lambda b=b, lr=lr: ours(b, lr, args.local_steps)) for b, lr in batches})
        for name, run in contenders.items():  # warm-up: JIT cache, first touch
            run()
        for _ in range(args.repeats):
            for name, run in contenders.items():
                seconds, value = run()
                times.setdefault(name, []).append(seconds / args.epochs)
                objectives[name] = value
        base = statistics.median(times["sklearn"])
        for name in contenders:
            median = statistics.median(times[name])
            records.append({"model": model, "contender": name, "ranks": comm.size, "rows": args.rows,
                            "features": args.features, "density": args.density, "epochs": args.epochs, "l2": args.l2,
                            "median_s_per_epoch": median, "min_s": min(times[name]), "max_s": max(times[name]),
                            "vs_sklearn": median / base, "objective": objectives[name]})
        if rank == 0:
            for written in Path(scratch).iterdir():
                written.unlink()
            Path(scratch).rmdir()
            del X, y
    if rank == 0:
        layout = f"CSR, density {args.density:g}" if args.density < 1 else "dense"
        print(f"# {comm.size} rank(s), {comm.library()}, float64, {args.rows} x {args.features} {layout}, "
              f"{args.epochs} epochs, l2 {args.l2:g}, median of {args.repeats}")
        print("| model | contender | ranks | s/epoch median (min-max) | time vs sklearn | objective |")
        print("|---|---|---|---|---|---|")
        for r in records:
            print(f"| {r['model']} | {r['contender']} | {r['ranks']} | {r['median_s_per_epoch']:.4f} "
                  f"({r['min_s']:.4f}-{r['max_s']:.4f}) | {r['vs_sklearn']:.2f}x | {r['objective']:.6f} |")
        if args.json:
            Path(args.json).write_text(json.dumps(records, indent=2) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
