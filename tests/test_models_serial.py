"""Softmax, L1/elastic net, sparse input and stopping, trained in one process against scikit-learn and NumPy."""

import json

import numpy as np
import pytest

from mpigd import Config, InputError, train
from mpigd.comm import self_comm
from mpigd.data.csr import CSRMatrix
from mpigd.data.holdout import held_out
from mpigd.data.synthetic_models import generate_dense, generate_sparse
from mpigd.models.metrics import classification_metrics, confusion_add


def _save_dense(path, X, y):
    np.savez(path, X=X, y=y)
    return str(path)


def _save_csr(path, X: CSRMatrix, y):
    np.savez(path, indptr=X.indptr, indices=X.indices, data=X.data, shape=np.array(X.shape), y=y)
    return str(path)


def _save_libsvm(path, X, y, first_index):
    """LIBSVM lines with the zeros left out, feature j at index ``j + first_index``."""
    path.write_text("".join(f"{label} " + " ".join(f"{j + first_index}:{v}" for j, v in enumerate(row) if v) + "\n"
                            for row, label in zip(X, y)))
    return str(path)


def test_softmax_gd_reaches_scikit_learn_multinomial_logistic_regression(tmp_path):
    from sklearn.linear_model import LogisticRegression

    n, d, k, l2 = 2000, 6, 10, 0.01
    X, y = generate_dense("classification", d, k, 11, 0, n, "float64")
    assert set(np.unique(y)) == set(range(k))
    reference = LogisticRegression(C=1.0 / (n * l2), tol=1e-12, max_iter=10_000).fit(X, y)
    result = train(Config(model="softmax", data=_save_dense(tmp_path / "d.npz", X, y), epochs=600, lr=2.0,
                          optimizer="nesterov", momentum=0.9, l2=l2, quiet=True), self_comm())
    expected = np.concatenate([reference.coef_.T.ravel(), reference.intercept_])
    assert result.coef.shape == (d, k) and result.intercept.shape == (k,)
    # scikit-learn's softmax is over-parametrised as ours is; with l2 > 0 the optimum is unique.
    assert np.linalg.norm(result.params - expected) <= 1e-4 * np.linalg.norm(expected)
    assert result.summary["metrics"]["accuracy"] == pytest.approx(reference.score(X, y), abs=1e-12)
    assert len(result.summary["metrics"]["precision"]) == k


def _sparse_regression(n=1000, d=12, seed=4):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    coef = np.array([2.0, -1.5, 0.0, 0.0, 1.0, 0.0, 0.3, 0.0, 0.0, -0.05, 0.0, 0.02])
    return X, X @ coef + 0.7 + 0.5 * rng.standard_normal(n)


def _objective(X, y, coef, intercept, l1, l2):
    r = X @ coef + intercept - y
    return 0.5 * np.mean(r * r) + l1 * np.abs(coef).sum() + 0.5 * l2 * coef @ coef


@pytest.mark.parametrize("alpha, l1_ratio", [(0.08, 1.0), (0.1, 0.6)])
def test_l1_and_elastic_net_match_scikit_learn_zeros_and_objective(tmp_path, alpha, l1_ratio):
    from sklearn.linear_model import ElasticNet, Lasso

    X, y = _sparse_regression()
    # scikit-learn: 1/(2n)|y - Xw - b|^2 + alpha*rho*|w|_1 + alpha*(1-rho)/2*|w|^2: ours with
    # l1 = alpha*rho and l2 = alpha*(1-rho).
    l1, l2 = alpha * l1_ratio, alpha * (1 - l1_ratio)
    if l1_ratio == 1.0:
        reference = Lasso(alpha=alpha, tol=1e-14, max_iter=100_000).fit(X, y)
    else:
        reference = ElasticNet(alpha=alpha, l1_ratio=l1_ratio, tol=1e-14, max_iter=100_000).fit(X, y)
    result = train(Config(model="linear", data=_save_dense(tmp_path / "d.npz", X, y), epochs=400, lr=0.5,
                          l1=l1, l2=l2, quiet=True), self_comm())
    assert 0 < np.sum(reference.coef_ == 0) < X.shape[1]
    assert np.array_equal(np.flatnonzero(result.coef == 0), np.flatnonzero(reference.coef_ == 0))
    ours = _objective(X, y, result.coef, result.intercept[0], l1, l2)
    theirs = _objective(X, y, reference.coef_, reference.intercept_, l1, l2)
    assert abs(ours - theirs) <= 1e-5 * theirs and ours == pytest.approx(result.summary["final_loss"], rel=1e-12)


@pytest.mark.parametrize("model, task, classes", [("linear", "regression", 2), ("logistic", "classification", 2),
                                                  ("softmax", "classification", 4)])
def test_sparse_and_dense_input_give_the_same_model(tmp_path, model, task, classes):
    X, y = generate_sparse(task, 40, classes, 0.1, 5, 0, 900, "float64")
    dense = _save_dense(tmp_path / "dense.npz", X.toarray(), y)
    sparse = _save_csr(tmp_path / "csr.npz", X, y)
    for algo in ("gd", "sgd"):
        common = dict(model=model, epochs=30 if algo == "gd" else 3, lr=0.5, l2=0.01, l1=0.001, algo=algo,
                      batch_size=64, quiet=True)
        a = train(Config(data=dense, **common), self_comm())
        b = train(Config(data=sparse, **common), self_comm())
        assert b.summary["data"]["sparse"] and not a.summary["data"]["sparse"]
        assert np.max(np.abs(a.params - b.params)) <= 1e-10 * max(1.0, np.max(np.abs(a.params)))


def test_sparse_synthetic_rows_do_not_depend_on_the_split():
    whole, y = generate_sparse("classification", 300, 3, 0.02, 9, 0, 9000, "float64")
    assert 0.015 < whole.nnz / (9000 * 300) < 0.025
    for cut in (1, 4096, 5000):
        a, ya = generate_sparse("classification", 300, 3, 0.02, 9, 0, cut, "float64")
        b, yb = generate_sparse("classification", 300, 3, 0.02, 9, cut, 9000, "float64")
        stacked = np.vstack([a.toarray(), b.toarray()])
        assert np.array_equal(stacked, whole.toarray()) and np.array_equal(np.concatenate([ya, yb]), y)


def test_csr_take_and_rows_select_the_right_rows():
    rng = np.random.default_rng(0)
    dense = rng.standard_normal((30, 7)) * (rng.random((30, 7)) < 0.3)
    X = CSRMatrix.from_dense(dense)
    rows = np.array([29, 0, 3, 3, 17])
    assert np.array_equal(X.take(rows).toarray(), dense[rows])
    assert np.array_equal(X.rows(5, 12).toarray(), dense[5:12])


def test_holdout_rows_depend_only_on_seed_and_row_index():
    whole = held_out(3, 0, 10_000, 0.2)
    assert abs(whole.mean() - 0.2) < 0.02
    assert np.array_equal(np.concatenate([held_out(3, 0, 4321, 0.2), held_out(3, 4321, 10_000, 0.2)]), whole)
    assert not np.array_equal(held_out(4, 0, 10_000, 0.2), whole)


def test_classification_metrics_match_scikit_learn():
    from sklearn.metrics import precision_score, recall_score

    rng = np.random.default_rng(1)
    labels, predicted = rng.integers(0, 4, 500), rng.integers(0, 4, 500)
    predicted[predicted == 3] = 2  # class 3 never predicted: precision 0
    stats = np.zeros(1 + 16)
    confusion_add(predicted[:200], labels[:200], 4, stats[1:])  # sums over two "ranks"
    confusion_add(predicted[200:], labels[200:], 4, stats[1:])
    metrics = classification_metrics(stats, 500, 4)
    assert metrics["accuracy"] == np.mean(labels == predicted)
    assert np.allclose(metrics["precision"], precision_score(labels, predicted, average=None, zero_division=0))
    assert np.allclose(metrics["recall"], recall_score(labels, predicted, average=None, zero_division=0))


def test_regression_metrics_match_scikit_learn_over_several_evaluation_chunks():
    """More rows than one evaluation chunk (``metrics.CHUNK``): every chunk meets its own targets."""
    from sklearn.metrics import mean_squared_error, r2_score

    from mpigd.models import make_model
    from mpigd.models.metrics import CHUNK

    rng = np.random.default_rng(7)
    n = CHUNK + 1234
    X = rng.standard_normal((n, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.3 + rng.standard_normal(n) + np.linspace(0.0, 5.0, n)
    params = np.array([0.9, -1.8, 0.4, 0.1])
    model = make_model("linear", 3)
    stats = np.empty(model.n_eval_stats)
    model.eval_stats(X, y, params, stats)
    got, predicted = model.metrics(stats, n), model.predict(X, params)
    assert got["r2"] == pytest.approx(r2_score(y, predicted), rel=1e-10)
    assert got["rmse"] == pytest.approx(np.sqrt(mean_squared_error(y, predicted)), rel=1e-10)
    assert stats[0] == pytest.approx(0.5 * np.sum((predicted - y) ** 2), rel=1e-10)


@pytest.mark.parametrize("model_name", ["linear", "mlp"])
def test_r2_keeps_its_digits_when_the_targets_mean_is_large_next_to_their_spread(model_name):
    """Targets of 1e8 +- 1: the one-pass spread sum(y^2) - (sum y)^2 / n cancels to rounding noise
    (r2 came out null, or off by 2e-4 at 1e7); r2 must still match scikit-learn."""
    from sklearn.metrics import r2_score

    from mpigd.data.shard import Shard
    from mpigd.evaluation import evaluate
    from mpigd.models import make_model

    rng = np.random.default_rng(11)
    n = 5000
    X = rng.standard_normal((n, 3))
    y = 1e8 + X @ np.array([0.5, 1.0, 1.5]) + 0.5 * rng.standard_normal(n)
    model = make_model(model_name, 3, 2, (4,), "tanh", "regression")
    params = model.init_params(np.dtype(np.float64), seed=1)
    if model_name == "linear":
        params[:] = [0.5, 1.0, 1.5, 1e8]
    else:
        params[-1] = 1e8  # the output bias: predictions near the targets
    shard = Shard(X, y, n, 0, "test", np.array([n]))
    got = evaluate(model, shard, params, self_comm(), penalized=False)
    assert got["r2"] == pytest.approx(r2_score(y, model.predict(X, params)), rel=1e-9)
    # A constant target: r2 is undefined (null in summary.json), not -3e14 from a spread of rounding noise.
    constant = Shard(X, np.full(n, 123.456), n, 0, "test", np.array([n]))
    assert np.isnan(evaluate(model, constant, params, self_comm(), penalized=False)["r2"])


def test_logistic_metrics_match_scikit_learn_and_the_models_own_predictions():
    from sklearn.metrics import accuracy_score, log_loss

    from mpigd.models import make_model

    rng = np.random.default_rng(8)
    X = rng.standard_normal((500, 4))
    y = (X[:, 0] + 0.5 * rng.standard_normal(500) > 0).astype(np.float64)
    model = make_model("logistic", 4)
    for params in (np.array([1.5, -0.2, 0.3, 0.0, 0.1]), np.zeros(5)):  # zeros: every margin exactly 0
        stats = np.empty(model.n_eval_stats)
        model.eval_stats(X, y, params, stats)
        got = model.metrics(stats, len(y))
        probability = 1.0 / (1.0 + np.exp(-(X @ params[:-1] + params[-1])))
        assert got["log_loss"] == pytest.approx(log_loss(y, probability), rel=1e-10)
        assert got["accuracy"] == accuracy_score(y, model.predict(X, params))


def test_tol_stops_early_and_holdout_reports_a_test_section(tmp_path):
    result = train(Config(model="linear", rows=2000, features=5, epochs=500, lr=0.5, tol=1e-9, holdout=0.25,
                          out=str(tmp_path), quiet=True), self_comm())
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["stopped"]["reason"] == "tol" and summary["epochs"] < 500
    assert summary["data"]["rows"] + summary["test"]["rows"] == 2000
    assert {"loss", "r2", "rmse"} <= set(summary["test"]) and summary["test"]["r2"] > 0.99
    assert json.loads((tmp_path / "model.json").read_text())["model"] == "linear"
    assert result.summary["test"] == summary["test"]


def test_softmax_labels_are_checked_and_classes_inferred(tmp_path):
    X = np.ones((6, 2))
    with pytest.raises(InputError, match="class labels must be integers; found label 0.5"):
        train(Config(model="softmax", data=_save_dense(tmp_path / "a.npz", X, np.array([0, 1, 2, 1, 0.5, 2])),
                     epochs=1, quiet=True), self_comm())
    result = train(Config(model="softmax", data=_save_dense(tmp_path / "b.npz", X, np.array([0, 4, 2, 1, 0, 2.0])),
                          epochs=1, quiet=True), self_comm())
    # Labels 0, 1, 2 and 4 are four classes (not five with an empty class 3).
    assert (result.summary["model"]["classes"], result.summary["model"]["labels"]) == (4, [0, 1, 2, 4])
    with pytest.raises(InputError, match="class numbers 0 to 2; found label 4"):
        train(Config(model="softmax", data=str(tmp_path / "b.npz"), classes=3, epochs=1, quiet=True), self_comm())


def test_patience_counts_evaluations_without_improvement_and_restores_the_best():
    from mpigd.stopping import Stopping

    stopping, params = Stopping(tol=0.0, patience=2), np.zeros(2)
    decisions = []
    for epoch, loss in enumerate([1.0, 0.5, 0.6, 0.4, 0.45, 0.41], start=1):
        params[:] = epoch
        decisions.append(stopping.after_evaluation(loss, params, epoch))
    assert decisions == [False, False, False, False, False, True]
    assert stopping.restore_best(params) and np.all(params == 4) and stopping.best_epoch == 4
    assert not Stopping(0.0, 0).after_evaluation(1.0, params, 1)


def test_a_trained_logistic_model_holds_to_its_own_labels():
    from mpigd.models import from_description

    older = from_description({"model": "logistic", "n_features": 3})  # a model.json without "labels"
    assert older.check_labels(np.array([1.0, -1.0])) == \
        "logistic regression needs labels 0 and 1, as in training; found label -1"
    plus_minus = from_description({"model": "logistic", "n_features": 3, "labels": [-1, 1]})
    y = np.array([1.0, -1.0, -1.0])
    assert plus_minus.check_labels(y) is None
    assert np.array_equal(plus_minus.encode_labels(y), [1.0, 0.0, 0.0])
    assert np.array_equal(plus_minus.predict(np.eye(3), np.array([1.0, -1.0, 0.0, 0.0])), [1, -1, -1])


DAMAGED_DESCRIPTIONS = {
    "labels beyond float64 (1e400 reads as inf)": ({"labels": [float("inf"), 1]}, "not integers in increasing order"),
    "labels in reverse order (would flip every prediction)": ({"labels": [1, 0]}, "not integers in increasing order"),
    "fractional labels": ({"labels": [0.5, 1]}, "not integers in increasing order"),
    "n_features as text": ({"n_features": "3"}, "n_features is '3', not an integer"),
    "fractional n_features": ({"n_features": 3.5}, "n_features is 3.5, not an integer"),
    "a task the model does not have": ({"task": "regression"}, "task 'regression' does not fit model 'logistic'"),
    "an unknown model": ({"model": "forest"}, "names model 'forest'"),
    "a label listed twice (both classes would predict it)": ({"labels": [0, 0]}, "not integers in increasing order"),
}


@pytest.mark.parametrize("case", list(DAMAGED_DESCRIPTIONS))
def test_a_damaged_model_description_is_refused(case):
    from mpigd.models import from_description

    change, message = DAMAGED_DESCRIPTIONS[case]
    with pytest.raises(ValueError, match=message):
        from_description({"model": "logistic", "task": "classification", "n_features": 3, "classes": 2,
                          "labels": [0, 1], **change})


def test_every_model_description_rebuilds_its_model():
    from mpigd.models import from_description, make_model

    for model in (make_model("linear", 3), make_model("logistic", 3), make_model("softmax", 3, 4),
                  make_model("mlp", 3, 4, (5, 2), "tanh"), make_model("mlp", 3, 0, (5,), "relu", "regression")):
        description = json.loads(json.dumps(model.describe()))  # as model.json holds it
        assert from_description(description).describe() == model.describe()


@pytest.mark.parametrize("activation, limit", [("relu", lambda fan_in, fan_out: np.sqrt(6.0 / fan_in)),
                                               ("tanh", lambda fan_in, fan_out: np.sqrt(6.0 / (fan_in + fan_out)))])
def test_mlp_starts_from_he_uniform_weights_under_relu_and_glorot_uniform_under_tanh(activation, limit):
    from mpigd.models import make_model

    model = make_model("mlp", 30, 3, (200,), activation)
    arrays = model.arrays(model.init_params(np.float64, seed=1))
    for name, (fan_in, fan_out) in zip(("W0", "W1"), model.shapes):
        bound = limit(fan_in, fan_out)
        # Uniform on [-bound, bound]: nothing beyond it, and thousands of draws come close to it.
        assert np.max(np.abs(arrays[name])) <= bound and np.max(np.abs(arrays[name])) >= 0.98 * bound, name
    assert not arrays["b0"].any() and not arrays["b1"].any()


def test_a_model_description_too_large_for_memory_is_one_line(tmp_path):
    from mpirun import mpigd, refused_in_one_line

    done = mpigd(1, "train", "--model", "logistic", "--rows", "50", "--features", "3", "--epochs", "1", "--quiet",
                 "--out", str(tmp_path / "m"), timeout=120)
    assert done.returncode == 0, done.stderr
    description = json.loads((tmp_path / "m" / "model.json").read_text())
    (tmp_path / "m" / "model.json").write_text(json.dumps({**description, "n_features": 10**13}))
    done = mpigd(2, "evaluate", "--params", str(tmp_path / "m" / "params.npz"), "--rows", "10", "--features", "3",
                 timeout=120)
    refused_in_one_line(done, "model.json: a logistic model of 10,000,000,000,001 parameters needs about")


@pytest.mark.parametrize("name, hidden, classes, message", [
    # 4 MB of parameters, but a 10^6 x 10^6 confusion matrix to count and allreduce at each evaluation.
    ("softmax", (64,), 10**6, "a softmax model of 4,000,000 parameters with 1,000,000 classes needs about 32,004 GB"),
    # 5.6 GB of parameters, but 256-row blocks of activations 10^8 wide (410 GB) in the kernel.
    ("mlp", (10**8,), 3, "a mlp model of 700,000,003 parameters with 3 classes needs about 434 GB"),
])
def test_a_model_whose_kernel_or_evaluation_buffers_cannot_fit_is_refused_before_they_are_allocated(
        monkeypatch, name, hidden, classes, message):
    import mpigd.prepare
    from mpigd.models import make_model

    # Counting the parameter buffers alone let both through on a 64 GB node: the first was killed by
    # the OOM killer while it evaluated, the second ran out of memory in its first step (exit 1).
    monkeypatch.setattr(mpigd.prepare, "physical_memory_bytes", lambda: 64 * 10**9)
    error = mpigd.prepare.too_large(make_model(name, 3, classes, hidden), 8, "d.npz")
    assert isinstance(error, InputError) and str(error).startswith(f"d.npz: {message} per rank"), error
    assert mpigd.prepare.too_large(make_model(name, 3, 1000, (64, 64)), 8, "d.npz") is None


def test_synthetic_rows_of_a_model_too_large_for_memory_are_never_made(monkeypatch):
    import mpigd.data
    import mpigd.prepare

    # 10^5 classes: 13 GB of label arrays per rank in the generator (two ranks of a 25 GB node were
    # killed by the OOM killer there) before the model's 320 GB of evaluation sums were checked.
    for module in (mpigd.data, mpigd.prepare):
        monkeypatch.setattr(module, "physical_memory_bytes", lambda: 64 * 10**9)
    monkeypatch.setattr(mpigd.prepare, "load_shard", lambda *args, **kwargs: pytest.fail("the rows were made"))
    with pytest.raises(InputError, match=r"^synthetic data: a softmax model of 400,000 parameters with 100,000 "
                                         r"classes needs about 320 GB per rank"):
        mpigd.prepare.prepare(Config(model="softmax", classes=100_000, features=3, rows=1000), self_comm())


def test_classes_too_many_for_memory_are_refused_before_any_list_of_them_is_made(tmp_path, monkeypatch):
    import time

    import mpigd.prepare

    # --classes K with a data file: the labels were tuple(range(K)) before the memory check, 16 GB
    # of tuple at K = 2 x 10^9 (and a minute) before the one-line refusal.
    np.save(tmp_path / "X.npy", np.ones((20, 3)))
    np.save(tmp_path / "y.npy", np.arange(20) % 3)
    monkeypatch.setattr(mpigd.prepare, "physical_memory_bytes", lambda: 64 * 10**9)
    start = time.perf_counter()
    with pytest.raises(InputError, match=r"softmax model of 8,000,000,000 parameters with 2,000,000,000 classes"):
        mpigd.prepare.prepare(Config(model="softmax", classes=2_000_000_000, data=str(tmp_path / "X.npy"),
                                     labels=str(tmp_path / "y.npy")), self_comm())
    assert time.perf_counter() - start < 5


def test_predict_pads_a_libsvm_file_whose_highest_index_is_below_the_models(tmp_path):
    from mpirun import mpigd

    rng = np.random.default_rng(5)
    X = np.round(rng.standard_normal((40, 6)), 3)
    y = (X[:, 0] > 0).astype(int)

    _save_libsvm(tmp_path / "train.svm", X, y, first_index=1)
    narrow = X.copy()
    narrow[:, 4:] = 0.0  # no index above 4 in the file
    _save_libsvm(tmp_path / "narrow.svm", narrow, y, first_index=1)
    np.save(tmp_path / "narrow_X.npy", narrow)
    np.save(tmp_path / "narrow_y.npy", y)
    done = mpigd(1, "train", "--data", str(tmp_path / "train.svm"), "--epochs", "5", "--quiet",
                 "--out", str(tmp_path / "m"), timeout=120)
    assert done.returncode == 0, done.stderr
    params = str(tmp_path / "m" / "params.npz")
    for data, output in ((tmp_path / "narrow.svm", "p1.npy"), (tmp_path / "narrow_X.npy", "p2.npy")):
        labels = ["--labels", str(tmp_path / "narrow_y.npy")] if output == "p2.npy" else []
        done = mpigd(1, "predict", "--params", params, "--data", str(data), *labels,
                     "--output", str(tmp_path / output), timeout=120)
        assert done.returncode == 0, done.stderr
    assert np.array_equal(np.load(tmp_path / "p1.npy"), np.load(tmp_path / "p2.npy"))
    done = mpigd(1, "evaluate", "--params", params, "--data", str(tmp_path / "narrow.svm"), timeout=120)
    assert done.returncode == 0, done.stderr


def test_the_last_parameters_are_kept_when_the_run_ends_before_patience_runs_out():
    """--patience restores the best held-out parameters only when it stops the run; a run that
    reaches --epochs first keeps its last parameters, as without --patience."""
    run = dict(model="logistic", algo="sgd", batch_size=64, rows=1000, features=6, holdout=0.3, eval_every=1, lr=2.0,
               quiet=True)
    stopped = train(Config(**run, patience=2, epochs=30), self_comm()).summary["stopped"]
    assert stopped["reason"] == "patience" and stopped["restored_best_epoch"] < stopped["epoch"]  # relied on
    patient = train(Config(**run, patience=100, epochs=stopped["epoch"]), self_comm())
    plain = train(Config(**run, epochs=stopped["epoch"]), self_comm())
    assert patient.summary["stopped"]["reason"] == "max_epochs"
    assert patient.summary["stopped"]["restored_best_epoch"] is None
    assert np.array_equal(patient.params, plain.params)


def test_a_standardized_model_scales_test_and_new_rows_with_the_training_statistics(tmp_path):
    """--standardize fits mean and scale on the training rows; the test set, predict and evaluate
    apply those same statistics to rows of another distribution (not statistics of their own)."""
    from mpigd.predict import evaluate_file, predict

    rng = np.random.default_rng(8)
    X = rng.standard_normal((400, 3)) * [1.0, 5.0, 0.2] + [3.0, -2.0, 10.0]
    coef = np.array([0.5, -0.3, 2.0])
    X_new = 2.0 * rng.standard_normal((150, 3)) + [5.0, 0.0, 9.0]
    y, y_new = X @ coef + 1.0 + 0.1 * rng.standard_normal(400), X_new @ coef + 1.0
    out = tmp_path / "model"
    config = Config(model="linear", data=_save_dense(tmp_path / "train.npz", X, y), epochs=100, lr=0.5, l2=0.01,
                    standardize=True, test_data=_save_dense(tmp_path / "new.npz", X_new, y_new), out=str(out),
                    quiet=True)
    summary = train(config, self_comm()).summary
    with np.load(out / "params.npz", allow_pickle=False) as saved:
        assert np.allclose(saved["scaler_mean"], X.mean(axis=0), rtol=1e-14)
        assert np.allclose(saved["scaler_scale"], X.std(axis=0), rtol=1e-13)
        expected = (X_new - X.mean(axis=0)) / X.std(axis=0) @ saved["coef"] + saved["intercept"]
    rmse = np.sqrt(np.mean((expected - y_new) ** 2))
    assert summary["test"]["rmse"] == pytest.approx(rmse, rel=1e-10)
    assert summary["test"]["loss"] == pytest.approx(0.5 * rmse**2, rel=1e-10)  # the mean loss, unpenalised
    predict(Config(data=str(tmp_path / "new.npz")), str(out / "params.npz"), str(tmp_path / "p.npy"), self_comm())
    assert np.allclose(np.load(tmp_path / "p.npy"), expected, rtol=1e-12, atol=1e-12)
    evaluated = evaluate_file(Config(data=str(tmp_path / "new.npz")), str(out / "params.npz"), self_comm())
    assert evaluated["rmse"] == pytest.approx(rmse, rel=1e-10)
    assert evaluated["loss"] == pytest.approx(summary["test"]["loss"], rel=1e-12)


def test_a_libsvm_test_file_is_read_with_the_training_files_index_base(tmp_path):
    """--test-data in training, and predict and evaluate later (from model.json), read a LIBSVM
    file with the training file's index base."""
    from mpigd.predict import evaluate_file, predict

    # Zero-based training indices; the new file never uses index 0 (its feature 0 is zero
    # throughout), so on its own it would be taken for one-based, every column one to the left.
    rng = np.random.default_rng(0)
    X = np.round(rng.standard_normal((200, 4)), 3)
    y = X @ [1.0, -2.0, 0.5, 3.0] + 0.5
    new = X[:50].copy()
    new[:, 0] = 0.0

    train_file = _save_libsvm(tmp_path / "train.svm", X, y, first_index=0)
    new_file = _save_libsvm(tmp_path / "new.svm", new, y[:50], first_index=0)
    result = train(Config(model="linear", data=train_file, epochs=100, lr=0.3, test_data=new_file,
                          out=str(tmp_path / "m"), quiet=True), self_comm())
    expected = new @ result.coef + result.intercept[0]
    rmse = np.sqrt(np.mean((expected - y[:50]) ** 2))
    assert result.summary["test"]["rmse"] == pytest.approx(rmse, rel=1e-10)
    params = str(tmp_path / "m" / "params.npz")
    predict(Config(data=str(tmp_path / "new.svm")), params, str(tmp_path / "p.npy"), self_comm())
    assert np.allclose(np.load(tmp_path / "p.npy"), expected, rtol=1e-12, atol=1e-12)
    evaluated = evaluate_file(Config(data=new_file), params, self_comm())
    assert evaluated["rmse"] == pytest.approx(rmse, rel=1e-10)
    # Told otherwise, predict reads the file as it is told (the columns then shift).
    predict(Config(data=str(tmp_path / "new.svm"), zero_based=False), params, str(tmp_path / "q.npy"), self_comm())
    assert not np.allclose(np.load(tmp_path / "q.npy"), expected)
    description = json.loads((tmp_path / "m" / "model.json").read_text())
    assert description["libsvm_zero_based"] is True
    (tmp_path / "m" / "model.json").write_text(json.dumps({**description, "libsvm_zero_based": 1}))
    with pytest.raises(InputError, match="libsvm_zero_based is 1, not true or false"):
        evaluate_file(Config(data=str(tmp_path / "new.svm")), params, self_comm())


def test_a_run_stopped_by_patience_reports_the_metrics_of_the_parameters_it_restored(tmp_path):
    run = dict(model="logistic", algo="sgd", batch_size=64, rows=1000, features=6, holdout=0.3, patience=2,
               eval_every=1, epochs=30, lr=2.0, out=str(tmp_path), quiet=True)
    summary = train(Config(**run), self_comm()).summary
    best = summary["stopped"]["restored_best_epoch"]
    assert summary["stopped"]["reason"] == "patience" and best < summary["epochs"]  # what the test relies on
    records = map(json.loads, (tmp_path / "metrics.jsonl").read_text().splitlines())
    (record,) = [r for r in records if r["epoch"] == best]
    assert summary["final_loss"] == record["loss"] and summary["metrics"]["accuracy"] == record["accuracy"]
    assert summary["test"]["loss"] == record["test_loss"] and summary["test"]["accuracy"] == record["test_accuracy"]


def test_the_test_sets_labels_are_checked_and_count_among_the_classes(tmp_path):
    rng = np.random.default_rng(2)
    X, X_test = rng.standard_normal((60, 2)), rng.standard_normal((20, 2))
    train_data = _save_dense(tmp_path / "train.npz", X, np.arange(60) % 2.0)
    with pytest.raises(InputError, match="test.npz"):  # a label no logistic regression can take
        train(Config(model="logistic", data=train_data, epochs=1, quiet=True,
                     test_data=_save_dense(tmp_path / "test.npz", X_test, np.arange(20) % 3.0)), self_comm())
    # A class that only the test rows hold is still one of the softmax model's classes.
    softmax = train(Config(model="softmax", data=_save_dense(tmp_path / "three.npz", X, np.arange(60) % 3.0),
                           test_data=_save_dense(tmp_path / "four.npz", X_test, np.arange(20) % 4.0), epochs=1,
                           quiet=True), self_comm())
    assert softmax.summary["model"]["classes"] == 4 and softmax.summary["test"]["rows"] == 20


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "csr"])
def test_holdout_split_keeps_each_row_with_its_own_label(sparse):
    # The held-out rows are chosen by global row index; the split must take exactly those rows
    # (features and labels together) from a dense or a CSR block.
    from mpigd.data.holdout import split
    from mpigd.data.shard import Shard

    rng = np.random.default_rng(3)
    dense = rng.standard_normal((200, 5)) * (rng.random((200, 5)) < 0.5)
    y = np.arange(200, dtype=np.float64)
    X = CSRMatrix.from_dense(dense) if sparse else dense.copy()
    train_part, test_part = split(Shard(X, y.copy(), 200, 0, "memory"), 0.3, 11, self_comm())  # split takes it over
    mask = held_out(11, 0, 200, 0.3)
    as_dense = (lambda part: part.X.toarray()) if sparse else (lambda part: part.X)
    assert np.array_equal(as_dense(train_part), dense[~mask]) and np.array_equal(train_part.y, y[~mask])
    assert np.array_equal(as_dense(test_part), dense[mask]) and np.array_equal(test_part.y, y[mask])
    assert train_part.n_global + test_part.n_global == 200 and test_part.n_global == mask.sum()


def test_the_evaluation_after_a_patience_restore_counts_as_compute_not_other(monkeypatch):
    """Every evaluation's time is compute: the one of the restored parameters fell in "other"."""
    import time

    from mpigd import trainer

    pause, calls = 0.3, []

    def slow_evaluate(*args, **kwargs):
        calls.append(1)
        time.sleep(pause)
        return real_evaluate(*args, **kwargs)

    real_evaluate = trainer.evaluate
    monkeypatch.setattr(trainer, "evaluate", slow_evaluate)
    run = dict(model="logistic", algo="sgd", batch_size=64, rows=1000, features=6, holdout=0.3, eval_every=1, lr=2.0,
               quiet=True, patience=2, epochs=30)
    summary = train(Config(**run), self_comm()).summary
    assert summary["stopped"]["restored_best_epoch"] is not None  # what the test relies on
    times = summary["time"]
    assert times["compute_seconds"] >= pause * len(calls) and times["other_seconds"] < pause
