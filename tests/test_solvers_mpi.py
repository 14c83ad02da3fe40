"""The solvers under mpiexec: the exact optimum and the same parameters on 1 to 4 ranks; a clear
refusal for the normal equations; Numba's cache filled by several ranks at once."""

import json

import numpy as np
import pytest

from mpirun import mpigd
from mpigd.data import synthetic

ROWS, FEATURES, SEED = 1001, 6, 0  # 1001 rows: unequal blocks on 2, 3 and 4 ranks


def _params(directory):
    with np.load(directory / "params.npz", allow_pickle=False) as saved:
        return np.append(saved["coef"], saved["intercept"])


def _ridge(l2):
    X, y = synthetic.generate("regression", FEATURES, SEED, 0, ROWS, "float64")
    A = np.hstack([X, np.ones((ROWS, 1))])
    return np.linalg.solve(A.T @ A / ROWS + np.diag([l2] * FEATURES + [0.0]), A.T @ y / ROWS)


def _logistic(l2):
    from sklearn.linear_model import LogisticRegression

    X, y = synthetic.generate("classification", FEATURES, SEED, 0, ROWS, "float64")
    fit = LogisticRegression(C=1.0 / (ROWS * l2), tol=1e-12, max_iter=10_000).fit(X, y)
    return np.append(fit.coef_[0], fit.intercept_)


@pytest.mark.parametrize("model, algo, tolerance", [
    ("linear", "normal", 1e-6), ("linear", "lbfgs", 1e-6), ("logistic", "lbfgs", 1e-5), ("linear", "owlqn", None),
])  # owlqn's optimum is checked against scikit-learn in test_solvers.py
def test_solvers_give_the_optimum_on_1_to_4_ranks(tmp_path, model, algo, tolerance):
    l2 = 0.01
    extra = ["--l1", "0.05"] if algo == "owlqn" else []
    results = {}
    for ranks in (1, 2, 3, 4):
        out = tmp_path / f"p{ranks}"
        job = mpigd(ranks, "train", "--model", model, "--algo", algo, "--rows", str(ROWS), "--features",
                    str(FEATURES), "--l2", str(l2), "--tol", "1e-12", "--quiet", "--out", str(out), *extra)
        assert job.returncode == 0, job.stderr
        results[ranks] = _params(out)
    if tolerance is not None:
        expected = _ridge(l2) if model == "linear" else _logistic(l2)
        assert np.linalg.norm(results[1] - expected) <= tolerance * np.linalg.norm(expected)
    for ranks in (2, 3, 4):
        assert np.max(np.abs(results[ranks] - results[1])) <= 1e-10 * np.max(np.abs(results[1]))


def test_normal_equations_too_large_for_memory_give_one_message(tmp_path):
    # 200,000 features: the 200,002² Gram matrix alone would take 320 GB.
    data = tmp_path / "wide.npz"
    np.savez(data, X=np.ones((2, 200_000)), y=np.ones(2))
    job = mpigd(2, "train", "--model", "linear", "--algo", "normal", "--data", str(data),
                "--out", str(tmp_path / "o"), timeout=60)
    assert job.returncode == 2, job.stderr
    assert job.stderr.count("mpigd: error:") == 1 and "use --algo lbfgs" in job.stderr
    assert not (tmp_path / "o").exists()


def test_normal_equations_refuse_a_nonlinear_model_once(tmp_path):
    job = mpigd(2, "train", "--model", "logistic", "--algo", "normal", timeout=60)
    assert job.returncode == 2
    assert job.stderr.count("mpigd: error:") == 1 and "linear regression only" in job.stderr


def test_numba_cache_filled_by_ranks_at_once_serves_the_next_run(tmp_path):
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    args = ["train", "--model", "linear", "--algo", "lbfgs", "--rows", "500", "--features", "4", "--quiet"]
    first = mpigd(3, *args, "--out", str(tmp_path / "a"), env=env, timeout=240)
    assert first.returncode == 0, first.stderr
    second = mpigd(3, *args, "--out", str(tmp_path / "b"), env=env, timeout=120)
    assert second.returncode == 0, second.stderr
    jit = json.loads((tmp_path / "b" / "summary.json").read_text())["jit"]
    assert jit["cache_misses"] == 0 and jit["cache_hits"] >= 1
    assert np.array_equal(_params(tmp_path / "a"), _params(tmp_path / "b"))
