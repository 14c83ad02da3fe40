"""One run at a time in a directory: a second run on a running run's --out or checkpoint
directory is refused in one line and changes nothing there; the lock goes with the process."""

import errno
import fcntl
import os
import re
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager

import pytest

from mpirun import mpigd, refused_in_one_line, start_mpi

from mpigd import Config, train
from mpigd.comm import self_comm
from mpigd.errors import CheckpointError, UsageError
from mpigd.runlock import LOCK_NAME, RunLock, lock_run_directories

# About 10^6 steps: runs until the test stops it with SIGUSR1 (a preemption: exit 75).
ENDLESS = ["train", "--model", "linear", "--rows", "2000", "--features", "5", "--epochs", "1000000",
           "--lr", "0.1", "--eval-every", "1000", "--quiet"]
SHORT = ["train", "--model", "linear", "--rows", "2000", "--features", "5", "--epochs", "20", "--quiet"]
HOLD = ("import sys, time; from mpigd.runlock import RunLock; lock = RunLock(); lock.acquire('--out', sys.argv[1]); "
        "print('held', flush=True); time.sleep(600)")
# A holder that locks the file without writing who it is (or writes what no terminal should show).
HOLD_SILENT = ("import fcntl, os, sys, time; descriptor = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644); "
               "os.write(descriptor, sys.argv[2].encode()); fcntl.lockf(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB); "
               "print('held', flush=True); time.sleep(600)")
TRY = "import sys; from mpigd.runlock import RunLock; RunLock().acquire('--out', sys.argv[1]); print('locked')"


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


@contextmanager
def _held(*args):
    """Another process holding the lock (``HOLD`` on a directory, or ``HOLD_SILENT`` on a file)."""
    holder = subprocess.Popen([sys.executable, "-c", *args], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        yield holder
    finally:
        holder.kill()
        holder.wait()


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


def test_a_planted_fifo_as_the_lock_file_is_refused_in_one_line(tmp_path):
    """A FIFO opens and locks, then cannot be truncated: it used to end the run with a traceback."""
    (tmp_path / "run").mkdir()
    os.mkfifo(tmp_path / "run" / LOCK_NAME)
    with pytest.raises(UsageError, match=f"--out {tmp_path / 'run'}: {LOCK_NAME} there is not a regular file"):
        RunLock().acquire("--out", str(tmp_path / "run"))


def test_a_file_system_without_locks_gets_a_warning_and_the_run_goes_on(tmp_path, monkeypatch, capsys):
    def no_locks(*args):
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "lockf", no_locks)
    lock = RunLock()
    lock.acquire("--out", str(tmp_path / "run"))
    lock.release()
    assert capsys.readouterr().err == (f"mpigd: warning: cannot lock {tmp_path / 'run'} ({os.strerror(errno.ENOLCK)}): "
                                       "two runs started at once on it would not be caught\n")
    assert _files(tmp_path) == []  # no lock file left behind, and the directory made for it removed


def test_a_lock_whose_holder_note_cannot_be_written_is_held_all_the_same(tmp_path, monkeypatch):
    """A full disk when the run starts: the lock is taken (it needs no space), the note naming the
    holder is not written; that is no reason to fail, and an OSError here was rank 0's traceback."""
    real_write = os.write

    def full(descriptor, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", full)
    lock = RunLock()
    lock.acquire("--out", str(tmp_path / "run"))
    monkeypatch.setattr(os, "write", real_write)
    second = subprocess.run([sys.executable, "-c", TRY, str(tmp_path / "run")], capture_output=True, text=True,
                            timeout=60)
    assert second.returncode != 0 and "is in use by another run (a process that has not said which)" in second.stderr
    lock.release()


@pytest.mark.parametrize("asked", [dict(checkpoint_every=5), dict(checkpoint_seconds=1.0), dict(resume=True)])
def test_a_default_checkpoint_directory_in_use_is_refused_and_not_called_checkpoint_dir(tmp_path, asked):
    checkpoints = tmp_path / "run" / "checkpoints"
    with _held(HOLD, str(checkpoints)) as holder:
        lock_run_directories(RunLock(), Config(out=str(tmp_path / "run")))  # no checkpoints asked: not locked
        lock = RunLock()
        with pytest.raises(UsageError, match=rf"^the checkpoint directory {re.escape(str(checkpoints))} is in use by "
                                             rf"another run \(process {holder.pid} on "):
            lock_run_directories(lock, Config(out=str(tmp_path / "run"), **asked))
        lock.release()
        with pytest.raises(UsageError, match=rf"^--checkpoint-dir {re.escape(str(checkpoints))} is in use"):
            lock_run_directories(RunLock(), Config(out=str(tmp_path / "other"), checkpoint_dir=str(checkpoints)))
    assert _files(tmp_path / "run") == ["checkpoints"]  # the --out lock let go and removed


def test_a_linked_checkpoint_directory_is_refused_before_a_lock_is_made_through_it(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoints").symlink_to(tmp_path / "elsewhere")
    lock = RunLock()
    with pytest.raises(CheckpointError, match="the checkpoint directory is a symbolic link"):
        lock_run_directories(lock, Config(out=str(tmp_path / "run"), checkpoint_every=5))
    assert _files(tmp_path / "elsewhere") == []
    lock.release()


def test_the_lock_file_names_this_run_alone_whatever_it_held_before(tmp_path, monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    (tmp_path / "run").mkdir()
    stale = "process 1234567 on a-much-longer-host-name.example.org, Slurm job 987654321, since 2020-01-01 00:00:00"
    (tmp_path / "run" / LOCK_NAME).write_text(stale)  # left by a killed run
    lock = RunLock()
    lock.acquire("--out", str(tmp_path / "run"))
    assert re.fullmatch(rf"process {os.getpid()} on {re.escape(socket.gethostname())}, "
                        r"since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d", (tmp_path / "run" / LOCK_NAME).read_text())
    lock.release()


@pytest.mark.parametrize("written", ["", "\x1b[2J\x1b[H"])  # not yet written, or a terminal escape
def test_a_holder_that_has_not_said_who_it_is_is_named_so(tmp_path, written):
    (tmp_path / "run").mkdir()
    with _held(HOLD_SILENT, str(tmp_path / "run" / LOCK_NAME), written):
        with pytest.raises(UsageError, match=r"is in use by another run \(a process that has not said which\); "):
            RunLock().acquire("--out", str(tmp_path / "run"))


def test_a_lock_file_its_holder_removes_just_before_it_is_locked_is_not_the_one_kept(tmp_path, monkeypatch):
    """A run that opened the lock file just before its holder removed it and let go (release) gets a
    lock on a file no later run opens: it must lock a file the path names. No real process can time
    the removal between open and lockf: here lockf's first call does it."""
    run = tmp_path / "run"
    lockf, calls = fcntl.lockf, []

    def holder_lets_go_first(descriptor, operation):
        if not calls:
            os.unlink(run / LOCK_NAME)  # the holder's release: the name first, then the lock
        calls.append(descriptor)
        return lockf(descriptor, operation)

    monkeypatch.setattr(fcntl, "lockf", holder_lets_go_first)
    lock = RunLock()
    lock.acquire("--out", str(run))
    monkeypatch.undo()
    assert len(calls) == 2
    # Another process that opens the path finds it locked. (Not this one: closing any descriptor of
    # the file, as read_text does, would drop this process's lock.)
    other = subprocess.run([sys.executable, "-c", TRY, str(run)], capture_output=True, text=True, timeout=60)
    assert other.returncode != 0 and f"is in use by another run (process {os.getpid()} on " in other.stderr, \
        other.stdout + other.stderr
    lock.release()


def test_a_run_on_one_rank_is_refused_too(tmp_path):
    with _held(HOLD, str(tmp_path / "run")) as holder:
        with pytest.raises(UsageError, match=rf"--out {re.escape(str(tmp_path / 'run'))} is in use by another run "
                                             rf"\(process {holder.pid} on "):
            train(Config(model="linear", rows=200, features=3, epochs=2, quiet=True, out=str(tmp_path / "run")),
                  self_comm())
        assert _files(tmp_path / "run") == [LOCK_NAME]  # the refused run wrote nothing there
