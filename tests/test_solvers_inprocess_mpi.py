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


def _reference_sgd(config, ranks):
    """Synchronous SGD (``local_steps=1``) or local SGD, written out from the documented algorithm
    for a linear model, with every rank of a ``ranks``-rank job emulated in one process: rank ``r``
    holds its block of the training rows (held-out rows removed), shuffles them with its own
    generator each epoch and takes the ``s``-th of ``S`` near-equal slices at step ``s``; its copy
    moves by ``lr · (P · g_r / B_s + l2 · u)``, the copies are averaged after each round of up to
    ``local_steps`` steps, and the round's L1 proximal step (threshold ``round · lr · l1``) follows.
    ``lr`` is the rate of the round's first step: constant, or cosine over the run's steps after a
    linear warm-up."""
    from mpigd.data import synthetic
    from mpigd.data.holdout import held_out
    from mpigd.partition import block_counts, block_range

    d, n = config.features, config.rows
    X_all, y_all = synthetic.generate("regression", d, config.seed, 0, n, "float64")
    local = []
    for r in range(ranks):
        start, stop = block_range(n, ranks, r)
        keep = ~held_out(config.seed, start, stop, config.holdout) if config.holdout else slice(None)
        local.append((X_all[start:stop][keep], y_all[start:stop][keep]))
    counts = [len(y) for _, y in local]
    steps = -(-sum(counts) // config.batch_size)
    batch_rows = sum(block_counts(count, steps) for count in counts)
    rngs = [np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(2, r))) for r in range(ranks)]
    H = config.local_steps if config.algo == "local-sgd" else 1
    horizon = config.epochs * steps - config.warmup

    def rate(t):
        if t < config.warmup:
            return config.lr * (t + 1) / config.warmup
        if config.schedule == "cosine":
            return config.lr * 0.5 * (1 + np.cos(np.pi * (t - config.warmup) / horizon))
        return config.lr

    w, taken = np.zeros(d + 1), 0
    for _ in range(config.epochs):
        orders = [rng.permutation(count) for rng, count in zip(rngs, counts)]
        s = 0
        while s < steps:
            length, lr = min(H, steps - s), rate(taken)
            copies = [w.copy() for _ in range(ranks)]
            for h in range(s, s + length):
                for r, (X, y) in enumerate(local):
                    lo, hi = block_range(counts[r], steps, h)
                    rows = orders[r][lo:hi]
                    u = copies[r]
                    residual = X[rows] @ u[:d] + u[d] - y[rows]
                    g = np.append(X[rows].T @ residual, residual.sum())
                    penalty = np.append(config.l2 * u[:d], 0.0)
                    copies[r] = u - lr * (ranks * g / batch_rows[h] + penalty)
            w = np.mean(copies, axis=0)
            w[:d] = np.sign(w[:d]) * np.maximum(np.abs(w[:d]) - length * lr * config.l1, 0.0)
            s += length
            taken += length
    return w


SGD_RUNS = [dict(algo="sgd", schedule="cosine", warmup=3), dict(algo="local-sgd", local_steps=4, schedule="cosine"),
            dict(algo="local-sgd", local_steps=3, l1=0.01)]


def _check_sgd_against_reference(comm, run):
    from mpigd import Config, train

    # Held-out rows give the ranks unequal training blocks; 10 steps an epoch of 48 to 49 rows.
    config = Config(model="linear", rows=600, features=4, seed=2, holdout=0.2, batch_size=50, epochs=2, lr=0.05,
                    l2=0.1, quiet=True, **run)
    got = train(config, comm).params
    expected = _reference_sgd(config, comm.size)
    return np.allclose(got, expected, rtol=1e-10, atol=1e-12), (got, expected)


@pytest.mark.parametrize("run", SGD_RUNS, ids=["sgd", "local-sgd", "local-sgd-l1"])
def test_sgd_and_local_sgd_on_one_rank_follow_the_reference(run):
    from mpigd.comm import self_comm

    ok, detail = _check_sgd_against_reference(self_comm(), run)
    assert ok, detail


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("run", SGD_RUNS, ids=["sgd", "local-sgd", "local-sgd-l1"])
def test_sgd_and_local_sgd_follow_the_reference_on_every_rank_count(run):
    """Each rank's own shuffle and slice, the global batch size from every rank's row count (unequal
    here), the P · g_r / B_h scaling of the local steps and the average of the copies."""
    from mpigd.comm import world

    comm = world()
    ok, detail = _check_sgd_against_reference(comm, run)
    flag = np.array([1 if ok else 0], dtype=np.int64)
    comm.allreduce_min(flag)
    assert flag[0] == 1, detail


@pytest.mark.mpi(min_size=2)
def test_train_returns_on_every_rank_once_its_outputs_are_written(tmp_path):
    """Rank 0 writes the results; a script that goes on to read them on every rank (evaluate_file
    straight after train) found no params.npz on the other ranks, which had returned already."""
    import os

    from mpi4py import MPI

    from mpigd.comm import world
    from mpigd.predict import evaluate_file

    comm = world()
    out = MPI.COMM_WORLD.bcast(str(tmp_path / "run"), root=0)  # rank 0's directory, for every rank
    result = train(Config(model="logistic", rows=3000, features=5, epochs=3, out=out, quiet=True), comm)
    evaluated = evaluate_file(Config(rows=3000, features=5), os.path.join(out, "params.npz"), comm)
    same = np.array([evaluated["accuracy"] == result.summary["metrics"]["accuracy"]], dtype=np.int64)
    comm.allreduce_min(same)
    assert same[0] == 1


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("algo", ["gd", "sgd", "local-sgd"])
def test_the_preemption_agreement_rides_on_the_gradients_allreduce(algo, monkeypatch):
    """A step with no signal and no checkpoint due makes one allreduce, the gradient's: the flags'
    own MAX allreduce after every step was a third of a small model's step on 2 ranks."""
    from mpigd.comm import world
    from mpigd.comm.communicator import Communicator

    maxima = []
    real = Communicator.allreduce_max

    def counted(self, buffer):
        maxima.append(buffer.size)
        real(self, buffer)

    monkeypatch.setattr(Communicator, "allreduce_max", counted)
    counts = []
    for batch in (40, 400):  # the same epochs and evaluations, 10x the steps
        config = Config(model="logistic", algo=algo, batch_size=batch, local_steps=3, rows=4000, features=5,
                        epochs=2, lr=0.1, quiet=True)
        before = len(maxima)
        summary = train(config, world()).summary
        counts.append(len(maxima) - before)
        assert summary["bytes_allreduced_per_step"] == (5 + 1 + 2) * 8  # parameters, loss, flag
    assert counts[0] == counts[1]


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("algo", ["gd", "sgd", "local-sgd"])
def test_a_signal_on_one_rank_stops_every_rank_after_the_step_it_arrived_in(algo, monkeypatch):
    from mpigd import Preempted
    from mpigd.comm import world

    monkeypatch.setenv("MPIGD_FAULT", "term@rank=1,step=6")
    config = Config(model="logistic", algo=algo, batch_size=400, local_steps=3, rows=4000, features=5, epochs=10,
                    lr=0.1, quiet=True)
    # local SGD's rounds are steps 1-3 and 4-6: the one that holds step 6 ends at 6 too.
    with pytest.raises(Preempted, match=r"every rank stopped after step 6 "):
        train(config, world())


@pytest.mark.mpi(min_size=2)
def test_lazy_local_rounds_on_wide_sparse_rows_agree_with_exact_rounds_and_every_rank_holds_the_same_bits(monkeypatch):
    """Each rank's copy as a scale times a vector (kernels/lazy_sgd.py), its displacement into the
    one reduction: the exact rounds' result to rounding, the same bits on every rank."""
    from mpigd import kernels
    from mpigd.algorithms import local_sgd
    from mpigd.comm import world

    comm = world()
    calls = []
    lazy_kernel = kernels.csr_glm_lazy_local_steps
    monkeypatch.setattr(kernels, "csr_glm_lazy_local_steps", lambda *args: calls.append(1) or lazy_kernel(*args))
    config = Config(model="logistic", rows=800, features=5000, density=0.002, algo="local-sgd", local_steps=6,
                    batch_size=4, epochs=2, lr=0.05, l2=1e-3, seed=3, quiet=True)
    lazy = train(config, comm).params
    monkeypatch.setattr(local_sgd, "sparse_steps_plan", lambda gradient, bounds: None)
    exact = train(config, comm).params
    low, high = lazy.copy(), lazy.copy()
    comm.allreduce_min(low)
    comm.allreduce_max(high)
    ok = bool(calls) and np.array_equal(low, high) and np.allclose(lazy, exact, rtol=1e-9, atol=1e-12)
    flag = np.array([1 if ok else 0], dtype=np.int64)
    comm.allreduce_min(flag)
    assert flag[0] == 1, (len(calls), np.abs(lazy - exact).max())


def _same_everywhere(comm, ok: bool, params: np.ndarray) -> bool:
    """Whether ``ok`` holds on every rank and every rank holds the same bits of ``params``."""
    low, high = params.copy(), params.copy()
    comm.allreduce_min(low)
    comm.allreduce_max(high)
    flag = np.array([1 if ok and np.array_equal(low, high) else 0], dtype=np.int64)
    comm.allreduce_min(flag)
    return flag[0] == 1


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("model", ["logistic", "linear", "softmax"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_sgd_on_wide_sparse_rows_gathers_the_non_zeros_and_agrees_with_allreduced_steps(model, dtype, monkeypatch):
    """Synchronous plain SGD on wide CSR rows on several ranks: each step gathers every rank's
    (column, values) pairs instead of summing every weight (mpigd/algorithms/sparse_exchange.py).
    The allreduced steps' result to rounding, the same bits on every rank, no gradient allreduced
    and the gathered bytes a whole number of messages a step: batches of a row or two a rank, L2
    off and on, a decaying rate, an L2 that folds the scale in mid-call, and lr * l2 above 1."""
    from mpigd import kernels
    from mpigd.algorithms import sgd
    from mpigd.comm import world
    from mpigd.kernels.sparse_exchange import message_size

    comm = world()
    calls, capacities = [], []
    apply, agree = kernels.apply_gathered_pairs, sgd.SparseExchange.capacities
    monkeypatch.setattr(kernels, "apply_gathered_pairs", lambda *args: calls.append(1) or apply(*args))

    def agreed(self, *args):
        capacities.extend(agree(self, *args).tolist())
        return np.array(capacities[-args[2]:])

    monkeypatch.setattr(sgd.SparseExchange, "capacities", agreed)
    tolerance = dict(rtol=1e-9, atol=1e-12) if dtype == "float64" else dict(rtol=2e-4, atol=1e-5)
    width = 3 if model == "softmax" else 1  # values a pair: a weight a class
    base = Config(model=model, dtype=dtype, rows=800, features=5000, density=0.002, algo="sgd", epochs=2, lr=0.05,
                  seed=3, quiet=True, classes=3 if width == 3 else 0)
    for extra in (dict(batch_size=comm.size, l2=1e-3), dict(batch_size=2 * comm.size + 1, schedule="invscaling"),
                  dict(batch_size=comm.size, l2=0.4, lr=0.5), dict(batch_size=2 * comm.size, l2=1.0, lr=1.2)):
        config = base.replace(**extra)
        calls.clear()
        capacities.clear()
        gathered = train(config, comm)
        with monkeypatch.context() as patch:
            patch.setattr(sgd.SparseExchange, "for_run", classmethod(lambda cls, run: None))
            allreduced = train(config, comm)
        summary, steps = gathered.summary, gathered.summary["steps"]
        # Each step's messages: room for the most non-zeros any rank's slice of the step holds.
        messages = sum(message_size(width, capacity) for capacity in capacities)
        ok = (len(calls) == steps == allreduced.summary["steps"] == len(capacities) > 0
              and (summary["gradient_exchange"], allreduced.summary["gradient_exchange"]) == ("allgather", "allreduce")
              and summary["bytes_allreduced_training"] == summary["bytes_allreduced_per_step"] == 0
              and allreduced.summary["bytes_gathered"] == 0
              and summary["bytes_gathered"] == comm.size * 8 * messages
              and all(1 <= capacity < 5000 / 8 for capacity in capacities)
              and np.allclose(gathered.params, allreduced.params, **tolerance)
              and summary["final_loss"] == pytest.approx(allreduced.summary["final_loss"], rel=tolerance["rtol"])
              and np.any(gathered.params[:-1] != 0))
        assert _same_everywhere(comm, ok, gathered.params), (extra, len(calls), steps, summary["bytes_gathered"],
                                                             np.abs(gathered.params - allreduced.params).max())


@pytest.mark.mpi(min_size=2)
def test_sparse_exchange_preempted_on_one_rank_resumes_to_the_uninterrupted_bits(mpi_tmp_path, monkeypatch):
    """A signal on rank 1 mid-run: every rank stops after the same call of steps with a checkpoint
    (the flag rides in the gathered messages), and the resumed run ends on the bits of a run that
    was never stopped, though its calls fold the scale into the weights."""
    import os
    import signal

    from mpigd import Preempted, kernels
    from mpigd.algorithms import chunked
    from mpigd.comm import world

    comm = world()
    monkeypatch.setattr(chunked, "LAZY_NONZEROS_A_CALL", 200)  # calls of a few steps
    run = dict(model="logistic", rows=800, features=5000, density=0.002, algo="sgd", batch_size=comm.size, epochs=2,
               lr=0.05, l2=1e-3, seed=3, quiet=True)
    whole = train(Config(**run, out=str(mpi_tmp_path / "whole")), comm)
    apply, calls = kernels.apply_gathered_pairs, []

    def signalled(*args):
        calls.append(1)
        if len(calls) == 30 and comm.rank == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return apply(*args)

    config = Config(**run, out=str(mpi_tmp_path / "cut"))
    with monkeypatch.context() as patch:
        patch.setattr(kernels, "apply_gathered_pairs", signalled)
        with pytest.raises(Preempted):
            train(config, comm)
    resumed = train(config.replace(resume=True), comm)
    stopped = resumed.summary["resumed_from_step"]
    ok = 30 <= stopped < whole.summary["steps"] and resumed.summary["final_loss"] == whole.summary["final_loss"]
    assert _same_everywhere(comm, ok and np.array_equal(resumed.params, whole.params), resumed.params), stopped


@pytest.mark.mpi(min_size=2)
def test_a_nan_on_one_rank_of_the_sparse_exchange_is_named_on_every_rank(monkeypatch):
    """Every rank sees every rank's loss in the gathered messages: each raises the error naming
    rank 1 and the step the NaN entered, as the allreduced steps do."""
    from mpigd import DivergedError, kernels
    from mpigd.comm import world

    apply, calls = kernels.apply_gathered_pairs, []
    monkeypatch.setattr(kernels, "apply_gathered_pairs", lambda *args: calls.append(1) or apply(*args))
    monkeypatch.setenv("MPIGD_FAULT", "nan@rank=1,step=7")
    config = Config(model="logistic", rows=800, features=5000, density=0.002, algo="sgd", batch_size=world().size,
                    epochs=1, lr=0.05, quiet=True)
    with pytest.raises(DivergedError, match=r"at step 7 \(epoch 1\): the local gradient of rank 1 is NaN"):
        train(config, world())
    assert len(calls) == 7  # the NaN's step found it in the gathered losses
