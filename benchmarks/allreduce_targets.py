"""Issue 3's allreduce targets, one line per ``mpigd bench allreduce --json`` file.

    python benchmarks/allreduce_targets.py benchmarks/node16/allreduce-4ranks*.json

Per file: ring's and direct's speedup over native at 16 and 64 MiB (target: ring >= 1.0 and >= 2.0),
tree's worst time over native from 8 B to 1 KiB (target <= 1.5) and auto's worst time over the best
of the other strategies at any size (target <= 1.1). Every figure is the bench's own paired ratio
(median over repeats of the ratio within a repeat). A strategy or size the run left out reads "-".
Last, native's 1 MiB latency in us: on the AMD guest of benchmarks/RESULTS.md it tells a launch in
the slow state (~500 us and more, every strategy slow up to 8 MiB) from a normal one (~120 us).
"""

from __future__ import annotations

import json
import os
import sys

MIB = 1 << 20


def _row(rows: list[dict], strategy: str, nbytes: int) -> dict | None:
    return next((r for r in rows if r["strategy"] == strategy and r["bytes"] == nbytes), None)


def _speedups(rows: list[dict], strategy: str) -> str:
    figures = []
    for size in (16 * MIB, 64 * MIB):
        row = _row(rows, strategy, size)
        # A run without native has no speedup over it (None): "-", as for a size left out.
        figures.append(f"{row['speedup_vs_native']:.2f}" if row and row["speedup_vs_native"] else "-")
    return f"{strategy} 16M {figures[0]:>4} 64M {figures[1]:>4}"


def _worst(rows: list[dict], strategy: str, ratio_of, max_bytes: int | None = None) -> str:
    ratios = [(ratio_of(r), r["bytes"]) for r in rows
              if r["strategy"] == strategy and (max_bytes is None or r["bytes"] <= max_bytes)]
    ratios = [(ratio, nbytes) for ratio, nbytes in ratios if ratio is not None]  # nothing to compare with
    if not ratios:
        return "-"
    ratio, nbytes = max(ratios)
    return f"{ratio:.2f} at {nbytes} B"


def summary(path: str) -> str:
    with open(path) as file:
        report = json.load(file)
    rows, ranks = report["results"], report["metadata"]["ranks"]
    tree = _worst(rows, "tree", lambda r: 1.0 / r["speedup_vs_native"] if r["speedup_vs_native"] else None,
                  max_bytes=1024)
    auto = _worst(rows, "auto", lambda r: r["vs_best"])
    native = _row(rows, "native", MIB)
    marker = f"{native['median_s'] * 1e6:.0f}" if native else "-"
    return (f"{os.path.basename(path):<34} {ranks:>2} ranks  {_speedups(rows, 'ring')}  "
            f"{_speedups(rows, 'direct')}  tree/native worst {tree:<14} auto/best worst {auto:<18} native 1M us {marker}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python benchmarks/allreduce_targets.py BENCH.json [BENCH.json ...]")
    for name in sys.argv[1:]:
        try:
            print(summary(name))
        except OSError as error:
            sys.exit(f"allreduce_targets.py: {name}: {error.strerror or error}")
        except (ValueError, KeyError, TypeError) as error:  # not such a file: one line, not a traceback
            sys.exit(f"allreduce_targets.py: {name}: not a 'mpigd bench allreduce --json' file "
                     f"({type(error).__name__}: {error})")
