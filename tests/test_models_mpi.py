"""Whole jobs under mpiexec for the newer models and algorithms: rank-count independence, local SGD,
the MLP on digits, predict and evaluate."""

import json

import numpy as np
import pytest

from mpirun import mpigd

from mpigd.errors import InputError


def _params(directory):
    with np.load(directory / "params.npz", allow_pickle=False) as saved:
        return np.concatenate([saved[name].ravel() for name in saved.files])


def _train(ranks, out, *args, timeout=120):
    job = mpigd(ranks, "train", *args, "--quiet", "--out", str(out), timeout=timeout)
    assert job.returncode == 0, job.stderr
    return json.loads((out / "summary.json").read_text())


@pytest.mark.parametrize("args", [
    ["--model", "softmax", "--classes", "5", "--lr", "1.0", "--l2", "0.01"],
    ["--model", "mlp", "--hidden", "8,4", "--activation", "tanh", "--lr", "0.3", "--l2", "0.001"],
    ["--model", "mlp", "--task", "regression", "--hidden", "6", "--lr", "0.05"],
    ["--model", "logistic", "--density", "0.2", "--lr", "0.5", "--l1", "0.002"],
], ids=["softmax", "mlp", "mlp-regression", "sparse-logistic-l1"])
def test_gd_gives_the_same_parameters_on_1_2_3_and_4_ranks(tmp_path, args):
    results = {}
    for ranks in (1, 2, 3, 4):
        # 1001 rows: blocks of unequal size on 2, 3 and 4 ranks.
        _train(ranks, tmp_path / f"p{ranks}", "--rows", "1001", "--features", "6", "--epochs", "60", *args)
        results[ranks] = _params(tmp_path / f"p{ranks}")
    for ranks in (2, 3, 4):
        assert np.max(np.abs(results[ranks] - results[1])) <= 1e-10 * np.max(np.abs(results[1]))


def test_local_sgd_with_one_local_step_is_synchronous_sgd_bitwise_and_h8_moves_8x_fewer_bytes(tmp_path):
    # 3 ranks over 2001 rows: unequal slices; l1, l2 and momentum exercise every term of the update.
    common = ["--model", "softmax", "--classes", "3", "--rows", "2001", "--features", "5", "--epochs", "2",
              "--batch-size", "63", "--lr", "0.3", "--l2", "0.01", "--l1", "0.001", "--optimizer", "momentum",
              "--schedule", "cosine", "--warmup", "5"]
    sync = _train(3, tmp_path / "sync", *common, "--algo", "sgd")
    local1 = _train(3, tmp_path / "h1", *common, "--algo", "local-sgd", "--local-steps", "1")
    assert np.array_equal(_params(tmp_path / "sync"), _params(tmp_path / "h1"))
    assert local1["final_loss"] == sync["final_loss"]
    # 2048 rows in batches of 64: 32 steps an epoch, 4 rounds of 8.
    common = ["--model", "logistic", "--rows", "2048", "--features", "5", "--epochs", "3", "--batch-size", "64",
              "--lr", "0.2"]
    sync = _train(2, tmp_path / "sync8", *common, "--algo", "sgd")
    local8 = _train(2, tmp_path / "h8", *common, "--algo", "local-sgd", "--local-steps", "8")
    assert sync["bytes_allreduced_training"] == 8 * local8["bytes_allreduced_training"]
    assert local8["steps"] == sync["steps"] == 96
    assert abs(local8["final_loss"] - sync["final_loss"]) <= 0.01 * sync["final_loss"]


def test_mlp_reaches_97_percent_held_out_accuracy_on_digits_on_two_ranks(tmp_path):
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    spread = X.std(axis=0)
    spread[spread == 0] = 1.0
    np.savez(tmp_path / "digits.npz", X=(X - X.mean(axis=0)) / spread, y=y.astype(np.float64))
    summary = _train(2, tmp_path / "out", "--model", "mlp", "--hidden", "64", "--data", str(tmp_path / "digits.npz"),
                     "--holdout", "0.2", "--algo", "sgd", "--optimizer", "adam", "--lr", "0.005", "--epochs", "40",
                     "--batch-size", "64", "--l2", "1e-4")
    assert summary["test"]["accuracy"] >= 0.97, summary["test"]
    assert summary["test"]["rows"] + summary["data"]["rows"] == len(y)
    with np.load(tmp_path / "out" / "params.npz", allow_pickle=False) as saved:
        assert saved["W0"].shape == (64, 64) and saved["W1"].shape == (64, 10) and saved["b1"].shape == (10,)


def test_predict_and_evaluate_on_two_ranks_match_the_trained_model(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((501, 4))
    y = np.argmax(X[:, :3] + 0.3 * rng.standard_normal((501, 3)), axis=1).astype(np.float64)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    summary = _train(1, tmp_path / "out", "--model", "softmax", "--data", str(tmp_path / "d.npz"), "--epochs", "50",
                     "--lr", "1.0")
    params = tmp_path / "out" / "params.npz"
    job = mpigd(3, "predict", "--params", str(params), "--data", str(tmp_path / "d.npz"), "--output",
                str(tmp_path / "pred.npy"), "--quiet", timeout=60)
    assert job.returncode == 0, job.stderr
    with np.load(params, allow_pickle=False) as saved:
        expected = np.argmax(X @ saved["coef"] + saved["intercept"], axis=1)
    assert np.array_equal(np.load(tmp_path / "pred.npy", allow_pickle=False), expected)
    job = mpigd(2, "evaluate", "--params", str(params), "--data", str(tmp_path / "d.npz"), "--output",
                str(tmp_path / "metrics.json"), "--quiet", timeout=60)
    assert job.returncode == 0, job.stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["accuracy"] == summary["metrics"]["accuracy"] == np.mean(expected == y)
    job = mpigd(2, "predict", "--params", str(params), "--data", "synthetic", "--features", "9", "--output",
                str(tmp_path / "bad.npy"), timeout=60)
    assert job.returncode == 2 and "9 features, but the model expects 4" in job.stderr


def test_predict_takes_data_without_labels_in_every_array_format_and_csv(tmp_path):
    import h5py

    from mpigd.comm import self_comm
    from mpigd.config import Config
    from mpigd.predict import evaluate_file, predict

    rng = np.random.default_rng(3)
    X = np.round(rng.standard_normal((301, 4)), 6)
    y = (X @ [1.0, -2.0, 0.5, 0.0] + 0.1 * rng.standard_normal(301)).round(6)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    _train(1, tmp_path / "out", "--model", "linear", "--data", str(tmp_path / "d.npz"), "--epochs", "20")
    params = str(tmp_path / "out" / "params.npz")
    with np.load(params, allow_pickle=False) as saved:
        expected = X @ saved["coef"] + saved["intercept"]
    # Unlabelled copies: X.npy alone, a directory without y.npy, .npz and HDF5 without y, a CSR .npz
    # without y, a CSV of the model's 4 columns (before: "3 features, but the model expects 4").
    np.save(tmp_path / "X.npy", X)
    (tmp_path / "dir").mkdir()
    np.save(tmp_path / "dir" / "X.npy", X)
    np.savez(tmp_path / "x.npz", X=X)
    with h5py.File(tmp_path / "x.h5", "w") as handle:
        handle["X"] = X
    indptr = np.arange(0, 4 * 302, 4)
    np.savez(tmp_path / "csr.npz", indptr=indptr, indices=np.tile(np.arange(4), 301), data=X.ravel(),
             shape=np.array([301, 4]))
    np.savetxt(tmp_path / "x.csv", X, delimiter=",", fmt="%.17g")
    for name in ("X.npy", "dir", "x.npz", "x.h5", "csr.npz", "x.csv"):
        output = tmp_path / f"pred-{name}.npy"
        summary = predict(Config(data=str(tmp_path / name)), params, str(output), self_comm())
        assert summary["rows"] == 301
        np.testing.assert_allclose(np.load(output, allow_pickle=False), expected, rtol=1e-12, err_msg=name)
    # On 3 ranks, each writing its own rows: the same file.
    job = mpigd(3, "predict", "--params", params, "--data", str(tmp_path / "x.csv"), "--output",
                str(tmp_path / "pred3.npy"), "--quiet", timeout=60)
    assert job.returncode == 0, job.stderr
    assert np.array_equal(np.load(tmp_path / "pred3.npy"), np.load(tmp_path / "pred-x.csv.npy"))
    # evaluate needs labels and says so; a CSV with one column more still has its last as labels.
    with pytest.raises(InputError, match="no labels to evaluate against .* mpigd predict takes such data"):
        evaluate_file(Config(data=str(tmp_path / "x.csv")), params, self_comm())
    np.savetxt(tmp_path / "xy.csv", np.column_stack([X, y]), delimiter=",", fmt="%.17g")
    assert evaluate_file(Config(data=str(tmp_path / "xy.csv")), params, self_comm())["rows"] == 301
