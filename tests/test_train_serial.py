"""Training in one process (COMM_SELF): the optimum it reaches, and what it writes."""

import contextlib
import io
import json
import math
import os
import re
import subprocess
import sys
import time as clock
import warnings

import numpy as np
import pytest

from mpirun import mpigd, refused_in_one_line

from mpigd import Config, DivergedError, InputError, UsageError, train
from mpigd.comm import self_comm
from mpigd.data import synthetic
from mpigd.environment import THREAD_VARIABLES
from mpigd.guards import ObjectiveGuard, divergence_advice

ROWS, FEATURES = 2000, 5


def _data(task, rows=ROWS, seed=3):
    return synthetic.generate(task, FEATURES, seed, 0, rows, "float64")


def _ridge_closed_form(X, y, l2):
    """Minimiser of mean(½(Xw + b − y)²) + l2/2‖w‖², intercept not penalised."""
    n = X.shape[0]
    A = np.hstack([X, np.ones((n, 1))])
    penalty = np.diag([l2] * X.shape[1] + [0.0])
    return np.linalg.solve(A.T @ A / n + penalty, A.T @ y / n)


@pytest.mark.parametrize("l2", [0.0, 0.1])
def test_gd_linear_reaches_the_closed_form_ridge_solution(l2):
    X, y = _data("regression")
    result = train(Config(model="linear", rows=ROWS, features=FEATURES, seed=3, epochs=300, lr=0.5, l2=l2,
                          quiet=True), self_comm())
    expected = _ridge_closed_form(X, y, l2)
    got = np.append(result.coef, result.intercept)
    assert np.linalg.norm(got - expected) <= 1e-6 * np.linalg.norm(expected)


def test_gd_linear_agrees_with_scikit_learn_ridge():
    from sklearn.linear_model import Ridge

    X, y = _data("regression")
    l2 = 0.05
    ridge = Ridge(alpha=ROWS * l2, tol=1e-12, solver="cholesky").fit(X, y)
    result = train(Config(model="linear", rows=ROWS, features=FEATURES, seed=3, epochs=300, lr=0.5, l2=l2,
                          quiet=True), self_comm())
    assert np.allclose(result.coef, ridge.coef_, rtol=1e-6, atol=1e-9)
    assert result.intercept[0] == pytest.approx(ridge.intercept_, rel=1e-6)


def test_gd_logistic_reaches_scikit_learn_logistic_regression():
    from sklearn.linear_model import LogisticRegression

    X, y = _data("classification")
    l2 = 0.01
    reference = LogisticRegression(C=1.0 / (ROWS * l2), tol=1e-12, max_iter=10_000).fit(X, y)
    result = train(Config(model="logistic", rows=ROWS, features=FEATURES, seed=3, epochs=1500, lr=2.0, l2=l2,
                          quiet=True), self_comm())
    expected = np.append(reference.coef_[0], reference.intercept_)
    got = np.append(result.coef, result.intercept)
    assert np.linalg.norm(got - expected) <= 1e-4 * np.linalg.norm(expected)
    assert result.summary["metrics"]["accuracy"] == pytest.approx(reference.score(X, y), abs=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sgd_lowers_the_objective_and_is_reproducible(dtype):
    config = Config(model="logistic", algo="sgd", rows=5000, features=8, epochs=3, lr=0.2, batch_size=64,
                    dtype=dtype, quiet=True)
    first, second = train(config, self_comm()), train(config, self_comm())
    assert np.array_equal(first.params, second.params)
    assert first.params.dtype == np.dtype(dtype)
    start = train(config.replace(epochs=1, lr=1e-12), self_comm()).summary["final_loss"]
    assert first.summary["final_loss"] < 0.8 * start
    assert first.summary["steps"] == 3 * -(-5000 // 64)
    assert first.summary["evaluations"] == 3  # full passes, not steps
    local = train(config.replace(algo="local-sgd", local_steps=4), self_comm()).summary
    assert local["steps"] == 3 * -(-5000 // 64) and local["evaluations"] == 3


def test_a_clipped_local_sgd_round_moves_as_far_as_its_clipped_steps_could():
    """``--clip-grad-norm C`` bounds a step's move to lr·C; a local SGD round of H steps stands
    for H of them, so its averaged displacement is clipped to H·C (it was C, H times short)."""
    clip, lr = 0.01, 1e-3
    config = Config(model="linear", algo="local-sgd", local_steps=4, rows=400, features=5, batch_size=100, epochs=1,
                    lr=lr, clip_grad_norm=clip, quiet=True)
    local = train(config, self_comm())
    assert local.summary["steps"] == 4  # one round, from zeros
    assert np.linalg.norm(local.params) == pytest.approx(4 * lr * clip, rel=1e-9)
    unclipped = train(config.replace(clip_grad_norm=0.0), self_comm())
    assert np.linalg.norm(unclipped.params) > 10 * 4 * lr * clip  # the clip took effect
    steps = train(config.replace(algo="sgd"), self_comm())  # four steps of lr·clip each, in about one direction
    assert 0.9 * 4 * lr * clip < np.linalg.norm(steps.params) <= 4 * lr * clip * (1 + 1e-9)


@pytest.mark.parametrize("n_local, batch_size", [(1000, 64), (1000, 1), (1000, 999), (1000, 1000), (7, 3)])
def test_sgd_batches_are_the_block_range_slices_of_the_order(n_local, batch_size):
    """Step ``s`` takes the ``s``-th of the epoch's near-equal slices of the rank's shuffled rows
    (as ``block_range`` cuts them), and the epoch's batches tile the order. The bounds are
    computed once, not per step; a slip there would skip or repeat rows silently."""
    from mpigd.algorithms import make_algorithm
    from mpigd.data import load_shard
    from mpigd.models import make_model
    from mpigd.partition import block_range

    config = Config(model="linear", algo="sgd", rows=n_local, features=3, batch_size=batch_size, quiet=True)
    comm = self_comm()
    algorithm = make_algorithm(config, make_model("linear", 3), load_shard(config, comm), comm)
    order = np.random.default_rng(0).permutation(n_local)
    steps = algorithm.steps_per_epoch
    batches = [algorithm.batch(order, step) for step in range(steps)]
    for step, rows in enumerate(batches):
        lo, hi = block_range(n_local, steps, step)
        assert np.array_equal(rows, order[lo:hi]) and rows.size == algorithm.batch_rows[step]
    assert np.array_equal(np.concatenate(batches), order)


@pytest.mark.parametrize("algo", ["gd", "sgd", "lbfgs"])
@pytest.mark.parametrize("model", ["linear", "softmax", "mlp"])
def test_float32_runs_reduce_and_keep_float32(algo, model):
    """--dtype float32 is the precision of data, parameters and arithmetic: the buffer each step
    allreduces (gradient and loss) holds 4-byte numbers. A float64 buffer trained as well, to the
    same answer, at twice the message size, and only float64 runs checked the bytes."""
    shape = {} if model == "linear" else {"classes": 3, "hidden": (4,)}
    config = Config(model=model, algo=algo, rows=300, features=5, epochs=2, batch_size=100, dtype="float32",
                    quiet=True, **shape)
    result = train(config, self_comm())
    assert result.params.dtype == np.float32
    assert result.summary["bytes_allreduced_per_step"] == (result.params.size + 1) * 4


def test_outputs_are_complete_and_load_without_pickle(tmp_path):
    out = tmp_path / "run"
    result = train(Config(model="linear", rows=1000, features=4, epochs=20, eval_every=5, out=str(out),
                          quiet=True), self_comm())
    with np.load(out / "params.npz", allow_pickle=False) as saved:
        assert np.array_equal(saved["coef"], result.coef)
        assert np.array_equal(saved["intercept"], result.intercept)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ranks"] == 1 and summary["strategy"] == "native"
    assert summary["config"]["epochs"] == 20 and summary["steps"] == 20
    assert set(summary["metrics"]) == {"r2", "rmse"} and summary["metrics"]["r2"] > 0.99
    assert summary["bytes_allreduced_per_step"] == (4 + 2) * 8
    times = summary["time"]
    assert times["wall_seconds"] >= times["compute_seconds"] > 0
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [5, 10, 15, 20]
    assert lines[-1]["loss"] == pytest.approx(summary["final_loss"])
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_the_time_split_counts_each_second_once():
    # An evaluation's allreduces were counted twice: in the communication time and, as part of the
    # evaluation, in the compute time, so compute + communication exceeded the wall time.
    comm = self_comm()
    summed = comm.strategy.allreduce

    def slow(buffer):
        clock.sleep(0.02)
        summed(buffer)

    comm.strategy.allreduce = slow
    summary = train(Config(model="linear", rows=300, features=3, epochs=4, eval_every=1, quiet=True), comm).summary
    times = summary["time"]
    waited = 0.02 * summary["allreduce_calls"]
    assert times["communication_seconds"] >= waited
    assert times["compute_seconds"] < times["wall_seconds"] - waited
    assert (times["compute_seconds"] + times["communication_seconds"] + times["other_seconds"]
            == pytest.approx(times["wall_seconds"], rel=1e-9))


def test_sgd_steps_in_one_kernel_call_report_the_allreduces_of_a_step_at_a_time(monkeypatch):
    # On one rank sgd takes many steps in one kernel call (kernels/sync_round.py) and reduced
    # nothing through the communicator: allreduce_calls and bytes_allreduced counted the
    # evaluations alone, less than bytes_allreduced_training, which counts every step's buffer.
    from mpigd.algorithms.chunked import ChunkedSteps

    config = Config(model="logistic", algo="sgd", batch_size=4, rows=400, features=3, epochs=2, quiet=True)
    chunked = train(config, self_comm()).summary
    monkeypatch.setattr(ChunkedSteps, "for_run", classmethod(lambda cls, sgd, size: None))
    stepped = train(config, self_comm()).summary
    assert chunked["steps"] == stepped["steps"] == 200
    for key in ("allreduce_calls", "bytes_allreduced", "bytes_allreduced_training", "bytes_allreduced_per_step"):
        assert chunked[key] == stepped[key], key
    assert chunked["bytes_allreduced"] >= chunked["bytes_allreduced_training"] == 200 * (4 + 1) * 8


def test_a_communicator_used_twice_reports_each_run_alone():
    # The summary's allreduce calls, bytes and communication time were the communicator's totals:
    # a second train() on the same Communicator reported both runs.
    comm = self_comm()
    config = Config(model="linear", rows=300, features=3, epochs=4, quiet=True)
    first, second = (train(config, comm).summary for _ in range(2))
    for key in ("allreduce_calls", "bytes_allreduced", "bytes_allreduced_training"):
        assert second[key] == first[key] > 0
    assert second["time"]["communication_seconds"] <= second["time"]["wall_seconds"]


def test_the_configured_strategy_sums_even_on_a_communicator_handed_in():
    config = Config(model="linear", rows=300, features=4, epochs=3, quiet=True, strategy="ring")
    summary = train(config, self_comm("tree")).summary
    assert summary["strategy"] == "ring" and summary["config"]["strategy"] == "ring"
    assert train(config.replace(strategy="native"), self_comm("ring")).summary["strategy"] == "native"


def test_paths_may_be_pathlib_paths_and_are_kept_as_text(tmp_path):
    X, y = _data("regression", rows=300)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    as_text = Config(model="linear", data=str(tmp_path / "d.npz"), epochs=4, quiet=True, out=str(tmp_path / "a"),
                     checkpoint_every=2)
    # Before: accepted, trained to the end, then failed writing summary.json (a Path is not JSON).
    as_paths = Config(model="linear", data=tmp_path / "d.npz", epochs=4, quiet=True, out=tmp_path / "b",
                      checkpoint_dir=tmp_path / "b" / "ck", checkpoint_every=2)
    assert as_paths.data == as_text.data and as_paths.out == str(tmp_path / "b")
    assert np.array_equal(train(as_paths, self_comm()).params, train(as_text, self_comm()).params)
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["config"]["checkpoint_dir"] == str(tmp_path / "b" / "ck")
    assert sorted(os.listdir(tmp_path / "b" / "ck")) == sorted(os.listdir(tmp_path / "a" / "checkpoints"))


@pytest.mark.parametrize("field", ["data", "out", "checkpoint_dir", "tune_file", "labels", "test_data", "test_labels"])
@pytest.mark.parametrize("value", ["", 5, b"y.npy"])
def test_a_path_that_is_no_path_is_refused_by_name(field, value):
    # The command line refuses --out ''; Config(out="") trained and wrote nothing, without a word,
    # and out=5 failed later with a bare TypeError on every rank.
    with pytest.raises(UsageError, match=re.escape(f"`{field}` must be a path, got {value!r}")):
        Config(**{field: value})


def test_data_may_not_be_none():
    with pytest.raises(UsageError, match=re.escape("`data` must be a path, got None")):
        Config(data=None)


def test_npz_input_trains_like_the_same_data_in_memory(tmp_path):
    X, y = _data("regression", rows=700)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    from_file = train(Config(model="linear", data=str(tmp_path / "d.npz"), epochs=50, quiet=True), self_comm())
    synthetic_run = train(Config(model="linear", rows=700, features=FEATURES, seed=3, epochs=50, quiet=True),
                          self_comm())
    assert np.array_equal(from_file.params, synthetic_run.params)


def test_divergence_is_reported_and_writes_no_parameters(tmp_path):
    with pytest.raises(DivergedError, match="smaller learning rate"):
        train(Config(model="linear", rows=500, features=4, epochs=200, lr=50.0, out=str(tmp_path / "o"),
                     quiet=True), self_comm())
    assert not (tmp_path / "o" / "params.npz").exists()


RUNAWAY = dict(model="linear", rows=500, features=4, lr=1e6, quiet=True)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_runaway_is_one_divergence_error_without_numpy_warnings(dtype):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a NumPy overflow warning would print before the one-line error
        with pytest.raises(DivergedError, match="training diverged at step"):
            train(Config(**RUNAWAY, dtype=dtype, epochs=200), self_comm())


def test_an_update_that_overflows_on_the_last_epoch_is_a_divergence(tmp_path):
    # One epoch: the objective before the update is finite, and only the evaluation after the
    # last update can tell that it overflowed.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DivergedError, match=r"at step 1 \(epoch 1\): the objective after the update is inf"):
            train(Config(**{**RUNAWAY, "lr": 1e200}, epochs=1, out=str(tmp_path / "o")), self_comm())
    assert not (tmp_path / "o" / "params.npz").exists() and not (tmp_path / "o" / "summary.json").exists()


def test_an_objective_that_runs_away_ends_the_run_long_before_it_overflows(tmp_path):
    # lr 3 on this data multiplies the objective by about 5 a step: finite for some 400 epochs,
    # and before the growth check such a run ended with exit 0 and a loss of 1e13 after 20.
    config = dict(model="linear", rows=500, features=4, lr=3.0, quiet=True, out=str(tmp_path / "o"))
    with pytest.raises(DivergedError) as caught:
        train(Config(**config, epochs=20), self_comm())
    found = re.search(r"at step (\d+) \(epoch (\d+)\): the objective(?: after the update)? grew to (\S+), "
                      r"over 10000 times its (\S+) in epoch 1; try a smaller learning rate than 3 ", str(caught.value))
    assert found, caught.value
    step, epoch, value, first = int(found[1]), int(found[2]), float(found[3]), float(found[4])
    assert step == epoch < 20 and 1e4 * first < value < 1e6 * first
    assert not (tmp_path / "o" / "params.npz").exists()
    # One epoch fewer than the one it was caught at runs to the end: the check is not early.
    train(Config(**{**config, "out": None}, epochs=epoch - 1), self_comm())


def test_the_runaway_check_is_exactly_ten_thousand_times_the_first_objective():
    guard = ObjectiveGuard(divergence_advice("gd", 0.1))
    guard.check(2.0, "the objective", 1, 1)
    guard.check(2.0e4, "the objective", 2, 2)  # 10^4 times: allowed
    with pytest.raises(DivergedError, match=r"step 3 \(epoch 3\): the objective grew to 20000, over 10000 "
                                            r"times its 2 in epoch 1; try a smaller learning rate than 0.1 "):
        guard.check(np.nextafter(2.0e4, np.inf), "the objective", 3, 3)
    # A first objective of 0 (an exact fit at the start) is measured from 1e-8, not from 0.
    exact = ObjectiveGuard(divergence_advice("gd", 0.1))
    exact.check(0.0, "the objective", 1, 1)
    exact.check(1e-4, "the objective", 2, 2)
    with pytest.raises(DivergedError, match="grew to 0.00010"):
        exact.check(1.0001e-4, "the objective", 3, 3)
    with pytest.raises(DivergedError, match="the objective is nan"):
        ObjectiveGuard(divergence_advice("gd", 0.1)).check(math.nan, "the objective", 1, 1)


@pytest.mark.parametrize("algo", ["lbfgs", "owlqn"])
def test_a_solver_takes_the_true_gradient_whatever_clip_grad_norm_says(algo):
    # Clipped, the gradient did not match the objective the line search measures: the same optimum,
    # but in 26 evaluations instead of 12.
    base = dict(model="logistic", algo=algo, rows=500, features=5, epochs=50, l2=1e-3, quiet=True,
                **({"l1": 1e-3} if algo == "owlqn" else {}))
    plain = train(Config(**base), self_comm())
    clipped = train(Config(**base, clip_grad_norm=1e-3), self_comm())
    assert np.array_equal(plain.params, clipped.params)
    assert plain.summary["evaluations"] == clipped.summary["evaluations"]


@pytest.mark.parametrize("algo", ["lbfgs", "owlqn", "normal"])
def test_a_diverged_solver_is_not_told_to_lower_a_learning_rate_it_never_read(algo):
    with pytest.raises(DivergedError, match=r"the objective is inf; check the data for extreme values "
                                            r"\(--standardize scales the features\) or add --l2$"):
        ObjectiveGuard(divergence_advice(algo, 0.5)).check(math.inf, "the objective", 1, 1)
    assert divergence_advice("sgd", 0.5) == "try a smaller learning rate than 0.5 or --clip-grad-norm"


def test_an_undefined_metric_is_null_in_standard_json(tmp_path):
    X = np.random.default_rng(0).standard_normal((200, 3))
    np.savez(tmp_path / "constant.npz", X=X, y=np.full(200, 2.5))  # r2 = 1 - SSE / 0: undefined
    train(Config(model="linear", data=str(tmp_path / "constant.npz"), epochs=5, out=str(tmp_path / "o"), quiet=True),
          self_comm())

    def refuse(constant):  # json.loads accepts NaN and Infinity unless told otherwise; JSON has neither
        raise ValueError(f"not JSON: {constant}")

    summary = json.loads((tmp_path / "o" / "summary.json").read_text(), parse_constant=refuse)
    assert summary["metrics"]["r2"] is None and summary["metrics"]["rmse"] >= 0
    lines = (tmp_path / "o" / "metrics.jsonl").read_text().splitlines()
    assert lines and all(json.loads(line, parse_constant=refuse)["r2"] is None for line in lines)


def test_bad_input_is_refused_before_any_output(tmp_path):
    bad_labels = tmp_path / "labels.npz"
    np.savez(bad_labels, X=np.ones((4, 2)), y=np.array([0.0, 1.0, 2.0, 1.0]))
    with pytest.raises(InputError, match=r"needs two labels \(0 and 1, or two other integers"):
        train(Config(model="logistic", data=str(bad_labels), out=str(tmp_path / "o1")), self_comm())
    nan = tmp_path / "nan.npz"
    X = np.ones((4, 2))
    X[2, 1] = np.nan
    np.savez(nan, X=X, y=np.ones(4))
    with pytest.raises(InputError, match="NaN or Inf in the features .first at row 2"):
        train(Config(model="linear", data=str(nan), out=str(tmp_path / "o2")), self_comm())
    with pytest.raises(InputError, match="no such data file"):
        train(Config(data=str(tmp_path / "missing.npz"), out=str(tmp_path / "o3")), self_comm())
    assert not any((tmp_path / name).exists() for name in ("o1", "o2", "o3"))


@pytest.mark.parametrize("change", [dict(model="svm"), dict(epochs=0), dict(lr=-1.0), dict(l2=float("nan")),
                                    dict(dtype="float16"), dict(rows=True), dict(strategy="bogus"),
                                    dict(lr="fast"), dict(epochs=2.5), dict(quiet=1), dict(model=3),
                                    dict(step_timeout=1e13)])
def test_invalid_configuration_is_refused(change):
    with pytest.raises(UsageError):  # by name, not a bare TypeError from a comparison
        Config(**change)


@pytest.mark.parametrize("change, message", [
    (dict(momentum=1.5), r"`momentum` must lie in \[0, 1\]"),
    (dict(gamma=-0.1), r"`gamma` must lie in \[0, 1\]"),
    (dict(seed=-1), "`seed` must be an integer >= 0"),
    (dict(seed=2**64, holdout=0.2), r"`seed` must be at most 18446744073709551615 \(2\^64 - 1\), got"),
    (dict(eval_every=-1), "`eval_every` must be an integer >= 0"),
    (dict(holdout=0.2, test_data="test.npz"), "give either `holdout` or `test_data`, not both"),
    (dict(model="mlp", density=0.1), "the mlp model reads dense input only"),
    # Options a solver would ignore without a word.
    (dict(algo="lbfgs", optimizer="adam"), "lbfgs takes its own steps: `optimizer`, `schedule` and `warmup` are for"),
    (dict(algo="owlqn", l1=0.1, schedule="cosine"), "owlqn takes its own steps"),
    (dict(algo="normal", warmup=5), "normal takes its own steps"),
    (dict(algo="normal", holdout=0.2, patience=3), "`patience` stops between epochs: `algo` normal solves in one"),
    (dict(model="linear", classes=3), "`classes` is for classifiers; `model` linear here fits a regression"),
    (dict(model="mlp", task="regression", classes=3), "`model` mlp here fits a regression"),
    (dict(model="logistic", classes=3), "logistic regression has 2 classes: use `model` softmax for 3"),
    (dict(strategy="mesh"), "`strategy` must be one of "),
    (dict(epochs="3"), "`epochs` must be an integer, got '3'"),
    (dict(hidden=64), "`hidden` must list one or more layer widths >= 1, got 64"),
])
def test_a_value_outside_its_range_is_refused_by_name(change, message):
    with pytest.raises(UsageError, match=message):
        Config(**change)


@pytest.mark.parametrize("args, message", [
    (["train", "--patience", "3"], "--patience stops on a held-out loss: give --holdout or --test-data too"),
    (["train", "--batch-size", "0"], "--batch-size must be an integer >= 1, got 0"),
    (["train", "--algo", "lbfgs", "--optimizer", "adam"],
     "lbfgs takes its own steps: --optimizer, --schedule and --warmup are for gd, sgd and local-sgd"),
    # A path the user wrote is quoted as written, backquotes and all: only a message's field names change.
    (["train", "--data", "/nonexistent/`lr`.csv"], "/nonexistent/`lr`.csv: no such data file"),
    (["evaluate", "--params", "p.npz", "--data", "synthetic", "--density", "1.5"],
     "--density must lie in [0, 1), got 1.5"),
    (["train", "--checkpoint-every", "5"], "checkpoints need a directory: give --out or --checkpoint-dir"),
])
def test_the_command_line_names_a_refused_setting_by_its_option(args, message):
    refused_in_one_line(mpigd(1, *args), message)


@pytest.mark.parametrize("change, unread", [
    (dict(), []),
    (dict(algo="sgd", batch_size=64, memory=10), []),  # memory at its default: nothing to say
    (dict(algo="gd", batch_size=64), ["`batch_size` is for `algo` sgd and local-sgd; gd does not read it"]),
    (dict(algo="sgd", local_steps=4, memory=5), ["`local_steps` is for `algo` local-sgd; sgd does not read it",
                                                 "`memory` is for `algo` lbfgs and owlqn; sgd does not read it"]),
    (dict(algo="normal", model="linear", tol=1e-6, clip_grad_norm=2.0),
     ["`algo` normal solves in one step: `tol` does not apply",
      "`algo` normal solves in one step: `clip_grad_norm` does not apply"]),
    (dict(algo="owlqn", l1=0.1, memory=5, tol=1e-6), []),
    # It went unread, even a file that was no tune file at all.
    (dict(strategy="tree", tune_file="t.json"), ["`tune_file` is for `strategy` auto and ring; tree does not read it"]),
    (dict(strategy="ring", tune_file="t.json"), []),
    (dict(model="mlp", hidden=(8, 4), activation="tanh"), []),
    (dict(model="logistic", hidden=[64]), []),  # the default, as a list
    (dict(model="softmax", hidden=(8,), activation="tanh"), ["`hidden` is for `model` mlp; softmax does not read it",
                                                             "`activation` is for `model` mlp; softmax does not read it"]),
    # A --rows meant to take a sample of a file took all of it without a word.
    (dict(data="d.csv", rows=100, density=0.1), ["`rows` is for `data` synthetic; a data file is read as it is",
                                                 "`density` is for `data` synthetic; a data file is read as it is"]),
    (dict(data="d.csv", features=32), []),  # the default
    # The step rule's settings: --lr 0.1 with lbfgs, --momentum with plain SGD, --power with a step
    # schedule went unread without a word.
    (dict(algo="lbfgs", lr=0.1, momentum=0.5), ["`lr` is for `algo` gd, sgd and local-sgd; lbfgs does not read it",
                                                "`momentum` is for `algo` gd, sgd and local-sgd; lbfgs does not read it"]),
    (dict(algo="normal", model="linear", gamma=0.5), ["`gamma` is for `algo` gd, sgd and local-sgd; normal does not read it"]),
    (dict(algo="owlqn", l1=0.01, clip_grad_norm=0.5),
     ["`clip_grad_norm` is for `algo` gd, sgd and local-sgd; owlqn takes the gradient unclipped (its line search "
      "needs the true one)"]),
    (dict(algo="sgd", optimizer="adam", momentum=0.5),
     ["`momentum` is for `optimizer` momentum and nesterov; adam does not read it"]),
    (dict(algo="local-sgd", optimizer="nesterov", momentum=0.5, lr=0.1), []),
    (dict(schedule="step", step_size=5, gamma=0.5, power=0.5),
     ["`power` is for `schedule` invscaling; step does not read it"]),
    (dict(schedule="cosine", step_size=5), ["`step_size` is for `schedule` step; cosine does not read it"]),
    (dict(schedule="invscaling", power=0.5, gamma=0.1), []),  # gamma at its default
])
def test_settings_the_algorithm_does_not_read_are_listed(change, unread):
    assert Config(**change).unread_settings() == unread


def test_a_setting_the_algorithm_does_not_read_is_warned_about_once_by_its_option():
    # --batch-size with full-batch gd used to go unread without a word.
    job = mpigd(2, "train", "--rows", "200", "--features", "3", "--epochs", "2", "--batch-size", "64", "--quiet")
    assert job.returncode == 0 and job.stderr == ""  # --quiet: errors only
    job = mpigd(2, "train", "--rows", "200", "--features", "3", "--epochs", "2", "--batch-size", "64")
    assert job.returncode == 0, job.stderr
    # Progress lines go to stderr too once a run passes 1 s (a loaded machine): only the warning counts.
    assert [line for line in job.stderr.splitlines() if not line.startswith("epoch ")] == [
        "mpigd: warning: --batch-size is for --algo sgd and local-sgd; gd does not read it"]


def test_train_takes_an_mpi4py_communicator():
    from mpi4py import MPI

    config = Config(model="linear", rows=300, features=3, epochs=3, quiet=True)
    assert np.array_equal(train(config, MPI.COMM_SELF).params, train(config, self_comm()).params)


@pytest.mark.parametrize("change, message", [
    (dict(patience=3), "`patience` stops on a held-out loss: give `holdout` or `test_data` too"),
    (dict(test_labels="y.npy"), "`test_labels` names the labels file of .npy `test_data`"),
])
def test_an_option_that_would_be_ignored_is_refused(change, message):
    with pytest.raises(UsageError, match=message):
        Config(**change)
    Config(**change, test_data="test.npy")  # with what it needs, accepted


def test_the_command_runs_blas_on_one_thread_per_rank_unless_told_otherwise():
    # What threadpoolctl finds in NumPy once the CLI module is imported, as the console script does.
    probe = ("import mpigd.cli, numpy, threadpoolctl; "
             "print(max(p['num_threads'] for p in threadpoolctl.threadpool_info() if p['user_api'] == 'blas'))")
    untold = {name: value for name, value in os.environ.items() if name not in THREAD_VARIABLES}

    def blas_threads(env: dict) -> int:
        done = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return int(done.stdout)

    assert blas_threads(untold) == 1
    assert blas_threads({**untold, "OMP_NUM_THREADS": "2"}) == 2


def test_an_sgd_epochs_objective_is_the_mean_of_its_steps(tmp_path):
    # 1024 rows in 16 batches of 64: the mean of the batches' mean losses is the mean loss over all
    # rows; at a negligible learning rate it is the loss the evaluation after the epoch reports.
    train(Config(model="linear", rows=1024, features=4, algo="sgd", batch_size=64, epochs=2, lr=1e-12, l2=0.1,
                 eval_every=1, out=str(tmp_path), quiet=True), self_comm())
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 2
    for record in records:
        assert record["train_loss"] == pytest.approx(record["loss"], rel=1e-9)


def test_progress_lines_say_the_rate_and_appear_only_after_the_delay_and_interval():
    import re

    from mpigd.progress import Progress

    quick = io.StringIO()  # a run shorter than the delay prints nothing, even at its forced last epoch
    short = Progress(10, 1000, True, delay=3600, stream=quick)
    short.update(10, 0.1, force=True)
    assert quick.getvalue() == ""
    stream = io.StringIO()
    progress = Progress(10, 1000, True, delay=0.0, interval=3600, stream=stream)
    progress.start = clock.perf_counter() - 2.0  # two seconds into the run
    progress.update(5, 0.25)
    progress.update(6, 0.2)  # within the interval: no line
    progress.update(10, 0.125, force=True)  # the last epoch: a line, as one was printed before
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].startswith("epoch  5/10  loss 0.25  ") and lines[1].startswith("epoch 10/10")
    rate, elapsed = re.search(r"([\d,]+) rows/s  ([\d.]+)s$", lines[0]).groups()
    assert float(rate.replace(",", "")) == pytest.approx(5 * 1000 / 2.0, rel=0.05) and float(elapsed) >= 2.0
    silent = io.StringIO()
    Progress(10, 1000, False, delay=0.0, stream=silent).update(5, 0.25, force=True)
    assert silent.getvalue() == ""


def test_a_resumed_run_s_progress_counts_only_the_rows_of_its_own_epochs():
    # A run resumed at epoch 9 counted epochs 1 to 9 as rows it had just processed: its rate was
    # several times the real one.
    from mpigd.progress import Progress

    stream = io.StringIO()
    progress = Progress(30, 1000, True, delay=0.0, interval=3600, stream=stream, epochs_done=9)
    progress.start = clock.perf_counter() - 2.0
    progress.update(12, 0.5)
    rate = re.search(r"([\d,]+) rows/s", stream.getvalue()).group(1)
    assert stream.getvalue().startswith("epoch 12/30") and float(rate.replace(",", "")) == pytest.approx(
        3 * 1000 / 2.0, rel=0.05)


def _help_of(*command: str) -> str:
    from mpigd.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as ended:
        main([*command, "--help"])
    assert ended.value.code == 0
    return " ".join(out.getvalue().split())  # argparse wraps at the terminal's width


def test_help_shows_every_default_of_train_by_group():
    shown = _help_of("train")
    groups = ["data:", "model:", "optimisation:", "stopping and evaluation:", "communication:", "output:",
              "fault tolerance"]
    assert all(f" {group}" in shown for group in groups)
    assert [shown.index(f" {group}") for group in groups] == sorted(shown.index(f" {group}") for group in groups)
    defaults = Config()
    for option, field in [("--lr LR", "lr"), ("--epochs EPOCHS, --max-epochs EPOCHS", "epochs"),
                          ("--batch-size BATCH_SIZE", "batch_size"), ("--strategy", "strategy"),
                          ("--keep K", "keep"), ("--l2 L2", "l2"), ("--model", "model"), ("--seed SEED", "seed")]:
        body = shown[shown.index(" options:"):]  # not the usage line
        after = body[body.index(option):]
        said = re.search(r"default: ([^)\s]+)\)?", after)[1]
        assert said == str(getattr(defaults, field)), option
    assert "--hidden HIDDEN mlp hidden widths, e.g. 64,32 (default: 64)" in shown  # a tuple, as typed
    assert "--one-based LIBSVM: indices count from 1 --x-key" in shown  # a flag has no default to show


def test_a_list_option_shows_its_default_as_it_is_typed():
    shown = _help_of("bench", "solvers")
    assert "--ranks RANKS [RANKS ...] default: 1 2 " in shown  # it said 1,2, which --ranks refuses
    assert "default: linear logistic softmax " in shown


@pytest.mark.parametrize("command", [("train",), ("gen",), ("predict",), ("evaluate",), ("tune",), ("plan",),
                                     ("bench", "kernel"), ("bench", "allreduce"), ("bench", "scaling"),
                                     ("bench", "solvers"), ("bench", "sparse"), ("bench", "scaling-report")])
def test_no_help_shows_an_empty_default(command):
    shown = _help_of(*command)
    assert not re.search(r"default: (None|False|True|\(\))", shown), shown
    assert "(default " not in shown  # one spelling: "default: X"


def test_every_train_option_reaches_the_configuration_and_the_defaults_are_the_readmes():
    from mpigd.cli import build_parser
    from mpigd.cli.common import config_from

    def parsed(*args):
        return config_from(build_parser().parse_args(["train", *args]))

    options = {
        "--model": ("softmax", "model"), "--data": ("d.csv", "data"), "--labels": ("l.npy", "labels"),
        "--format": ("csv", "format"), "--label-column": ("target", "label_column"), "--header": ("yes", "header"),
        "--x-key": ("A", "x_key"), "--y-key": ("B", "y_key"), "--rows": ("123", "rows"),
        "--features": ("7", "features"), "--density": ("0.25", "density"), "--dtype": ("float32", "dtype"),
        "--seed": ("9", "seed"), "--test-data": ("t.csv", "test_data"), "--test-labels": ("tl.npy", "test_labels"),
        "--classes": ("4", "classes"), "--hidden": ("8,4", "hidden"), "--activation": ("tanh", "activation"),
        "--task": ("classification", "task"), "--algo": ("local-sgd", "algo"), "--epochs": ("17", "epochs"),
        "--lr": ("0.03", "lr"), "--batch-size": ("64", "batch_size"), "--local-steps": ("3", "local_steps"),
        "--optimizer": ("adam", "optimizer"), "--momentum": ("0.7", "momentum"), "--schedule": ("step", "schedule"),
        "--warmup": ("5", "warmup"), "--step-size": ("11", "step_size"), "--gamma": ("0.5", "gamma"),
        "--power": ("0.5", "power"), "--l1": ("0.01", "l1"), "--l2": ("0.02", "l2"), "--tol": ("0.001", "tol"),
        "--memory": ("4", "memory"), "--patience": ("2", "patience"), "--strategy": ("ring", "strategy"),
        "--tune-file": ("tf.json", "tune_file"), "--eval-every": ("3", "eval_every"), "--out": ("o", "out"),
        "--checkpoint-every": ("6", "checkpoint_every"), "--checkpoint-seconds": ("2.5", "checkpoint_seconds"),
        "--checkpoint-dir": ("ck", "checkpoint_dir"), "--keep": ("5", "keep"), "--step-timeout": ("30", "step_timeout"),
        "--startup-timeout": ("600", "startup_timeout"),
        "--clip-grad-norm": ("1.5", "clip_grad_norm"),
    }
    flags = {"--standardize": "standardize", "--quiet": "quiet", "--resume": "resume", "--one-based": "zero_based"}
    config = parsed(*[item for option, (text, _) in options.items() for item in (option, text)], *flags)
    for option, (text, field) in options.items():
        value = getattr(config, field)
        default = Config.__dataclass_fields__[field].default
        kind = {"hidden": lambda s: tuple(map(int, s.split(","))), "label_column": str}.get(field)
        expected = (kind or (type(default) if default not in (None, "") else str))(text)
        assert value == expected and value != getattr(Config(), field), option
    assert (config.standardize, config.quiet, config.resume, config.zero_based) == (True, True, True, False)
    assert parsed("--holdout", "0.2").holdout == 0.2 and parsed("--max-epochs", "7").epochs == 7
    assert {field for _, field in options.values()} | set(flags.values()) | {"holdout"} == set(Config.__dataclass_fields__)
    # No option given: Config's defaults, which are those the README's table of options states.
    assert parsed() == Config()
    readme = dict(model="logistic", data="synthetic", rows=200_000, features=32, density=0.0, classes=0, hidden=(64,),
                  activation="relu", algo="gd", epochs=100, lr=0.5, batch_size=256, local_steps=8, optimizer="sgd",
                  momentum=0.9, schedule="constant", warmup=0, step_size=100, gamma=0.1, power=0.25, l1=0.0, l2=0.0,
                  tol=0.0, memory=10, patience=0, holdout=0.0, dtype="float64", seed=0, strategy="native",
                  checkpoint_every=0, checkpoint_seconds=0.0, keep=3, step_timeout=0.0, startup_timeout=0.0,
                  clip_grad_norm=0.0)
    assert {field: getattr(Config(), field) for field in readme} == readme
