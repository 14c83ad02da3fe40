"""Run one mpigd command and print, per rank, its peak memory and the bytes it read.

    mpiexec -n 4 python benchmarks/rank_memory.py train --data d.csv --epochs 1 --quiet

A thread samples /proc/self/status every 10 ms for the peaks of anonymous memory (what the process
itself holds) and of file-mapped pages (memory maps of the data, which the kernel can drop); at
exit each rank prints VmHWM and /proc/self/io's rchar (bytes through read calls) and read_bytes
(bytes from the disk; the page cache hides re-reads). Linux only.
"""

from __future__ import annotations

import os
import sys
import threading
import time

PEAK = {"RssAnon": 0, "RssFile": 0}


def _fields(path: str) -> dict[str, str]:
    with open(path) as handle:
        return dict(line.split(":", 1) for line in handle if ":" in line)


def _sample() -> None:
    while True:
        status = _fields("/proc/self/status")
        for key in PEAK:
            PEAK[key] = max(PEAK[key], int(status[key].split()[0]))
        time.sleep(0.01)


def _report() -> None:
    status, io = _fields("/proc/self/status"), _fields("/proc/self/io")
    rank = os.environ.get("PMI_RANK", os.environ.get("OMPI_COMM_WORLD_RANK", "0"))
    mb = lambda kib: int(kib) / 1024  # noqa: E731
    line = (f"rank {rank}: peak anon {mb(PEAK['RssAnon']):.0f} MB, peak file-mapped {mb(PEAK['RssFile']):.0f} MB, "
            f"VmHWM {mb(status['VmHWM'].split()[0]):.0f} MB, read {int(io['read_bytes']) / 2**20:.0f} MB from disk, "
            f"rchar {int(io['rchar']) / 2**20:.0f} MB\n")
    os.write(2, line.encode())  # one write: the ranks' lines do not interleave


if __name__ == "__main__":
    threading.Thread(target=_sample, daemon=True).start()
    from mpigd.cli import main

    try:
        code = main(sys.argv[1:])
    finally:
        _report()
    sys.exit(code)
