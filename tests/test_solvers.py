"""L-BFGS, OWL-QN and the normal equations in one process: the exact optimum, and clear refusals."""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from mpigd import Config, DivergedError, UsageError, train
from mpigd.algorithms.normal import memory_problem
from mpigd.algorithms.owlqn import pseudo_gradient
from mpigd.comm import self_comm
from mpigd.data import synthetic
from mpirun import mpigd

ROWS, FEATURES, SEED = 2000, 5, 3


def _data(task):
    return synthetic.generate(task, FEATURES, SEED, 0, ROWS, "float64")


def _ridge(X, y, l2):
    A = np.hstack([X, np.ones((X.shape[0], 1))])
    return np.linalg.solve(A.T @ A / X.shape[0] + np.diag([l2] * X.shape[1] + [0.0]), A.T @ y / X.shape[0])


def _fit(**changes):
    config = Config(rows=ROWS, features=FEATURES, seed=SEED, quiet=True).replace(**changes)
    return train(config, self_comm())


def _relative(got, expected):
    return np.linalg.norm(got - expected) / np.linalg.norm(expected)


@pytest.mark.parametrize("algo", ["lbfgs", "normal"])
@pytest.mark.parametrize("l2", [0.0, 0.1])
def test_linear_solvers_reach_the_closed_form(algo, l2):
    X, y = _data("regression")
    result = _fit(model="linear", algo=algo, l2=l2, tol=1e-12)
    assert _relative(result.params, _ridge(X, y, l2)) <= 1e-6
    # Codes, as gd's and sgd's are (a sentence here once made scripts match on prose).
    assert result.summary["stopped"]["reason"] in ({"solved"} if algo == "normal" else
                                                   {"gradient_tol", "tol", "line_search"})
    assert result.summary["steps"] < 100 and result.summary["evaluations"] >= result.summary["steps"]


def test_normal_equations_match_scikit_learn_linear_regression():
    from sklearn.linear_model import LinearRegression

    X, y = _data("regression")
    reference = LinearRegression().fit(X, y)
    result = _fit(model="linear", algo="normal")
    assert np.allclose(result.coef, reference.coef_, rtol=1e-10, atol=1e-12)
    assert result.intercept[0] == pytest.approx(reference.intercept_, rel=1e-10)
    assert result.summary["steps"] == 1 and result.summary["epochs"] == 1


@pytest.mark.parametrize("seed", range(6))
def test_normal_equations_split_a_duplicated_column_evenly_and_solve_a_tiny_feature(seed):
    from mpigd.algorithms.normal import solve

    rng = np.random.default_rng(seed)
    X = rng.standard_normal((1000, 3)) * rng.uniform(0.1, 10) + rng.uniform(-3, 3)
    y = X @ [5.0, 1.0, 2.0] + 0.1 * rng.standard_normal(1000)
    duplicated = np.column_stack([X, X[:, 1]])
    A = np.column_stack([duplicated, np.ones(1000), y])
    theta, _ = solve(A.T @ A, 0.0)
    minimum_norm = np.linalg.lstsq(A[:, :5], y, rcond=None)[0]
    assert np.allclose(theta, minimum_norm, rtol=1e-8, atol=1e-10) and theta[1] == pytest.approx(theta[3])
    tiny = X * [1.0, 1e-6, 1.0]  # badly scaled, not collinear: solved exactly
    A = np.column_stack([tiny, np.ones(1000), y])
    theta, _ = solve(A.T @ A, 0.0)
    assert np.allclose(theta, np.linalg.lstsq(A[:, :4], y, rcond=None)[0], rtol=1e-7)


@pytest.mark.parametrize("collinear", ["constant", "scaled-copy", "two-copies"])
def test_normal_equations_give_the_minimum_norm_solution_for_any_collinear_columns(collinear):
    from mpigd.algorithms.normal import solve

    rng = np.random.default_rng(4)
    X = rng.standard_normal((800, 3)) + [0.0, 2.0, -1.0]
    y = X @ [1.0, -2.0, 0.5] + 3.0 + 0.1 * rng.standard_normal(800)
    extra = {"constant": [np.full(800, 7.0)], "scaled-copy": [1000.0 * X[:, 0]],
             "two-copies": [X[:, 1], -0.01 * X[:, 2]]}[collinear]
    design = np.column_stack([X, *extra, np.ones(800)])
    A = np.column_stack([design, y])
    theta, objective = solve(A.T @ A, 0.0)
    # Before: least squares on the unit-diagonal system minimised the scaled norm; a constant
    # column beside the intercept came out 0.29 from the minimum-norm parameters, a scaled copy 0.03.
    minimum_norm = np.linalg.lstsq(design, y, rcond=None)[0]
    assert np.allclose(theta, minimum_norm, rtol=1e-7, atol=1e-9)
    assert objective == pytest.approx(np.mean((design @ minimum_norm - y) ** 2) / 2, rel=1e-10)


def test_normal_equations_take_sparse_rows_and_count_the_gram_matrix_they_reduce():
    result = _fit(model="linear", algo="normal", density=0.3, l2=0.1)
    reference = _fit(model="linear", algo="lbfgs", density=0.3, l2=0.1, tol=1e-12)
    assert result.summary["data"]["sparse"]
    assert _relative(result.params, reference.params) <= 1e-6
    gram_bytes = (FEATURES + 2) ** 2 * 8
    assert result.summary["bytes_allreduced_per_step"] == result.summary["bytes_allreduced_training"] == gram_bytes


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_lbfgs_logistic_reaches_scikit_learn(dtype):
    from sklearn.linear_model import LogisticRegression

    X, y = _data("classification")
    l2 = 0.01
    reference = LogisticRegression(C=1.0 / (ROWS * l2), tol=1e-12, max_iter=10_000).fit(X, y)
    expected = np.append(reference.coef_[0], reference.intercept_)
    result = _fit(model="logistic", algo="lbfgs", l2=l2, tol=1e-12, dtype=dtype)
    assert _relative(result.params.astype(np.float64), expected) <= (1e-5 if dtype == "float64" else 1e-3)
    assert result.params.dtype == np.dtype(dtype)


@pytest.mark.parametrize("l1, l2", [(0.3, 0.0), (0.2, 0.1), (0.05, 0.0)])
def test_owlqn_matches_scikit_learn_lasso_and_elastic_net(l1, l2):
    from sklearn.linear_model import ElasticNet, Lasso

    X, y = _data("regression")
    if l2 == 0:
        reference = Lasso(alpha=l1, tol=1e-14, max_iter=100_000).fit(X, y)
    else:
        reference = ElasticNet(alpha=l1 + l2, l1_ratio=l1 / (l1 + l2), tol=1e-14, max_iter=100_000).fit(X, y)

    def objective(w, b):
        return 0.5 * np.mean((X @ w + b - y) ** 2) + l1 * np.abs(w).sum() + 0.5 * l2 * w @ w

    result = _fit(model="linear", algo="owlqn", l1=l1, l2=l2, tol=1e-12)
    assert np.array_equal(result.coef == 0.0, reference.coef_ == 0.0)
    assert np.allclose(result.coef, reference.coef_, rtol=1e-5, atol=1e-5)
    best = objective(reference.coef_, reference.intercept_)
    assert abs(objective(result.coef, result.intercept[0]) - best) <= 1e-5 * best
    assert result.summary["final_loss"] == pytest.approx(objective(result.coef, result.intercept[0]), rel=1e-12)


def test_owlqn_gives_exact_zeros_with_a_large_penalty():
    result = _fit(model="logistic", algo="owlqn", l1=0.05)
    assert (result.coef == 0.0).sum() >= 1 and np.all(np.isfinite(result.params))


def test_pseudo_gradient_is_one_sided_at_zero():
    x = np.array([1.0, -1.0, 0.0, 0.0, 0.0, 0.0])
    g = np.array([0.5, 0.5, 0.5, -0.5, 2.0, 3.0])  # the last entry is unpenalised
    assert np.allclose(pseudo_gradient(x, g, 5, 1.0), [1.5, -0.5, 0.0, 0.0, 1.0, 3.0])


@pytest.mark.parametrize("pushed", [1, 3, 4, 7])
def test_lbfgs_two_loop_recursion_is_the_bfgs_inverse_of_its_newest_pairs(pushed):
    """H g from the two loops equals the dense BFGS inverse update applied oldest pair first to
    (s·y / y·y) I of the newest pair, over the last ``memory`` pairs, also once the history wraps
    (Nocedal & Wright, 7.19 and 7.20). A direction that still descends but is not this one (loops
    in the wrong order, the scaling from the oldest pair) only slows L-BFGS, which the solvers'
    end results cannot tell."""
    from mpigd.algorithms.lbfgs import History

    n, memory = 6, 4
    rng = np.random.default_rng(7)
    root = rng.normal(size=(n, n))
    hessian = root @ root.T + n * np.eye(n)
    history = History(memory, n)
    pairs = []
    for _ in range(pushed):
        s = rng.normal(size=n)
        y = hessian @ s + 0.1 * rng.normal(size=n)  # a different curvature per pair, still s·y > 0
        assert history.push(s, y)
        pairs.append((s, y))
    kept = pairs[-memory:]
    s_new, y_new = kept[-1]
    H = (s_new @ y_new) / (y_new @ y_new) * np.eye(n)
    for s, y in kept:
        rho = 1.0 / (s @ y)
        V = np.eye(n) - rho * np.outer(y, s)
        H = V.T @ H @ V + rho * np.outer(s, s)
    g = rng.normal(size=n)
    assert np.allclose(history.apply_inverse(g), H @ g, rtol=1e-10, atol=1e-12)


def test_lbfgs_stops_at_the_iteration_limit_and_counts_passes():
    result = _fit(model="logistic", algo="lbfgs", epochs=3)
    assert result.summary["steps"] == 3 and result.summary["stopped"]["reason"] == "max_epochs"
    assert result.summary["evaluations"] >= 4  # the start point and at least one per iteration


def test_summary_records_start_up_time_and_jit_cache_use():
    from mpigd.startup import process_start_time

    summary = _fit(model="linear", algo="normal").summary
    # In-process, start-up counts from pytest's own start: at most this process's age.
    assert 0 < summary["time"]["startup_seconds"] <= time.time() - process_start_time() + 1
    assert "gram.gram_numba" in summary["jit"]["kernels"]
    assert summary["jit"]["cache_hits"] + summary["jit"]["cache_misses"] >= 1


@pytest.mark.parametrize("change, message", [
    (dict(algo="normal", model="logistic"), "`algo` normal solves linear regression only"),
    (dict(algo="lbfgs", l1=0.1), "`l1` > 0 needs a proximal `algo` .gd, sgd, local-sgd. or owlqn"),
    (dict(algo="lbfgs", resume=True), "checkpoints and `resume` are for gd, sgd and local-sgd"),
    (dict(tol=-1.0), "`tol` must be"),
    (dict(memory=0), "`memory` must be"),
])
def test_solver_options_are_validated(change, message):
    with pytest.raises(UsageError, match=message):
        Config(**change)


def test_normal_equations_refuse_a_matrix_larger_than_memory():
    assert memory_problem(32, available=16 * 2**30) is None
    problem = memory_problem(100_000, available=16 * 2**30)
    assert isinstance(problem, UsageError) and "use --algo lbfgs" in str(problem)
    assert "100002x100002" in str(problem)


def test_lbfgs_softmax_reaches_scikit_learn_multinomial(tmp_path):
    from sklearn.linear_model import LogisticRegression

    from mpigd.data.synthetic_models import generate_dense

    n, d, k, l2 = 2000, 6, 5, 0.01
    X, y = generate_dense("classification", d, k, 3, 0, n, "float64")
    np.savez(tmp_path / "d.npz", X=X, y=y)
    reference = LogisticRegression(C=1.0 / (n * l2), tol=1e-12, max_iter=10_000).fit(X, y)
    expected = np.concatenate([reference.coef_.T.ravel(), reference.intercept_])
    results = {}
    for ranks in (1, 2, 3, 4):
        out = tmp_path / f"p{ranks}"
        job = mpigd(ranks, "train", "--model", "softmax", "--data", str(tmp_path / "d.npz"), "--algo", "lbfgs",
                    "--l2", str(l2), "--tol", "1e-12", "--epochs", "500", "--quiet", "--out", str(out))
        assert job.returncode == 0, job.stderr
        with np.load(out / "params.npz", allow_pickle=False) as saved:
            results[ranks] = np.concatenate([saved["coef"].ravel(), saved["intercept"]])
    assert _relative(results[1], expected) <= 1e-5
    for ranks in (2, 3, 4):
        assert np.max(np.abs(results[ranks] - results[1])) <= 1e-10 * np.max(np.abs(results[1]))


def test_the_normal_equations_report_the_objective_they_solved_for(tmp_path):
    _fit(model="linear", algo="normal", l2=0.1, out=str(tmp_path))
    (record,) = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert record["train_loss"] == pytest.approx(record["loss"], rel=1e-10)


def test_start_up_time_counts_from_the_process_start_and_cache_hits_are_told_from_misses(tmp_path):
    """In fresh processes: the start time is before the imports (here a 1 s sleep), and a kernel
    compiled into an empty cache is a miss, then a hit for the next process."""
    script = ("import time; time.sleep(1.0)\n"
              "import json, numpy as np\n"
              "from mpigd.kernels import add_into\n"
              "from mpigd.startup import jit_cache_stats, process_start_time\n"
              "add_into(np.ones(3), np.ones(3))\n"
              "print(json.dumps({'age': time.time() - process_start_time(), **jit_cache_stats()}))\n")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    runs = [json.loads(subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                                      timeout=120, check=True).stdout) for _ in range(2)]
    assert all(run["age"] >= 1.0 for run in runs), runs
    assert (runs[0]["cache_misses"], runs[0]["cache_hits"]) == (1, 0) and (runs[1]["cache_misses"], runs[1]["cache_hits"]) == (0, 1), runs


def test_bench_solvers_brings_every_solver_to_the_target_on_one_and_two_ranks(tmp_path):
    """A whole `mpigd bench solvers` run, small: run as a plain process, it launches its own mpiexec jobs."""
    report = tmp_path / "solvers.json"
    job = subprocess.run([sys.executable, "-m", "mpigd", "bench", "solvers", "--models", "linear", "--rows", "400",
                          "--features", "3", "--repeats", "1", "--ranks", "1", "2", "--json", str(report)],
                         capture_output=True, text=True, timeout=300)
    assert job.returncode == 0, job.stderr
    result = json.loads(report.read_text())
    ours = [record for record in result["records"] if not record["solver"].startswith("scikit-learn")]
    assert sorted((record["solver"], record["ranks"]) for record in ours) == \
        [(solver, ranks) for solver in ("gd", "lbfgs", "normal") for ranks in (1, 2)]
    for record in ours:
        assert record["reached"] and abs(record["rel_error"]) <= result["rel"], record
    assert any(record["solver"].startswith("scikit-learn") for record in result["records"])
    # Where the figures came from: there was no metadata at all (commit, date, command, MPI library).
    metadata = result["metadata"]
    assert metadata["command"].startswith("mpigd bench solvers --models linear --rows 400")
    assert metadata["date"] and "git_commit" in metadata and metadata["mpi_library"]


@pytest.mark.parametrize("algo, l1", [("lbfgs", 0.0), ("owlqn", 1e-3)])
def test_a_solver_whose_gradient_norm_overflows_says_so_instead_of_converging(tmp_path, algo, l1):
    """A feature of 1e160 gives finite gradient entries whose norm overflows: the stopping test,
    inf <= tol·inf, reported convergence at the zero start, exit 0."""
    data = tmp_path / "extreme.csv"
    data.write_text("a,y\n1e160,1\n-1,0\n2,1\n-2,0\n")
    with pytest.raises(DivergedError, match="the gradient's norm overflows float64"):
        train(Config(data=str(data), algo=algo, l1=l1, epochs=20, quiet=True), self_comm())
    job = mpigd(2, "train", "--data", str(data), "--algo", algo, "--l1", str(l1), "--epochs", "20", "--quiet")
    assert job.returncode == 3 and job.stderr.count("\n") == 1 and "Warning" not in job.stderr, job.stderr
    scaled = train(Config(data=str(data), algo=algo, l1=l1, epochs=20, standardize=True, quiet=True), self_comm())
    assert np.all(np.isfinite(scaled.params)) and np.any(scaled.params != 0)
