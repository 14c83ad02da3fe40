"""The ring at each candidate segment size against native, interleaved in one launch; one line per launch.

    mpiexec -n 2 python benchmarks/ring_segments.py      # repeat the launch: on some VMs the state changes

Prints native's 1 MiB latency (the marker of the AMD guest's slow launches, benchmarks/RESULTS.md),
then per size (16 and 64 MiB) native's time and each ring's (whole chunks, then the segments of
``mpigd.comm.strategies.ring.SEGMENT_CANDIDATES``) and direct's speedup over native: native's median
time over theirs, 9 interleaved repeats after a warm-up.
"""

from __future__ import annotations

from mpi4py import MPI

from _probe import against_native, one_line
from mpigd.comm.strategies import make_strategy
from mpigd.comm.strategies.ring import SEGMENT_CANDIDATES, RingAllreduce

comm = MPI.COMM_WORLD
rings = {f"ring{s >> 10}K": RingAllreduce(comm, segment_bytes=s, block_bytes=0) for s in (0, *SEGMENT_CANDIDATES)}
contenders = {name: ring.allreduce for name, ring in rings.items()}
contenders["direct"] = make_strategy("direct", comm).allreduce
marker, seconds = against_native(comm, contenders, (16 << 20, 64 << 20))
if comm.Get_rank() == 0:
    print(one_line(marker, seconds), flush=True)
