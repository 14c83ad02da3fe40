"""Optimizers against hand-written updates, their state round-trip, and the learning-rate schedules."""

import math

import numpy as np
import pytest

from mpigd import Config, train
from mpigd.comm import self_comm
from mpigd.optim import OPTIMIZERS, make_optimizer
from mpigd.schedules import Schedule


def _reference(name, grads, lr, mu=0.9, b1=0.9, b2=0.999, eps=1e-8):
    w, v, m, s = np.ones(3), np.zeros(3), np.zeros(3), np.zeros(3)
    for t, g in enumerate(grads, start=1):
        if name == "sgd":
            w = w - lr * g
        elif name in ("momentum", "nesterov"):
            v = mu * v + g
            w = w - lr * (g + mu * v if name == "nesterov" else v)
        else:
            m, s = b1 * m + (1 - b1) * g, b2 * s + (1 - b2) * g * g
            w = w - lr * (m / (1 - b1**t)) / (np.sqrt(s / (1 - b2**t)) + eps)
    return w


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizer_steps_match_the_textbook_updates_and_state_round_trips(name):
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal(3) for _ in range(6)]
    optimizer, params = make_optimizer(name, 3, np.float64), np.ones(3)
    for g in grads[:3]:
        optimizer.step(params, g, 0.1)
    saved = {key: value.copy() for key, value in optimizer.state_dict().items()}
    assert all(isinstance(v, np.ndarray) for v in saved.values())
    resumed, resumed_params = make_optimizer(name, 3, np.float64), params.copy()
    resumed.load_state_dict(saved)
    for g in grads[3:]:
        optimizer.step(params, g, 0.1)
        resumed.step(resumed_params, g, 0.1)
    assert np.array_equal(params, resumed_params)  # exact resume
    assert np.allclose(params, _reference(name, grads, 0.1), rtol=1e-12, atol=1e-12)


def test_loading_a_wrong_state_is_refused():
    with pytest.raises(ValueError, match="velocity"):
        make_optimizer("momentum", 3, np.float64).load_state_dict({"velocity": np.zeros(4)})


def test_schedules_and_warmup():
    assert [Schedule(1.0, warmup=4)(t) for t in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    step = Schedule(1.0, "step", step_size=10, gamma=0.5)
    assert (step(0), step(9), step(10), step(25)) == (1.0, 1.0, 0.5, 0.25)
    cosine = Schedule(2.0, "cosine", warmup=2, total_steps=12)
    assert cosine(2) == 2.0 and cosine(7) == pytest.approx(1.0) and cosine(12) == pytest.approx(0.0, abs=1e-15)
    assert Schedule(1.0, "invscaling", power=0.5)(3) == pytest.approx(0.5)


@pytest.mark.parametrize("optimizer, lr", [("momentum", 0.2), ("nesterov", 0.2), ("adam", 0.05)])
def test_every_optimizer_reaches_the_ridge_optimum(optimizer, lr):
    base = dict(model="linear", rows=1000, features=4, epochs=400, l2=0.1, quiet=True)
    reference = train(Config(lr=0.5, **base), self_comm())
    result = train(Config(lr=lr, optimizer=optimizer, schedule="cosine" if optimizer == "adam" else "constant",
                          **base), self_comm())
    assert np.allclose(result.params, reference.params, atol=1e-5)
    assert math.isclose(result.summary["final_loss"], reference.summary["final_loss"], rel_tol=1e-8)


def test_step_and_invscaling_schedules_count_from_the_end_of_the_warmup():
    step = Schedule(1.0, "step", warmup=3, step_size=2, gamma=0.5)
    assert [step(t) for t in range(8)] == [1 / 3, 2 / 3, 1.0, 1.0, 1.0, 0.5, 0.5, 0.25]
    inverse = Schedule(1.0, "invscaling", warmup=2, power=0.5)
    assert (inverse(2), inverse(5)) == (1.0, pytest.approx(0.5))


@pytest.mark.parametrize("optimizer", ["momentum", "nesterov"])
def test_the_configured_schedule_and_momentum_drive_gradient_descent(optimizer):
    """--momentum, --schedule step with --gamma/--step-size/--warmup reach the steps: full-batch GD on
    ridge regression against the same updates written out in NumPy."""
    from mpigd.data import synthetic

    rows, d, l2, lr, mu = 400, 3, 0.05, 0.3, 0.5
    config = Config(model="linear", rows=rows, features=d, seed=4, epochs=12, l2=l2, lr=lr, optimizer=optimizer,
                    momentum=mu, schedule="step", warmup=2, step_size=3, gamma=0.5, power=0.9, quiet=True)
    result = train(config, self_comm())
    X, y = synthetic.generate("regression", d, 4, 0, rows, "float64")
    w, v = np.zeros(d + 1), np.zeros(d + 1)
    for t in range(12):
        rate = lr * (t + 1) / 2 if t < 2 else lr * 0.5 ** ((t - 2) // 3)
        residual = X @ w[:d] + w[d] - y
        g = np.append(X.T @ residual, residual.sum()) / rows + np.append(l2 * w[:d], 0.0)
        v = mu * v + g
        w = w - rate * (g + mu * v if optimizer == "nesterov" else v)
    assert np.allclose(result.params, w, rtol=1e-12, atol=1e-14)


def _numpy_step(name, params, grad, lr, state, mu=0.9, b1=0.9, b2=0.999, eps=1e-8):
    """The NumPy expressions each optimizer ran before its kernel (commit 809f6df): the oracle bit for bit."""
    step = np.empty_like(params)
    if name == "sgd":
        np.multiply(grad, lr, out=step)
    elif name in ("momentum", "nesterov"):
        state["velocity"] *= mu
        state["velocity"] += grad
        direction = state["velocity"]
        if name == "nesterov":
            np.multiply(state["velocity"], mu, out=step)
            step += grad
            direction = step
        np.multiply(direction, lr, out=step)
    else:
        scratch = np.empty_like(params)
        state["t"] += 1
        t = int(state["t"][0])
        state["m"] *= b1
        np.multiply(grad, 1.0 - b1, out=scratch)
        state["m"] += scratch
        np.multiply(grad, grad, out=scratch)
        scratch *= 1.0 - b2
        state["v"] *= b2
        state["v"] += scratch
        rate = lr * np.sqrt(1.0 - b2**t) / (1.0 - b1**t)
        np.sqrt(state["v"], out=scratch)
        scratch += eps * np.sqrt(1.0 - b2**t)  # a NumPy float64: computed in float64, rounded into float32
        np.divide(state["m"], scratch, out=step)
        step *= rate
    params -= step


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizer_kernels_give_the_bits_of_the_numpy_updates(name, dtype):
    # Each kernel must round where NumPy rounded (float32 scalars, float64 intermediates), with no
    # fused multiply-add: a run's parameters do not change bits with the kernels. Lengths around
    # the vector width, rates as Python floats as the schedules give them, gradients over decades.
    rng = np.random.default_rng(7)
    for n in (1, 3, 8, 33, 1001):
        optimizer = make_optimizer(name, n, dtype)
        params = rng.standard_normal(n).astype(dtype)
        expected = params.copy()
        state = {key: value.copy() for key, value in optimizer.state_dict().items()}
        for step in range(25):
            grad = (rng.standard_normal(n) * 10.0 ** rng.integers(-6, 4, n)).astype(dtype)
            lr = float(rng.uniform(1e-4, 0.5))
            optimizer.step(params, grad, lr)
            _numpy_step(name, expected, grad, lr, state)
            assert np.array_equal(params, expected), (n, step)
        for key, value in optimizer.state_dict().items():
            assert np.array_equal(value, state[key]), key


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("l2", [0.0, 3e-3])
def test_local_sgd_kernels_give_the_bits_of_the_numpy_round(dtype, l2):
    # A round of local SGD as NumPy calls (LocalSGD._round before its kernels, commit 186819a) and
    # with kernels.local_sgd_start / local_sgd_step: the same copy, drift and accumulated gradient,
    # bit for bit. Unequal batch sizes make every factor and scale inexact.
    from mpigd import kernels
    from mpigd.optim import kernel_scalar

    rng, scalar, size = np.random.default_rng(11), kernel_scalar(dtype), 3
    for n in (1, 3, 8, 33, 1001):
        n_penalized, lr = n - 1, float(rng.uniform(1e-3, 0.3))
        params = rng.standard_normal(n).astype(dtype)
        accumulated = (rng.standard_normal(n) * 10.0 ** rng.integers(-4, 3, n)).astype(dtype)
        rows = [int(r) for r in rng.integers(5, 9, 6)]
        grads = [(rng.standard_normal(n) * 10.0 ** rng.integers(-4, 3, n)).astype(dtype) for _ in rows[1:]]

        copy, drift, expected, scratch = params.copy(), np.zeros(n, dtype), accumulated.copy(), np.empty(n, dtype)

        def numpy_move(grad, batch_rows):
            np.multiply(grad, size / batch_rows, out=scratch)
            if l2:
                scratch[:n_penalized] += l2 * copy[:n_penalized]
            np.multiply(scratch, lr, out=scratch)
            copy[...] -= scratch

        numpy_move(expected, rows[0])
        for h, grad in enumerate(grads, start=1):
            np.multiply(grad, rows[0] / rows[h], out=scratch)
            expected += scratch
            drift += params
            drift -= copy
            if h < len(grads):
                numpy_move(grad, rows[h])

        got_copy, got_drift, got = np.empty(n, dtype), np.full(n, np.nan, dtype), accumulated.copy()
        kernels.local_sgd_start(got_copy, got_drift, params, got, scalar(size / rows[0]), scalar(l2), n_penalized,
                                scalar(lr))
        for h, grad in enumerate(grads, start=1):
            kernels.local_sgd_step(got_copy, got_drift, params, got, grad, scalar(rows[0] / rows[h]), h < len(grads),
                                   scalar(size / rows[h]), scalar(l2), n_penalized, scalar(lr))
        for name, value, want in (("copy", got_copy, copy), ("drift", got_drift, drift), ("accumulated", got, expected)):
            assert np.array_equal(value, want), (n, name)


def _one_call_against_a_step_at_a_time(monkeypatch, tmp_path, kernel_names, turn_off, configs) -> None:
    """Train each of ``configs`` with the kernels named (many steps in one call), then with
    ``turn_off(patch)`` making the steps one at a time: the parameters, the final objective, the
    steps, every evaluation's objectives and the checkpoints kept must be the same, bit for bit."""
    import json

    from mpigd import kernels

    calls = []
    for name in kernel_names:
        fused = getattr(kernels, name)
        monkeypatch.setattr(kernels, name, lambda *args, fused=fused: calls.append(1) or fused(*args))

    def outcome(result, out):
        lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        kept = sorted(p.name for p in (out / "checkpoints").iterdir()) if (out / "checkpoints").exists() else []
        return (result.params.tobytes(), result.summary["final_loss"], result.summary["steps"],
                [(line["train_loss"], line["loss"]) for line in lines], kept)

    for k, config in enumerate(configs):
        outcomes = []
        for one_call in (True, False):
            out = tmp_path / f"{'one-call' if one_call else 'step-by-step'}-{k}"
            calls.clear()
            with monkeypatch.context() as patch:
                if not one_call:
                    turn_off(patch)
                result = train(config.replace(out=str(out)), self_comm())
            assert bool(calls) == one_call, "the kernels named did not take the steps" if one_call else config
            outcomes.append(outcome(result, out))
        assert outcomes[0] == outcomes[1], config


def _shape(model: str) -> dict:
    return {"classes": 3, "hidden": (5,)} if model == "mlp" else {"classes": 3} if model == "softmax" else {}


@pytest.mark.parametrize("model, dtype, density", [
    ("linear", "float64", 0.0), ("logistic", "float64", 0.0), ("logistic", "float32", 0.0), ("linear", "float32", 0.0),
    ("softmax", "float64", 0.0), ("softmax", "float32", 0.0), ("mlp", "float64", 0.0), ("mlp", "float32", 0.0),
    ("logistic", "float64", 0.3), ("linear", "float32", 0.3), ("softmax", "float64", 0.3), ("softmax", "float32", 0.3)])
def test_a_local_round_in_one_kernel_gives_the_bits_of_a_kernel_call_a_step(model, dtype, density, monkeypatch,
                                                                            tmp_path):
    # kernels/local_round.py runs a round's later steps itself; the loop of two kernels a step
    # (what a model without a round kernel takes) must give the same parameters and objective, bit
    # for bit, and the same epoch objectives (the steps' losses, summed in the buffer's dtype).
    # Dense and CSR rows, unequal batches (a holdout, 1 and 7 rows), L2 on and off, Adam outside.
    from mpigd.models import make_model

    model_class = type(make_model(model, 6, n_classes=3))
    config = Config(model=model, dtype=dtype, density=density, algo="local-sgd", local_steps=5, rows=300, features=6,
                    epochs=3, lr=0.05, seed=5, quiet=True, **_shape(model))
    _one_call_against_a_step_at_a_time(
        monkeypatch, tmp_path, ("glm_local_steps", "mlp_local_steps", "csr_glm_local_steps", "csr_softmax_local_steps"),
        lambda patch: patch.setattr(model_class, "local_round", lambda self, X: None),
        [config.replace(batch_size=1, l2=0.0), config.replace(batch_size=7, l2=3e-3, holdout=0.2, optimizer="adam")])


@pytest.mark.parametrize("model, dtype, density", [
    ("linear", "float64", 0.0), ("logistic", "float32", 0.0), ("softmax", "float64", 0.0), ("mlp", "float32", 0.0),
    ("logistic", "float64", 0.3), ("softmax", "float32", 0.3)])
def test_synchronous_steps_in_one_kernel_call_give_the_bits_of_a_step_at_a_time(model, dtype, density, monkeypatch,
                                                                               tmp_path):
    # On one rank kernels/sync_round.py takes many sgd steps in one call; taken one at a time (the
    # path of every rank count) they must give the same parameters, objectives and checkpoints,
    # bit for bit, and stop a diverging run at the same step with the same words. Dense and CSR
    # rows, batches of 1, 2 and 7 rows with a holdout, L2 on and off, L1's proximal step, clipping,
    # plain SGD, momentum, Nesterov and Adam, a constant rate, a cosine and an inverse scaling with
    # warm-up, checkpoints every 23 steps (calls end there).
    from mpigd import DivergedError
    from mpigd.algorithms.chunked import ChunkedSteps

    def one_by_one(patch):
        patch.setattr(ChunkedSteps, "for_run", classmethod(lambda cls, sgd, size: None))

    config = Config(model=model, dtype=dtype, density=density, algo="sgd", rows=300, features=6, epochs=3, lr=0.05,
                    seed=5, quiet=True, checkpoint_every=23, keep=100, out=str(tmp_path / "unused"), **_shape(model))
    _one_call_against_a_step_at_a_time(
        monkeypatch, tmp_path, ("glm_sync_steps", "mlp_sync_steps", "csr_glm_sync_steps", "csr_softmax_sync_steps"),
        one_by_one,
        [config.replace(batch_size=1, l2=0.0, optimizer="sgd"),
         config.replace(batch_size=7, l2=3e-3, holdout=0.2, optimizer="momentum", schedule="cosine", warmup=30,
                        clip_grad_norm=0.2),
         config.replace(batch_size=7, l2=1e-3, l1=0.02, clip_grad_norm=0.05, optimizer="nesterov", lr=0.02),
         config.replace(batch_size=2, l2=1e-3, l1=0.01, optimizer="adam", lr=0.01, schedule="invscaling", warmup=10)])
    diverging = config.replace(lr=1e20, l2=1.0, batch_size=3, checkpoint_every=0, out=None)
    words = []
    for chunk in (True, False):
        with monkeypatch.context() as patch:
            if not chunk:
                one_by_one(patch)
            with pytest.raises(DivergedError) as caught:
                train(diverging, self_comm())
            words.append(str(caught.value))
    assert words[0] == words[1] and "diverged at step" in words[0]


def _lazy_against_exact(monkeypatch, kernel_name, turn_off, config, extras) -> list:
    """Train each ``config.replace(**extra)`` with the lazy kernel ``kernel_name``, then with
    ``turn_off(patch)`` taking the exact path: the parameters and the final objective must agree to
    rounding. Returns each run's extra, lazy result and number of lazy calls."""
    from mpigd import kernels

    calls = []
    lazy_kernel = getattr(kernels, kernel_name)
    monkeypatch.setattr(kernels, kernel_name, lambda *args: calls.append(1) or lazy_kernel(*args))
    tolerance = dict(rtol=1e-9, atol=1e-12) if config.dtype == "float64" else dict(rtol=2e-4, atol=1e-5)
    runs = []
    for extra in extras:
        calls.clear()
        lazy = train(config.replace(**extra), self_comm())
        assert calls, extra
        runs.append((extra, lazy, len(calls)))
        with monkeypatch.context() as patch:
            turn_off(patch)
            exact = train(config.replace(**extra), self_comm())
        assert np.allclose(lazy.params, exact.params, **tolerance), (extra, np.abs(lazy.params - exact.params).max())
        assert lazy.summary["final_loss"] == pytest.approx(exact.summary["final_loss"], rel=tolerance["rtol"])
        assert np.any(lazy.params[:-1] != 0) and lazy.summary["steps"] == exact.summary["steps"]
    return runs


@pytest.mark.parametrize("model", ["logistic", "linear"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_plain_sgd_on_wide_sparse_rows_takes_lazy_steps_that_agree_with_a_step_at_a_time(model, dtype, monkeypatch):
    # On one rank, plain SGD on CSR rows whose steps touch few of the weights keeps them as a scale
    # times a vector (kernels/lazy_sgd.py): a step costs its non-zeros, not the features. Not the
    # same bits (the decay and the gradient land in another order), the same steps to rounding:
    # batches of 1, 2 and 4 rows, L2 off and on, a decaying rate, and an L2 so strong (lr * l2 =
    # 0.2 a step) that the scale falls below 1e-9 and is folded back into the weights mid-call.
    from mpigd.algorithms.chunked import ChunkedSteps

    config = Config(model=model, dtype=dtype, rows=400, features=5000, density=0.002, algo="sgd", epochs=3, lr=0.05,
                    seed=3, quiet=True)
    _lazy_against_exact(monkeypatch, "csr_glm_lazy_sgd_steps",
                        lambda patch: patch.setattr(ChunkedSteps, "for_run", classmethod(lambda cls, sgd, size: None)),
                        config, [dict(batch_size=1, l2=1e-3), dict(batch_size=4, l2=0.0, schedule="invscaling"),
                                 dict(batch_size=2, l2=0.4, lr=0.5)])


@pytest.mark.parametrize("model", ["logistic", "linear"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_local_sgd_on_wide_sparse_rows_takes_lazy_rounds_that_agree_with_the_exact_round(model, dtype, monkeypatch):
    # Local SGD's copy on CSR rows whose steps touch few of the weights is a scale times a vector
    # too, and the round leaves in the buffer the displacement the exact round leaves after its
    # L2 correction. The same rounds to rounding: batches of 1 to 4 rows, L2 off and on, a
    # decaying rate, an outer momentum, and a round of 64 steps at lr * l2 = 0.45 whose scale
    # falls below 1e-9 mid-round. One lazy call a round of more than one step.
    from mpigd.algorithms import local_sgd

    config = Config(model=model, dtype=dtype, rows=400, features=5000, density=0.002, algo="local-sgd", epochs=3,
                    lr=0.05, seed=3, quiet=True)
    runs = _lazy_against_exact(
        monkeypatch, "csr_glm_lazy_local_steps",
        lambda patch: patch.setattr(local_sgd, "sparse_steps_plan", lambda gradient, bounds: None), config,
        [dict(batch_size=1, l2=1e-3, local_steps=8), dict(batch_size=4, local_steps=5, schedule="invscaling"),
         dict(batch_size=2, l2=0.9, lr=0.5, local_steps=64),
         dict(batch_size=3, l2=1e-2, local_steps=7, optimizer="momentum")])
    for extra, lazy, calls in runs:
        per_epoch, h = lazy.summary["steps"] // 3, extra["local_steps"]
        assert calls == 3 * sum(min(h, per_epoch - s) > 1 for s in range(0, per_epoch, h)), extra


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_softmax_sgd_on_wide_sparse_rows_exchanges_pairs_on_one_rank_too(dtype, monkeypatch):
    # Softmax regression has no lazy one-rank kernel: its steps on wide CSR rows write their
    # gradient as (column, k values) pairs and apply them to weights kept as a scale times a
    # vector (mpigd/algorithms/sparse_exchange.py, a message of one rank), instead of a pass over
    # every class's weights a step. The step-at-a-time path's result to rounding.
    from mpigd.algorithms import sgd

    config = Config(model="softmax", classes=4, dtype=dtype, rows=400, features=5000, density=0.002, algo="sgd",
                    epochs=3, lr=0.05, seed=3, quiet=True)
    runs = _lazy_against_exact(monkeypatch, "apply_gathered_pairs",
                               lambda patch: patch.setattr(sgd.SparseExchange, "for_run",
                                                           classmethod(lambda cls, run: None)),
                               config, [dict(batch_size=1, l2=1e-3), dict(batch_size=4, schedule="invscaling"),
                                        dict(batch_size=2, l2=0.4, lr=0.5)])
    for _, exchanged, calls in runs:
        assert calls == exchanged.summary["steps"] and exchanged.summary["gradient_exchange"] == "allgather"


def test_lazy_sparse_steps_tell_a_penalty_overflow_from_a_bad_loss():
    # As the step-by-step path: a finite loss whose L2 penalty overflows is NONFINITE (the sum or the
    # L2 term), a loss that is not finite LOCAL_NONFINITE (this rank's rows); the weights are left
    # as they were before the step either way.
    from mpigd import kernels

    indptr, indices = np.array([0, 2, 3], dtype=np.int64), np.array([0, 2, 1], dtype=np.int32)
    order, bounds, batch_rows = np.arange(2), np.array([0, 2]), np.array([2], dtype=np.int64)
    for data, status in ((np.full(3, 1e-100), kernels.NONFINITE), (np.array([1.0, np.nan, 1.0]),
                                                                   kernels.LOCAL_NONFINITE)):
        params = np.array([1e200, 1e200, 1e200, 0.0])
        taken, _, got = kernels.csr_glm_lazy_sgd_steps(indptr, indices, data, np.zeros(2), order, bounds, batch_rows,
                                                       0, 1, params, np.array([0.1]), 1.0, 0.5, 1.7e308, 0.0,
                                                       np.empty(2), kernels.LOGISTIC)
        assert (taken, got) == (0, status) and np.array_equal(params, [1e200, 1e200, 1e200, 0.0])


def test_lazy_sparse_steps_give_the_same_bits_however_the_clock_cuts_them_into_calls(monkeypatch):
    # Folding the scale into the weights at the end of a lazy kernel call rounds them: where the
    # calls end must not depend on how long steps took (CHUNK_SECONDS), or a run gives other bits
    # run after run, and a run resumed between two calls other bits than an uninterrupted one.
    from mpigd.algorithms import chunked

    config = Config(model="logistic", rows=400, features=5000, density=0.002, algo="sgd", batch_size=1, epochs=3,
                    lr=0.05, l2=1e-3, seed=3, quiet=True)
    runs = []
    for seconds in (1e-9, 1e-4, 10.0):
        monkeypatch.setattr(chunked, "CHUNK_SECONDS", seconds)
        runs.append(train(config, self_comm()))
    for run in runs[1:]:
        assert np.array_equal(run.params, runs[0].params)
        assert run.summary["final_loss"] == runs[0].summary["final_loss"]


@pytest.mark.parametrize("dtype, lr, l2", [("float64", 1e160, 0.0), ("float32", 1e30, 1e-31)])
def test_lazy_sparse_steps_do_not_diverge_where_a_step_at_a_time_does_not(dtype, lr, l2, monkeypatch):
    # Huge weights that a step at a time keeps finite: without L2, 0 times an overflowed ‖v‖² was a
    # NaN objective; with the scale far below 1, v = w / scale overflowed float32 where w did not.
    # Both stopped the lazy run as diverged ("the local gradient ... is NaN or Inf").
    from mpigd.algorithms.chunked import ChunkedSteps

    config = Config(model="logistic", dtype=dtype, rows=400, features=5000, density=0.002, algo="sgd", batch_size=1,
                    epochs=1, lr=lr, l2=l2, seed=3, quiet=True)
    lazy = train(config, self_comm())
    with monkeypatch.context() as patch:
        patch.setattr(ChunkedSteps, "for_run", classmethod(lambda cls, sgd, size: None))
        exact = train(config, self_comm())
    assert lazy.summary["steps"] == exact.summary["steps"] == 400
    assert np.allclose(lazy.params, exact.params, rtol=1e-5 if dtype == "float32" else 1e-9, atol=0)
    assert lazy.summary["final_loss"] == pytest.approx(exact.summary["final_loss"], rel=1e-5)
