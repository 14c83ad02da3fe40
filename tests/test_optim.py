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
