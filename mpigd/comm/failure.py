"""Failing together: an exception on any rank ends the whole job, with one message and no hang."""

from __future__ import annotations

import sys
import time
import traceback
from typing import Callable

from mpi4py import MPI

from mpigd.errors import EXIT_FAILURE, MpigdError, describe

EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C
# MPICH's launcher reads a rank's stderr and its abort on separate channels: aborting right after
# the message lost the message in about 3 of 100 runs of a 2-rank job (the SIGINT test); 0 of 300
# with this pause. It is paid only on the way down.
ABORT_GRACE_SECONDS = 0.2


def abort_job(code: int, comm: MPI.Comm = MPI.COMM_WORLD) -> None:
    """End every rank of ``comm`` (the job) with ``code``, once what this rank printed had time to get out."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed or broken stream must not stop the abort
            pass
    time.sleep(ABORT_GRACE_SECONDS)
    comm.Abort(code)


def run_or_abort(main: Callable[[], int], rank: int) -> int:
    """Run ``main`` and return its exit code; never let an exception leave other ranks waiting.

    An :class:`~mpigd.errors.MpigdError` is one the ranks agreed on (every rank raises it at the
    same point), so rank 0 prints it once and every rank returns its exit code. Any other
    exception is this rank's alone: it prints the rank and the traceback, then aborts the whole
    job through ``MPI_Abort``, which ends every rank within seconds, as ``python -m mpi4py`` does;
    so does an interrupt (SIGINT) on a job of several ranks, with exit code 130.
    """
    try:
        return main()
    except MpigdError as error:
        if rank == 0:
            print(f"mpigd: error: {describe(error)}", file=sys.stderr, flush=True)
        return error.exit_code
    except KeyboardInterrupt:
        # SIGINT to one rank (or Ctrl-C where the launcher forwards it to some ranks only): the
        # others are waiting in a collective for this one, so end them all.
        if MPI.COMM_WORLD.Get_size() == 1:
            raise
        print(f"mpigd: rank {rank} interrupted (SIGINT), aborting the job", file=sys.stderr, flush=True)
        abort_job(EXIT_INTERRUPTED)
        return EXIT_INTERRUPTED
    except BaseException as error:  # noqa: BLE001 - any escape would leave the other ranks waiting
        if isinstance(error, SystemExit) and error.code in (0, None):
            raise
        if isinstance(error, MemoryError):
            # Out of memory is the size of the job, not a bug: the traceback would only hide the line.
            print(f"mpigd: rank {rank} ran out of memory ({error or 'MemoryError'}), aborting the job",
                  file=sys.stderr, flush=True)
        else:
            detail = "".join(traceback.format_exception(type(error), error, error.__traceback__))
            print(f"mpigd: rank {rank} failed, aborting the job:\n{detail}", file=sys.stderr, flush=True)
        abort_job(EXIT_FAILURE)
        return EXIT_FAILURE


def install_excepthook() -> None:
    """Make an uncaught exception in a script that uses mpigd abort the job instead of hanging it."""
    previous = sys.excepthook

    def hook(kind, value, tb):
        previous(kind, value, tb)
        abort_job(EXIT_FAILURE)

    sys.excepthook = hook
