"""Each kernel against its NumPy twin, in float32 and float64."""

import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from mpigd import kernels

TOLERANCE = {np.float64: 1e-10, np.float32: 2e-4}


def _problem(dtype, n=503, d=7, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(dtype)
    y = rng.standard_normal(n).astype(dtype)
    params = rng.standard_normal(d + 1).astype(dtype)
    return X, y, params


def _numpy_squared(X, y, params):
    X, y, params = (a.astype(np.float64) for a in (X, y, params))
    r = X @ params[:-1] + params[-1] - y
    return 0.5 * r @ r, np.append(X.T @ r, r.sum())


def _numpy_logistic(X, y, params):
    X, y, params = (a.astype(np.float64) for a in (X, y, params))
    z = X @ params[:-1] + params[-1]
    p = 1.0 / (1.0 + np.exp(-z))
    return float(np.sum(np.logaddexp(0.0, z) - y * z)), np.append(X.T @ (p - y), (p - y).sum())


def _close(actual, expected, dtype):
    scale = max(1.0, float(np.max(np.abs(expected))))
    return np.max(np.abs(np.asarray(actual, dtype=np.float64) - expected)) <= TOLERANCE[dtype] * scale


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_squared_loss_grad_matches_numpy(dtype):
    X, y, params = _problem(dtype)
    grad = np.full(params.size, 99, dtype=dtype)  # stale contents must be overwritten
    loss = kernels.glm_loss_grad(X, y, params, grad, kernels.SQUARED)
    ref_loss, ref_grad = _numpy_squared(X, y, params)
    assert _close(grad, ref_grad, dtype)
    assert abs(loss - ref_loss) <= TOLERANCE[dtype] * ref_loss


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_logistic_loss_grad_matches_numpy(dtype):
    X, y, params = _problem(dtype)
    labels = (y > 0).astype(dtype)
    grad = np.full(params.size, 99, dtype=dtype)
    loss = kernels.glm_loss_grad(X, labels, params, grad, kernels.LOGISTIC)
    ref_loss, ref_grad = _numpy_logistic(X, labels, params)
    assert _close(grad, ref_grad, dtype)
    assert abs(loss - ref_loss) <= TOLERANCE[dtype] * ref_loss


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_row_subset_kernels_match_the_same_rows_in_full(dtype):
    X, y, params = _problem(dtype)
    labels = (y > 0).astype(dtype)
    rows = np.array([5, 0, 17, 400, 17, 502, 3], dtype=np.int64)  # repeats, and a tail of 3
    for loss, target in ((kernels.SQUARED, y), (kernels.LOGISTIC, labels)):
        grad_subset, grad_full = np.empty_like(params), np.empty_like(params)
        loss_subset = kernels.glm_loss_grad_rows(X, target, rows, params, grad_subset, loss)
        loss_full = kernels.glm_loss_grad(np.ascontiguousarray(X[rows]), np.ascontiguousarray(target[rows]),
                                          params, grad_full, loss)
        assert _close(grad_subset, grad_full.astype(np.float64), dtype)
        assert abs(loss_subset - loss_full) <= TOLERANCE[dtype] * max(1.0, loss_full)


def test_logistic_loss_is_finite_and_exact_for_huge_margins():
    X = np.array([[1.0], [1.0]])
    y = np.array([0.0, 1.0])
    for margin in (800.0, -800.0):
        grad = np.empty(2)
        loss = kernels.glm_loss_grad(X, y, np.array([margin, 0.0]), grad, kernels.LOGISTIC)
        # One row is right with certainty (loss 0), the other wrong by |margin|.
        assert loss == pytest.approx(abs(margin), rel=1e-12)
        assert np.all(np.isfinite(grad))


def test_empty_block_gives_zero_loss_and_gradient():
    X, y, params = np.empty((0, 3)), np.empty(0), np.ones(4)
    grad = np.full(4, 7.0)
    assert kernels.glm_loss_grad(X, y, params, grad, kernels.SQUARED) == 0.0
    assert np.all(grad == 0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_eval_kernels_match_numpy(dtype):
    X, y, params = _problem(dtype)
    stats = np.empty(4)
    kernels.squared_eval(X, y, params, stats)
    r = X.astype(float) @ params[:-1].astype(float) + float(params[-1]) - y.astype(float)
    expected = [0.5 * r @ r, r @ r, y.astype(float).sum(), (y.astype(float) ** 2).sum()]
    assert np.allclose(stats, expected, rtol=TOLERANCE[dtype] * 10)
    labels = (y > 0).astype(dtype)
    stats = np.empty(2)
    kernels.logistic_eval(X, labels, params, stats)
    z = X.astype(float) @ params[:-1].astype(float) + float(params[-1])
    assert stats[1] == np.sum((z > 0) == (labels > 0.5))
    assert stats[0] == pytest.approx(_numpy_logistic(X, labels, params)[0], rel=TOLERANCE[dtype] * 10)


def test_logistic_eval_counts_a_zero_margin_as_class_0():
    """At margin 0 (the all-zero start) the prediction is class 0, as the model's ``predict`` says."""
    X, y, _ = _problem(np.float64)
    labels = (y > 0).astype(np.float64)
    stats = np.empty(2)
    kernels.logistic_eval(X, labels, np.zeros(X.shape[1] + 1), stats)
    assert stats[1] == np.sum(labels == 0) and stats[0] == pytest.approx(X.shape[0] * np.log(2.0), rel=1e-12)


def test_stream_sum_reads_every_element():
    X = np.arange(12.0).reshape(3, 4)
    assert kernels.stream_sum(X) == 66.0


def test_vectorisable_exp_and_log1p_agree_with_libm_to_an_ulp_or_two():
    from mpigd.kernels.vecmath import exp_neg, log1p_unit

    rng = np.random.default_rng(3)
    # Every binade the log-loss meets, the range-reduction boundaries (ln 2 / 2 steps) and the subnormals.
    a = np.concatenate([[0.0, 1e-300, 5e-324, 0.5 * np.log(2), np.log(2), 700.0, 708.4, 709.0, 744.0, 745.1],
                        rng.uniform(0, 1, 500), rng.uniform(0, 50, 500), rng.uniform(700, 745, 200),
                        np.log(2) * (np.arange(200) + 0.5)])
    got = np.array([exp_neg(v) for v in a])
    want = np.exp(-a)
    assert np.all(np.abs(got - want) <= 2.3e-16 * want + 5e-324)
    assert [exp_neg(v) for v in (746.0, 1e300, np.inf)] == [0.0, 0.0, 0.0]
    assert np.isnan(exp_neg(np.nan))
    e = np.concatenate([[0.0, 5e-324, 1e-300, 1e-17, 1e-9, np.sqrt(2) - 1, np.nextafter(np.sqrt(2) - 1, 1), 1.0],
                        rng.uniform(0, 1, 1000), 10.0 ** rng.uniform(-30, 0, 500)])
    got = np.array([log1p_unit(v) for v in e])
    want = np.log1p(e)
    assert np.all(np.abs(got - want) <= 5e-16 * want + 5e-324)
    assert np.isnan(log1p_unit(np.nan))


@pytest.mark.parametrize("cache", ["beside the kernels", "NUMBA_CACHE_DIR"])
def test_a_kernel_is_compiled_again_when_a_kernel_it_calls_changes_in_another_file(tmp_path, cache):
    """Numba stamps a cache entry with its own file only; the kernels' JIT policy stamps it with
    every kernel source, so a caller never runs its callee's old machine code (an editable
    install after a ``git pull`` that changed the callee alone)."""
    package = tmp_path / "kernelcopy"
    package.mkdir()
    (package / "__init__.py").write_text("")
    shutil.copy(os.path.join(os.path.dirname(kernels.__file__), "jit.py"), package / "jit.py")
    callee = package / "callee.py"
    callee.write_text("from .jit import kernel\n\n@kernel\ndef bump(x):\n    return x + 1.0\n")
    (package / "caller.py").write_text("from .jit import kernel\nfrom .callee import bump\n\n"
                                       "@kernel\ndef twice_bumped(x):\n    return 2.0 * bump(x)\n")
    environment = {**os.environ, "PYTHONPATH": str(tmp_path)}
    if cache == "NUMBA_CACHE_DIR":
        environment["NUMBA_CACHE_DIR"] = str(tmp_path / "cache")
    else:
        environment.pop("NUMBA_CACHE_DIR", None)

    def run() -> tuple[float, int]:
        done = subprocess.run([sys.executable, "-c", "from kernelcopy.caller import twice_bumped as f; "
                               "print(f(1.0), sum(f.stats.cache_hits.values()))"],
                              env=environment, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        value, hits = done.stdout.split()
        return float(value), int(hits)

    assert run() == (4.0, 0)
    assert run() == (4.0, 1)  # served by the cache
    callee.write_text(callee.read_text().replace("x + 1.0", "x + 2.0"))
    assert run() == (6.0, 0)  # the old twice_bumped would give 4.0
    assert run() == (6.0, 1)


def test_cache_entries_written_at_once_for_different_signatures_each_keep_their_own_file(tmp_path):
    """Numba's one index a kernel, read and rewritten by each writer, lost an entry or pointed one
    signature at another's machine code when two processes compiled at once. Each entry is now a
    file of its own: writers that both started before either saved keep both, and a save clears
    what an older source or Numba left."""
    from mpigd.kernels.jit import _KeyedCacheFile

    base = "module.kernel-10.py311"
    (tmp_path / f"{base}.nbi").write_bytes(b"Numba's index")
    (tmp_path / f"{base}.1.nbc").write_bytes(b"Numba's numbered entry")
    (tmp_path / "module.other-20.py311.1.nbc").write_bytes(b"another kernel's")
    old = _KeyedCacheFile(str(tmp_path), base, b"old sources")
    old.save(("float32",), "old machine code")
    first, second = (_KeyedCacheFile(str(tmp_path), base, b"sources") for _ in range(2))
    first.save(("float32",), "float32 machine code")
    second.save(("float64",), "float64 machine code")
    for reader in (first, second, _KeyedCacheFile(str(tmp_path), base, b"sources")):
        assert reader.load(("float32",)) == "float32 machine code"
        assert reader.load(("float64",)) == "float64 machine code"
        assert reader.load(("int64",)) is None
    assert old.load(("float32",)) is None  # removed by the saves of the new sources
    assert sorted(path.name for path in tmp_path.iterdir() if path.name.startswith(base)) == sorted(
        first._entry_name(key) for key in (("float32",), ("float64",)))
    assert (tmp_path / "module.other-20.py311.1.nbc").exists()
    first.flush()
    assert first.load(("float64",)) is None and (tmp_path / "module.other-20.py311.1.nbc").exists()


def test_processes_compiling_a_kernel_at_once_for_different_signatures_fill_one_cache(tmp_path):
    """What ``mpigd compile``'s ranks do: every signature compiled by one of them is loaded, not
    compiled again, by the next process."""
    environment = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    calls = ["np.ones(5, np.float32)", "np.ones(5)", "np.ones(10, np.float32)[::2]", "np.ones(10)[::2]",
             "np.ones(5, np.int64)"]  # five signatures
    script = ("import sys, numpy as np; from mpigd.kernels.finish import sum_of_squares as f; "
              "values = [f(eval(call), 5) for call in sys.argv[1:]]; "
              "print(sum(f.stats.cache_misses.values()), sum(f.stats.cache_hits.values()), *values)")
    writers = [subprocess.Popen([sys.executable, "-c", script, call], env=environment, stdout=subprocess.PIPE,
                                text=True) for call in calls]
    for writer in writers:
        out, _ = writer.communicate(timeout=120)
        assert writer.returncode == 0 and out.split()[:2] == ["1", "0"], out
    reader = subprocess.run([sys.executable, "-c", script, *calls], env=environment, capture_output=True,
                            text=True, timeout=120)
    assert reader.returncode == 0, reader.stderr
    assert reader.stdout.split() == ["0", str(len(calls)), *["5.0"] * len(calls)], reader.stdout


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_all_finite_finds_a_nan_or_inf_anywhere_and_ignores_huge_finite_values(dtype):
    huge = np.finfo(dtype).max
    for n in (0, 1, 7, 8, 9, 64, 131):
        values = np.full(n, huge, dtype=dtype)  # their sum overflows; each is finite
        assert kernels.all_finite(values)
        for where in range(n):
            for bad in (np.nan, np.inf, -np.inf):
                values[where] = bad
                assert not kernels.all_finite(values), (n, where, bad)
                values[where] = huge


def _numpy_mean_with_l2(buffer, rows, params, n_penalized, l2):
    """What GlobalGradient.reduce did in NumPy before the kernel (commit 809f6df)."""
    buffer /= rows
    value = float(buffer[-1])
    if l2 != 0.0:
        buffer[:n_penalized] += l2 * params[:n_penalized]
        value += 0.5 * l2 * kernels.sum_of_squares(params, n_penalized)
    return value


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mean_with_l2_gives_the_bits_of_the_numpy_expressions(dtype):
    rng = np.random.default_rng(3)
    for n, n_penalized, rows, l2 in [(2, 0, 1, 0.1), (8, 6, 7, 1e-4), (34, 32, 4099, 0.0), (1001, 990, 3, 2.5),
                                     (70, 69, 1 << 25, 1e-3)]:
        buffer = (rng.standard_normal(n) * 10.0 ** rng.integers(-5, 5, n)).astype(dtype)
        params = rng.standard_normal(n - 1).astype(dtype)
        expected = buffer.copy()
        value = kernels.mean_with_l2(buffer, dtype(rows), params, n_penalized, dtype(l2), 0.5 * l2)
        assert value == _numpy_mean_with_l2(expected, rows, params, n_penalized, l2)
        assert np.array_equal(buffer, expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mean_with_l2_returns_nan_for_any_nonfinite_entry_or_overflowing_term(dtype):
    params = np.ones(9, dtype=dtype)
    for where in range(10):
        buffer = np.ones(10, dtype=dtype)
        buffer[where] = np.inf if where % 2 else np.nan
        assert np.isnan(kernels.mean_with_l2(buffer, dtype(2), params, 9, dtype(0.1), 0.05)), where
    huge = np.full(9, np.finfo(dtype).max / 2, dtype=dtype)
    # l2 * w overflows
    assert np.isnan(kernels.mean_with_l2(np.ones(10, dtype=dtype), dtype(1), huge, 9, dtype(4), 2.0))
    if dtype is np.float64:  # the penalty's float64 sum overflows while the gradient stays finite
        assert kernels.mean_with_l2(np.ones(10), 1.0, huge, 9, 1e-300, 0.5e-300) == np.inf


def test_sum_of_squares_is_the_float64_sum_of_the_first_n():
    rng = np.random.default_rng(5)
    for n in (0, 1, 3, 4, 5, 63, 1000):
        values = rng.standard_normal(n + 3).astype(np.float32)
        exact = math.fsum(float(v) ** 2 for v in values[:n])
        assert kernels.sum_of_squares(values, n) == pytest.approx(exact, rel=1e-15, abs=0.0)


def test_sum_of_abs_is_the_float64_sum_of_the_first_n_in_the_order_of_sum_of_squares():
    rng = np.random.default_rng(6)
    for n in (0, 1, 3, 4, 5, 63, 1000):
        values = rng.standard_normal(n + 3).astype(np.float32)
        exact = math.fsum(abs(float(v)) for v in values[:n])
        assert kernels.sum_of_abs(values, n) == pytest.approx(exact, rel=1e-15, abs=0.0)
        # The same four partial sums as sum_of_squares: given the squares, the same bits.
        wide = values.astype(np.float64)
        assert kernels.sum_of_abs(wide * wide, n) == kernels.sum_of_squares(wide, n)
