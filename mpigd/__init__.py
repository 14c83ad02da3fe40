"""mpigd: data-parallel training of classical models on CPU clusters, with MPI and Numba.

The Python API is the CLI's twin::

    from mpigd import Config, train
    result = train(Config(model="linear", epochs=50))   # under mpiexec: one call on every rank
    result.coef, result.intercept, result.summary
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mpigd._version import __version__
from mpigd.config import Config
from mpigd.errors import DivergedError, InputError, MpigdError, Preempted, UsageError

if TYPE_CHECKING:
    from mpigd.trainer import TrainResult


def train(config: Config, comm=None) -> TrainResult:
    """Train as ``mpigd train`` does; see :func:`mpigd.trainer.train`. Collective.

    ``comm``: a :class:`mpigd.comm.Communicator`, an ``mpi4py`` communicator (its ranks), or
    ``None`` for every rank of the job.
    """
    from mpigd.trainer import train as _train

    return _train(config, comm)


__all__ = ["Config", "DivergedError", "InputError", "MpigdError", "Preempted", "UsageError", "__version__", "train"]
