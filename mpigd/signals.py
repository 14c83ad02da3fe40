"""Process-local signal handling and the stuck-step watchdog. No MPI here: agreeing across ranks on
what a signal means is the trainer's job (see :mod:`mpigd.resilience`)."""

from __future__ import annotations

import faulthandler
import os
import signal
import sys
import threading
import time
from types import FrameType

# What Slurm sends: SIGUSR1 with ``--signal=B:USR1@T`` (forwarded by the batch script), SIGTERM at
# the time limit or on ``scancel``. MPICH's mpiexec forwards both to every rank.
PREEMPTION_SIGNALS = (signal.SIGTERM, signal.SIGUSR1)

# A repeat of the first signal within this many seconds is the same delivery: a SIGTERM to the
# job's process group (scancel, the time limit, a shell's kill of the group) reaches each rank
# once directly and once more through mpiexec, milliseconds apart.
REPEAT_WINDOW = 1.0


class PreemptionFlag:
    """Remembers that SIGTERM or SIGUSR1 arrived, and nothing more.

    The handler only sets a flag (the one thing that is safe to do in a signal handler while
    the main thread may be inside MPI); the training loop reads it between steps. A second
    signal of the same kind more than :data:`REPEAT_WINDOW` s after the first gets the default
    action, so an impatient operator can still stop the process at once; one sooner is the same
    signal delivered twice (it was taken for a second one in 3 of 5 tries of a SIGTERM to the
    process group of ``mpiexec -n 2``: the job ended with 15, without a checkpoint). Handlers are
    installed on :meth:`install` (main thread only) and the previous ones put back on
    :meth:`restore`.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._first_at = 0.0
        self._previous: dict[int, object] = {}

    @property
    def raised(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        now = time.monotonic()
        if self.signum == signum:
            if now - self._first_at > REPEAT_WINDOW:
                signal.signal(signum, signal.SIG_DFL)
                os.kill(os.getpid(), signum)
            return
        self.signum, self._first_at = signum, now

    def install(self) -> bool:
        """Catch the preemption signals; ``False`` (and nothing changed) off the main thread.
        Installing an installed flag changes nothing."""
        if threading.current_thread() is not threading.main_thread():
            return False
        if not self._previous:
            for signum in PREEMPTION_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return True

    def restore(self) -> None:
        """Put back the handlers that were there before :meth:`install`."""
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()


_early: PreemptionFlag | None = None


def catch_preemption_early() -> None:
    """Catch the preemption signals from now on, for the training that this process will start.

    ``mpigd train`` calls it first thing: its imports, MPI's start and the data's reading take
    seconds (4 s seen on 3 ranks of a busy machine), and a SIGTERM or SIGUSR1 then took the
    default action, ending the rank with the signal's code instead of 75, so the batch script did
    not requeue. :func:`mpigd.trainer.train` takes the flag over (:func:`take_early_flag`). Not for
    the other commands, which never look at it.
    """
    global _early
    if _early is None:
        flag = PreemptionFlag()
        if flag.install():
            _early = flag


def take_early_flag() -> PreemptionFlag | None:
    """The flag of :func:`catch_preemption_early`, installed and holding any signal that came
    meanwhile, for its one caller to restore; ``None`` when there is none."""
    global _early
    flag, _early = _early, None
    return flag


def release_early_flag() -> None:
    """Put back the handlers of :func:`catch_preemption_early` when no training took them over
    (the input was refused first): an in-process caller's signals are its own again."""
    flag = take_early_flag()
    if flag is not None:
        flag.restore()


class Watchdog:
    """Ends this process, with every thread's stack on stderr, when the first step has not finished
    ``startup`` s after :meth:`start`, or no later step finishes for ``timeout`` s (0: no limit).

    Built on ``faulthandler.dump_traceback_later(exit=True)``, which runs in a C thread that
    needs no GIL, so it fires even when the main thread is blocked inside MPI or a kernel. Under
    mpiexec one rank's exit ends the job. Re-arming restarts that thread, so :meth:`pet` re-arms
    only when a tenth of the timeout has passed: the deadline is then between 0.9 and 1 times
    ``timeout`` after the last finished step, at a cost of one clock read per step. The start-up
    limit is its own because the first step follows the data's reading and may compile kernels.
    """

    def __init__(self, timeout: float, startup: float = 0.0) -> None:
        self.timeout, self.startup = timeout, startup
        self._armed_at = -float("inf")
        self._starting = False

    def start(self) -> None:
        """Training begins: the first step must finish within ``startup`` seconds."""
        if self.startup > 0:
            faulthandler.dump_traceback_later(self.startup, exit=True, file=sys.stderr)
            self._starting = True

    def pet(self) -> None:
        """A step finished: push the deadline back (cheaply), or lift the start-up one."""
        if self.timeout <= 0:
            if self._starting:
                self.cancel()
            return
        now = time.monotonic()
        if self._starting or now - self._armed_at >= 0.1 * self.timeout:
            faulthandler.dump_traceback_later(self.timeout, exit=True, file=sys.stderr)
            self._armed_at, self._starting = now, False

    def cancel(self) -> None:
        faulthandler.cancel_dump_traceback_later()
        self._armed_at, self._starting = -float("inf"), False
