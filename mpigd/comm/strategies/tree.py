"""Recursive doubling (the butterfly of Thakur, Rabenseifner and Gropp): latency-optimal.

With ``p`` a power of two, at step ``k`` every rank swaps its whole buffer with the rank whose
number differs in bit ``k`` and adds: after ``log2 p`` steps every rank has the sum. For other
``p``, with ``q`` the largest power of two below ``p`` and ``e = p - q``, the standard fold
applies: the first ``2e`` ranks pair up, each even one hands its buffer to the odd one above it
and waits; the ``q`` remaining ranks run the butterfly; then each odd rank of a pair sends the
result back to its even partner.

Cost for ``n`` bytes: ``log2(q) (alpha + n beta + n gamma)``, plus ``2 (alpha + n beta) + n gamma``
for the fold when ``p`` is not a power of two. Fewest messages of any allreduce, but every step
moves the whole buffer: the choice for small messages, where ``alpha`` dominates.
"""

from __future__ import annotations

import numpy as np
from mpi4py import MPI

from mpigd.comm.strategies import register
from mpigd.comm.strategies.buffers import Scratch
from mpigd.kernels import add

_TAG_FOLD = 21
_TAG_SWAP = 22
_TAG_UNFOLD = 23


def butterfly_plan(rank: int, size: int) -> tuple[str, int | None, list[int]]:
    """This rank's part in recursive doubling on ``size`` ranks, as pure arithmetic.

    Returns ``(role, partner, peers)``: role is ``"extra"`` (hands its data to ``partner`` and
    gets the result back), ``"proxy"`` (adds ``partner``'s data first, returns the result to it
    at the end) or ``"core"``; ``peers`` are the ranks to swap with, in order.
    """
    q = 1 << (size.bit_length() - 1)
    extra = size - q
    if rank < 2 * extra and rank % 2 == 0:
        return "extra", rank + 1, []
    role, partner = ("proxy", rank - 1) if rank < 2 * extra else ("core", None)
    virtual = rank // 2 if rank < 2 * extra else rank - extra

    def real(v: int) -> int:
        return 2 * v + 1 if v < extra else v + extra

    peers = []
    mask = 1
    while mask < q:
        peers.append(real(virtual ^ mask))
        mask <<= 1
    return role, partner, peers


@register("tree")
class TreeAllreduce:
    """Recursive doubling with the fold for any ``p``: ``log2 p`` whole-buffer swaps.

    Deterministic on every rank: each swap ends with both partners computing ``lower + upper``
    (the operand of the lower rank first) from the same two arrays, so they hold identical bits
    after every step; the folded-out ranks receive a copy of the result.
    """

    name = "tree"

    def __init__(self, comm: MPI.Comm, tune_file: str | None = None) -> None:
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.role, self.partner, self.peers = butterfly_plan(self.rank, self.size)
        self._scratch = Scratch()

    def describe(self) -> str:
        """The strategy that ran: this one."""
        return self.name

    def allreduce(self, buffer: np.ndarray) -> None:
        """Sum ``buffer`` in place across the communicator. Collective."""
        if self.size == 1 or buffer.size == 0:
            return
        comm, rank = self.comm, self.rank
        if self.role == "extra":
            comm.Send(buffer, self.partner, _TAG_FOLD)
            comm.Recv(buffer, self.partner, _TAG_UNFOLD)
            return
        other = self._scratch.get(buffer.dtype, buffer.size)
        if self.role == "proxy":
            comm.Recv(other, self.partner, _TAG_FOLD)
            add(other, buffer, buffer)  # the partner is the lower rank
        for peer in self.peers:
            comm.Sendrecv(buffer, peer, _TAG_SWAP, other, peer, _TAG_SWAP)
            if peer < rank:
                add(other, buffer, buffer)
            else:
                add(buffer, other, buffer)
        if self.role == "proxy":
            comm.Send(buffer, self.partner, _TAG_UNFOLD)
