"""Ring allreduce (Patarasuk and Yuan; Baidu, Horovod): bandwidth-optimal for large messages.

The buffer is cut into ``p`` chunks (:func:`mpigd.partition.block_offsets`). A reduce-scatter
of ``p - 1`` steps passes partial sums around the ring, each rank adding the chunk it receives
to its own, until every rank holds one fully summed chunk; an allgather of ``p - 1`` steps then
passes the summed chunks around, copying them. Each rank sends and receives ``2 (p - 1) / p``
of the buffer, the least any allreduce can, in ``2 (p - 1)`` messages.

Cost: ``2 (p-1) alpha + 2 (p-1)/p n beta + (p-1)/p n gamma`` for ``n`` bytes.
"""

from __future__ import annotations

import os

import numpy as np
from mpi4py import MPI

from mpigd.comm.strategies import register
from mpigd.comm.strategies.buffers import ChunkLayouts, Scratch
from mpigd.comm.strategies.calibration import agreed_calibration
from mpigd.kernels import add_into

# Reduce-scatter steps move their chunk in segments of this many bytes, double-buffered: the add
# of one segment runs while the next arrives. The best size depends on the machine: on 2 ranks of
# an Intel VM with 2 MiB of L2 a core, 256 and 512 KiB were equal within noise at 4-64 MB and 1-2
# MiB slower (1.98-2.07x native at 64 MB against 2.24-2.30x); on an AMD guest 1 MiB was as good as
# 512 KiB or better, and 2 MiB best in some launches, worst in others (benchmarks/RESULTS.md). So
# `mpigd tune` measures SEGMENT_CANDIDATES and the ring takes its choice from the tune file; this
# is the size without one.
# Only when every rank has a core of its own: when ranks share cores each segment's hand-over
# waits for the scheduler, and whole chunks were faster (4 ranks on 2 cores: 9.0 against 10.4 ms
# at 16 MB, 52 against 62 ms at 64 MB).
SEGMENT_BYTES = 512 * 1024
SEGMENT_CANDIDATES = (256 * 1024, 512 * 1024, 1024 * 1024, 2048 * 1024, 4096 * 1024)

_TAG_SCATTER = 11
_TAG_GATHER = 12


@register("ring")
class RingAllreduce:
    """Reduce-scatter then allgather around the ring ``rank -> rank + 1 (mod p)``; any ``p``.

    Built collectively (the ranks agree on the segment size: ``segment_bytes`` if given, else the
    one ``mpigd tune`` measured for this rank count, else :data:`SEGMENT_BYTES`; whole chunks
    wherever ranks share cores).

    Deterministic: every chunk is summed along one fixed path of ranks, once, and then copied,
    so every rank ends with the same bits, and a rerun on the same rank count repeats them.
    """

    name = "ring"

    def __init__(self, comm: MPI.Comm, tune_file: str | None = None, segment_bytes: int | None = None) -> None:
        self.comm = comm
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.right = (self.rank + 1) % self.size
        self.left = (self.rank - 1) % self.size
        self._layouts = ChunkLayouts(self.size)
        self._scratch = Scratch()
        if segment_bytes is None:
            segment_bytes = agreed_calibration(comm, tune_file, self.name).ring_segment_bytes or SEGMENT_BYTES
        self.segment_bytes = 0 if _ranks_share_cores(comm) else segment_bytes

    def describe(self) -> str:
        """The strategy that ran: this one."""
        return self.name

    def allreduce(self, buffer: np.ndarray) -> None:
        """Sum ``buffer`` in place across the communicator. Collective."""
        n = buffer.size
        if self.size == 1 or n == 0:
            return
        offsets = self._layouts.offsets(n)
        largest = offsets[1] - offsets[0]  # chunk 0 is never shorter than another
        segment = max(1, self.segment_bytes // buffer.itemsize) if self.segment_bytes else largest
        scratch = self._scratch.get(buffer.dtype, largest if segment >= largest else 2 * segment)
        self._reduce_scatter(buffer, offsets, segment, scratch)
        self._allgather(buffer, offsets)

    def _reduce_scatter(self, buffer: np.ndarray, offsets: list[int], segment: int,
                        scratch: np.ndarray) -> None:
        # At step s rank r sends chunk r - s and adds the chunk r - s - 1 arriving from the left;
        # after p - 1 steps it holds chunk r + 1 summed over every rank.
        p, r = self.size, self.rank
        for step in range(p - 1):
            out, into = (r - step) % p, (r - step - 1) % p
            send = buffer[offsets[out]:offsets[out + 1]]
            target = buffer[offsets[into]:offsets[into + 1]]
            if send.size > segment or target.size > segment:
                self._pipelined_step(send, target, segment, scratch)
            else:
                # One segment each way (the same message either way): a blocking exchange is
                # cheaper than posting requests.
                received = scratch[:target.size]
                self._exchange(send, received, _TAG_SCATTER)
                if target.size:
                    add_into(target, received)

    def _pipelined_step(self, send: np.ndarray, target: np.ndarray, segment: int,
                        scratch: np.ndarray) -> None:
        comm, right, left = self.comm, self.right, self.left
        sends = [comm.Isend(send[a:a + segment], right, _TAG_SCATTER)
                 for a in range(0, send.size, segment)]
        halves = (scratch[:segment], scratch[segment:2 * segment])
        count = (target.size + segment - 1) // segment
        pending = comm.Irecv(halves[0][:min(segment, target.size)], left, _TAG_SCATTER)
        for j in range(count):
            start = j * segment
            piece = target[start:start + segment]
            ahead = None
            if j + 1 < count:
                # Post the next receive before adding this piece, into the other half.
                nxt = target[start + segment:start + 2 * segment]
                ahead = comm.Irecv(halves[(j + 1) % 2][:nxt.size], left, _TAG_SCATTER)
            pending.Wait()
            add_into(piece, halves[j % 2][:piece.size])
            pending = ahead
        MPI.Request.Waitall(sends)

    def _allgather(self, buffer: np.ndarray, offsets: list[int]) -> None:
        # At step s rank r forwards the summed chunk r + 1 - s and receives chunk r - s straight
        # into place: a copy, never a second add, so every rank holds the same bits.
        p, r = self.size, self.rank
        for step in range(p - 1):
            out, into = (r + 1 - step) % p, (r - step) % p
            self._exchange(buffer[offsets[out]:offsets[out + 1]], buffer[offsets[into]:offsets[into + 1]],
                           _TAG_GATHER)

    def _exchange(self, send: np.ndarray, receive: np.ndarray, tag: int) -> None:
        # An empty chunk (fewer items than ranks) is neither sent nor received: the decision
        # rests on the chunk's own length, which sender and receiver both know.
        if send.size and receive.size:
            self.comm.Sendrecv(send, self.right, tag, receive, self.left, tag)
        elif send.size:
            self.comm.Send(send, self.right, tag)
        elif receive.size:
            self.comm.Recv(receive, self.left, tag)


def _ranks_share_cores(comm: MPI.Comm) -> bool:
    """Whether any node runs more ranks than it has cores (then the ring takes whole chunks).

    Collective. Sender and receiver must cut a chunk alike, so every rank takes the same answer.
    A node's cores are the union of its ranks' CPU affinities: under ``mpiexec -bind-to core``
    each rank may use one core, yet the ranks do not share them.
    """
    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    ranks_here = node.Get_size()
    usable = np.zeros(os.cpu_count() or 1, dtype=np.uint8)
    if hasattr(os, "sched_getaffinity"):
        usable[[cpu for cpu in os.sched_getaffinity(0) if cpu < usable.size]] = 1
    else:
        usable[:] = 1
    node.Allreduce(MPI.IN_PLACE, usable, op=MPI.MAX)
    node.Free()
    crowded = np.array([1 if ranks_here > int(usable.sum()) else 0], dtype=np.int64)
    comm.Allreduce(MPI.IN_PLACE, crowded, op=MPI.MAX)
    return bool(crowded[0])
