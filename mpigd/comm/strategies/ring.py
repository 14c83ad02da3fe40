"""Ring allreduce (Patarasuk and Yuan; Baidu, Horovod): bandwidth-optimal for large messages.

The buffer is cut into ``p`` chunks (:func:`mpigd.partition.block_offsets`). A reduce-scatter
of ``p - 1`` steps passes partial sums around the ring, each rank adding the chunk it receives
to its own, until every rank holds one fully summed chunk; an allgather of ``p - 1`` steps then
passes the summed chunks around, copying them. Each rank sends and receives ``2 (p - 1) / p``
of the buffer, the least any allreduce can, in ``2 (p - 1)`` messages.

Cost: ``2 (p-1) alpha + 2 (p-1)/p n beta + (p-1)/p n gamma`` for ``n`` bytes.

On 3 ranks or more, from 32 MiB, the ring times itself once per message size against the same ring
run in blocks (see :data:`BLOCK_CANDIDATES`) and keeps the fastest. A block is the same slice of
every chunk, and it goes through the whole reduce-scatter and allgather before the next: every
element still belongs to the same chunk and is summed along the same path of ranks, so the bits
are the same, and a block's 2 (p - 1) steps work on data still in cache. On a 16-core node, 64 MiB
on 4 ranks ran 1.54-1.74x faster than native without blocks and 1.78-2.20x with 1 MiB blocks (8
ranks: 1.55-1.61x, and 2.13-2.15x with 2 MiB blocks), while blocks lost at 16-32 MiB; which size
wins depends on the rank count, and the cache a VM's core really gets is not what it reports, hence
a trial rather than a rule. Not on 2 ranks: there blocks gained 8% on that node, and on an AMD guest
whose message latency rises tenfold in some launches (and once within one, after the trial) they
were 2.5x slower than the unblocked ring (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import os

import numpy as np
from mpi4py import MPI

from mpigd.comm.strategies import register, trial
from mpigd.comm.strategies.buffers import ChunkLayouts, Scratch, flat
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

# The block sizes the ring tries (whole blocks: a slice of each of the p chunks), from this size up.
BLOCK_CANDIDATES = (1 << 20, 2 << 20, 4 << 20)
BLOCK_TRIAL_MIN_BYTES = 32 << 20

_BLOCK_LABELS = {0: "no blocks", **{b: f"{b >> 20} MiB blocks" for b in BLOCK_CANDIDATES}}
_BLOCKS_BY_LABEL = {label: b for b, label in _BLOCK_LABELS.items()}

_TAG_SCATTER = 11
_TAG_GATHER = 12


@register("ring")
class RingAllreduce:
    """Reduce-scatter then allgather around the ring ``rank -> rank + 1 (mod p)``; any ``p``.

    Built collectively (the ranks agree on the segment size: ``segment_bytes`` if given, else the
    one ``mpigd tune`` measured for this rank count, else :data:`SEGMENT_BYTES`; whole chunks
    wherever ranks share cores). ``block_bytes`` ``None`` lets a trial choose blocks for messages
    from :data:`BLOCK_TRIAL_MIN_BYTES` on 3 ranks or more (its times in :attr:`trials`); ``0`` never
    cuts blocks; a size cuts every message into blocks of it. No blocks where ranks share cores.

    Deterministic: every chunk is summed along one fixed path of ranks, once, and then copied,
    so every rank ends with the same bits, and a rerun on the same rank count repeats them.
    """

    name = "ring"

    def __init__(self, comm: MPI.Comm, tune_file: str | None = None, segment_bytes: int | None = None,
                 block_bytes: int | None = None) -> None:
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
        if not self.segment_bytes or (block_bytes is None and self.size <= 2):
            block_bytes = 0  # ranks share cores; or 2 ranks, where blocks gained least and risked most
        self.block_bytes = block_bytes
        self._tried = trial.PerSize(comm, BLOCK_TRIAL_MIN_BYTES)

    def describe(self) -> str:
        """The strategy that ran: this one."""
        return self.name

    def allreduce(self, buffer: np.ndarray) -> None:
        """Sum ``buffer`` in place across the communicator. Collective."""
        if self.size == 1 or buffer.size == 0:
            return
        if buffer.ndim != 1:
            buffer = flat(buffer)
        block = self.block_bytes
        if block is None:
            tried = self._tried.choose(buffer, lambda: {label: (lambda array, b=b: self._sum(array, b))
                                                        for b, label in _BLOCK_LABELS.items()})
            block = _BLOCKS_BY_LABEL[tried] if tried else 0
        self._sum(buffer, block)

    @property
    def trials(self) -> dict[int, dict[str, float]]:
        """The block trials' seconds per call, by variant, per message size in bytes."""
        return self._tried.seconds

    def blocks_chosen(self, nbytes: int) -> int:
        """The block size the trial chose for messages of ``nbytes`` (0: no blocks, or no trial yet)."""
        return _BLOCKS_BY_LABEL.get(self._tried.chosen.get(nbytes), 0)

    def _sum(self, buffer: np.ndarray, block_bytes: int) -> None:
        offsets = self._layouts.offsets(buffer.size)
        largest = offsets[1] - offsets[0]  # chunk 0 is never shorter than another
        segment = max(1, self.segment_bytes // buffer.itemsize) if self.segment_bytes else largest
        scratch = self._scratch.get(buffer.dtype, largest if segment >= largest else 2 * segment)
        if not block_bytes:
            chunks = self._chunks(buffer, offsets)
            self._reduce_scatter(chunks, segment, scratch)
            self._allgather(chunks)
            return
        piece = max(1, block_bytes // self.size // buffer.itemsize)  # of each chunk, per block
        for start in range(0, largest, piece):
            chunks = [buffer[offsets[c] + start:min(offsets[c] + start + piece, offsets[c + 1])]
                      for c in range(self.size)]
            self._reduce_scatter(chunks, segment, scratch)
            self._allgather(chunks)

    def _chunks(self, buffer: np.ndarray, offsets: list[int]) -> list[np.ndarray]:
        return [buffer[offsets[c]:offsets[c + 1]] for c in range(self.size)]

    def _reduce_scatter(self, chunks: list[np.ndarray], segment: int, scratch: np.ndarray) -> None:
        # At step s rank r sends chunk r - s and adds the chunk r - s - 1 arriving from the left;
        # after p - 1 steps it holds chunk r + 1 summed over every rank.
        p, r = self.size, self.rank
        for step in range(p - 1):
            send, target = chunks[(r - step) % p], chunks[(r - step - 1) % p]
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

    def _allgather(self, chunks: list[np.ndarray]) -> None:
        # At step s rank r forwards the summed chunk r + 1 - s and receives chunk r - s straight
        # into place: a copy, never a second add, so every rank holds the same bits.
        p, r = self.size, self.rank
        for step in range(p - 1):
            self._exchange(chunks[(r + 1 - step) % p], chunks[(r - step) % p], _TAG_GATHER)

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
