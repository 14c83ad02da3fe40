"""Repeat-and-take-the-median timing, after a warm-up (JIT compilation, first touch of memory)."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Timing:
    median: float
    low: float
    high: float
    repeats: int

    def as_dict(self) -> dict[str, float]:
        return {"median_s": self.median, "min_s": self.low, "max_s": self.high, "repeats": self.repeats}


def measure(run: Callable[[], object], repeats: int = 7, warmup: int = 1) -> Timing:
    """Time ``run()`` ``repeats`` times after ``warmup`` untimed calls."""
    for _ in range(warmup):
        run()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        samples.append(time.perf_counter() - start)
    return Timing(statistics.median(samples), min(samples), max(samples), repeats)
