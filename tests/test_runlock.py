"""One run at a time in a directory: a second run on a running run's --out or checkpoint
directory is refused in one line and changes nothing there; the lock goes with the process."""

import errno
import fcntl
import os
import signal
import subprocess
import sys
import time

import pytest

from mpirun import mpigd, refused_in_one_line, start_mpi

from mpigd.errors import UsageError
from mpigd.runlock import LOCK_NAME, RunLock

# About 10^6 steps: runs until the test stops it with SIGUSR1 (a preemption: exit 75).
ENDLESS = ["train", "--model", "linear", "--rows", "2000", "--features", "5", "--epochs", "1000000",
           "--lr", "0.1", "--eval-every", "1000", "--quiet"]
SHORT = ["train", "--model", "linear", "--rows", "2000", "--features", "5", "--epochs", "20", "--quiet"]
HOLD = ("import sys, time; from mpigd.runlock import RunLock; lock = RunLock(); lock.acquire('--out', sys.argv[1]); "
        "print('held', flush=True); time.sleep(600)")


def _wait_until(condition, job, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert job.poll() is None and time.monotonic() < deadline, "the run ended or stalled before the check"
        time.sleep(0.05)


def _preempt(job):
    """SIGUSR1 to mpiexec, which forwards it to every rank: the run checkpoints and exits 75."""
    os.kill(job.pid, signal.SIGUSR1)
    try:
        _, stderr = job.communicate(timeout=120)
    except BaseException:
        os.killpg(job.pid, signal.SIGKILL)
        job.communicate()
        raise
    assert job.returncode == 75, stderr


def _files(directory):
    return sorted(os.listdir(directory))


@pytest.mark.parametrize("shared", ["--out", "--checkpoint-dir"])
def test_a_second_run_on_a_running_runs_directory_is_refused_and_changes_nothing(tmp_path, shared):
    first_out = tmp_path / "first"
    first = start_mpi(2, ["-m", "mpigd", *ENDLESS, "--out", str(first_out), "--checkpoint-every", "20000"])
    try:
        checkpoints = first_out / "checkpoints"
        _wait_until(lambda: any(name.endswith(".json") for name in os.listdir(checkpoints))
                    if checkpoints.is_dir() else False, first)
        holder = (checkpoints / LOCK_NAME).read_text()
        assert holder.startswith("process ") and (first_out / LOCK_NAME).read_text() == holder
        second_out = tmp_path / "second"
        target = ["--out", str(first_out)] if shared == "--out" else \
                 ["--out", str(second_out), "--checkpoint-dir", str(checkpoints)]
        before = os.path.getmtime(first_out / "metrics.jsonl")
        # With --resume: without it a directory that already holds checkpoints is refused anyway.
        second = mpigd(2, *SHORT, *target, "--resume", timeout=120)
        refused_in_one_line(second, f"{shared} {target[-1]} is in use by another run ({holder})")
        assert not second_out.exists()  # the refused run made no directory of its own
        assert first.poll() is None  # the first run goes on
        assert os.path.getmtime(first_out / "metrics.jsonl") >= before
    finally:
        _preempt(first)
    # Released: the lock files are gone, and a resume of the preempted run reads its checkpoint.
    assert LOCK_NAME not in _files(first_out) and LOCK_NAME not in _files(first_out / "checkpoints")
    resumed = mpigd(2, *ENDLESS, "--out", str(first_out), "--resume", "--epochs", "1", timeout=120)
    refused_in_one_line(resumed, "--epochs 1: the checkpoint resumed is")  # it got past the lock to the checkpoint


def test_a_killed_holder_leaves_a_file_but_no_lock(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "run")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(UsageError, match=rf"--out {tmp_path / 'run'} is in use by another run \(process "
                                             rf"{holder.pid} on "):
            RunLock().acquire("--out", str(tmp_path / "run"))
    finally:
        holder.kill()
        holder.wait()
    assert (tmp_path / "run" / LOCK_NAME).exists()  # SIGKILL: no clean-up ran, yet the kernel let go
    lock = RunLock()
    lock.acquire("--out", str(tmp_path / "run"))
    assert f"process {os.getpid()} on " in (tmp_path / "run" / LOCK_NAME).read_text()
    lock.release()
    assert _files(tmp_path / "run") == []


def test_release_removes_the_directories_it_made_only_if_empty(tmp_path):
    (tmp_path / "existing").mkdir()
    lock = RunLock()
    lock.acquire("--out", str(tmp_path / "existing"))
    lock.acquire("--checkpoint-dir", str(tmp_path / "a" / "b" / "c"))
    lock.acquire("--out", str(tmp_path / "a" / "b" / "c" / ".." / "c"))  # the same directory: one lock
    assert _files(tmp_path / "a" / "b" / "c") == [LOCK_NAME]
    lock.acquire("--checkpoint-dir", str(tmp_path / "kept"))
    (tmp_path / "kept" / "ckpt-0000000001.json").write_text("{}")
    lock.release()
    assert _files(tmp_path) == ["existing", "kept"]  # a/b/c made by the lock and left empty: removed
    assert _files(tmp_path / "existing") == [] and _files(tmp_path / "kept") == ["ckpt-0000000001.json"]


def test_a_planted_link_as_the_lock_file_is_refused(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "target").write_text("not ours")
    (tmp_path / "run" / LOCK_NAME).symlink_to(tmp_path / "target")
    with pytest.raises(UsageError, match=f"--out {tmp_path / 'run'}: cannot create {LOCK_NAME} there"):
        RunLock().acquire("--out", str(tmp_path / "run"))
    assert (tmp_path / "target").read_text() == "not ours"


def test_a_file_system_without_locks_gets_a_warning_and_the_run_goes_on(tmp_path, monkeypatch, capsys):
    def no_locks(*args):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "lockf", no_locks)
    lock = RunLock()
    lock.acquire("--out", str(tmp_path / "run"))
    lock.release()
    assert capsys.readouterr().err == (f"mpigd: warning: cannot lock {tmp_path / 'run'} ({os.strerror(errno.ENOLCK)}): "
                                       "two runs started at once on it would not be caught\n")
