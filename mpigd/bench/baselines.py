"""The same loss and gradient as the fused kernels, written as a NumPy (or scipy.sparse) user would.

Each twin takes ``X`` as a dense array or a ``scipy.sparse`` CSR matrix (``@`` and ``.T`` dispatch
to BLAS or to SciPy's sparse routines), the labels, and the model's parameter buffer in the
model's layout, and returns ``(summed loss, gradient buffer)``: the work one training step asks of
:meth:`Model.loss_grad`. They are the baselines of ``mpigd bench kernel``, and each benchmark run
checks them against the fused kernel before timing either.
"""

from __future__ import annotations

from typing import Callable

import numpy as np


def linear(X, y: np.ndarray, params: np.ndarray) -> tuple[float, np.ndarray]:
    """½‖Xw + b − y‖² and its gradient ``[X.T @ r, sum(r)]``."""
    d = X.shape[1]
    residual = X @ params[:d] + params[d] - y
    return 0.5 * float(residual @ residual), np.concatenate([X.T @ residual, [residual.sum()]])


def logistic(X, y: np.ndarray, params: np.ndarray) -> tuple[float, np.ndarray]:
    """Log-loss ``sum(log(1 + e^z) − y z)`` with ``z = Xw + b``, and its gradient."""
    d = X.shape[1]
    margin = X @ params[:d] + params[d]
    delta = 0.5 * (np.tanh(0.5 * margin) + 1.0) - y  # sigmoid(z) - y without overflow
    loss = float(np.sum(np.logaddexp(0.0, margin) - y * margin))
    return loss, np.concatenate([X.T @ delta, [delta.sum()]])


def _softmax_delta(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Summed log-loss of ``logits`` by a stable log-softmax, and ``softmax − onehot`` (in place)."""
    logits -= logits.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(logits).sum(axis=1))
    picked = np.arange(labels.size)
    loss = float(np.sum(log_norm - logits[picked, labels]))
    logits -= log_norm[:, None]
    np.exp(logits, out=logits)
    logits[picked, labels] -= 1.0
    return loss, logits


def softmax(X, y: np.ndarray, params: np.ndarray, k: int) -> tuple[float, np.ndarray]:
    """Softmax regression over ``k`` classes: ``params = [W (d x k, row-major), b]``."""
    d = X.shape[1]
    W = params[: d * k].reshape(d, k)
    logits = np.asarray(X @ W) + params[d * k :]
    loss, delta = _softmax_delta(logits, y.astype(np.int64))
    return loss, np.concatenate([np.asarray(X.T @ delta).ravel(), delta.sum(axis=0)])


def mlp(X, y: np.ndarray, params: np.ndarray, widths: np.ndarray) -> tuple[float, np.ndarray]:
    """Forward and backward pass of a relu MLP with a softmax head (``widths = [d, h.., k]``),
    parameters laid out as :class:`mpigd.models.MLP` lays them out (all weights, then all biases)."""
    layers = len(widths) - 1
    Ws, bs, at = [], [], 0
    for l in range(layers):
        Ws.append(params[at : at + widths[l] * widths[l + 1]].reshape(widths[l], widths[l + 1]))
        at += widths[l] * widths[l + 1]
    for l in range(layers):
        bs.append(params[at : at + widths[l + 1]])
        at += widths[l + 1]
    acts = [X]
    for l in range(layers - 1):
        acts.append(np.maximum(acts[-1] @ Ws[l] + bs[l], 0.0))
    loss, delta = _softmax_delta(acts[-1] @ Ws[-1] + bs[-1], y.astype(np.int64))
    grads_W, grads_b = [None] * layers, [None] * layers
    for l in range(layers - 1, -1, -1):
        grads_W[l], grads_b[l] = acts[l].T @ delta, delta.sum(axis=0)
        if l > 0:
            delta = (delta @ Ws[l].T) * (acts[l] > 0)
    return loss, np.concatenate([g.ravel() for g in grads_W] + grads_b)


def for_model(model) -> Callable[[object, np.ndarray, np.ndarray], tuple[float, np.ndarray]]:
    """The twin of ``model`` (an :mod:`mpigd.models` object) as ``f(X, y, params)``."""
    if model.name == "linear":
        return linear
    if model.name == "logistic":
        return logistic
    if model.name == "softmax":
        return lambda X, y, params: softmax(X, y, params, model.n_classes)
    if model.name == "mlp" and model.activation == "relu" and model.task == "classification":
        return lambda X, y, params: mlp(X, y, params, model.widths)
    raise ValueError(f"no NumPy twin for the {model.name} model as configured")
