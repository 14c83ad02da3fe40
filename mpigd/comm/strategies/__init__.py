"""Allreduce strategies: each sums a contiguous NumPy buffer in place across a communicator.

A strategy is a class built from an ``mpi4py`` communicator with one method,
``allreduce(buffer)``, and a ``name``. They are chosen by name from :data:`REGISTRY`.
"""

from __future__ import annotations

from typing import Callable, Protocol

import numpy as np
from mpi4py import MPI

from mpigd.errors import UsageError


class Strategy(Protocol):
    """Sums ``buffer`` element-wise across every rank of the communicator, in place."""

    name: str

    def allreduce(self, buffer: np.ndarray) -> None:
        """Collective: must be called on every rank, with buffers of one length and dtype."""


REGISTRY: dict[str, Callable[[MPI.Comm], Strategy]] = {}


def register(name: str):
    """Class decorator that adds a strategy to :data:`REGISTRY` under ``name``."""

    def add(cls):
        cls.name = name
        REGISTRY[name] = cls
        return cls

    return add


def make_strategy(name: str, comm: MPI.Comm) -> Strategy:
    """Build the strategy called ``name`` on ``comm``; a clear error for an unknown name."""
    try:
        factory = REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise UsageError(f"unknown allreduce strategy {name!r} (choose from {known})") from None
    return factory(comm)


def names() -> list[str]:
    """The registered strategy names, sorted."""
    return sorted(REGISTRY)


# Importing the modules registers their strategies.
from mpigd.comm.strategies import native  # noqa: E402,F401
