"""Would a float32 wire speed up a float64 sum within a node? One line per launch, 2 ranks.

    mpiexec -n 2 python benchmarks/wire_narrowing.py      # repeat the launch (benchmarks/RESULTS.md)

The contender is the 2-rank ring of ``mpigd.comm`` (1 MiB segments, no blocks) with each message
narrowed to float32 before it is sent and widened where it arrives, the owner keeping the rounded
value of its half so that both ranks hold the same bits: half the bytes on the wire, at the price
of one rounding to float32 per element. Its kernels are fused (narrow; add a float32 message into
float64; narrow and keep the rounding; widen), so each element is read and written as few times as
the scheme allows. Prints native's 1 MiB latency (the AMD guest's slow-launch marker), then per size
the speedup over native of the float64 ring and of the float32-wire ring, 9 interleaved repeats.
"""

from __future__ import annotations

import numpy as np
from mpi4py import MPI
from numba import njit

from _probe import against_native, one_line
from mpigd.comm.strategies.ring import RingAllreduce

SEGMENT = 1 << 20  # bytes of float64 per message, as the ring's


@njit(cache=True)
def narrow(wire, source):
    for i in range(source.shape[0]):
        wire[i] = source[i]


@njit(cache=True)
def add_widened(target, wire):
    for i in range(target.shape[0]):
        target[i] += wire[i]


@njit(cache=True)
def narrow_and_keep(wire, source):
    for i in range(source.shape[0]):
        wire[i] = source[i]
        source[i] = wire[i]


@njit(cache=True)
def widen(target, wire):
    for i in range(target.shape[0]):
        target[i] = wire[i]


class Float32WireRing:
    """The 2-rank ring, segment by segment, with float32 messages."""

    def __init__(self, comm: MPI.Comm) -> None:
        self.comm, self.peer = comm, 1 - comm.Get_rank()
        self.send = np.empty(SEGMENT // 8, np.float32)
        self.receive = np.empty(SEGMENT // 8, np.float32)

    def allreduce(self, buffer: np.ndarray) -> None:
        half = buffer.shape[0] // 2
        mine, theirs = (buffer[:half], buffer[half:]) if self.peer else (buffer[half:], buffer[:half])
        step = SEGMENT // 8
        for start in range(0, half, step):
            n = min(step, half - start)
            narrow(self.send[:n], theirs[start:start + n])
            self.comm.Sendrecv(self.send[:n], self.peer, 0, self.receive[:n], self.peer, 0)
            add_widened(mine[start:start + n], self.receive[:n])
        for start in range(0, half, step):
            n = min(step, half - start)
            narrow_and_keep(self.send[:n], mine[start:start + n])
            self.comm.Sendrecv(self.send[:n], self.peer, 1, self.receive[:n], self.peer, 1)
            widen(theirs[start:start + n], self.receive[:n])


comm = MPI.COMM_WORLD
if comm.Get_size() != 2:
    raise SystemExit("wire_narrowing.py runs on 2 ranks: mpiexec -n 2 python benchmarks/wire_narrowing.py")
contenders = {"ring": RingAllreduce(comm, segment_bytes=SEGMENT, block_bytes=0).allreduce,
              "ring_f32wire": Float32WireRing(comm).allreduce}
check = np.arange(1 << 16, dtype=np.float64) * (1 + comm.Get_rank()) / 3
contenders["ring_f32wire"](check)
expected = (np.arange(1 << 16) * 3 / 3).astype(np.float32).astype(np.float64)
rank0 = check.copy()
comm.Bcast(rank0, root=0)
right = np.array([np.allclose(check, expected, rtol=1e-6) and np.array_equal(check, rank0)])
comm.Allreduce(MPI.IN_PLACE, right, MPI.LAND)  # every rank stops, or none
if not right[0]:
    raise SystemExit("the float32-wire ring gave a wrong sum, or different bits on the two ranks")
marker, seconds = against_native(comm, contenders, (16 << 20, 64 << 20))
if comm.Get_rank() == 0:
    print(one_line(marker, seconds), flush=True)
