"""Everything MPI: the only package of mpigd that imports mpi4py.

The rest of mpigd talks to a :class:`Communicator` (rank, size, in-place sums through a named
allreduce strategy, broadcast, barrier, abort) so that strategies can be swapped by name and the
trainer can run on one rank with ``COMM_SELF``.

Importing the package does not import mpi4py (which would initialise MPI): the names below are
loaded on first use. So the pure modules, :mod:`mpigd.comm.costmodel` and
:mod:`mpigd.comm.tunefile`, serve ``mpigd plan`` on a login node without starting MPI.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from mpi4py import MPI

    from mpigd.comm.communicator import Communicator
    from mpigd.comm.strategies import Strategy

# Public name -> (module, attribute), imported on first access (PEP 562).
_LAZY = {
    "Communicator": ("mpigd.comm.communicator", "Communicator"),
    "install_excepthook": ("mpigd.comm.failure", "install_excepthook"),
    "run_or_abort": ("mpigd.comm.failure", "run_or_abort"),
    "REGISTRY": ("mpigd.comm.strategies", "REGISTRY"),
    "Strategy": ("mpigd.comm.strategies", "Strategy"),
    "make_strategy": ("mpigd.comm.strategies", "make_strategy"),
    "strategy_names": ("mpigd.comm.strategies", "names"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attribute = _LAZY[name]
        value = getattr(importlib.import_module(module), attribute)
        globals()[name] = value  # later lookups skip this hook
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "Communicator",
    "REGISTRY",
    "allreduce",
    "as_communicator",
    "install_excepthook",
    "run_or_abort",
    "self_comm",
    "strategy_names",
    "world",
]

_world_dup: MPI.Comm | None = None
_launch_checked = False


def _world(check_launch: bool = True) -> MPI.Comm:
    """One duplicate of ``COMM_WORLD`` per process, made on first use, so our tags stay ours.

    ``check_launch``: refuse, once, a world of another size than the ``MPIGD_EXPECT_RANKS`` the launch
    script set, so that independent one-rank worlds (srun with the wrong ``--mpi``) do not train
    N copies; for the CLI and for a Python caller who passes no communicator alike.
    """
    global _world_dup, _launch_checked
    from mpi4py import MPI

    if _world_dup is None:
        _world_dup = MPI.COMM_WORLD.Dup()
    if check_launch and not _launch_checked:
        _refuse_unexpected_size(_world_dup.Get_size())
        _launch_checked = True
    return _world_dup


def _refuse_unexpected_size(size: int) -> None:
    from mpigd.environment import expected_ranks
    from mpigd.errors import UsageError

    try:
        expected = expected_ranks()
    except ValueError as error:
        raise UsageError(str(error)) from None
    if expected is not None and expected != size:
        raise UsageError(
            f"this job should have {expected} ranks but MPI sees {size}: the launcher started independent "
            "processes (with srun, pass the --mpi plugin your MPI needs, e.g. --mpi=pmi2 or --mpi=pmix)"
        )


def world(strategy: str = "native", tune_file: str | None = None, check_launch: bool = True) -> Communicator:
    """A :class:`Communicator` over (a duplicate of) every rank of the job. Collective.

    ``tune_file`` is the calibration ``auto`` reads (see :mod:`mpigd.comm.tuning`). Raises
    :class:`~mpigd.errors.UsageError` if ``MPIGD_EXPECT_RANKS`` is set and MPI sees another rank
    count, unless ``check_launch`` is false (``mpigd info`` reports what MPI sees).
    """
    from mpigd.comm.communicator import Communicator

    return Communicator(_world(check_launch), strategy, tune_file)


def self_comm(strategy: str = "native") -> Communicator:
    """A one-rank :class:`Communicator`, for serial use and tests."""
    from mpi4py import MPI

    from mpigd.comm.communicator import Communicator

    return Communicator(MPI.COMM_SELF, strategy)


def as_communicator(comm: MPI.Comm | Communicator | None = None, strategy: str | None = None,
                    tune_file: str | None = None) -> Communicator:
    """The :class:`Communicator` a public function works on, from what its caller passed. Collective.

    ``None``: every rank of the job (:func:`world`); an ``mpi4py`` communicator: its ranks (through
    :func:`private_duplicate`); a :class:`Communicator`: itself. ``strategy`` and ``tune_file``,
    when given, say how to sum over those ranks (a Communicator with another strategy is rebuilt
    on its ranks, as :func:`mpigd.train` does); otherwise ``native``, or the Communicator's own.
    """
    if comm is None:
        return world(strategy or "native", tune_file)
    if not hasattr(comm, "mpi_comm"):  # an mpi4py communicator
        from mpigd.comm.communicator import Communicator

        return Communicator(private_duplicate(comm), strategy or "native", tune_file)
    if (strategy and strategy != comm.strategy.name) or (tune_file and tune_file != comm.tune_file):
        return comm.with_strategy(strategy or comm.strategy.name, tune_file)
    return comm


def mpi_comm_of(comm: MPI.Comm | Communicator | None) -> MPI.Comm:
    """The ``mpi4py`` communicator our messages go on for what a caller passed (``None``: the
    world's duplicate; an ``mpi4py`` communicator: :func:`private_duplicate`). Collective."""
    if comm is None:
        return _world()
    return comm.mpi_comm if hasattr(comm, "mpi_comm") else private_duplicate(comm)


# Each mpi4py communicator a caller handed us -> (it, our duplicate of it), kept so that its id
# stays unique.
_duplicates: dict[int, tuple[MPI.Comm, MPI.Comm]] = {}


def private_duplicate(comm: MPI.Comm) -> MPI.Comm:
    """Our duplicate of a caller's ``comm``, made on first use (collective then) and reused: the
    point-to-point messages of ring, direct and tree then never match the caller's own on
    ``comm``, as an ``MPI_Allreduce``'s never do (on ``comm`` itself, a message the caller had in
    flight with one of their tags was taken for part of the sum: ranks ended with different sums,
    or the job hung)."""
    found = _duplicates.get(id(comm))
    if found is None:
        found = _duplicates[id(comm)] = (comm, comm.Dup())
    return found[1]


# Strategies built by allreduce(), kept per (name, communicator) so that their scratch buffers
# and tables outlive one call. The communicator is kept alive with them, so its id stays unique.
_strategies: dict[tuple[str, int], tuple[MPI.Comm, Strategy]] = {}
_SUMMABLE = (np.dtype(np.float32), np.dtype(np.float64))


def allreduce(buffer: np.ndarray, strategy: str = "native", comm: MPI.Comm | Communicator | None = None,
              check: bool = False) -> None:
    """Sum a contiguous NumPy ``buffer`` in place across ``comm`` with the named strategy.

    Collective: must be called on every rank of ``comm`` (default: the world communicator) with
    buffers of the same length and dtype. The strategy is built on first use (collectively) and
    reused by later calls with the same name and communicator.

    Parameters
    ----------
    buffer
        A C-contiguous, writeable float32 or float64 array of any shape; on return every rank holds
        the element-wise sum over ranks, with the same bits on every rank.
    strategy
        ``native``, ``ring``, ``direct``, ``tree`` or ``auto`` (see :func:`strategy_names`).
    comm
        An ``mpi4py`` communicator (its ranks, through a private duplicate made on first use, so
        that messages of the caller's own on it are left alone) or a :class:`Communicator`; by
        default a duplicate of ``COMM_WORLD``.
    check
        Agree first, in one small extra collective, that every rank's buffer is a usable array of
        the same length and dtype; otherwise every rank raises (``TypeError`` or ``ValueError``,
        naming the ranks), where a mismatch would have been a wrong sum, an MPI error or a hang.
        Use it while writing a program; it costs one latency per call.

    Without ``check``, a buffer that is not such an array is refused with a ``TypeError`` on the
    rank that has it, before any message: checked on every rank, so that a strategy never fails
    half-way through a sum and leaves the other ranks waiting (a bool array would have been
    OR-ed, a float16 one refused by one rank mid-way). Lengths and dtypes that differ between
    ranks are then the caller's error, as with ``MPI_Allreduce``.
    """
    from mpigd.comm.strategies import make_strategy

    comm = mpi_comm_of(comm)
    if check:
        _agree_on_buffers(buffer, comm)
    else:
        problem = _unusable(buffer)
        if problem:
            raise TypeError(problem)
    if type(buffer) is not np.ndarray:
        # A subclass (np.matrix, a masked array) passes the checks above but breaks the strategies:
        # a matrix stays 2-D when flattened, so the ring hung and tree summed one item; a masked
        # array is no array to the Numba kernels, which raised half-way through a sum. Its memory,
        # as a plain array, is what is summed in place.
        buffer = buffer.view(np.ndarray)
    key = (strategy, id(comm))
    found = _strategies.get(key)
    if found is None:
        found = _strategies[key] = (comm, make_strategy(strategy, comm))
    found[1].allreduce(buffer)


def _unusable(buffer: Any) -> str | None:
    """Why ``buffer`` cannot be summed in place, or ``None``."""
    if not (isinstance(buffer, np.ndarray) and buffer.flags.c_contiguous):
        return "allreduce needs a C-contiguous numpy array"
    if buffer.dtype not in _SUMMABLE:
        return f"allreduce sums float32 or float64 arrays; got {buffer.dtype}"
    if not buffer.flags.writeable:
        return "allreduce sums in place: the array is read-only"
    if not buffer.flags.aligned:  # a field of a packed record: MPI has no datatype for it
        return "allreduce needs an aligned array (a field of a packed structured array is not); copy it first"
    return None


def _agree_on_buffers(buffer: Any, comm: MPI.Comm) -> None:
    """``allreduce(check=True)``: raise on every rank alike unless every rank's buffer is usable and
    of one length and dtype. One Allreduce of a few integers (each rank's facts, as max and -min)."""
    from mpi4py import MPI

    problem = _unusable(buffer)
    rank = comm.Get_rank()
    size = -1 if problem else buffer.size
    kind = -1 if problem else _SUMMABLE.index(buffer.dtype)
    mine = np.array([size, -size, kind, -kind, rank if problem else -1, -rank if problem else -comm.Get_size()],
                    dtype=np.int64)
    extremes = np.empty_like(mine)
    comm.Allreduce(mine, extremes, op=MPI.MAX)
    if problem:
        raise TypeError(problem)
    if extremes[4] >= 0:
        first, last = -extremes[5], extremes[4]
        ranks = f"rank {first}" if first == last else f"rank {first} (and others, up to rank {last})"
        raise TypeError(f"allreduce: the buffer of {ranks} is not a C-contiguous, aligned, writeable float32 or "
                        "float64 array")
    if extremes[0] != -extremes[1]:
        raise ValueError(f"allreduce needs the same length on every rank; lengths range from {-extremes[1]} "
                         f"to {extremes[0]}")
    if extremes[2] != -extremes[3]:
        raise ValueError("allreduce needs the same dtype on every rank; some ranks have float32, others float64")
