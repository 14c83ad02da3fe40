"""The launcher of a Slurm batch job, run as a child: signals passed on, its exit status kept, a
preempted run requeued.

``slurm/train.sbatch`` ends with ``exec python -m mpigd.batchjob LAUNCHER ARGS...``, so this
process is the batch shell Slurm signals (``--signal=B:USR1@120``, ``scancel --batch``). It
passes SIGUSR1 and SIGTERM on to the launcher (mpiexec or srun, which pass them to every rank),
waits for it, and exits with its status (128 + N where signal N ended it, as a shell says). When
that status is 75 (:data:`~mpigd.errors.EXIT_PREEMPTED`) inside a Slurm job, it requeues the job
first with ``scontrol requeue``.

Why not bash. The script used to ``wait`` for the launcher under a ``trap``. A trapped signal
interrupts ``wait``; when the launcher ended in that moment, bash had reaped it and its status was
lost: with a launcher that exits 75 the instant USR1 arrives, the script exited 138 and the job
was not requeued in 14 of 20 tries (31 of 40 in a second trial), and a second ``wait`` returned
255 in half of them. Python's wait resumes after a signal handler has run and returns the
child's status.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from types import FrameType

from mpigd.errors import EXIT_PREEMPTED

FORWARDED = (signal.SIGUSR1, signal.SIGTERM)


def run(command: list[str]) -> int:
    """Run ``command`` with :data:`FORWARDED` signals passed on to it; return its exit status as a
    shell reports it, after requeueing the Slurm job if it was preempted."""
    child: subprocess.Popen | None = None
    early: list[int] = []

    def forward(signum: int, frame: FrameType | None) -> None:
        if child is None:
            early.append(signum)
        else:
            child.send_signal(signum)  # does nothing once the child has been waited for

    # Handlers before the child starts: it inherits a signal this process ignores (the batch script
    # ignores them while Python starts), but not a handler.
    for signum in FORWARDED:
        signal.signal(signum, forward)
    child = subprocess.Popen(command)
    for signum in early:
        child.send_signal(signum)
    status = child.wait()
    status = 128 - status if status < 0 else status
    job = os.environ.get("SLURM_JOB_ID")
    if status == EXIT_PREEMPTED and job:
        print(f"mpigd: preempted; requeueing job {job}", file=sys.stderr, flush=True)
        try:
            subprocess.run(["scontrol", "requeue", job], check=False)
        except OSError as error:  # the run's status stands; say why the job stays down
            print(f"mpigd: cannot requeue job {job}: scontrol: {error.strerror or error}", file=sys.stderr)
    return status


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m mpigd.batchjob LAUNCHER [ARGS...]", file=sys.stderr)
        return 2
    try:
        return run(argv)
    except OSError as error:  # the launcher could not be started
        print(f"mpigd: cannot run {argv[0]}: {error.strerror or error}", file=sys.stderr)
        return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
