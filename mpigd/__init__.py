"""mpigd: data-parallel training of classical models on CPU clusters, with MPI and Numba.

The Python API is the CLI's twin::

    from mpigd import Config, train
    result = train(Config(model="linear", epochs=50))   # under mpiexec: one call on every rank
    result.coef, result.intercept, result.summary
"""

from mpigd._version import __version__
from mpigd.config import Config
from mpigd.errors import DivergedError, InputError, MpigdError, UsageError


def train(config: Config, comm=None):
    """Train as ``mpigd train`` does; see :func:`mpigd.trainer.train`. Collective."""
    from mpigd.trainer import train as _train

    return _train(config, comm)


__all__ = ["Config", "DivergedError", "InputError", "MpigdError", "UsageError", "__version__", "train"]
