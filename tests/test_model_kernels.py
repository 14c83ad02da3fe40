"""Softmax, sparse, MLP and proximal kernels, each against a NumPy twin, in float32 and float64."""

import numpy as np
import pytest

from mpigd import kernels
from mpigd.kernels.mlp import BLOCK as MLP_BLOCK

TOLERANCE = {np.float64: 1e-10, np.float32: 3e-4}


def _close(actual, expected, dtype):
    scale = max(1.0, float(np.max(np.abs(expected))))
    return np.max(np.abs(np.asarray(actual, dtype=np.float64) - expected)) <= TOLERANCE[dtype] * scale


def _softmax_reference(X, y, params, k):
    """Summed log-loss and gradient of softmax regression, in float64 NumPy."""
    X, params = X.astype(np.float64), params.astype(np.float64)
    d = X.shape[1]
    W, b = params[: d * k].reshape(d, k), params[d * k :]
    Z = X @ W + b
    Z -= Z.max(axis=1, keepdims=True)
    P = np.exp(Z) / np.exp(Z).sum(axis=1, keepdims=True)
    labels = y.astype(np.int64)
    loss = -np.sum(np.log(P[np.arange(len(y)), labels]))
    P[np.arange(len(y)), labels] -= 1.0
    return loss, np.concatenate([(X.T @ P).ravel(), P.sum(axis=0)])


def _problem(dtype, n=203, d=7, k=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(dtype)
    y = rng.integers(0, k, n).astype(dtype)
    params = (rng.standard_normal(d * k + k) * 0.5).astype(dtype)
    return X, y, params


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_softmax_loss_grad_matches_numpy_for_all_rows_and_a_subset(dtype):
    X, y, params, k = *_problem(dtype), 4
    grad = np.full(params.size, 99, dtype=dtype)
    loss = kernels.softmax_loss_grad(X, y, None, params, grad, k)
    ref_loss, ref_grad = _softmax_reference(X, y, params, k)
    assert _close(grad, ref_grad, dtype) and abs(loss - ref_loss) <= TOLERANCE[dtype] * ref_loss
    rows = np.array([5, 0, 17, 200, 17, 3, 9], dtype=np.int64)  # repeats, and a tail of 3
    loss = kernels.softmax_loss_grad(X, y, rows, params, grad, k)
    ref_loss, ref_grad = _softmax_reference(X[rows], y[rows], params, k)
    assert _close(grad, ref_grad, dtype) and abs(loss - ref_loss) <= TOLERANCE[dtype] * ref_loss
    logits = np.empty((X.shape[0], k), dtype=dtype)
    kernels.softmax_logits(X, params, logits)
    d = X.shape[1]
    expected = X.astype(float) @ params[: d * k].astype(float).reshape(d, k) + params[d * k :]
    assert _close(logits, expected, dtype)


def test_softmax_is_stable_for_huge_logits():
    X = np.array([[1.0]])
    params = np.array([1000.0, -1000.0, 0.0, 0.0])  # W = [[1000, -1000]], b = 0: class 0 sure
    grad = np.empty(4)
    assert kernels.softmax_loss_grad(X, np.array([0.0]), None, params, grad, 2) == pytest.approx(0.0, abs=1e-12)
    loss = kernels.softmax_loss_grad(X, np.array([1.0]), None, params, grad, 2)
    assert loss == pytest.approx(2000.0) and np.all(np.isfinite(grad))


@pytest.mark.parametrize("k", [2, 3, 5])
def test_softmax_is_stable_whichever_class_has_the_huge_logit(k):
    """The shift by the largest logit must look at every class, the last one included."""
    for sure in range(k):
        params = np.zeros(k + k)  # one feature: W = 1000 at class ``sure``, 0 elsewhere; b = 0
        params[sure] = 1000.0
        grad = np.empty(k + k)
        right = kernels.softmax_loss_grad(np.array([[1.0]]), np.array([float(sure)]), None, params, grad, k)
        assert right == pytest.approx(0.0, abs=1e-12) and np.all(np.isfinite(grad))
        wrong = (sure + 1) % k
        loss = kernels.softmax_loss_grad(np.array([[1.0]]), np.array([float(wrong)]), None, params, grad, k)
        assert loss == pytest.approx(1000.0) and np.all(np.isfinite(grad))
        assert grad[sure] == pytest.approx(1.0) and grad[wrong] == pytest.approx(-1.0)


def _csr(X, density_seed=1):
    rng = np.random.default_rng(density_seed)
    X = X * (rng.random(X.shape) < 0.3)  # mostly zeros, and some empty rows among them
    X[4] = 0
    indptr = np.concatenate([[0], np.cumsum((X != 0).sum(axis=1))]).astype(np.int64)
    rows, cols = np.nonzero(X)
    return X, indptr, cols.astype(np.int32), X[rows, cols]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_csr_kernels_match_the_dense_kernels_on_the_same_matrix(dtype):
    X, y, params = _problem(dtype, k=1)  # d + 1 parameters: a GLM
    X, indptr, indices, data = _csr(X)
    rows = np.array([4, 1, 1, 150], dtype=np.int64)
    for loss, target in ((kernels.SQUARED, y), (kernels.LOGISTIC, (y > 0).astype(dtype))):
        for subset in (None, rows):
            sparse_grad, dense_grad = np.empty_like(params), np.empty_like(params)
            got = kernels.csr_glm_loss_grad(indptr, indices, data, target, subset, params, sparse_grad, loss)
            Xd, yd = (X, target) if subset is None else (X[subset], target[subset])
            expected = kernels.glm_loss_grad(np.ascontiguousarray(Xd), np.ascontiguousarray(yd), params,
                                             dense_grad, loss)
            assert _close(sparse_grad, dense_grad.astype(np.float64), dtype)
            assert abs(got - expected) <= TOLERANCE[dtype] * max(1.0, expected)
    margins = np.empty(X.shape[0], dtype=dtype)
    kernels.csr_glm_margins(indptr, indices, data, params, margins)
    assert _close(margins, X.astype(float) @ params[:-1].astype(float) + params[-1], dtype)
    Xs, ys, ps = _problem(dtype)
    Xs, indptr, indices, data = _csr(Xs)
    grad = np.empty_like(ps)
    loss = kernels.csr_softmax_loss_grad(indptr, indices, data, ys, None, ps, grad, 4)
    ref_loss, ref_grad = _softmax_reference(Xs, ys, ps, 4)
    assert _close(grad, ref_grad, dtype) and abs(loss - ref_loss) <= TOLERANCE[dtype] * ref_loss
    logits, dense_logits = np.empty((Xs.shape[0], 4), dtype=dtype), np.empty((Xs.shape[0], 4), dtype=dtype)
    kernels.csr_softmax_logits(indptr, indices, data, ps, logits)
    kernels.softmax_logits(Xs, ps, dense_logits)
    assert _close(logits, dense_logits.astype(np.float64), dtype)


def _mlp_reference(X, y, params, widths, activation, head):
    """Loss and gradient of the MLP by a plain NumPy forward and backward pass, in float64."""
    X, params = X.astype(np.float64), params.astype(np.float64)
    layers = len(widths) - 1
    Ws, bs, at = [], [], 0
    for l in range(layers):
        Ws.append(params[at : at + widths[l] * widths[l + 1]].reshape(widths[l], widths[l + 1]))
        at += widths[l] * widths[l + 1]
    for l in range(layers):
        bs.append(params[at : at + widths[l + 1]])
        at += widths[l + 1]
    acts = [X]
    for l in range(layers):
        z = acts[-1] @ Ws[l] + bs[l]
        if l < layers - 1:
            z = np.maximum(z, 0) if activation == kernels.RELU else np.tanh(z)
        acts.append(z)
    if head == kernels.SOFTMAX_HEAD:
        labels = y.astype(np.int64)
        z = acts[-1] - acts[-1].max(axis=1, keepdims=True)
        P = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        loss = -np.sum(np.log(P[np.arange(len(y)), labels]))
        delta = P
        delta[np.arange(len(y)), labels] -= 1
    else:
        delta = acts[-1] - y[:, None]
        loss = 0.5 * np.sum(delta**2)
    gW, gb = [None] * layers, [None] * layers
    for l in range(layers - 1, -1, -1):
        gW[l], gb[l] = acts[l].T @ delta, delta.sum(axis=0)
        if l > 0:
            a = acts[l]
            delta = (delta @ Ws[l].T) * ((a > 0) if activation == kernels.RELU else 1 - a * a)
    return loss, np.concatenate([g.ravel() for g in gW] + gb)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("activation", [0, 1])
@pytest.mark.parametrize("widths, head", [([6, 5, 3], 1), ([6, 8, 4, 1], 0)])
def test_mlp_loss_grad_matches_numpy(dtype, activation, widths, head):
    rng = np.random.default_rng(2)
    n = 2 * MLP_BLOCK + 11  # two full blocks and a partial one
    X = rng.standard_normal((n, widths[0])).astype(dtype)
    y = (rng.integers(0, widths[-1], n) if head else rng.standard_normal(n)).astype(dtype)
    n_params = sum(a * b + b for a, b in zip(widths, widths[1:]))
    params = (rng.standard_normal(n_params) * 0.5).astype(dtype)
    widths_array = np.array(widths, dtype=np.int64)
    grad = np.full(n_params, 7, dtype=dtype)
    loss = kernels.mlp_loss_grad(X, y, None, params, grad, widths_array, activation, head)
    ref_loss, ref_grad = _mlp_reference(X, y, params, widths, activation, head)
    assert _close(grad, ref_grad, dtype) and abs(loss - ref_loss) <= TOLERANCE[dtype] * max(1, ref_loss)
    rows = np.concatenate([[70, 2, 2, 40], rng.integers(0, n, MLP_BLOCK)]).astype(np.int64)  # over a block
    loss = kernels.mlp_loss_grad(X, y, rows, params, grad, widths_array, activation, head)
    ref_loss, ref_grad = _mlp_reference(X[rows], y[rows], params, widths, activation, head)
    assert _close(grad, ref_grad, dtype) and abs(loss - ref_loss) <= TOLERANCE[dtype] * max(1, ref_loss)
    out = np.empty((n, widths[-1]), dtype=dtype)
    kernels.mlp_outputs(X, params, widths_array, activation, out)
    if head == kernels.SQUARED_HEAD:
        r = out[:, 0].astype(float) - y
        assert abs(0.5 * r @ r - _mlp_reference(X, y, params, widths, activation, head)[0]) <= 1e-3


def test_mlp_gradient_matches_finite_differences():
    rng = np.random.default_rng(5)
    widths = np.array([4, 6, 5, 3], dtype=np.int64)
    n_params = sum(a * b + b for a, b in zip(widths, widths[1:]))
    X, y = rng.standard_normal((9, 4)), rng.integers(0, 3, 9).astype(float)
    params = rng.standard_normal(n_params) * 0.7
    for activation in (kernels.RELU, kernels.TANH):
        grad = np.empty(n_params)
        kernels.mlp_loss_grad(X, y, None, params, grad, widths, activation, kernels.SOFTMAX_HEAD)
        step, numeric = 1e-6, np.empty(n_params)
        for j in range(n_params):
            up, down = params.copy(), params.copy()
            up[j] += step
            down[j] -= step
            scratch = np.empty(n_params)
            numeric[j] = (kernels.mlp_loss_grad(X, y, None, up, scratch, widths, activation, 1)
                          - kernels.mlp_loss_grad(X, y, None, down, scratch, widths, activation, 1)) / (2 * step)
        assert np.max(np.abs(grad - numeric)) <= 1e-6 * max(1.0, np.max(np.abs(numeric)))


def test_soft_threshold_gives_exact_zeros():
    w = np.array([3.0, -3.0, 0.5, -0.5, 1.0, 0.0])
    kernels.soft_threshold(w, 1.0)
    assert np.array_equal(w, [2.0, -2.0, 0.0, 0.0, 0.0, 0.0])


def _messages(dtype, k, ranks, capacity, seed=1):
    """Each of ``ranks`` ranks' message of a step over its slice of a CSR problem (3 rows, two of them
    the same row, so that columns repeat) for a logistic (``k`` 1) or softmax model, by the kernel;
    with the problem, the slices and the scale the weights are kept at."""
    from mpigd.kernels.sparse_exchange import message_size

    X, y, params = _problem(dtype, n=40, d=30, k=k, seed=seed)
    X[np.abs(X) < 0.8] = 0.0  # about 40% non-zero
    X, indptr, indices, data = _csr(X)
    y = (y > 0).astype(dtype) if k == 1 else y
    scale = 0.7
    slices = [np.array([3 * r, 3 * r + 1, 3 * r], dtype=np.int64) for r in range(ranks)]
    gathered = np.zeros((ranks, message_size(k, capacity)))
    slot = np.full(X.shape[1], -1, dtype=np.int32)
    for r, rows in enumerate(slices):
        if k == 1:
            kernels.csr_glm_gradient_pairs(indptr, indices, data, y, rows, params, scale, np.empty(3), slot,
                                           gathered[r], capacity, kernels.LOGISTIC)
        else:
            kernels.csr_softmax_gradient_pairs(indptr, indices, data, y, rows, params, scale, np.empty(k), slot,
                                               gathered[r], capacity, k)
        assert np.all(slot == -1)  # left as found
    return X, y, params, slices, scale, gathered


def _loss_grad(X, y, w, k):
    """The summed loss and gradient of the rows ``X`` at the weights ``w``: the dense kernel (logistic)
    or the NumPy twin (softmax)."""
    X, y = X.astype(np.float64), y.astype(np.float64)
    if k == 1:
        grad = np.empty_like(w)
        return kernels.glm_loss_grad(X, y, w, grad, kernels.LOGISTIC), grad
    return _softmax_reference(X, y, w, k)


def _scaled(params, scale, k):
    w = params.astype(np.float64).copy()
    w[:-k] *= scale
    return w


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("k", [1, 3])
def test_gradient_pairs_hold_each_column_once_with_the_slices_gradient(dtype, k):
    # A rank's message: its slice's loss and gradient at w = scale * v, the gradient as one pair a
    # distinct column (k values: a class each), against the dense kernel at the scaled weights.
    from mpigd.kernels.sparse_exchange import HEADER

    capacity = 30
    X, y, params, slices, scale, gathered = _messages(dtype, k, 2, capacity)
    w = _scaled(params, scale, k)
    for rows, message in zip(slices, gathered):
        loss, expected = _loss_grad(X[rows], y[rows], w, k)
        count = int(message[0])
        columns = message[HEADER + k:HEADER + k + count].astype(np.int64)
        assert count == len(np.unique(X[rows].nonzero()[1])) == len(set(columns))
        got = np.zeros((X.shape[1], k))
        values = HEADER + k + capacity
        got[columns] = message[values:values + count * k].reshape(count, k)
        assert _close(got.ravel(), expected[:-k], dtype) and _close(message[HEADER:HEADER + k], expected[-k:], dtype)
        assert abs(message[1] - loss) <= TOLERANCE[dtype] * loss


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("k", [1, 3])
def test_applied_pairs_take_the_plain_sgd_step_of_the_summed_gradient(dtype, k):
    # Every rank's pairs, applied to w = scale * v: the step w <- (1 - lr l2) w - (lr / B) g of the
    # gradient summed over the ranks (no decay for the intercepts), and the objective before it;
    # the flags summed. A rate times l2 above 1 folds the scale in first; fold=True leaves the
    # weights themselves.
    from mpigd.kernels.sparse_exchange import FLAG

    capacity = 30
    X, y, params, slices, scale, gathered = _messages(dtype, k, 3, capacity)
    gathered[1, FLAG] = 1.0
    w = _scaled(params, scale, k)
    summed_grad, summed_loss = np.zeros_like(w), 0.0
    for rows in slices:
        loss, grad = _loss_grad(X[rows], y[rows], w, k)
        summed_loss, summed_grad = summed_loss + loss, summed_grad + grad
    batch, l2 = 9, 0.1
    norm = float(np.sum(params[:-k].astype(np.float64) ** 2))
    largest = float(np.finfo(dtype).max)
    for rate, fold in ((0.05, False), (0.05, True), (15.0, False)):
        v = params.copy()
        status, new_scale, new_norm, objective, flags, culprit = kernels.apply_gathered_pairs(
            gathered, capacity, k, v, scale, norm, rate, l2, 0.5 * l2, batch, largest, fold)
        assert status == kernels.DONE and flags == 1.0 and culprit == -1
        assert objective == pytest.approx(summed_loss / batch + 0.5 * l2 * np.sum(w[:-k] ** 2), rel=TOLERANCE[dtype])
        expected = w - rate / batch * summed_grad
        expected[:-k] -= rate * l2 * w[:-k]
        assert new_scale == (1.0 if fold or rate * l2 >= 1 else pytest.approx(scale * (1 - rate * l2)))
        assert _close(_scaled(v, new_scale, k), expected, dtype)
        if not fold:
            assert new_norm == pytest.approx(np.sum(v[:-k].astype(np.float64) ** 2), rel=TOLERANCE[dtype])


def test_applied_pairs_name_the_first_rank_whose_loss_is_not_finite():
    # Every rank sees every rank's loss: the first non-finite one is named, and the weights are left
    # as they were (the scale folded in); a finite loss on every rank whose sum overflows is the
    # global case.
    capacity = 30
    _, _, params, _, scale, gathered = _messages(np.float64, 1, 3, capacity)
    gathered[1, 1] = gathered[2, 1] = np.nan
    v = params.copy()
    status, new_scale, *_, culprit = kernels.apply_gathered_pairs(gathered, capacity, 1, v, scale, 1.0, 0.1, 0.0, 0.0,
                                                                  9, 1e308, False)
    assert (status, culprit, new_scale) == (kernels.LOCAL_NONFINITE, 1, 1.0)
    assert np.array_equal(v[:-1], params[:-1] * scale) and v[-1] == params[-1]
    gathered[1, 1] = gathered[2, 1] = 1e308
    status, *_, culprit = kernels.apply_gathered_pairs(gathered, capacity, 1, params.copy(), scale, 1.0, 0.1, 0.0,
                                                       0.0, 9, 1.7e308, False)
    assert (status, culprit) == (kernels.NONFINITE, -1)


def test_a_message_has_room_for_the_non_zeros_of_its_slice():
    from mpigd.algorithms.sparse_exchange import order_ends, slice_nonzeros

    indptr = np.cumsum([0, 3, 9, 1, 4, 0])  # rows of 3, 9, 1, 4 and 0 non-zeros
    order, bounds = np.array([4, 1, 3, 0, 2]), np.array([0, 2, 4, 5])
    assert slice_nonzeros(order_ends(indptr, order), bounds, 100).tolist() == [0 + 9, 4 + 3, 1]
    assert slice_nonzeros(order_ends(indptr, order[::-1]), bounds, 100).tolist() == [1 + 3, 4 + 9, 0]
    assert slice_nonzeros(order_ends(indptr, order), bounds, 8).tolist() == [8, 7, 1]  # no more than the features
    assert slice_nonzeros(order_ends(indptr[:1], order[:0]), np.array([0, 0, 0]), 10).tolist() == [0, 0]  # no rows
