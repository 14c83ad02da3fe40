"""What the one-line probes (ring_segments.py, ring_blocks.py) share: contenders against native, interleaved."""

from __future__ import annotations

from typing import Callable

import numpy as np
from mpi4py import MPI

from mpigd.comm.timing import median, time_interleaved


def against_native(comm: MPI.Comm, contenders: dict[str, Callable[[np.ndarray], None]],
                   sizes: tuple[int, ...]) -> tuple[float, dict[int, dict[str, float]]]:
    """Native's 1 MiB latency in us (the AMD guest's slow-launch marker), and per size in ``sizes``
    the median seconds of native and each contender, 9 interleaved repeats after a warm-up."""
    seconds = {}
    for nbytes in (1 << 20, *sizes):
        buffer = np.zeros(nbytes // 8)
        runs = {"native": lambda: comm.Allreduce(MPI.IN_PLACE, buffer)}
        if nbytes in sizes:
            runs.update({name: (lambda run=run: run(buffer)) for name, run in contenders.items()})
        samples, _ = time_interleaved(comm, runs, 1 if nbytes in sizes else 20, 9)
        seconds[nbytes] = {name: median(s) for name, s in samples.items()}
    return seconds.pop(1 << 20)["native"] * 1e6, seconds


def speedups(native_and_contenders: dict[str, float]) -> str:
    """``name:ratio`` for every contender, its speedup over native (native's time over its own)."""
    native = native_and_contenders["native"]
    return " ".join(f"{name}:{native / t:.2f}" for name, t in native_and_contenders.items() if name != "native")


def one_line(marker: float, seconds: dict[int, dict[str, float]]) -> str:
    """The probe's line: native's 1 MiB latency (and the launch's state), then per size native's time
    and every contender's speedup over it."""
    line = f"native1M {marker:4.0f} {'SLOW' if marker > 300 else 'fast'} |"
    for nbytes, times in seconds.items():
        line += f" {nbytes >> 20}M nat {times['native'] * 1e3:5.2f}ms {speedups(times)} |"
    return line
