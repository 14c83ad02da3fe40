"""The ring at each candidate segment size against native, interleaved in one launch; one line per launch.

    mpiexec -n 2 python benchmarks/ring_segments.py      # repeat the launch: on some VMs the state changes

Prints native's 1 MiB latency (the marker of the AMD guest's slow launches, benchmarks/RESULTS.md),
then per size (16 and 64 MiB) native's time and each ring's (whole chunks, then the segments of
``mpigd.comm.strategies.ring.SEGMENT_CANDIDATES``) and direct's speedup over native: native's median
time over theirs, 9 interleaved repeats after a warm-up.
"""

from __future__ import annotations

import numpy as np
from mpi4py import MPI

from mpigd.comm.strategies import make_strategy
from mpigd.comm.strategies.ring import SEGMENT_CANDIDATES, RingAllreduce
from mpigd.comm.timing import median, time_interleaved

comm = MPI.COMM_WORLD
rings = {f"ring{s >> 10}K": RingAllreduce(comm, segment_bytes=s) for s in (0, *SEGMENT_CANDIDATES)}
direct = make_strategy("direct", comm)
seconds = {}
for nbytes in (1 << 20, 16 << 20, 64 << 20):
    buffer = np.zeros(nbytes // 8)
    runs = {"native": lambda: comm.Allreduce(MPI.IN_PLACE, buffer)}
    if nbytes > 1 << 20:
        runs.update({name: (lambda r=r: r.allreduce(buffer)) for name, r in rings.items()})
        runs["direct"] = lambda: direct.allreduce(buffer)
    samples, _ = time_interleaved(comm, runs, 1 if nbytes > 1 << 20 else 20, 9)
    seconds[nbytes] = {name: median(s) for name, s in samples.items()}
if comm.Get_rank() == 0:
    marker = seconds[1 << 20]["native"] * 1e6
    line = f"native1M {marker:4.0f} {'SLOW' if marker > 300 else 'fast'} |"
    for nbytes in (16 << 20, 64 << 20):
        native = seconds[nbytes]["native"]
        line += f" {nbytes >> 20}M nat {native * 1e3:5.2f}ms " + " ".join(
            f"{name}:{native / t:.2f}" for name, t in seconds[nbytes].items() if name != "native") + " |"
    print(line, flush=True)
