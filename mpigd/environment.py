"""Environment variables mpigd reads, all named here."""

from __future__ import annotations

import os

# Set by the launchers before MPI starts; lets us keep non-root ranks quiet before MPI_Init.
RANK_VARIABLES = ("PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK", "MPI_LOCALRANKID",
                  "SLURM_PROCID")


# Set by slurm/*.sbatch to the task count, so that a launch which starts independent one-rank
# worlds (srun with the wrong --mpi plugin) is caught instead of training N copies.
EXPECT_RANKS = "MPIGD_EXPECT_RANKS"


def expected_ranks() -> int | None:
    """The rank count the launch script asked for, if it said; ``ValueError`` for a value that is not
    a positive integer (read as "not said", a typo turned the launch check off without a word)."""
    value = os.environ.get(EXPECT_RANKS, "").strip()
    if not value:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{EXPECT_RANKS} must be the job's rank count, an integer >= 1; got {value!r}")
    return int(value)


def _announced(names: tuple[str, ...], default: int) -> int:
    """The first of the launcher's variables ``names`` that holds a count, else ``default``."""
    return next((int(value) for value in map(os.environ.get, names) if value and value.isdigit()), default)


def launch_rank() -> int:
    """This process's rank as the launcher announced it, without initialising MPI (0 if none)."""
    return _announced(RANK_VARIABLES, 0)


# Set by the launchers to the job's rank count (MPICH/Hydra, Intel MPI, Slurm's PMI; Open MPI; MVAPICH).
# Not SLURM_NTASKS: a batch script's own shell has it, and a one-process command run there is one process.
SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def launch_size() -> int:
    """The rank count the launcher announced, without initialising MPI (1 if none)."""
    return _announced(SIZE_VARIABLES, 1)


# Test-only fault injection (see mpigd/faults.py), e.g. "raise@rank=2,step=5". Never set it in production.
FAULT_VARIABLE = "MPIGD_FAULT"


def fault_spec() -> str | None:
    """The fault-injection request in ``MPIGD_FAULT``, or ``None`` when unset or empty."""
    return os.environ.get(FAULT_VARIABLE) or None

# The calibration file `--strategy auto` reads when no --tune-file is given (see `mpigd tune`).
TUNE_FILE_VARIABLE = "MPIGD_TUNE_FILE"


def tune_file_from_env() -> str | None:
    """The tune file named by ``$MPIGD_TUNE_FILE``, or ``None``."""
    return os.environ.get(TUNE_FILE_VARIABLE) or None

# BLAS and OpenMP thread counts. Left unset, OpenBLAS and MKL start a thread per core in every
# rank, so N ranks on N cores run N * N threads: 5 MLP epochs took 4.8-54 s instead of 1.5 s with
# 2 ranks on 2 cores.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")


def one_thread_per_rank() -> None:
    """Set every :data:`THREAD_VARIABLES` to 1 unless the user set any of them: the ranks are the
    parallelism. Takes effect only before NumPy loads its BLAS."""
    if not any(os.environ.get(name) for name in THREAD_VARIABLES):
        os.environ.update({name: "1" for name in THREAD_VARIABLES})


def physical_memory_bytes() -> int | None:
    """This node's physical memory, or ``None`` where the platform does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return None
