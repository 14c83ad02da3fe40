"""Whole jobs that fail, hang, diverge or are preempted under mpiexec: they end quickly, say why
once, and a preempted run resumes to bitwise the parameters of an uninterrupted one."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from mpirun import mpigd, start_mpi

SMALL = ["train", "--model", "logistic", "--rows", "4000", "--features", "5", "--epochs", "300", "--quiet"]
# Long enough (about 20000 steps) that a signal sent after the first metrics line lands mid-run.
# Runs a signal must land in: about 1.4 s (gd) and 0.75 s (sgd) of steps on 2 ranks of an idle 2-core
# VM after their first progress line, which is what the tests wait for (at 20,000 and 40 epochs,
# 0.26 and 0.15 s: a busy machine could let the run finish before the signal came).
LONG = {
    "gd": ["train", "--model", "linear", "--rows", "2000", "--features", "5", "--epochs", "100000", "--lr", "0.1",
           "--eval-every", "1000", "--quiet"],
    "sgd": ["train", "--model", "linear", "--rows", "4000", "--features", "5", "--algo", "sgd", "--batch-size", "8",
            "--epochs", "200", "--lr", "0.01", "--eval-every", "1", "--quiet"],
}


def _params(directory):
    with np.load(os.path.join(directory, "params.npz"), allow_pickle=False) as saved:
        return np.append(saved["coef"], saved["intercept"])


def _finish(job, timeout):
    """Wait for a started job; kill its whole process group if it outlives ``timeout``."""
    try:
        out, err = job.communicate(timeout=timeout)
    except BaseException:
        os.killpg(job.pid, signal.SIGKILL)
        job.communicate()
        raise
    return job.returncode, out, err


def _rank_pid(launcher, rank, timeout=30.0):
    """The pid of rank ``rank`` among the descendants of the launcher (from /proc: PMI_RANK)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        parents = {}
        for entry in os.listdir("/proc"):
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    parents[int(entry)] = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (ValueError, OSError, IndexError):
                continue
        family, grew = {launcher}, True
        while grew:
            grown = family | {pid for pid, parent in parents.items() if parent in family}
            grew, family = grown != family, grown
        for pid in family - {launcher}:
            try:
                with open(f"/proc/{pid}/environ", "rb") as handle:
                    if f"PMI_RANK={rank}".encode() in handle.read().split(b"\0"):
                        return pid
            except OSError:
                continue
        time.sleep(0.1)
    raise AssertionError(f"rank {rank} of job {launcher} not found")


def _wait_for_progress(path, job, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not (os.path.exists(path) and os.path.getsize(path) > 0):
        assert job.poll() is None and time.monotonic() < deadline, "the job ended or stalled before any progress"
        time.sleep(0.05)


def test_a_rank_killed_with_sigkill_ends_the_job_within_30_seconds(tmp_path):
    start = time.monotonic()
    job = mpigd(4, *SMALL, env={"MPIGD_FAULT": "kill@rank=1,step=5"}, timeout=60)
    assert job.returncode != 0 and time.monotonic() - start < 30


def test_an_exception_on_rank_2_is_reported_once_and_aborts_the_job_within_10_seconds(tmp_path):
    job = start_mpi(4, ["-m", "mpigd", *SMALL], env={"MPIGD_FAULT": "raise@rank=2,step=5"})
    guard = threading.Timer(90, os.killpg, (job.pid, signal.SIGKILL))
    guard.daemon = True
    guard.start()
    failed_at, lines = None, []
    for line in job.stderr:  # timed from the failing rank's message to the end of the whole job
        lines.append(line)
        if failed_at is None and "mpigd: rank 2 failed, aborting the job" in line:
            failed_at = time.monotonic()
    job.wait()
    guard.cancel()
    stderr = "".join(lines)
    assert failed_at is not None and time.monotonic() - failed_at < 10, stderr
    assert job.returncode != 0
    assert stderr.count("RuntimeError: injected failure (MPIGD_FAULT) at step 5") == 1


def test_sigint_to_one_rank_ends_the_whole_job(tmp_path):
    """Ctrl-C reached one rank only: it used to leave with a KeyboardInterrupt while the others
    waited for it in the allreduce, until killed from outside."""
    metrics = tmp_path / "run" / "metrics.jsonl"
    # Ended by the signal only: long enough that it lands mid-run on a loaded machine too.
    job = start_mpi(2, ["-m", "mpigd", *LONG["gd"], "--epochs", "1000000", "--out", str(tmp_path / "run")])
    try:
        _wait_for_progress(metrics, job)
        sent = time.monotonic()
        os.kill(_rank_pid(job.pid, 1), signal.SIGINT)
        code, _, err = _finish(job, 60)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    assert time.monotonic() - sent < 10, err
    assert code == 130 and "mpigd: rank 1 interrupted (SIGINT), aborting the job" in err, (code, err)


def test_a_stuck_rank_is_caught_by_the_step_watchdog(tmp_path):
    start = time.monotonic()
    job = mpigd(2, *SMALL, "--step-timeout", "2", env={"MPIGD_FAULT": "hang@rank=1,step=5"}, timeout=60)
    assert job.returncode != 0 and time.monotonic() - start < 30
    # Every rank's watchdog fires (the healthy one waits in the allreduce), and the two stack dumps
    # can interleave character by character on the shared stderr: look for the dump, not a line of it.
    assert "Timeout (0:00:02)!" in job.stderr and "File " in job.stderr


def test_a_rank_stuck_in_the_first_step_is_caught_by_the_startup_watchdog(tmp_path):
    """The step watchdog is armed only after the first step; the start-up one covers what comes before."""
    start = time.monotonic()
    job = mpigd(2, *SMALL, "--startup-timeout", "3", "--step-timeout", "2", env={"MPIGD_FAULT": "hang@rank=1,step=1"},
                timeout=60)
    assert job.returncode != 0 and time.monotonic() - start < 30
    assert "Timeout (0:00:03)!" in job.stderr and "File " in job.stderr


def test_after_the_first_step_the_step_limit_replaces_the_startup_one(tmp_path):
    """A generous start-up limit does not carry over to the later steps: they get --step-timeout."""
    start = time.monotonic()
    job = mpigd(2, *SMALL, "--startup-timeout", "600", "--step-timeout", "2",
                env={"MPIGD_FAULT": "hang@rank=1,step=5"}, timeout=30)
    assert job.returncode != 0 and time.monotonic() - start < 30
    assert "Timeout (0:00:02)!" in job.stderr and "File " in job.stderr


def test_the_startup_watchdog_is_lifted_by_the_first_step(tmp_path):
    metrics = tmp_path / "run" / "metrics.jsonl"
    job = start_mpi(2, ["-m", "mpigd", *LONG["gd"], "--epochs", "1000000", "--out", str(tmp_path / "run"),
                        "--startup-timeout", "2"])
    try:
        _wait_for_progress(metrics, job)
        time.sleep(4)  # twice the start-up limit after the first step
        os.kill(job.pid, signal.SIGUSR1)
        code, _, err = _finish(job, 60)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
    assert code == 75 and "Timeout" not in err, (code, err)  # stopped by the signal, not by the watchdog


def test_train_in_process_leaves_no_watchdog_behind_when_it_returns_or_raises(tmp_path):
    """faulthandler's timer is process-wide: a run that returns, or input refused before the first
    step, must disarm it, or it would end the caller's process a few seconds later."""
    script = ("import time; from mpigd import Config, InputError, train\n"
              "from mpigd.comm import self_comm\n"
              "train(Config(model='linear', rows=200, features=3, epochs=3, quiet=True, startup_timeout=60.0,"
              " step_timeout=1.0), self_comm())\n"
              "try:\n"
              f"    train(Config(data={str(tmp_path / 'absent.csv')!r}, startup_timeout=2.0), self_comm())\n"
              "except InputError:\n"
              "    pass\n"
              "time.sleep(3.0)\n"
              "print('alive')\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout == "alive\n", done.stderr


def test_the_step_watchdog_leaves_a_healthy_run_longer_than_its_timeout_alone(tmp_path):
    """The deadline follows the last finished step, not the first one."""
    start = time.monotonic()
    # 400,000 epochs: 6.3 s on an idle 2-core VM; 100,000 once took 4.5 s, then, with the steps
    # made quicker, 2.0 s, under the three timeouts this test needs the run to outlast.
    job = mpigd(2, *LONG["gd"], "--epochs", "400000", "--step-timeout", "0.75", timeout=120)
    assert job.returncode == 0 and "Timeout" not in job.stderr, job.stderr
    assert time.monotonic() - start > 3 * 0.75


@pytest.mark.parametrize("args, fault, message", [
    (["--model", "linear", "--lr", "50"], None, "training diverged at step"),
    ([], "nan@rank=1,step=3", "at step 3 (epoch 3): the local gradient of rank 1 is NaN or Inf"),
], ids=["learning-rate-too-large", "nan-on-rank-1"])
def test_divergence_is_one_clear_message_and_no_output_that_looks_valid(tmp_path, args, fault, message):
    out = tmp_path / "out"
    job = mpigd(2, *SMALL, *args, "--out", str(out), env={"MPIGD_FAULT": fault} if fault else {}, timeout=60)
    assert job.returncode == 3, job.stderr
    assert job.stderr.count("mpigd: error:") == 1 and message in job.stderr and "smaller learning rate" in job.stderr
    assert not (out / "params.npz").exists() and not (out / "summary.json").exists()


def test_nan_in_one_ranks_rows_is_refused_once_with_exit_code_2(tmp_path):
    X = np.random.default_rng(0).standard_normal((100, 3))
    X[80, 2] = np.nan  # in rank 1's block
    np.savez(tmp_path / "bad.npz", X=X, y=(X[:, 0] > 0).astype(float))
    job = mpigd(2, "train", "--data", str(tmp_path / "bad.npz"), "--out", str(tmp_path / "out"), timeout=60)
    assert job.returncode == 2 and job.stderr.count("NaN or Inf in the features (first at row 80)") == 1
    assert not (tmp_path / "out").exists()


_REFERENCE = {}


def _reference(algo, tmp_path_factory):
    if algo not in _REFERENCE:
        out = tmp_path_factory.mktemp(f"whole-{algo}")
        job = mpigd(2, *LONG[algo], "--out", str(out), timeout=180)
        assert job.returncode == 0, job.stderr
        _REFERENCE[algo] = _params(out)
    return _REFERENCE[algo]


@pytest.mark.parametrize("algo, target, signum", [
    ("gd", "rank", signal.SIGTERM),
    ("sgd", "rank", signal.SIGTERM),
    ("gd", "mpiexec", signal.SIGTERM),
    ("sgd", "mpiexec", signal.SIGUSR1),
    # mpiexec and every rank at once, as a shell's kill of the group does, and again milliseconds
    # later, as timeout(1) around mpiexec passes it on too: each rank gets it several times, directly
    # and through mpiexec (taken for a second signal: exit 15, no checkpoint).
    ("sgd", "group", signal.SIGTERM),
])
def test_a_preempted_job_resumes_to_bitwise_the_uninterrupted_result(tmp_path, tmp_path_factory, algo, target, signum):
    out = tmp_path / "out"
    job = start_mpi(2, ["-m", "mpigd", *LONG[algo], "--out", str(out)])
    _wait_for_progress(out / "metrics.jsonl", job)
    # One rank alone gets the signal, or mpiexec, which (MPICH's hydra) forwards it to every rank.
    if target == "group":
        os.killpg(job.pid, signum)
        os.killpg(job.pid, signum)
    else:
        os.kill(_rank_pid(job.pid, 1) if target == "rank" else job.pid, signum)
    code, _, stderr = _finish(job, 120)
    assert code == 75, stderr
    assert stderr.count("mpigd: error: preempted") == 1 and signal.Signals(signum).name in stderr
    resumed = mpigd(2, *LONG[algo], "--out", str(out), "--resume", timeout=180)
    assert resumed.returncode == 0, resumed.stderr
    assert np.array_equal(_params(out), _reference(algo, tmp_path_factory))


def test_a_preempted_one_rank_sgd_run_resumes_to_bitwise_the_uninterrupted_result(tmp_path):
    # On one rank sgd takes its steps many in one kernel call: the signal is acted on after the
    # call, the checkpoint is of the step it ended at, and the resumed run, cut into other calls,
    # ends on the same bits as a run never stopped.
    args = ["train", "--model", "linear", "--rows", "4000", "--features", "5", "--algo", "sgd", "--batch-size", "1",
            "--epochs", "1500", "--lr", "0.001", "--eval-every", "1", "--quiet"]
    whole = mpigd(1, *args, "--out", str(tmp_path / "whole"), timeout=180)
    assert whole.returncode == 0, whole.stderr
    out = tmp_path / "out"
    job = start_mpi(1, ["-m", "mpigd", *args, "--out", str(out)])
    _wait_for_progress(out / "metrics.jsonl", job)
    os.kill(job.pid, signal.SIGTERM)  # mpiexec passes it on to the rank
    code, _, stderr = _finish(job, 120)
    assert code == 75 and "every rank stopped after step" in stderr, stderr
    resumed = mpigd(1, *args, "--out", str(out), "--resume", timeout=180)
    assert resumed.returncode == 0, resumed.stderr
    assert np.array_equal(_params(out), _params(tmp_path / "whole"))

def test_the_slurm_script_forwards_usr1_requeues_and_resumes(tmp_path, tmp_path_factory):
    """slurm/train.sbatch with stubbed ``srun`` (mpiexec on 2 ranks) and ``scontrol`` (records its
    arguments), as Lightning and submitit test requeueing without a cluster."""
    from mpirun import ROOT, mpiexec

    stubs, out = tmp_path / "bin", tmp_path / "out"
    stubs.mkdir()
    (stubs / "srun").write_text('#!/bin/sh\nwhile [ "${1#--}" != "$1" ]; do shift; done\n'  # drop srun's options
                                f'exec {" ".join(mpiexec())} -n 2 "$@"\n')
    (stubs / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/scontrol.log\n')
    for stub in stubs.iterdir():
        stub.chmod(0o755)
    env = dict(os.environ, PATH=f"{stubs}:{os.environ['PATH']}", SLURM_JOB_ID="4242", MPIGD_PYTHON=sys.executable,
               SLURM_SUBMIT_DIR=str(ROOT), NUMBA_NUM_THREADS="1")
    command = ["bash", str(ROOT / "slurm" / "train.sbatch"), *LONG["gd"][1:], "--out", str(out)]
    job = subprocess.Popen(command, env=dict(env, SLURM_RESTART_COUNT="0"), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, start_new_session=True)
    _wait_for_progress(out / "metrics.jsonl", job)
    os.kill(job.pid, signal.SIGUSR1)  # what `--signal=B:USR1@120` does
    code, _, stderr = _finish(job, 120)
    assert code == 75 and "preempted (SIGUSR1)" in stderr, stderr
    assert (tmp_path / "scontrol.log").read_text() == "requeue 4242\n"
    again = subprocess.run(command, env=dict(env, SLURM_RESTART_COUNT="1"), capture_output=True, text=True,
                           timeout=180)
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "scontrol.log").read_text() == "requeue 4242\n"
    assert np.array_equal(_params(out), _reference("gd", tmp_path_factory))


def _sbatch_locally(script, args, tmp_path, **variables):
    """Run a slurm/*.sbatch script as Slurm would start its batch shell, with mpiexec as the launcher."""
    from mpirun import ROOT

    env = dict(os.environ, **{"MPIGD_LAUNCHER": "mpiexec", "MPIGD_PYTHON": sys.executable, "MPIGD_VENV": sys.prefix,
                              "SLURM_SUBMIT_DIR": str(ROOT), "SLURM_NTASKS": "2", "NUMBA_NUM_THREADS": "1", **variables})
    if "SLURM_JOB_ID" not in variables:
        env.pop("SLURM_JOB_ID", None)
    return subprocess.run(["bash", str(ROOT / "slurm" / script), *args], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=180)


def test_the_slurm_script_passes_arguments_with_spaces_and_metacharacters_as_they_are(tmp_path):
    out = tmp_path / "run 1 $(touch pwned);*"
    job = _sbatch_locally("train.sbatch", [*SMALL[1:], "--epochs", "5", "--out", str(out)], tmp_path)
    assert job.returncode == 0, job.stderr
    assert (out / "params.npz").exists() and not (tmp_path / "pwned").exists()


def test_the_slurm_script_adds_resume_only_on_a_requeued_run(tmp_path):
    out = tmp_path / "out"
    args = [*SMALL[1:], "--epochs", "5", "--checkpoint-every", "2", "--out", str(out)]
    first = _sbatch_locally("train.sbatch", args, tmp_path, SLURM_RESTART_COUNT="0")
    assert first.returncode == 0, first.stderr
    # A fresh (not requeued) job in a directory holding another run's checkpoints must not continue it.
    fresh = _sbatch_locally("train.sbatch", args, tmp_path, SLURM_RESTART_COUNT="0")
    assert fresh.returncode == 2 and "add --resume to continue it" in fresh.stderr, fresh.stderr
    requeued = _sbatch_locally("train.sbatch", args, tmp_path, SLURM_RESTART_COUNT="1")
    assert requeued.returncode == 0, requeued.stderr

    assert json.loads((out / "summary.json").read_text())["resumed_from_step"] == 5


def test_a_requeued_solver_or_run_without_checkpoints_starts_again(tmp_path):
    # lbfgs keeps no checkpoint and refuses --resume; nor can a run without --out resume: after a
    # preemption and requeue, the script must run them again, not fail with exit code 2.
    out = tmp_path / "out"
    solver = _sbatch_locally("train.sbatch", [*SMALL[1:], "--algo", "lbfgs", "--epochs", "5", "--out", str(out)],
                             tmp_path, SLURM_RESTART_COUNT="1")
    assert solver.returncode == 0, solver.stderr
    assert json.loads((out / "summary.json").read_text())["resumed_from_step"] is None
    nowhere = _sbatch_locally("train.sbatch", [*SMALL[1:], "--epochs", "5"], tmp_path, SLURM_RESTART_COUNT="1")
    assert nowhere.returncode == 0, nowhere.stderr


def test_the_slurm_script_runs_the_environments_python_not_the_one_that_made_it(tmp_path):
    # MPIGD_PYTHON picks the interpreter run/setup makes .venv with (README), and sbatch passes the
    # submitting shell's variables on: that interpreter lacks mpigd's dependencies.
    other = tmp_path / "python3.99"
    other.write_text("#!/bin/sh\necho not the environment >&2\nexit 97\n")
    other.chmod(0o755)
    out = tmp_path / "out"
    job = _sbatch_locally("train.sbatch", [*SMALL[1:], "--epochs", "5", "--out", str(out)], tmp_path,
                          MPIGD_PYTHON=str(other))
    assert job.returncode == 0, job.stderr
    assert (out / "params.npz").exists()


def test_the_slurm_script_requeues_a_preempted_run_only(tmp_path):
    stubs = tmp_path / "bin"
    stubs.mkdir()
    (stubs / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/scontrol.log\n')
    (stubs / "scontrol").chmod(0o755)
    job = _sbatch_locally("train.sbatch", [*SMALL[1:], "--data", str(tmp_path / "missing.npz")], tmp_path,
                          SLURM_JOB_ID="4242", PATH=f"{stubs}:{os.environ['PATH']}")
    # A run that fails on its own would fail again: it keeps its exit code and is not requeued.
    assert job.returncode == 2 and "no such data file" in job.stderr, job.stderr
    assert not (tmp_path / "scontrol.log").exists()


def test_the_slurm_script_keeps_the_status_of_a_launcher_that_ends_as_the_signal_arrives(tmp_path):
    # USR1 to the batch shell and to a launcher that exits 75 at once (a run preempted, or ending,
    # as the signal comes): bash's trap-interrupted `wait` lost that status, and the job exited 138
    # unrequeued in 14 of 20 tries. Each try must exit 75 and requeue once.
    stubs = tmp_path / "bin"
    stubs.mkdir()
    (stubs / "srun").write_text(f'#!/bin/bash\ntrap "exit 75" USR1\ntouch {tmp_path}/started\nsleep 60 & wait\n')
    (stubs / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/scontrol.log\n')
    for stub in stubs.iterdir():
        stub.chmod(0o755)
    env = dict(os.environ, PATH=f"{stubs}:{os.environ['PATH']}", SLURM_JOB_ID="4242", MPIGD_PYTHON=sys.executable,
               MPIGD_VENV=sys.prefix, MPIGD_LAUNCHER="srun", SLURM_RESTART_COUNT="0")
    from mpirun import ROOT

    statuses = []
    for _ in range(12):
        (tmp_path / "started").unlink(missing_ok=True)
        job = subprocess.Popen(["bash", str(ROOT / "slurm" / "train.sbatch"), *SMALL[1:]], env=env,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
        deadline = time.monotonic() + 30
        while not (tmp_path / "started").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)  # the stub's trap is set before it says it started; the supervisor's before that
        os.killpg(job.pid, signal.SIGUSR1)
        _, stderr = job.communicate(timeout=30)
        statuses.append((job.returncode, "requeueing job 4242" in stderr))
    assert statuses == [(75, True)] * 12, statuses
    assert (tmp_path / "scontrol.log").read_text() == "requeue 4242\n" * 12


def test_the_slurm_script_refuses_a_launch_of_independent_one_rank_worlds(tmp_path):
    """srun with the wrong --mpi plugin starts each task as a one-rank world (stubbed here: two plain
    processes): the script's MPIGD_EXPECT_RANKS must stop them instead of training two copies."""
    stubs, out = tmp_path / "bin", tmp_path / "out"
    stubs.mkdir()
    (stubs / "srun").write_text('#!/bin/sh\nwhile [ "${1#--}" != "$1" ]; do shift; done\n'
                                '"$@" & "$@"; status=$?; wait $! || status=$?; exit $status\n')
    (stubs / "srun").chmod(0o755)
    job = _sbatch_locally("train.sbatch", [*SMALL[1:], "--out", str(out)], tmp_path, MPIGD_LAUNCHER="srun",
                          PATH=f"{stubs}:{os.environ['PATH']}")
    assert job.returncode == 2 and "should have 2 ranks but MPI sees 1" in job.stderr, job.stderr
    assert not out.exists()
