"""Environment variables mpigd reads, all named here."""

from __future__ import annotations

import os

# Set by the launchers before MPI starts; lets us keep non-root ranks quiet before MPI_Init.
RANK_VARIABLES = ("PMI_RANK", "PMIX_RANK", "OMPI_COMM_WORLD_RANK", "MPI_LOCALRANKID", "SLURM_PROCID")


def launch_rank() -> int:
    """This process's rank as the launcher announced it, without initialising MPI (0 if none)."""
    for name in RANK_VARIABLES:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 0


# The calibration file `--strategy auto` reads when no --tune-file is given (see `mpigd tune`).
TUNE_FILE_VARIABLE = "MPIGD_TUNE_FILE"


def tune_file_from_env() -> str | None:
    """The tune file named by ``$MPIGD_TUNE_FILE``, or ``None``."""
    return os.environ.get(TUNE_FILE_VARIABLE) or None
