"""One algorithm timed several times in one launch: how far apart can its copies be?

    mpiexec -n 2 python benchmarks/same_strategy_instances.py    # one line per launch; repeat the launch

For the ring and for direct: three instances (each owns its scratch memory) and the first one
entered a second time, all timed in turn on one 16 MiB array (9 interleaved repeats after a
warm-up, median), beside native. Prints native's 1 MiB latency (the AMD guest's slow-launch marker,
benchmarks/RESULTS.md), every contender's time, and per strategy the slower over the faster of the
one instance's two entries ("twice") and the slowest over the fastest of the three instances
("instances"): the spread that a benchmark cannot resolve between two runs of one algorithm.
"""

from __future__ import annotations

from mpi4py import MPI

from _probe import against_native
from mpigd.comm.strategies import make_strategy

INSTANCES = 3
SIZE = 16 << 20
STRATEGIES = ("ring", "direct")

comm = MPI.COMM_WORLD
contenders = {}
for name in STRATEGIES:
    runs = [make_strategy(name, comm).allreduce for _ in range(INSTANCES)]
    contenders.update({f"{name}{k}": run for k, run in enumerate(runs)})
    contenders[f"{name}0again"] = runs[0]
marker, seconds = against_native(comm, contenders, (SIZE,))


def spread(times: list[float]) -> float:
    return max(times) / min(times)


if comm.Get_rank() == 0:
    times = seconds[SIZE]
    summary = " ".join(
        f"{name} twice {spread([times[f'{name}0'], times[f'{name}0again']]):.2f}"
        f" instances {spread([times[f'{name}{k}'] for k in range(INSTANCES)]):.2f}" for name in STRATEGIES)
    print(f"{comm.Get_size()} ranks native1M {marker:4.0f} | {SIZE >> 20}M us "
          + " ".join(f"{name}:{t * 1e6:.0f}" for name, t in times.items()) + " | " + summary, flush=True)
