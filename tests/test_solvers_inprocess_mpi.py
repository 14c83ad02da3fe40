"""Under pytest-mpi (run/test, 2 and 4 ranks): every rank ends with the same bits."""

import numpy as np
import pytest

from mpigd import Config, train


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("algo, model, extra", [
    ("lbfgs", "logistic", {}), ("owlqn", "linear", {"l1": 0.05}), ("normal", "linear", {}),
])
def test_parameters_are_bitwise_identical_on_every_rank(algo, model, extra):
    from mpigd.comm import world

    comm = world()
    result = train(Config(model=model, algo=algo, rows=999, features=5, l2=0.01, quiet=True, **extra), comm)
    low, high = result.params.copy(), result.params.copy()
    comm.allreduce_min(low)
    comm.allreduce_max(high)
    flag = np.array([1 if np.array_equal(low, high) else 0], dtype=np.int64)
    comm.allreduce_min(flag)
    assert flag[0] == 1


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("strategy", ["ring", "direct", "tree", "auto"])
def test_the_normal_equations_solve_alike_with_every_strategy(strategy):
    """The Gram matrix is a 2-D buffer: with ring and direct it used to fail (message truncated),
    with tree (and auto, which picks it for small sizes) the sum was wrong and the run exited 0."""
    from mpigd.comm import world

    config = dict(model="linear", algo="normal", rows=1001, features=7, l2=0.01, quiet=True)
    reference = train(Config(**config), world()).params
    result = train(Config(**config, strategy=strategy), world())
    assert np.allclose(result.params, reference, rtol=1e-10, atol=1e-12), (result.params, reference)
