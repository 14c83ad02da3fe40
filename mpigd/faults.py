"""Test-only fault injection: make one rank fail in a chosen way at a chosen training step.

The request comes from the environment variable ``MPIGD_FAULT`` (see :mod:`mpigd.environment`)::

    ACTION@rank=R,step=S

``ACTION`` is one of

- ``raise``: raise ``RuntimeError`` (an unexpected exception on one rank);
- ``kill``: SIGKILL this process (a rank that dies without a word);
- ``hang``: sleep for ever (a stuck rank; only a watchdog catches it);
- ``nan``: put NaN into this rank's local gradient (bad data or an overflow on one rank);
- ``term``: send SIGTERM to this process (preemption seen by one rank alone).

The fault fires on rank ``R`` during global step ``S`` (1-based, counted across resumes), after
the local gradient is computed and before it is reduced, so that the other ranks are waiting in
the allreduce as they would be in a real failure. A local SGD round reduces once for all its
steps: the fault fires before the reduction of the round that holds step ``S``. The request is
parsed strictly: anything else is a :class:`~mpigd.errors.UsageError`. When the variable is unset
nothing is installed, so the training loop pays nothing.
"""

from __future__ import annotations

import os
import re
import signal
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from mpigd.environment import FAULT_VARIABLE, fault_spec
from mpigd.errors import UsageError

ACTIONS = ("raise", "kill", "hang", "nan", "term")
_PATTERN = re.compile(r"(?P<action>[a-z]+)@rank=(?P<rank>0|[1-9][0-9]{0,6}),step=(?P<step>[1-9][0-9]{0,11})")


@dataclass(frozen=True)
class Fault:
    """One requested fault: ``action`` on rank ``rank`` at global step ``step``."""

    action: str
    rank: int
    step: int


def parse(text: str) -> Fault:
    """The :class:`Fault` that ``text`` (``ACTION@rank=R,step=S``) asks for; strict."""
    match = _PATTERN.fullmatch(text)
    if match is None or match["action"] not in ACTIONS:
        raise UsageError(
            f"{FAULT_VARIABLE}={text!r} is not ACTION@rank=R,step=S with ACTION one of {', '.join(ACTIONS)}"
        )
    return Fault(match["action"], int(match["rank"]), int(match["step"]))


def from_environment() -> Fault | None:
    """The fault requested in ``MPIGD_FAULT``, or ``None``."""
    text = fault_spec()
    return None if text is None else parse(text)


def hook(fault: Fault | None, rank: int, size: int,
         steps: Callable[[], tuple[int, int]]) -> Callable[[np.ndarray], None] | None:
    """A callable for :attr:`GlobalGradient.before_reduce` that fires ``fault`` on this rank.

    ``steps()`` gives the global numbers of the first and the last step that the coming reduction
    stands for (the same number but in a local SGD round). Returns ``None`` when there is nothing
    to do on this rank, so that the hot path keeps its single ``is None`` test.
    """
    if fault is not None and fault.rank >= size:  # on every rank alike; a test would pass having injected nothing
        raise UsageError(f"{FAULT_VARIABLE} names rank {fault.rank}, but the job has {size} rank(s)")
    if fault is None or fault.rank != rank:
        return None

    def fire(local: np.ndarray) -> None:
        first, last = steps()
        if not first <= fault.step <= last:
            return
        if fault.action == "nan":
            local[0] = np.nan
        elif fault.action == "raise":
            raise RuntimeError(f"injected failure ({FAULT_VARIABLE}) at step {fault.step}")
        elif fault.action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif fault.action == "term":
            os.kill(os.getpid(), signal.SIGTERM)
        elif fault.action == "hang":
            while True:  # a stuck rank: sleep in short naps so that faulthandler's watchdog can fire
                time.sleep(0.1)

    return fire
