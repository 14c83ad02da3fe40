"""One run at a time in a directory: rank 0 holds a lock on ``--out`` and ``--checkpoint-dir``.

Two runs started at once on one directory would interleave their checkpoints and metrics, and a
later ``--resume`` would mix them. The lock is a POSIX record lock (``fcntl.lockf``) on a hidden
file in the directory: NFS (through its lock manager), GPFS and Lustre mounted with ``flock``
honour it between nodes, and the kernel drops it when the process ends however it ends, so a
killed run never leaves a lock that blocks its own ``--resume``. A file system that refuses
locks (Lustre with ``noflock``, NFS without ``lockd``) gets a warning and the run goes on, as
before the lock. One process on one rank takes it: a thousand ranks locking one file of a
parallel file system would be a metadata storm at start-up. A POSIX lock is dropped when its
process closes *any* descriptor of the file, so nothing else in the process may open it.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import stat
import time
from contextlib import suppress

from mpigd.checkpoint import CheckpointStore
from mpigd.config import Config
from mpigd.errors import UsageError, warn

LOCK_NAME = ".mpigd.lock"
HELD = (errno.EACCES, errno.EAGAIN)  # what lockf answers when another process holds the lock


class RunLock:
    """The locks of one run, on rank 0; :meth:`release` them (the process's end does too)."""

    def __init__(self) -> None:
        self._held: dict[str, int] = {}  # real path of the directory -> descriptor of its lock file
        self._made: list[str] = []  # directories created to hold a lock, removed again if left empty

    def acquire(self, option: str, directory: str) -> None:
        """Lock ``directory`` (created if missing) for this run, or raise :class:`UsageError` naming
        it as ``option`` names it, and the run that holds it."""
        real = os.path.realpath(directory)
        if real in self._held:
            return  # one lock per directory: a process's second lock on a file would not conflict
        missing, part = [], real
        while not os.path.lexists(part):
            missing.append(part)
            part = os.path.dirname(part)
        path = os.path.join(real, LOCK_NAME)
        while True:
            try:
                os.makedirs(real, exist_ok=True)
                descriptor = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
            except OSError as error:  # a planted link (O_NOFOLLOW), a directory turned read-only
                raise UsageError(f"{option} {directory}: cannot create {LOCK_NAME} there "
                                 f"({error.strerror or error})") from None
            if not stat.S_ISREG(os.fstat(descriptor).st_mode):  # a planted FIFO or device
                os.close(descriptor)
                raise UsageError(f"{option} {directory}: {LOCK_NAME} there is not a regular file; remove it")
            self._made.extend(m for m in missing if m not in self._made)  # deepest first: removal order
            try:
                fcntl.lockf(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as error:
                holder = _holder(descriptor)
                os.close(descriptor)
                if error.errno in HELD:
                    raise UsageError(f"{option} {directory} is in use by another run ({holder}); "
                                     "give each run its own directory") from None
                warn(f"cannot lock {directory} ({error.strerror or error}): two runs started at once on it "
                     "would not be caught")
                with suppress(OSError):
                    os.unlink(path)
                return
            # The holder before us may have removed the file after we opened it and before it let
            # go: then our lock is on a name nobody else will open. Lock the file the path names now.
            if _same_file(descriptor, path):
                break
            os.close(descriptor)
        # Who holds it, for a refused run's message; the lock is held without it. On a full disk
        # the note cannot be written, and the run must not fail for that (see _holder).
        with suppress(OSError):
            os.ftruncate(descriptor, 0)
            os.write(descriptor, _identity().encode())
        self._held[real] = descriptor

    def release(self) -> None:
        """Remove the lock files, then let go: a run that waits on one finds its name gone and
        retries on a fresh file (see :meth:`acquire`)."""
        for real, descriptor in self._held.items():
            with suppress(OSError):
                os.unlink(os.path.join(real, LOCK_NAME))
            os.close(descriptor)
        self._held.clear()
        for directory in self._made:
            with suppress(OSError):
                os.rmdir(directory)  # only if the run left nothing in it (refused before writing)
        self._made.clear()


def lock_run_directories(lock: RunLock, config: Config) -> None:
    """Rank 0: lock ``config.out``, and the checkpoint directory when one is given or checkpoints
    are asked for, before anything in them is read or changed."""
    if config.out:
        lock.acquire("--out", config.out)
    directory = config.checkpoint_directory
    if directory and (config.checkpoint_dir or config.checkpoint_every or config.checkpoint_seconds or config.resume):
        CheckpointStore(directory, config.keep).check()  # never lock through a planted link
        lock.acquire("--checkpoint-dir" if config.checkpoint_dir else "the checkpoint directory", directory)


def _same_file(descriptor: int, path: str) -> bool:
    try:
        named = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    held = os.fstat(descriptor)
    return (named.st_dev, named.st_ino) == (held.st_dev, held.st_ino)


def _identity() -> str:
    """Who holds the lock, in the words the refused run prints."""
    job = os.environ.get("SLURM_JOB_ID")
    where = f"process {os.getpid()} on {socket.gethostname()}" + (f", Slurm job {job}" if job else "")
    return f"{where}, since {time.strftime('%Y-%m-%d %H:%M:%S')}"


def _holder(descriptor: int) -> str:
    try:
        text = os.pread(descriptor, 512, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return text if text and text.isprintable() else "a process that has not said which"
