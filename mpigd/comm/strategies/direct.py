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
from mpigd.comm.strategies.buffers import flat
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
    the ring's allgather follows unchanged. Built collectively, like the ring, and like it takes
    whole chunks where ranks share cores.

    Deterministic, and with the ring's bits: the owner ``r`` sums the pieces of ranks ``r + 1, r + 2,
    ..., r - 1`` in that order and adds that sum to its own piece last, which is the order in which
    the ring's partial sum reaches ``r`` (floating-point addition is commutative, not associative,
    so the order of the sum is what fixes the bits). ``auto`` relies on this to choose between the
    two in a launch without changing a result.
    """

    name = "direct"

    def __init__(self, comm: MPI.Comm, tune_file: str | None = None, segment_bytes: int | None = None) -> None:
        # Its segments are SEGMENTS_BYTES whatever the ring's calibration says: only whether ranks
        # share cores (segment_bytes 0) matters here, so no tune file is read.
        super().__init__(comm, tune_file, SEGMENTS_BYTES if segment_bytes is None else segment_bytes, block_bytes=0)
        self.peers = [(self.rank + k) % self.size for k in range(1, self.size)]  # the order of the sum

    def allreduce(self, buffer: np.ndarray) -> None:
        """Sum ``buffer`` in place across the communicator. Collective."""
        if self.size == 1 or buffer.size == 0:
            return
        if buffer.ndim != 1:
            buffer = flat(buffer)
        offsets = self._layouts.offsets(buffer.size)
        largest = offsets[1] - offsets[0]
        mine = (self.rank + 1) % self.size
        target = buffer[offsets[mine]:offsets[mine + 1]]
        if self.segment_bytes:
            senders = len(self.peers)
            segment = min(largest, max(1, SEGMENTS_BYTES // senders // buffer.itemsize))
            scratch = self._scratch.get(buffer.dtype, 2 * senders * segment).reshape(2, senders, segment)
            sends = self._send_chunks(buffer, offsets, segment)
            self._add_segments_from_all(target, segment, scratch)
        else:
            # Ranks share cores: every hand-over waits for the scheduler, so take whole chunks, one
            # peer after another. Each element is summed in the same order as above.
            rows = min(len(self.peers), 3)  # the first peer's piece, where the sum grows, and two receives
            scratch = self._scratch.get(buffer.dtype, rows * largest).reshape(rows, largest)
            sends = self._send_chunks(buffer, offsets, largest)
            self._add_chunks_in_turn(target, scratch)
        MPI.Request.Waitall(sends)
        self._allgather(self._chunks(buffer, offsets))

    def _send_chunks(self, buffer: np.ndarray, offsets: list[int], segment: int) -> list[MPI.Request]:
        # Every peer's chunk goes out at once; MPI keeps the segments to one peer in order.
        sends = []
        for q in self.peers:
            theirs = (q + 1) % self.size
            chunk = buffer[offsets[theirs]:offsets[theirs + 1]]
            sends += [self.comm.Isend(chunk[a:a + segment], q, _TAG_DIRECT) for a in range(0, chunk.size, segment)]
        return sends

    def _add_segments_from_all(self, target: np.ndarray, segment: int, scratch: np.ndarray) -> None:
        comm, peers = self.comm, self.peers
        count = (target.size + segment - 1) // segment

        def post(j: int) -> list[MPI.Request]:
            length = min(segment, target.size - j * segment)
            return [comm.Irecv(scratch[j % 2, k, :length], q, _TAG_DIRECT) for k, q in enumerate(peers)]

        pending = post(0) if count else []
        for j in range(count):
            ahead = post(j + 1) if j + 1 < count else []
            MPI.Request.Waitall(pending)
            piece = target[j * segment:(j + 1) * segment]
            pieces = scratch[j % 2, :, :piece.size]
            for k in range(1, len(peers)):
                add_into(pieces[0], pieces[k])
            add_into(piece, pieces[0])
            pending = ahead

    def _add_chunks_in_turn(self, target: np.ndarray, scratch: np.ndarray) -> None:
        if not target.size:
            return
        comm, peers, n = self.comm, self.peers, target.size
        total = scratch[0, :n]  # the first peer's chunk, then the sum of the peers' chunks so far

        def slot(k: int) -> np.ndarray:  # peer k's receive buffer: the later peers take turns in two
            return total if k == 0 else scratch[1 + (k - 1) % 2, :n]

        pending = comm.Irecv(slot(0), peers[0], _TAG_DIRECT)
        for k in range(len(peers)):
            ahead = comm.Irecv(slot(k + 1), peers[k + 1], _TAG_DIRECT) if k + 1 < len(peers) else None
            pending.Wait()
            if k:
                add_into(total, slot(k))
            pending = ahead
        add_into(target, total)
