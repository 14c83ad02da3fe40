"""Checkpoints and resume in one process: exact resume, corruption, atomicity, symlinks, metadata."""

import json
import os

import numpy as np
import pytest

from mpigd import Config, train
from mpigd.checkpoint import CheckpointStore
from mpigd.comm import self_comm
from mpigd.errors import CheckpointError, DivergedError, InputError, Preempted, UsageError

BASE = dict(model="linear", rows=1500, features=4, epochs=4, lr=0.3, quiet=True)
RUNS = {"gd": dict(algo="gd", epochs=30), "sgd": dict(algo="sgd", batch_size=64)}


def _config(tmp_path, name, **changes):
    return Config(**{**BASE, "out": str(tmp_path / name), **changes})


def _preempt_then_resume(config, monkeypatch, step):
    monkeypatch.setenv("MPIGD_FAULT", f"term@rank=0,step={step}")
    with pytest.raises(Preempted, match=f"after step {step}"):
        train(config, self_comm())
    monkeypatch.delenv("MPIGD_FAULT")
    return train(config.replace(resume=True), self_comm())


@pytest.mark.parametrize("algo", ["gd", "sgd"])
def test_preempted_and_resumed_run_is_bitwise_the_uninterrupted_one(tmp_path, monkeypatch, algo):
    whole = train(_config(tmp_path, "whole", **RUNS[algo]), self_comm())
    # Step 37 is mid-epoch for SGD (24 steps an epoch); step 24 is an epoch's last step.
    for step in (37, 24) if algo == "sgd" else (17,):
        config = _config(tmp_path, f"cut{step}", **RUNS[algo])
        resumed = _preempt_then_resume(config, monkeypatch, step)
        assert np.array_equal(resumed.params, whole.params)
        assert resumed.summary["resumed_from_step"] == step and resumed.summary["steps"] == whole.summary["steps"]
    # metrics.jsonl is appended: the same records as the uninterrupted run's, apart from the clock.
    records = [{k: v for k, v in json.loads(line).items() if k != "elapsed"}
               for path in (config.out, tmp_path / "whole") for line in open(os.path.join(path, "metrics.jsonl"))]
    assert records[: len(records) // 2] == records[len(records) // 2 :]


def test_local_sgd_preempted_mid_epoch_resumes_bitwise(tmp_path, monkeypatch):
    run = dict(algo="local-sgd", batch_size=64, local_steps=4)  # 24 steps an epoch: 6 rounds of 4
    whole = train(_config(tmp_path, "whole", **run), self_comm())
    config = _config(tmp_path, "cut", **run)
    monkeypatch.setenv("MPIGD_FAULT", "term@rank=0,step=9")
    # The signal arrives in the round of steps 9-12; the ranks stop where a round ends.
    with pytest.raises(Preempted, match="after step 12"):
        train(config, self_comm())
    monkeypatch.delenv("MPIGD_FAULT")
    resumed = train(config.replace(resume=True), self_comm())
    assert resumed.summary["resumed_from_step"] == 12
    assert np.array_equal(resumed.params, whole.params)


def test_resume_after_a_finished_run_extends_it_exactly(tmp_path):
    whole = train(_config(tmp_path, "whole", algo="sgd", batch_size=64, epochs=4), self_comm())
    short = _config(tmp_path, "short", algo="sgd", batch_size=64, epochs=2, checkpoint_every=1000)
    train(short, self_comm())  # the final checkpoint goes between epochs 2 and 3
    resumed = train(short.replace(epochs=4, resume=True), self_comm())
    assert np.array_equal(resumed.params, whole.params)
    # Every epoch's record once: the one at the final checkpoint's step used to be dropped.
    epochs = [json.loads(line)["epoch"] for line in open(os.path.join(short.out, "metrics.jsonl"))]
    assert epochs == [json.loads(line)["epoch"] for line in open(tmp_path / "whole" / "metrics.jsonl")] == [1, 2, 3, 4]


def test_early_stopping_resumes_with_its_best_loss_and_parameters(tmp_path, monkeypatch):
    """--patience's state (the held-out loss to beat, the best parameters, the evaluations without
    progress) goes into the checkpoint: the resumed run stops and restores as the whole one did."""
    run = dict(model="logistic", algo="sgd", batch_size=64, rows=1000, features=6, holdout=0.3, patience=2,
               eval_every=1, epochs=30, lr=2.0)
    whole = train(_config(tmp_path, "whole", **run), self_comm())
    stopped = whole.summary["stopped"]
    assert stopped["reason"] == "patience" and stopped["epoch"] < 30  # what the test relies on
    steps_per_epoch = -(-700 // 64)
    for step in (stopped["epoch"] - 1) * steps_per_epoch - 3, (stopped["epoch"] - 1) * steps_per_epoch:
        resumed = _preempt_then_resume(_config(tmp_path, f"cut{step}", **run), monkeypatch, step)
        assert resumed.summary["stopped"] == stopped
        assert np.array_equal(resumed.params, whole.params)


def test_a_corrupt_newest_checkpoint_is_skipped_with_a_warning(tmp_path, capsys):
    config = _config(tmp_path, "run", algo="sgd", batch_size=64, epochs=2, checkpoint_every=10, keep=2)
    whole = train(config, self_comm())
    directory = tmp_path / "run" / "checkpoints"
    assert sorted(os.listdir(directory)) == [f"ckpt-00000000{s}.{e}" for s in (40, 48) for e in ("json", "npz")]
    with open(directory / "ckpt-0000000048.npz", "r+b") as handle:  # flip a byte in the newest
        handle.seek(100)
        byte = handle.read(1)
        handle.seek(100)
        handle.write(bytes([byte[0] ^ 1]))
    resumed = train(config.replace(resume=True), self_comm())
    assert "warning: skipping checkpoint ckpt-0000000048.npz: checksum mismatch" in capsys.readouterr().err
    assert resumed.summary["resumed_from_step"] == 40 and np.array_equal(resumed.params, whole.params)


def test_a_resumed_run_replaces_the_corrupt_checkpoint_it_skipped(tmp_path, capsys):
    """The run resumed from before a corrupt checkpoint passes that step again: it writes a good one
    there, or every later resume would skip it and fall back again (it was kept as it was)."""
    config = _config(tmp_path, "run", algo="gd", epochs=30, checkpoint_every=10)
    train(config, self_comm())
    directory = tmp_path / "run" / "checkpoints"
    with open(directory / "ckpt-0000000020.npz", "r+b") as handle:
        handle.seek(-100, os.SEEK_END)
        byte = handle.read(1)
        handle.seek(-100, os.SEEK_END)
        handle.write(bytes([byte[0] ^ 1]))
    os.unlink(directory / "ckpt-0000000030.json")  # the run was cut short after step 20's checkpoint
    os.unlink(directory / "ckpt-0000000030.npz")
    longer = config.replace(resume=True, epochs=25)
    assert train(longer, self_comm()).summary["resumed_from_step"] == 10
    assert "skipping checkpoint ckpt-0000000020.npz: checksum mismatch" in capsys.readouterr().err
    assert CheckpointStore(str(directory), 3).load(20).step == 20  # rewritten, and whole
    again = train(longer, self_comm())
    assert again.summary["resumed_from_step"] == 25 and "skipping" not in capsys.readouterr().err


def test_a_fresh_run_refuses_a_directory_holding_checkpoints(tmp_path):
    config = _config(tmp_path, "run", epochs=1, checkpoint_every=1)
    train(config, self_comm())
    with pytest.raises(CheckpointError, match="holds checkpoints of an earlier run: add --resume"):
        train(config, self_comm())


def test_no_valid_checkpoint_at_all_is_an_error_and_none_is_a_fresh_start(tmp_path, capsys):
    config = _config(tmp_path, "run", resume=True)
    assert train(config, self_comm()).summary["resumed_from_step"] is None
    assert "no checkpoint" in capsys.readouterr().err
    directory = tmp_path / "run" / "checkpoints"
    directory.mkdir()
    (directory / "ckpt-0000000005.json").write_text("{torn")
    with pytest.raises(CheckpointError, match="no valid checkpoint among 1"):
        train(config, self_comm())


@pytest.mark.parametrize("change, message", [
    (dict(algo="sgd", batch_size=32), "batch_size 64 in the checkpoint, 32 now"),
    (dict(algo="gd"), "algo 'sgd' in the checkpoint, 'gd' now"),
    (dict(algo="sgd", batch_size=64, seed=1), "data_sha256"),
    (dict(algo="sgd", batch_size=64, dtype="float32"), "dtype 'float64' in the checkpoint, 'float32' now"),
    (dict(algo="sgd", batch_size=64, optimizer="adam"), "optimizer 'sgd' in the checkpoint, 'adam' now"),
])
def test_a_resume_that_does_not_match_the_checkpoint_is_refused(tmp_path, change, message):
    config = _config(tmp_path, "run", algo="sgd", batch_size=64, epochs=1, checkpoint_every=5)
    train(config, self_comm())
    with pytest.raises(CheckpointError, match="from a different run") as caught:
        train(config.replace(resume=True, **change), self_comm())
    assert message in str(caught.value) and caught.value.exit_code == 2


@pytest.mark.parametrize("change, message", [
    (dict(batch_size=32), "batch_size 64 in the checkpoint, 32 now"),
    (dict(local_steps=2), "local_steps 4 in the checkpoint, 2 now"),
])
def test_local_sgd_resumes_only_with_its_own_batches_and_rounds(tmp_path, change, message):
    config = _config(tmp_path, "run", algo="local-sgd", batch_size=64, local_steps=4, epochs=1, checkpoint_every=8)
    train(config, self_comm())
    with pytest.raises(CheckpointError, match=message):
        train(config.replace(resume=True, **change), self_comm())


def test_an_mlp_resumes_only_with_its_own_architecture(tmp_path):
    """A different activation has as many parameters; so may other hidden widths."""
    config = _config(tmp_path, "run", model="mlp", hidden=(5,), epochs=2, checkpoint_every=1)
    train(config, self_comm())
    with pytest.raises(CheckpointError, match="activation 'relu' in the checkpoint, 'tanh' now"):
        train(config.replace(resume=True, activation="tanh"), self_comm())


RUNS_THAT_STOP_EARLY = {
    "tol": dict(epochs=50, tol=1e-2, checkpoint_every=5),
    "patience": dict(model="logistic", algo="sgd", batch_size=20, rows=300, features=12, holdout=0.3, patience=1,
                     eval_every=1, epochs=40, lr=0.8, checkpoint_every=7),
}


@pytest.mark.parametrize("stop", list(RUNS_THAT_STOP_EARLY))
def test_resuming_a_run_that_stopped_early_ends_where_it_ended(tmp_path, stop):
    """A requeued or repeated --resume of a run that --tol or --patience ended trains no further."""
    config = _config(tmp_path, "run", **RUNS_THAT_STOP_EARLY[stop])
    first = train(config, self_comm())
    assert first.summary["stopped"]["reason"] == stop and first.summary["epochs"] < config.epochs  # relied on
    metrics = (tmp_path / "run" / "metrics.jsonl").read_text()
    again = train(config.replace(resume=True), self_comm())
    assert np.array_equal(again.params, first.params)
    for key in ("epochs", "steps", "stopped", "final_loss", "metrics"):
        assert again.summary[key] == first.summary[key], key
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == metrics


def test_resuming_a_finished_run_reports_its_epochs_and_fewer_epochs_are_refused(tmp_path):
    config = _config(tmp_path, "run", epochs=8, checkpoint_every=3)  # the final checkpoint goes after epoch 8
    first = train(config, self_comm())
    again = train(config.replace(resume=True), self_comm())
    assert again.summary["epochs"] == again.summary["stopped"]["epoch"] == 8
    assert np.array_equal(again.params, first.params)
    outputs = {name: (tmp_path / "run" / name).read_bytes() for name in ("metrics.jsonl", "summary.json")}
    for epochs, done in ((5, 8), (7, 8)):
        with pytest.raises(UsageError, match=f"--epochs {epochs}: the checkpoint resumed is {done} epochs into"):
            train(config.replace(resume=True, epochs=epochs), self_comm())
    # A checkpoint taken at the last step of epoch 8, before its evaluation, is 8 epochs in too.
    config = _config(tmp_path, "at-last-step", epochs=8, checkpoint_every=4)
    train(config, self_comm())
    with pytest.raises(UsageError, match="--epochs 7: the checkpoint resumed is 8 epochs into"):
        train(config.replace(resume=True, epochs=7), self_comm())
    assert {name: (tmp_path / "run" / name).read_bytes() for name in outputs} == outputs


@pytest.mark.parametrize("change, warning", [
    (dict(momentum=0.5), "momentum was 0.9 before the resume and is 0.5 now"),
    (dict(warmup=4), "warmup was 0 before the resume and is 4 now"),
    (dict(gamma=0.9), "gamma was 0.1 before the resume and is 0.9 now"),
    (dict(step_size=1), "step_size was 3 before the resume and is 1 now"),
    (dict(tol=1e-3), "tol was 0.0 before the resume and is 0.001 now"),
])
def test_a_resume_that_changes_the_steps_warns(tmp_path, capsys, change, warning):
    config = _config(tmp_path, "run", optimizer="momentum", schedule="step", step_size=3, epochs=4, checkpoint_every=2)
    train(config, self_comm())
    capsys.readouterr()
    train(config.replace(resume=True, epochs=6, **change), self_comm())
    err = capsys.readouterr().err
    assert err.count("before the resume") == 1 and warning in err, err


def _store_with_one(tmp_path):
    store = CheckpointStore(str(tmp_path / "ck"), keep=2)
    store.save(10, 1, np.arange(3.0), {}, [{"steps": 10}], {"ranks": 1}, {})
    return store


@pytest.mark.parametrize("failing_call", [1, 2])  # the .npz's rename, the manifest's rename
def test_a_crash_while_writing_leaves_the_previous_checkpoint_and_no_temporary_file(tmp_path, monkeypatch, failing_call):
    store = _store_with_one(tmp_path)
    calls, real = [], os.replace

    def crash(source, target):
        calls.append(target)
        if len(calls) == failing_call:
            raise OSError("disk gone")
        real(source, target)

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        store.save(20, 2, np.ones(3), {}, [{"steps": 20}], {"ranks": 1}, {})
    monkeypatch.setattr(os, "replace", real)
    assert not [name for name in os.listdir(store.directory) if ".tmp" in name]
    assert store.newest_valid(pytest.fail).step == 10  # no warning: the half-written one has no manifest
    store.save(30, 3, np.ones(3), {}, [{"steps": 30}], {"ranks": 1}, {})
    assert sorted(os.listdir(store.directory)) == [f"ckpt-00000000{s}.{e}" for s in (10, 30) for e in ("json", "npz")]


def test_planted_symbolic_links_are_not_followed(tmp_path):
    store = _store_with_one(tmp_path)
    secret = tmp_path / "secret.json"
    secret.write_text("{}")
    os.symlink(secret, os.path.join(store.directory, "ckpt-0000000099.json"))
    warnings = []
    assert store.newest_valid(warnings.append).step == 10
    assert "symbolic link" in warnings[0]
    os.symlink(store.directory, tmp_path / "linked")
    with pytest.raises(CheckpointError, match="is a symbolic link"):
        train(Config(**{**BASE, "checkpoint_dir": str(tmp_path / "linked"), "checkpoint_every": 5}), self_comm())


def test_divergence_names_the_step_and_leaves_no_valid_looking_output(tmp_path):
    out = tmp_path / "run"
    train(_config(tmp_path, "run"), self_comm())
    with pytest.raises(DivergedError, match=r"diverged at step \d+ \(epoch \d+\).*smaller learning rate than 50"):
        train(_config(tmp_path, "run", lr=50.0, epochs=200), self_comm())
    assert sorted(os.listdir(out)) == ["metrics.jsonl"]  # the earlier run's params/summary are gone too


def test_nan_in_the_data_is_refused_before_training(tmp_path):
    X = np.ones((50, 3))
    X[7, 1] = np.nan
    np.savez(tmp_path / "bad.npz", X=X, y=np.zeros(50))
    with pytest.raises(InputError, match="NaN or Inf in the features"):
        train(Config(data=str(tmp_path / "bad.npz"), out=str(tmp_path / "out"), quiet=True), self_comm())
    assert not (tmp_path / "out").exists()


def test_gradient_clipping_bounds_the_step(tmp_path):
    config = Config(**{**BASE, "epochs": 1, "lr": 1.0})
    free = train(config, self_comm()).params
    clipped = train(config.replace(clip_grad_norm=1e-3), self_comm()).params
    assert np.linalg.norm(free) > 1e-3 and np.linalg.norm(clipped) == pytest.approx(1e-3)


def test_tol_stopping_resumes_with_the_objective_to_compare_against(tmp_path, monkeypatch):
    """The last epoch's objective goes into the checkpoint: a run preempted in the epoch where
    --tol stops it resumes and stops there too, not one epoch later."""
    run = dict(algo="gd", epochs=500, lr=0.5, tol=1e-6)
    whole = train(_config(tmp_path, "whole", **run), self_comm())
    stopped = whole.summary["stopped"]
    assert stopped["reason"] == "tol" and stopped["epoch"] < 500  # what the test relies on
    resumed = _preempt_then_resume(_config(tmp_path, "cut", **run), monkeypatch, stopped["epoch"])
    assert resumed.summary["stopped"] == stopped
    assert np.array_equal(resumed.params, whole.params)


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_optimizer_state_is_resumed_bitwise(tmp_path, monkeypatch, optimizer):
    run = dict(algo="sgd", batch_size=64, optimizer=optimizer, lr=0.05)
    whole = train(_config(tmp_path, "whole", **run), self_comm())
    resumed = _preempt_then_resume(_config(tmp_path, "cut", **run), monkeypatch, 37)
    assert resumed.summary["resumed_from_step"] == 37 and np.array_equal(resumed.params, whole.params)


def test_a_resume_onto_changed_labels_is_refused(tmp_path):
    X, y = np.random.default_rng(0).standard_normal((300, 3)), np.zeros(300)
    data = tmp_path / "d.npz"
    np.savez(data, X=X, y=y)
    config = Config(model="linear", data=str(data), algo="sgd", batch_size=64, epochs=1, checkpoint_every=2,
                    out=str(tmp_path / "run"), quiet=True)
    train(config, self_comm())
    np.savez(data, X=X, y=y + 1.0)  # the same features, other targets: another data set
    with pytest.raises(CheckpointError, match="data_sha256"):
        train(config.replace(resume=True), self_comm())


def test_resuming_from_an_older_checkpoint_rewrites_the_metrics_from_its_epoch_once(tmp_path):
    # A run killed after its checkpoint of step 8 had gone on to write the records of epochs 8 to
    # 10: those are dropped on resume and written again, once each.
    config = _config(tmp_path, "run", algo="gd", epochs=10, eval_every=1, checkpoint_every=4, keep=5)
    whole = train(config, self_comm())
    directory = tmp_path / "run" / "checkpoints"
    for suffix in ("json", "npz"):  # the final checkpoint (after epoch 10) never got written
        os.unlink(directory / f"ckpt-0000000010.{suffix}")
    resumed = train(config.replace(resume=True), self_comm())
    assert resumed.summary["resumed_from_step"] == 8 and np.array_equal(resumed.params, whole.params)
    epochs = [json.loads(line)["epoch"] for line in open(tmp_path / "run" / "metrics.jsonl")]
    assert epochs == list(range(1, 11))


@pytest.mark.parametrize("algo, lazy_kernel", [("sgd", "csr_glm_lazy_sgd_steps"),
                                               ("local-sgd", "csr_glm_lazy_local_steps")])
def test_lazy_sparse_sgd_preempted_between_kernel_calls_resumes_bitwise(tmp_path, monkeypatch, algo, lazy_kernel):
    # Plain SGD on wide CSR rows on one rank (many steps a kernel call), and local SGD's rounds: the
    # weights a scale times a vector inside a call (kernels/lazy_sgd.py). A signal is acted on
    # between calls; the resumed run must end bitwise where the uninterrupted one does, however
    # long its calls took.
    import signal

    from mpigd import kernels
    from mpigd.algorithms import chunked

    monkeypatch.setattr(chunked, "LAZY_NONZEROS_A_CALL", 300)  # calls end mid-epoch
    run = dict(model="logistic", rows=400, features=5000, density=0.002, algo=algo, batch_size=1, epochs=3, lr=0.05,
               l2=1e-3, seed=3, **({"local_steps": 8} if algo == "local-sgd" else {}))
    whole = train(_config(tmp_path, "whole", **run), self_comm())
    lazy, calls = getattr(kernels, lazy_kernel), []

    def signalled(*args):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return lazy(*args)

    config = _config(tmp_path, "cut", **run)
    with monkeypatch.context() as patch:
        patch.setattr(kernels, lazy_kernel, signalled)
        patch.setattr(chunked, "CHUNK_SECONDS", 1e-9)
        with pytest.raises(Preempted):
            train(config, self_comm())
    resumed = train(config.replace(resume=True), self_comm())
    assert 0 < resumed.summary["resumed_from_step"] < 400
    assert np.array_equal(resumed.params, whole.params)
    assert resumed.summary["final_loss"] == whole.summary["final_loss"]
