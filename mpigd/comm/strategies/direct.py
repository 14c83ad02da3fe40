"""Direct allreduce: each rank sums its own chunk from every rank at once, then a ring allgather.

The reduce-scatter is the pairwise-exchange one (Thakur, Rabenseifner and Gropp, 2005): the
buffer is cut into ``p`` chunks as in :mod:`ring`, every rank sends each other rank the chunk that
rank owns, and each owner adds the ``p - 1`` pieces it receives into its own chunk, segment by
segment. The allgather is the ring's. Each rank sends and receives ``2 (p - 1) / p`` of the buffer,
as in the ring, but its own chunk is read and written once, not ``p - 1`` times, and it adds the
other ranks' original values rather than partial sums that the previous step has just written:
on a node, where a core streams its receives (CMA copies) and adds through memory itself, that is
fewer bytes through each core. It sends ``p - 1`` messages at once, which suits shared memory and
moderate rank counts; across many nodes the ring's one neighbour is kinder to the network.

Cost: ``2 (p-1) alpha + 2 (p-1)/p n beta + (p-1)/p n gamma`` for ``n`` bytes, as the ring's.
"""

from __future__ import annotations

import numpy as np
from mpi4py import MPI

from mpigd.comm.strategies import register
from mpigd.comm.strategies.ring import RingAllreduce
from mpigd.kernels import add_into

# One segment's pieces from all peers together; with the next segment's arriving meanwhile, 2 MiB
# of receive space, about one core's L2, whatever the rank count. On 2 ranks (one peer) this is the
# ring with 1 MiB segments, which timed within 8% of its 512 KiB ones (benchmarks/RESULTS.md).
SEGMENTS_BYTES = 1024 * 1024

_TAG_DIRECT = 13


@register("direct")
class DirectAllreduce(RingAllreduce):
    """Pairwise-exchange reduce-scatter, then the ring's allgather; any ``p``.

    Rank ``r`` owns chunk ``r + 1`` (mod ``p``), the chunk the ring's reduce-scatter leaves it, so
    the ring's allgather follows unchanged. Built collectively, like the ring.

    Deterministic: each chunk is summed by its owner alone, always in the order owner, owner + 1,
    ..., owner - 1, and then copied, so every rank ends with the same bits, run after run.
    """

    name = "direct"

    def allreduce(self, buffer: np.ndarray) -> None:
        """Sum ``buffer`` in place across the communicator. Collective."""
        if self.size == 1 or buffer.size == 0:
            return
        offsets = self._layouts.offsets(buffer.size)
        peers = self.size - 1
        segment = max(1, SEGMENTS_BYTES // peers // buffer.itemsize)
        largest = offsets[1] - offsets[0]
        segment = min(segment, largest)
        scratch = self._scratch.get(buffer.dtype, 2 * peers * segment).reshape(2, peers, segment)
        self._direct_reduce_scatter(buffer, offsets, segment, scratch)
        self._allgather(buffer, offsets)

    def _direct_reduce_scatter(self, buffer: np.ndarray, offsets: list[int], segment: int,
                               scratch: np.ndarray) -> None:
        comm, p, r = self.comm, self.size, self.rank
        peers = [(r + k) % p for k in range(1, p)]  # the order of the sum: after the owner, by rank
        sends = []
        for q in peers:
            theirs = (q + 1) % p
            chunk = buffer[offsets[theirs]:offsets[theirs + 1]]
            sends += [comm.Isend(chunk[a:a + segment], q, _TAG_DIRECT) for a in range(0, chunk.size, segment)]
        mine = (r + 1) % p
        target = buffer[offsets[mine]:offsets[mine + 1]]
        count = (target.size + segment - 1) // segment

        def post(j: int) -> list[MPI.Request]:
            length = min(segment, target.size - j * segment)
            return [comm.Irecv(scratch[j % 2, k, :length], q, _TAG_DIRECT) for k, q in enumerate(peers)]

        pending = post(0) if count else []
        for j in range(count):
            ahead = post(j + 1) if j + 1 < count else []
            MPI.Request.Waitall(pending)
            piece = target[j * segment:(j + 1) * segment]
            for k in range(p - 1):
                add_into(piece, scratch[j % 2, k, :piece.size])
            pending = ahead
        MPI.Request.Waitall(sends)
