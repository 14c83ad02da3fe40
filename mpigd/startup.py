"""How long a run takes to get going: process start time, and whether the JIT cache served the kernels.

The start of the process is read from ``/proc/self/stat`` (its start time in clock ticks after
boot, compared with the boot clock), so interpreter start-up and imports are counted too.
Where ``/proc`` is missing, the time this module was first imported stands in (imports of the
interpreter itself are then not counted).
"""

from __future__ import annotations

import os
import time
from typing import Any

_IMPORTED_AT = time.time()


def process_start_time() -> float:
    """The wall-clock time (seconds since the epoch) at which this process started."""
    try:
        with open("/proc/self/stat", encoding="ascii") as handle:
            # The command name (field 2) may hold spaces; the fields after it are fixed.
            fields = handle.read().rsplit(")", 1)[1].split()
        started_after_boot = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22, starttime
        # The process's age from the boot clock (same origin as starttime, to a clock tick): the
        # boot time in /proc/stat is whole seconds and would add up to a second of error.
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - started_after_boot
        return min(time.time() - age, _IMPORTED_AT)
    except (OSError, ValueError, IndexError, AttributeError):
        return _IMPORTED_AT


def jit_cache_stats() -> dict[str, Any]:
    """Compilations that Numba's on-disk cache served (hits) and that it had to compile (misses),
    summed over every kernel of :mod:`mpigd.kernels` used so far in this process."""
    import importlib
    import pkgutil

    from numba.core.registry import CPUDispatcher

    from mpigd import kernels

    hits = misses = 0
    compiled = []
    for info in pkgutil.iter_modules(kernels.__path__):
        module = importlib.import_module(f"mpigd.kernels.{info.name}")
        for name, value in vars(module).items():
            if isinstance(value, CPUDispatcher) and value.signatures:
                stats = value.stats
                hits += sum(stats.cache_hits.values())
                misses += sum(stats.cache_misses.values())
                compiled.append(f"{module.__name__.rsplit('.', 1)[1]}.{name}")
    return {"cache_hits": hits, "cache_misses": misses, "kernels": sorted(compiled)}
