"""Allreduce strategies: each sums a contiguous NumPy buffer in place across a communicator.

A strategy is a class built from an ``mpi4py`` communicator (and, for those that consult a
calibration, a tune file) with one method, ``allreduce(buffer)``, a ``name`` and ``describe()``,
which says what actually ran (``auto->ring``). They are chosen by name from :data:`REGISTRY`.

Every strategy accepts any length (0 and 1 included) and any shape (summed item by item), float32
and float64, and gives every rank the same bits, run after run on the same rank count.
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

    def describe(self) -> str:
        """The strategy that actually ran: the name, or e.g. ``auto->ring`` for a dispatcher."""


REGISTRY: dict[str, Callable[..., Strategy]] = {}


def register(name: str):
    """Class decorator that adds a strategy to :data:`REGISTRY` under ``name``."""

    def add(cls):
        cls.name = name
        REGISTRY[name] = cls
        return cls

    return add


def make_strategy(name: str, comm: MPI.Comm, tune_file: str | None = None) -> Strategy:
    """Build the strategy called ``name`` on ``comm``; a clear error for an unknown name.

    Collective for strategies that agree on a calibration at construction (``auto``): call it on
    every rank of ``comm``. ``tune_file`` is read by those strategies and ignored by the others.
    """
    try:
        factory = REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise UsageError(f"unknown allreduce strategy {name!r} (choose from {known})") from None
    if comm.Is_inter():
        # Its ranks see the other group's ranks as peers and its collectives reduce across the two
        # groups: the ring and auto hung in their set-up, tree returned each buffer unsummed.
        # Refused on every rank alike, before any message.
        raise TypeError("allreduce needs an intracommunicator; got an intercommunicator (merge it first)")
    return factory(comm, tune_file=tune_file)


def names() -> list[str]:
    """The registered strategy names, sorted."""
    return sorted(REGISTRY)


# Importing the modules registers their strategies.
from mpigd.comm.strategies import auto, direct, native, ring, tree  # noqa: E402,F401
