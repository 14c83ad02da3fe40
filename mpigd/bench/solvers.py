"""``mpigd bench solvers``: time to accuracy of mpigd's solvers on 1..P ranks beside scikit-learn.

The driver (a plain process, not under mpiexec) generates the whole synthetic data set, computes
the optimum with a tight reference solve, times scikit-learn in its own process, and launches
``mpiexec -n P python -m mpigd bench solvers-worker`` for each rank count; the worker times each
mpigd solver on data already in memory. A fit is timed until its objective is within ``rel``
(1e-6) of the optimum: mpigd's iterations are stopped as soon as the objective they computed
anyway reaches the target; scikit-learn, which has no such hook, gets the loosest ``tol`` from a
ladder that reaches the target (found first, untimed). Both are medians over repeats after a
warm-up. Whole-process times (``python -m mpigd train`` under mpiexec: start-up, data generation,
JIT cache loading and the default stopping rule) are measured once each.

Adding a model is one entry in :data:`SOLVERS` (and its scikit-learn twin in :func:`_sklearn`).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np

from mpigd.bench.timing import measure
from mpigd.checks import check_choices, check_fits_memory
from mpigd.errors import UsageError

# Which mpigd solvers run for each model; gd gets ``max epochs`` and its learning rate.
SOLVERS: dict[str, tuple[str, ...]] = {"linear": ("gd", "lbfgs", "normal"), "logistic": ("gd", "lbfgs"),
                                        "softmax": ("gd", "lbfgs")}
GD = {"linear": (200, 0.5), "logistic": (300, 4.0), "softmax": (300, 4.0)}
CLASSES = 3  # softmax: the classes of mpigd's synthetic data when none are asked for
TOL_LADDER = (1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-10, 1e-12)


def _objective(model: str, X: np.ndarray, y: np.ndarray, coef: np.ndarray, intercept, l2: float) -> float:
    """The README's objective; softmax's ``coef`` is features x classes and ``intercept`` per class."""
    z = X @ coef + intercept
    if model == "softmax":
        top = z.max(axis=1, keepdims=True)
        log_norm = top[:, 0] + np.log(np.exp(z - top).sum(axis=1))
        loss = log_norm - z[np.arange(y.size), y.astype(np.int64)]
    else:
        loss = 0.5 * (z - y) ** 2 if model == "linear" else np.logaddexp(0.0, z) - y * z
    return float(loss.mean() + 0.5 * l2 * np.sum(coef * coef))


def _sklearn(model: str, l2: float, tol: float, n: int):
    from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge

    if model == "linear":
        return Ridge(alpha=n * l2, solver="cholesky") if l2 else LinearRegression()
    return LogisticRegression(C=1.0 / (n * l2), tol=tol, max_iter=10_000)


# -- worker: under mpiexec ---------------------------------------------------------------------
def worker(comm, model: str, rows: int, features: int, l2: float, target: float, repeats: int) -> list[dict]:
    """Time each solver of ``model`` to ``target`` on ``comm``. Collective; records on every rank."""
    from mpigd.algorithms import make_algorithm
    from mpigd.config import Config
    from mpigd.data import load_shard
    from mpigd.models import make_model

    base = Config(model=model, rows=rows, features=features, l2=l2, quiet=True)
    shard = load_shard(base, comm)
    records = []
    for algo in SOLVERS[model]:
        epochs, lr = GD[model] if algo == "gd" else (100, base.lr)
        config = base.replace(algo=algo, epochs=epochs, lr=lr)

        def fit() -> tuple[float, int, int, float]:
            net = make_model(model, features, CLASSES)
            algorithm = make_algorithm(config, net, shard, comm)
            params = net.init_params(np.dtype(config.dtype))
            comm.barrier()
            start = time.perf_counter()
            value = float("inf")
            for epoch in range(1, epochs + 1):
                value = algorithm.run_epoch(params, epoch)
                if value <= target or getattr(algorithm, "converged", False):
                    break
            elapsed = np.array([time.perf_counter() - start])
            comm.allreduce_max(elapsed)
            return float(elapsed[0]), algorithm.steps, algorithm.evaluations, value

        fit()  # warm-up: JIT, first touch
        runs = [fit() for _ in range(repeats)]
        seconds = sorted(r[0] for r in runs)
        _, steps, evaluations, value = runs[-1]
        records.append({"model": model, "solver": algo, "ranks": comm.size, "mpi_library": comm.library(),
                        "median_s": float(np.median(seconds)),
                        "min_s": seconds[0], "max_s": seconds[-1], "repeats": repeats, "iterations": steps,
                        "passes": evaluations, "objective": value, "reached": bool(value <= target)})
    return records


# -- driver: a plain process -------------------------------------------------------------------
def _mpiexec() -> list[str]:
    beside = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    exe = beside if os.path.exists(beside) else "mpiexec"
    version = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30).stdout
    return [exe, "--oversubscribe"] if "Open MPI" in version else [exe]


def _environment() -> dict[str, str]:
    return dict(os.environ, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")


def _whole_process(model: str, algo: str, ranks: int, rows: int, features: int, l2: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as out:
        command = [*_mpiexec(), "-n", str(ranks), sys.executable, "-m", "mpigd", "train", "--model", model,
                   "--algo", algo, "--rows", str(rows), "--features", str(features), "--l2", repr(l2),
                   "--quiet", "--out", out]
        start = time.perf_counter()
        subprocess.run(command, check=True, timeout=600, env=_environment())
        seconds = time.perf_counter() - start
        with open(os.path.join(out, "summary.json"), encoding="utf-8") as handle:
            summary = json.load(handle)
    return {"process_s": seconds, "process_objective": summary["final_loss"],
            "startup_s": summary["time"]["startup_seconds"], "process_iterations": summary["steps"]}


def run(models: list[str], rows: int, features: int, l2: float, ranks: list[int], repeats: int,
        rel: float = 1e-6) -> dict[str, Any]:
    """Every measurement for ``models``; see the module docstring: ``mpigd bench solvers``.

    Call it from a plain process, not under mpiexec, and on one rank only: it launches its own
    ``mpiexec`` jobs, one per rank count of ``ranks``, and needs scikit-learn. Print the result
    with :func:`table`. Arguments the command refuses raise :class:`~mpigd.errors.UsageError`
    before anything runs.
    """
    check_choices("--models", models, tuple(SOLVERS))
    if min(rows, features, repeats) < 1 or isinstance(ranks, int) or not ranks or min(ranks) < 1:
        raise UsageError(f"bench solvers needs --rows, --features, --repeats >= 1 and --ranks >= 1; got {rows}, "
                         f"{features}, {repeats} and {ranks!r}")
    # The logistic and softmax problems are regularized (scikit-learn's C is 1 / (rows * l2)).
    if not (math.isfinite(l2) and l2 >= 0) or (l2 == 0 and set(models) - {"linear"}):
        raise UsageError(f"bench solvers needs a finite --l2 > 0 for logistic and softmax; got {l2}")
    if not 0 < rel < 1:
        raise UsageError(f"bench solvers needs rel in (0, 1); got {rel}")
    # The driver holds the whole data set, and the linear reference a copy with the intercept column
    # that lstsq copies again: a size that cannot fit was a MemoryError's traceback, not one line.
    check_fits_memory(3 * rows * (features + 1) * 8, f"bench solvers' {rows:,} rows x {features:,} features")
    from threadpoolctl import threadpool_info, threadpool_limits

    from mpigd.data import synthetic, task_of
    from mpigd.data.synthetic_models import generate_dense

    results: dict[str, Any] = {"rows": rows, "features": features, "dtype": "float64", "rel": rel, "records": []}
    for model in models:
        model_l2 = l2 if model != "linear" else 0.0  # linear: plain least squares, as LinearRegression
        if model == "softmax":
            X, y = generate_dense("classification", features, CLASSES, 0, 0, rows, "float64")
        else:
            X, y = synthetic.generate(task_of(model), features, 0, 0, rows, "float64")
        start = time.perf_counter()
        if model == "linear":
            A = np.hstack([X, np.ones((rows, 1))])
            theta = np.linalg.lstsq(A, y, rcond=None)[0]
            coef, intercept, how = theta[:-1], theta[-1], "numpy.linalg.lstsq on [X, 1] (QR/SVD, float64)"
            del A
        else:
            fit = _sklearn(model, model_l2, 1e-12, rows).fit(X, y)
            coef, intercept = _coef(fit)
            how = "scikit-learn lbfgs, tol 1e-12"
        optimum = _objective(model, X, y, coef, intercept, model_l2)
        results.setdefault("reference", {})[model] = {"objective": optimum, "method": how,
                                                      "seconds": time.perf_counter() - start}
        target = optimum + rel * abs(optimum)
        for threads in (1, os.cpu_count() or 1):
            with threadpool_limits(limits=threads):
                tol = next((t for t in TOL_LADDER
                            if _objective(model, X, y, *_coef(_sklearn(model, model_l2, t, rows).fit(X, y)), model_l2)
                            <= target), TOL_LADDER[-1])
                timing = measure(lambda: _sklearn(model, model_l2, tol, rows).fit(X, y), repeats=repeats)
                estimator = _sklearn(model, model_l2, tol, rows).fit(X, y)
            results["records"].append({
                "model": model, "solver": f"scikit-learn {type(estimator).__name__}" +
                (f" (tol {tol:g})" if model != "linear" else ""), "ranks": 1, "threads": threads,
                **timing.as_dict(), "iterations": int(np.max(getattr(estimator, "n_iter_", [1]))),
                "objective": _objective(model, X, y, *_coef(estimator), model_l2), "reached": True})
        del X, y
        for count in ranks:
            with tempfile.NamedTemporaryFile(suffix=".json") as handle:
                command = [*_mpiexec(), "-n", str(count), sys.executable, "-m", "mpigd", "bench", "solvers-worker",
                           "--model", model, "--rows", str(rows), "--features", str(features), "--l2", repr(model_l2),
                           "--target", repr(target), "--repeats", str(repeats), "--output", handle.name]
                subprocess.run(command, check=True, timeout=1200, env=_environment())
                records = json.load(open(handle.name, encoding="utf-8"))
            for record in records:
                if record["solver"] != "gd":
                    record.update(_whole_process(model, record["solver"], count, rows, features, model_l2))
                    record["process_rel_error"] = (record["process_objective"] - optimum) / abs(optimum)
                results["records"].append(record)
    results["blas"] = [f"{p.get('internal_api')} {p.get('version')}" for p in threadpool_info()]
    from mpigd.bench.metadata import describe

    # Where the figures came from, as the other benchmarks' JSON says it (the command: the caller's).
    libraries = sorted({r["mpi_library"] for r in results["records"] if "mpi_library" in r})
    results["metadata"] = {**describe(), "mpi_library": "; ".join(libraries) or None,
                           "options": {"models": list(models), "rows": rows, "features": features, "l2": l2,
                                       "ranks": list(ranks), "repeats": repeats, "rel": rel}}
    _ratios(results)
    return results


def _coef(estimator):
    """Coefficients and intercept in the layout of :func:`_objective` (multinomial: features x classes)."""
    if np.ndim(estimator.coef_) == 2 and estimator.coef_.shape[0] > 1:
        return estimator.coef_.T, np.asarray(estimator.intercept_)
    return np.ravel(estimator.coef_), float(np.ravel(estimator.intercept_)[0])


def _ratios(results: dict[str, Any]) -> None:
    """speedup = scikit-learn's best median (one process, 1 thread or every core, whichever was
    faster in this run) / this record's median."""
    baseline: dict[str, float] = {}
    for r in results["records"]:
        if r["solver"].startswith("scikit"):
            baseline[r["model"]] = min(baseline.get(r["model"], float("inf")), r["median_s"])
    for record in results["records"]:
        record["speedup_vs_sklearn"] = baseline[record["model"]] / record["median_s"]
        record["rel_error"] = (record["objective"] - results["reference"][record["model"]]["objective"]) / abs(
            results["reference"][record["model"]]["objective"])


def table(results: dict[str, Any]) -> str:
    """The records as a fixed-width text table."""
    lines = [f"{'model':<9} {'solver':<38} {'ranks':>5} {'thr':>3} {'median s':>9} {'min-max s':>15} {'iters':>5} "
             f"{'passes':>6} {'rel err':>9} {'vs sklearn':>10} {'process s':>9}"]
    for r in results["records"]:
        reached = "" if r["reached"] else " (not reached)"
        process = f"{r['process_s']:.2f}" if "process_s" in r else "-"
        lines.append(f"{r['model']:<9} {r['solver'] + reached:<38} {r['ranks']:>5} {r.get('threads', 1):>3} "
                     f"{r['median_s']:>9.4f} {r['min_s']:>7.4f}-{r['max_s']:<7.4f} {r['iterations']:>5} "
                     f"{r.get('passes', '-'):>6} {r['rel_error']:>9.1e} {r['speedup_vs_sklearn']:>9.2f}x {process:>9}")
    return "\n".join(lines)
