"""What ``mpigd.comm.allreduce(..., check=True)`` costs: the same calls with and without the check.

    mpiexec -n 2 python benchmarks/allreduce_check_cost.py    # one line per strategy and size

For native and tree at 8 B and 1 KiB, and the ring at 1 MiB: each call with and without the
check, interleaved (15 repeats of up to 2000 calls after a warm-up, median per call, the slowest
rank's), and the difference, which is the check's own Allreduce of six integers.
"""

from __future__ import annotations

import numpy as np
from mpi4py import MPI

from mpigd.comm import allreduce
from mpigd.comm.timing import median, time_interleaved

CASES = (("native", 8), ("native", 1024), ("tree", 8), ("tree", 1024), ("ring", 1 << 20))

comm = MPI.COMM_WORLD.Dup()
for strategy, nbytes in CASES:
    buffer = np.zeros(nbytes // 8)
    runs = {"plain": lambda: allreduce(buffer, strategy, comm),
            "checked": lambda: allreduce(buffer, strategy, comm, check=True)}
    samples, _ = time_interleaved(comm, runs, 2000, 15)
    plain, checked = (median(samples[name]) * 1e6 for name in ("plain", "checked"))
    if comm.Get_rank() == 0:
        print(f"{comm.Get_size()} ranks  {strategy:<6} {nbytes:>8} B  plain {plain:8.2f} us  checked {checked:8.2f} us  "
              f"check costs {checked - plain:6.2f} us ({checked / plain:.2f}x)", flush=True)
