"""Every format, read on 1 to 4 ranks, trains the same model as the same data held in memory."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import mpigd
from data_helpers import TIMEOUT, in_memory, load_params, write_all
from mpigd.comm import self_comm
from mpigd.data import generate
from mpirun import run_mpi

TRAIN = ["-m", "mpigd", "train", "--model", "logistic", "--algo", "gd", "--epochs", "15", "--lr", "0.5",
         "--quiet", "--dtype", "float64"]
FORMATS = ["npz", "npy", "npy-pair", "csv", "libsvm", "hdf5"]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[str, dict[str, list[str]]]:
    directory = str(tmp_path_factory.mktemp("formats"))
    return directory, write_all(directory)


@pytest.fixture(scope="module")
def reference(data) -> dict[str, np.ndarray]:
    directory, args = data
    config = mpigd.Config(model="logistic", data=args["npz"][1], epochs=15, lr=0.5, quiet=True)
    return mpigd.train(config, self_comm()).arrays


@pytest.mark.parametrize("ranks", [1, 2, 3, 4])
@pytest.mark.parametrize("fmt", FORMATS)
def test_same_model_whatever_the_format_and_rank_count(data, reference, fmt, ranks):
    directory, args = data
    out = os.path.join(directory, f"out-{fmt}-{ranks}")
    done = run_mpi(ranks, TRAIN + args[fmt] + ["--out", out], timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    params = load_params(out)
    np.testing.assert_allclose(params["coef"], reference["coef"], rtol=0, atol=1e-10)
    np.testing.assert_allclose(params["intercept"], reference["intercept"], rtol=0, atol=1e-10)
    summary = json.load(open(os.path.join(out, "summary.json")))
    assert summary["data"]["rows"] == in_memory()[0].shape[0]
    assert summary["data"]["format"] == fmt.split("-")[0]


@pytest.mark.parametrize("ranks", [1, 3])
def test_standardized_text_matches_standardized_memory(data, ranks):
    directory, args = data
    X, y = in_memory()
    mean, scale = X.mean(axis=0), X.std(axis=0)
    expected = mpigd.train(mpigd.Config(model="logistic", data=args["npz"][1], epochs=15, lr=0.5, quiet=True,
                                        standardize=True), self_comm()).arrays
    out = os.path.join(directory, f"out-std-{ranks}")
    done = run_mpi(ranks, TRAIN + args["libsvm"] + ["--standardize", "--out", out], timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    params = load_params(out)
    np.testing.assert_allclose(params["scaler_mean"], mean, rtol=0, atol=1e-12)
    np.testing.assert_allclose(params["scaler_scale"], scale, rtol=1e-12)
    np.testing.assert_allclose(params["coef"], expected["coef"], rtol=0, atol=1e-10)


def test_more_ranks_than_rows_leaves_empty_partitions_and_still_trains(tmp_path):
    args = write_all(str(tmp_path), rows=3)
    expected = mpigd.train(mpigd.Config(model="logistic", data=args["npz"][1], epochs=5, lr=0.5, quiet=True),
                           self_comm()).arrays
    for fmt in ("csv", "npz"):
        out = str(tmp_path / f"out-{fmt}")
        done = run_mpi(4, TRAIN + ["--epochs", "5"] + args[fmt] + ["--out", out], timeout=TIMEOUT)
        assert done.returncode == 0, done.stderr
        np.testing.assert_allclose(load_params(out)["coef"], expected["coef"], rtol=0, atol=1e-10)


def test_test_data_is_evaluated_and_reported(data, tmp_path):
    directory, args = data
    out = str(tmp_path / "out")
    done = run_mpi(2, TRAIN + args["csv"] + ["--test-data", args["libsvm"][1], "--out", out], timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    summary = json.load(open(os.path.join(out, "summary.json")))
    # The test set is the training set in another format: the same loss and accuracy.
    assert summary["test"]["rows"] == summary["data"]["rows"]
    assert summary["test"]["accuracy"] == pytest.approx(summary["metrics"]["accuracy"], abs=1e-12)
    assert summary["test"]["loss"] == pytest.approx(summary["final_loss"], abs=1e-12)


@pytest.mark.parametrize("labels", [(-1, 1), (1, 2)], ids=["minus-plus-one", "one-two"])
def test_two_other_integer_labels_train_as_zero_one_and_predict_in_their_own_terms(data, reference, tmp_path,
                                                                                   labels):
    directory, args = data
    X, y = in_memory()
    low, high = labels
    relabelled = str(tmp_path / "relabelled.libsvm")
    with open(args["libsvm"][1]) as source, open(relabelled, "w") as target:
        for line in source:
            label, space, rest = line.partition(" ")  # a row without features is its label alone
            target.write(f"{high if float(label) == 1 else low:+d}{space}{rest.rstrip()}\n")
    out = str(tmp_path / "out")
    done = run_mpi(2, TRAIN + ["--data", relabelled, "--out", out], timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    params = load_params(out)
    np.testing.assert_allclose(params["coef"], reference["coef"], rtol=0, atol=1e-10)
    assert json.load(open(os.path.join(out, "model.json")))["labels"] == [low, high]
    predictions = str(tmp_path / "pred.npy")
    done = run_mpi(3, ["-m", "mpigd", "predict", "--params", os.path.join(out, "params.npz"), "--data", relabelled,
                       "--output", predictions, "--quiet"], timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    expected = np.where(X @ params["coef"] + params["intercept"] > 0, high, low)
    assert np.array_equal(np.load(predictions, allow_pickle=False), expected)
    metrics = str(tmp_path / "metrics.json")
    done = run_mpi(2, ["-m", "mpigd", "evaluate", "--params", os.path.join(out, "params.npz"), "--data", relabelled,
                       "--output", metrics, "--quiet"], timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    assert json.load(open(metrics))["accuracy"] == np.mean(expected == np.where(y == 1, high, low))
    # Labels the model was not trained on are refused with one line, not mapped.
    with open(relabelled) as source, open(tmp_path / "three.libsvm", "w") as target:
        target.write(source.read() + "0 1:0.5\n")
    done = run_mpi(2, ["-m", "mpigd", "evaluate", "--params", os.path.join(out, "params.npz"), "--data",
                       str(tmp_path / "three.libsvm")], timeout=TIMEOUT)
    assert done.returncode == 2 and f"needs labels {low} and {high}, as in training; found label 0" in done.stderr
    done = run_mpi(2, TRAIN + ["--data", str(tmp_path / "three.libsvm"), "--out", str(tmp_path / "out3")],
                   timeout=TIMEOUT)
    assert done.returncode == 2 and "logistic regression needs two labels (0 and 1, or" in done.stderr


def _multiclass(rows: int = 120, features: int = 4, classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    X = rng.standard_normal((rows, features))
    y = np.argmax(X[:, :classes] + 0.3 * rng.standard_normal((rows, classes)), axis=1).astype(np.float64)
    order = np.argsort(y, kind="stable")  # sorted by label: rank 0 of 2 never sees the last class
    return X[order], y[order]


def test_multiclass_labels_one_to_k_train_k_classes_and_predict_in_their_own_terms(tmp_path):
    X, y = _multiclass()
    np.savez(tmp_path / "zero-based.npz", X=X, y=y)
    softmax = ["--model", "softmax", "--algo", "gd", "--epochs", "20", "--lr", "0.5", "--quiet", "--dtype", "float64"]
    config = mpigd.Config(model="softmax", data=str(tmp_path / "zero-based.npz"), epochs=20, lr=0.5, quiet=True)
    reference = mpigd.train(config, self_comm()).arrays
    one_based = str(tmp_path / "one-based.libsvm")
    spec = generate.Spec(len(y), X.shape[1], "regression", 0, "libsvm", one_based)  # labels written as given
    with open(one_based, "wb") as handle:
        handle.write(generate.libsvm_bytes(spec, X, y + 1))
    out = str(tmp_path / "out")
    done = run_mpi(2, ["-m", "mpigd", "train"] + softmax + ["--data", one_based, "--out", out], timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    params = load_params(out)
    # Labels 1, 2, 3 are classes 0, 1, 2: the same three-class model, not four classes with an empty one.
    assert params["coef"].shape == (4, 3)
    np.testing.assert_allclose(params["coef"], reference["coef"], rtol=0, atol=1e-10)
    described = json.load(open(os.path.join(out, "model.json")))
    assert (described["classes"], described["labels"]) == (3, [1, 2, 3])
    predictions = str(tmp_path / "pred.npy")
    done = run_mpi(3, ["-m", "mpigd", "predict", "--params", os.path.join(out, "params.npz"), "--data", one_based,
                       "--output", predictions, "--quiet"], timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    expected = np.argmax(X @ params["coef"] + params["intercept"], axis=1) + 1
    assert np.array_equal(np.load(predictions, allow_pickle=False), expected)
    with open(one_based) as source, open(tmp_path / "unseen.libsvm", "w") as target:
        target.write(source.read() + "0 1:0.5\n")
    done = run_mpi(2, ["-m", "mpigd", "evaluate", "--params", os.path.join(out, "params.npz"), "--data",
                       str(tmp_path / "unseen.libsvm")], timeout=TIMEOUT)
    assert done.returncode == 2, done.stderr
    assert "labels must be those of the 3 classes of training (1, 2, 3); found label 0" in done.stderr


def test_classifier_labels_with_gaps_are_the_classes_and_fractions_are_refused(tmp_path):
    X, y = _multiclass()
    gapped = np.array([-4.0, 2.0, 9.0])[y.astype(int)]
    for model, extra in (("softmax", {}), ("mlp", {"hidden": (5,)})):
        arrays = {}
        for name, labels in (("plain", y), ("gapped", gapped)):
            np.savez(tmp_path / f"{name}.npz", X=X, y=labels)
            config = mpigd.Config(model=model, data=str(tmp_path / f"{name}.npz"), epochs=5, lr=0.5, quiet=True,
                                  out=str(tmp_path / f"out-{model}-{name}"), **extra)
            result = mpigd.train(config, self_comm())
            arrays[name] = result.arrays
        assert result.summary["model"]["labels"] == [-4, 2, 9]
        for key in arrays["plain"]:
            assert np.array_equal(arrays["plain"][key], arrays["gapped"][key]), (model, key)
    np.savez(tmp_path / "fraction.npz", X=X, y=np.where(y == 2, 1.5, y))
    with pytest.raises(mpigd.errors.InputError, match="class labels must be integers; found label 1.5"):
        mpigd.train(mpigd.Config(model="softmax", data=str(tmp_path / "fraction.npz"), quiet=True), self_comm())
