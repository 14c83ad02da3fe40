"""The fault-injection request, the guards and the fault-tolerance settings, without MPI jobs."""

import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from mpigd import Config, UsageError
from mpigd.faults import Fault, hook, parse
from mpigd.guards import clip_norm, finite


@pytest.mark.parametrize("text, fault", [
    ("raise@rank=2,step=5", Fault("raise", 2, 5)),
    ("kill@rank=0,step=1", Fault("kill", 0, 1)),
    ("nan@rank=10,step=300", Fault("nan", 10, 300)),
    ("hang@rank=1,step=5", Fault("hang", 1, 5)),
    ("term@rank=1,step=5", Fault("term", 1, 5)),
])
def test_fault_requests_parse(text, fault):
    assert parse(text) == fault


@pytest.mark.parametrize("text", [
    "", "raise", "explode@rank=1,step=5", "raise@rank=1", "raise@step=5,rank=1", "raise@rank=-1,step=5",
    "raise@rank=1,step=0", "raise@rank=01,step=5", " raise@rank=1,step=5", "raise@rank=1,step=5;rm -rf",
])
def test_anything_else_is_refused(text):
    with pytest.raises(UsageError, match="MPIGD_FAULT"):
        parse(text)


def test_a_fault_fires_only_on_its_rank_and_step():
    assert hook(None, 0, 2, lambda: (1, 1)) is None
    assert hook(Fault("nan", 1, 3), 0, 2, lambda: (3, 3)) is None
    steps = [(2, 2)]
    fire = hook(Fault("nan", 1, 3), 1, 2, lambda: steps[0])
    local = np.zeros(4)
    for steps[0] in ((2, 2), (4, 4), (4, 7)):
        fire(local)
        assert finite(local), steps[0]
    steps[0] = (3, 3)
    fire(local)
    assert not finite(local)
    local[:] = 0
    steps[0] = (1, 4)  # a local SGD round of steps 1 to 4 holds step 3
    fire(local)
    assert not finite(local)


def test_a_fault_on_a_rank_the_job_does_not_have_is_refused_on_every_rank():
    # It injected nothing, silently: a test relying on it would pass without its fault.
    for rank in (0, 1):
        with pytest.raises(UsageError, match="MPIGD_FAULT names rank 2, but the job has 2 rank"):
            hook(Fault("raise", 2, 3), rank, 2, lambda: (3, 3))


def test_finite_and_clip_norm():
    assert finite(np.ones(5)) and not finite(np.array([1.0, np.inf])) and not finite(np.array([np.nan]))
    grad = np.array([3.0, 4.0])
    assert clip_norm(grad, 10.0) == 5.0 and np.array_equal(grad, [3.0, 4.0])
    assert clip_norm(grad, 1.0) == 5.0 and np.allclose(grad, [0.6, 0.8])


@pytest.mark.parametrize("limit", [4.9, 4.0, 2.6])
def test_clip_norm_brings_any_larger_norm_down_to_the_limit(limit):
    grad = np.array([3.0, 4.0])
    assert clip_norm(grad, limit) == 5.0
    assert np.linalg.norm(grad) == pytest.approx(limit) and np.allclose(grad, np.array([0.6, 0.8]) * limit)
    at_limit = np.array([3.0, 4.0])
    assert clip_norm(at_limit, 5.0) == 5.0 and np.array_equal(at_limit, [3.0, 4.0])


@pytest.mark.parametrize("changes, message", [
    (dict(checkpoint_every=5), "checkpoints need a directory"),
    (dict(resume=True), "checkpoints need a directory"),
    (dict(keep=0, out="o"), "`keep` must be an integer >= 1"),
    (dict(step_timeout=-1.0), "`step_timeout` must be a non-negative finite number"),
    (dict(startup_timeout=float("inf")), "`startup_timeout` must be a non-negative finite number"),
    (dict(startup_timeout=2e9), "`startup_timeout` must be at most 1e\\+09 seconds"),
    (dict(clip_grad_norm=float("nan")), "`clip_grad_norm` must be"),
    (dict(checkpoint_seconds=float("inf"), out="o"), "`checkpoint_seconds` must be"),
])
def test_bad_fault_tolerance_settings_are_refused(changes, message):
    with pytest.raises(UsageError, match=message):
        Config(**changes)


def test_the_checkpoint_directory_defaults_to_out_checkpoints():
    assert Config(out="run").checkpoint_directory == "run/checkpoints"
    assert Config(out="run", checkpoint_dir="/scratch/ck").checkpoint_directory == "/scratch/ck"
    assert Config().checkpoint_directory is None


def test_a_second_preemption_signal_of_the_same_kind_ends_the_process_at_once():
    script = ("import os, signal, time\n"
              "from mpigd.signals import PreemptionFlag, REPEAT_WINDOW\n"
              "flag = PreemptionFlag()\n"
              "assert flag.install()\n"
              "os.kill(os.getpid(), signal.SIGUSR1)\n"
              "os.kill(os.getpid(), signal.SIGTERM)\n"
              "os.kill(os.getpid(), signal.SIGTERM)  # the same one again: through mpiexec, and to the group\n"
              "print(flag.name, flag.raised, flush=True)\n"
              "time.sleep(REPEAT_WINDOW + 0.1)\n"
              "os.kill(os.getpid(), signal.SIGTERM)\n"
              "print('still running', flush=True)\n")
    job = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    # The first of each kind is only remembered (the latest one named), and its repeat within the
    # window with it; a repeat after the window gets the default action.
    assert job.returncode == -signal.SIGTERM and job.stdout == "SIGTERM True\n", (job.returncode, job.stdout, job.stderr)


def test_training_puts_the_signal_handlers_back():
    from mpigd import train

    before = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGUSR1)}
    marker = lambda signum, frame: None  # noqa: E731 - a handler of the caller's own
    signal.signal(signal.SIGUSR1, marker)
    try:
        train(Config(model="linear", rows=200, features=3, epochs=2, quiet=True))
        assert signal.getsignal(signal.SIGUSR1) is marker and signal.getsignal(signal.SIGTERM) == before[signal.SIGTERM]
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)


@pytest.mark.parametrize("algo", ["gd", "sgd"])
def test_a_signal_during_start_up_is_kept_for_the_first_step(algo):
    """`mpigd train` catches SIGTERM and SIGUSR1 before its imports, MPI's start and the data (seconds
    at scale): a signal then used to end the rank with its own code, not 75, and no requeue. sgd on
    one rank (many steps in one kernel call) took 8 steps in its first call, before any check: it
    stopped after step 8, and the start-up watchdog had to cover 8 steps, not one."""
    script = ("import os, signal, sys, tempfile\n"
              "from mpigd.signals import catch_preemption_early\n"
              "catch_preemption_early()\n"
              "os.kill(os.getpid(), signal.SIGUSR1)  # before train(): imports, MPI and data still to come\n"
              "from mpigd import Config, Preempted, train\n"
              "from mpigd.comm import self_comm\n"
              "out = tempfile.mkdtemp()\n"
              "try:\n"
              f"    train(Config(model='linear', algo={algo!r}, batch_size=10, rows=200, features=3, epochs=5, quiet=True,\n"
              "                 out=out), self_comm())\n"
              "except Preempted as stop:\n"
              "    print(stop, sorted(os.listdir(out + '/checkpoints')))\n"
              "print(signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL)\n")
    job = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert job.returncode == 0, job.stderr
    stopped, restored = job.stdout.splitlines()
    assert stopped.startswith("preempted (SIGUSR1): every rank stopped after step 1")
    assert stopped.endswith("['ckpt-0000000001.json', 'ckpt-0000000001.npz']") and restored == "True"


def test_the_train_command_catches_preemption_before_mpi_starts_and_lets_go_after(monkeypatch, tmp_path):
    import mpigd.comm
    from mpigd.cli import main

    seen = []
    real_world = mpigd.comm.world

    def world(*args, **kwargs):
        seen.append(signal.getsignal(signal.SIGUSR1))
        return real_world(*args, **kwargs)

    monkeypatch.setattr(mpigd.comm, "world", world)
    before = signal.getsignal(signal.SIGUSR1)
    assert main(["train", "--rows", "100", "--features", "2", "--epochs", "1", "--quiet"]) == 0
    assert len(seen) == 1 and seen[0] not in (signal.SIG_DFL, before)  # caught by then
    assert signal.getsignal(signal.SIGUSR1) == before
    assert main(["train", "--batch-size", "0"]) == 2  # refused before training: handlers put back too
    assert signal.getsignal(signal.SIGUSR1) == before


def test_a_run_stuck_writing_its_results_is_ended_by_the_step_watchdog(tmp_path):
    """The watchdog used to be disarmed after the last step: a rank stuck in the final evaluation
    or the writing of the results waited for ever, whatever --step-timeout said."""
    script = ("import sys, time\n"
              "import mpigd.outputs\n"
              "from mpigd import Config, train\n"
              "from mpigd.comm import self_comm\n"
              "mpigd.outputs.RunOutputs.finish = lambda self, *results: time.sleep(120)  # a hung file system\n"
              f"train(Config(model='linear', rows=200, features=3, epochs=3, quiet=True, out={str(tmp_path / 'o')!r},\n"
              "             step_timeout=2.0), self_comm())\n")
    start = time.monotonic()
    job = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert job.returncode != 0 and time.monotonic() - start < 30
    assert "Timeout (0:00:02)!" in job.stderr and "line 5 in <lambda>" in job.stderr  # the stuck write


@pytest.mark.parametrize("algo", ["sgd", "local-sgd"])
def test_a_fault_at_a_step_inside_a_local_sgd_round_fires_before_the_rounds_reduction(algo, monkeypatch):
    # Rounds of 4 steps reduce after steps 4, 8, ...: step 3 is inside the first round, whose
    # reduction once stood for step 1 alone, and the fault never fired.
    from mpigd import train
    from mpigd.comm import self_comm

    monkeypatch.setenv("MPIGD_FAULT", "raise@rank=0,step=3")
    config = Config(model="linear", algo=algo, local_steps=4, batch_size=10, rows=200, features=3, epochs=1,
                    quiet=True)
    with pytest.raises(RuntimeError, match="injected failure .MPIGD_FAULT. at step 3"):
        train(config, self_comm())
