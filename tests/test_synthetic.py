import numpy as np
import pytest

from mpigd.data import synthetic
from mpigd.partition import block_range


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_rows_do_not_depend_on_how_the_data_set_is_split(task):
    n, d = 3 * synthetic.BLOCK_ROWS + 17, 5
    X_all, y_all = synthetic.generate(task, d, 7, 0, n, "float64")
    for size in (2, 3, 5):
        pieces = [synthetic.generate(task, d, 7, *block_range(n, size, rank), "float64") for rank in range(size)]
        assert np.array_equal(np.concatenate([p[0] for p in pieces]), X_all)
        assert np.array_equal(np.concatenate([p[1] for p in pieces]), y_all)


def test_seed_changes_the_data_and_labels_follow_the_task():
    X0, y0 = synthetic.generate("regression", 4, 0, 0, 1000, "float64")
    X1, _ = synthetic.generate("regression", 4, 1, 0, 1000, "float64")
    assert not np.array_equal(X0, X1)
    coef, intercept = synthetic.true_params("regression", 4, 0)
    assert np.std(y0 - (X0 @ coef + intercept)) == pytest.approx(synthetic.NOISE, rel=0.1)
    _, labels = synthetic.generate("classification", 4, 0, 0, 1000, "float32")
    assert labels.dtype == np.float32 and set(np.unique(labels)) == {0.0, 1.0}


@pytest.mark.parametrize("task, classes", [("classification", 4), ("regression", 1)])
def test_multiclass_dense_rows_do_not_depend_on_how_the_data_set_is_split(task, classes):
    # A rank generates only its rows: a block that starts inside a generation block must take that
    # block's rows from its own offset, or the ranks train on different rows than one rank would.
    from mpigd.data.synthetic_models import generate_dense

    n, d = 2 * synthetic.BLOCK_ROWS + 29, 3
    X_all, y_all = generate_dense(task, d, classes, 7, 0, n, "float64")
    for size in (2, 3):
        pieces = [generate_dense(task, d, classes, 7, *block_range(n, size, rank), "float64") for rank in range(size)]
        assert np.array_equal(np.concatenate([p[0] for p in pieces]), X_all)
        assert np.array_equal(np.concatenate([p[1] for p in pieces]), y_all)
