"""The ring without blocks and in each candidate block size, against native, interleaved in one launch.

    mpiexec -n 2 python benchmarks/ring_blocks.py        # one line per launch; repeat the launch

Prints native's 1 MiB latency (the marker of the AMD guest's slow launches, benchmarks/RESULTS.md),
then per size (16, 32 and 64 MiB) native's time and the speedup over native (native's median time
over theirs, 9 interleaved repeats after a warm-up) of the ring without blocks, in blocks of each of
``mpigd.comm.strategies.ring.BLOCK_CANDIDATES``, of the ring as shipped (its own trial picks), and
of direct. Where ranks share cores the ring takes whole chunks and no blocks: run it with a core
per rank.
"""

from __future__ import annotations

from mpi4py import MPI

from _probe import against_native, speedups
from mpigd.comm.strategies import make_strategy
from mpigd.comm.strategies.ring import BLOCK_CANDIDATES, RingAllreduce

comm = MPI.COMM_WORLD
rings = {f"blocks{b >> 20}M" if b else "noblocks": RingAllreduce(comm, block_bytes=b) for b in (0, *BLOCK_CANDIDATES)}
rings["ring"] = RingAllreduce(comm)
contenders = {name: ring.allreduce for name, ring in rings.items()}
contenders["direct"] = make_strategy("direct", comm).allreduce
marker, seconds = against_native(comm, contenders, (16 << 20, 32 << 20, 64 << 20))
if comm.Get_rank() == 0:
    line = f"{comm.Get_size()} ranks native1M {marker:4.0f} {'SLOW' if marker > 300 else 'fast'} |"
    for nbytes, times in seconds.items():
        chosen = rings["ring"].blocks_chosen(nbytes)
        line += (f" {nbytes >> 20}M nat {times['native'] * 1e3:5.2f}ms {speedups(times)}"
                 f" (ring: {f'{chosen >> 20}M' if chosen else 'no'}) |")
    print(line, flush=True)
